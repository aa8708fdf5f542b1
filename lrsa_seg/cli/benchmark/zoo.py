"""The benchmark's models by row name: LRFormer variants and their fused/compiled/ONNX/reference forms, SegFormer."""

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


INFERENCE_ONLY = ("_fused", "_onnx", "_compiled")


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
    for suffix in ("_fused_compiled", "_fused", "_compiled", "_onnx", "_ref", "_cl"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            break
    torch.manual_seed(0)
    model = create_model(base, num_classes=num_classes, **(overrides or {})).eval()
    if name.endswith("_ref"):
        return _reference(model), info
    if name.endswith("_cl"):
        return model.to(memory_format=torch.channels_last), {"channels_last": True}
    if name.endswith(("_fused", "_onnx", "_fused_compiled")):
        model = fuse_for_inference(model)
    if name.endswith("_compiled"):
        model = torch.compile(model, dynamic=True)
    return model, info


class _Onnx:
    """onnxruntime session with the model's call signature."""

    def __init__(self, model: Any, threads: int, workdir: Path) -> None:
        import onnxruntime as ort

        from ...models.export import export_onnx

        start = time.perf_counter()
        path = export_onnx(model, workdir / "model.onnx")
        self.export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: Any) -> Any:
        return self.session.run(["logits"], {"images": x.numpy()})[0]


def _macs(name: str, height: int, width: int, num_classes: int) -> int | None:
    """Forward multiply-accumulates of the (unfused) architecture, batch 1; None if unknown."""
    import torch

    from ...models import create_model
    from ...models.flops import count_macs

    if name == GEMM:
        return None
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
