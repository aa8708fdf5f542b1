"""The benchmark's models by row name: LRFormer variants and their forms, SegFormer, exported rows.

Forms: fused, compiled, reference; any model exported and run by ONNX Runtime or OpenVINO (fp32, int8).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

# SegFormer-B0..B2 (Xie et al. 2021): widths; depths (2, 2, 2, 2) / (3, 4, 6, 3) for B2.
SEGFORMER = {
    "b0": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b1": dict(hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    "b2": dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768),
}


# Exported rows: the model (LRFormer fused, SegFormer as it is) exported once with dynamic height
# and width, then run by a runtime; the longest suffix first.
EXPORTED = {"_openvino_int8": "openvino", "_openvino": "openvino", "_onnx": "onnxruntime"}
INFERENCE_ONLY = ("_fused", "_compiled", *EXPORTED)
# Enough for the int8 rows' speed, which does not depend on the calibration (accuracy is measured
# with real images elsewhere), and few: each is a full fp32 pass of the model at the row's size.
CALIBRATION_INPUTS = 2


GEMM = "matmul_2048"


def _segformer(variant: str, num_classes: int) -> Any:
    import torch.nn.functional as F
    from torch import nn
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_labels=num_classes, **SEGFORMER[variant])
    model = SegformerForSemanticSegmentation(config)

    class Upsampled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            logits = self.model(pixel_values=x).logits  # stride 4
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return Upsampled()


def _reference(model: Any) -> Any:
    from ...models.reference import reference_like

    return reference_like(model)


def build_model(name: str, num_classes: int, overrides: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The model of a row name (see the module doc) and facts about it.

    ``overrides``: :func:`~lrsa_seg.models.create_model` arguments of LRFormer rows. A
    ``_pool{P}`` suffix names a pooled-size row (its pooled size is in ``overrides``), and
    ``_pool{P}_full`` the same model with LRSA's exact shortcut off.
    """
    import torch

    from ...models import create_model
    from ...models.fuse import fuse_for_inference

    info: dict[str, Any] = {}
    if name.startswith("segformer_"):
        return _segformer(name.split("_")[1], num_classes), info
    pooled = re.fullmatch(r"(.+)_pool\d+(_full)?", name)
    if pooled:
        torch.manual_seed(0)
        model = create_model(pooled.group(1), num_classes=num_classes, **(overrides or {}))
        if pooled.group(2):
            from ...models.lrsa import set_exact_shortcut

            set_exact_shortcut(model, False)
        return model, info
    base = name
    for suffix in ("_fused_compiled", "_fused", "_compiled", "_ref", "_cl"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            break
    torch.manual_seed(0)
    model = create_model(base, num_classes=num_classes, **(overrides or {})).eval()
    if name.endswith("_ref"):
        return _reference(model), info
    if name.endswith("_cl"):
        return model.to(memory_format=torch.channels_last), {"channels_last": True}
    if name.endswith(("_fused", "_fused_compiled")):
        model = fuse_for_inference(model)
    if name.endswith("_compiled"):
        model = torch.compile(model, dynamic=True)
    return model, info


def exported_suffix(name: str) -> str | None:
    """The :data:`EXPORTED` suffix of a row name (``segformer_b1_openvino_int8`` -> ``_openvino_int8``), or None."""
    return next((suffix for suffix in EXPORTED if name.endswith(suffix)), None)


def calibration_inputs(folder: str | None, count: int, size: tuple[int, int]) -> list[Any]:
    """int8 calibration inputs ``(1, 3, H, W)`` float32: images of ``folder`` (normalized, at ``size``) or random.

    Speed does not depend on what the model was calibrated on; the accuracy of an int8 model is
    measured with real images (``lrsa-seg export --calibration``, ``lrsa-seg test --runtime``).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ...constants import IMAGE_MEAN, IMAGE_STD
    from ...inference import image_array
    from ..segment import list_images

    if folder is None:
        rng = np.random.default_rng(0)
        return [rng.standard_normal((1, 3, *size)).astype(np.float32) for _ in range(count)]
    mean, std = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    inputs = []
    for path in list_images(Path(folder))[:count]:
        image = torch.tensor(image_array(path)).permute(2, 0, 1)[None].float()  # a copy: the array is read-only
        resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        inputs.append(((resized - mean) / std).numpy())
    return inputs


def exported_model(
    name: str,
    num_classes: int,
    threads: int,
    folder: Path,
    calibration: str | None,
    size: tuple[int, int],
    fixed_size: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """The runtime model of an exported row, and ``export_s`` (about 0 where ``folder`` already held the files).

    The fp32 file is exported once per base model into ``folder`` (``<base>/model.onnx`` or
    ``<base>/model.xml``, dynamic height and width) and reused by every size and later runs, or
    with ``fixed_size`` once per size (``<base>/<H>x<W>/``); ``_openvino_int8`` quantizes that IR
    with NNCF on :data:`CALIBRATION_INPUTS` :func:`calibration_inputs` of ``size``.
    """
    from ...models.export import export_onnx, export_openvino, quantize_openvino
    from ...models.runtime import load_exported

    suffix = exported_suffix(name)
    assert suffix is not None, name
    base = name[: -len(suffix)]
    runtime = EXPORTED[suffix]
    where = folder / base / (f"{size[0]}x{size[1]}" if fixed_size else "")
    path = where / ("model.onnx" if runtime == "onnxruntime" else "model.xml")
    start = time.perf_counter()
    if not path.is_file():
        model, _ = build_model(base if base.startswith("segformer_") else f"{base}_fused", num_classes)
        export = export_onnx if runtime == "onnxruntime" else export_openvino
        export(model, path, size if fixed_size else (256, 320), fixed_size=fixed_size)
    if suffix == "_openvino_int8":
        fp32, path = path, path.with_name("model_int8.xml")
        if not path.is_file():
            quantize_openvino(fp32, calibration_inputs(calibration, CALIBRATION_INPUTS, size), lambda x: x, path)
    return load_exported(path, runtime, threads), {"export_s": time.perf_counter() - start, "exported": str(path)}


def row_macs(name: str, height: int, width: int, num_classes: int) -> int | None:
    """Forward multiply-accumulates of the (unfused) architecture, batch 1; None if unknown."""
    import torch

    from ...models import create_model
    from ...models.flops import count_macs

    if name == GEMM:
        return None
    name = name[: -len(exported_suffix(name) or "")] or name
    if name.startswith("segformer_"):
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = _segformer(name.split("_")[1], num_classes)
        model.model.config._attn_implementation = "eager"  # the counter sees no CPU SDPA
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, 3, height, width, device="meta"))
        return counter.get_total_flops() // 2
    base = name.split("_")[0] + "_" + name.split("_")[1]
    with torch.device("meta"):
        model = create_model(base, num_classes=num_classes)
    return count_macs(model, height, width)[0]
