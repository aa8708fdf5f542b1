"""``lrsa-seg export``: ONNX with dynamic height and width, checked against onnxruntime.

LRSA pools every map to a grid whose size depends on the input's height and width through
``round()``. The exporter used here is the dynamo-based one (``torch.onnx.export(...,
dynamo=True)``, needs ``onnxscript``); the model computes the grid in exact integer arithmetic on
the symbolic sizes and, while exporting, pools with two matrix products built from those sizes
(:mod:`lrsa_seg.models.pooling`). The ONNX graph therefore computes the right grid and the
right pooling at every input size; the exporter's own ``adaptive_avg_pool2d`` lowering would
bake the example's pooling windows in and be wrong (or fail) at other sizes.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

# The smallest side exported: the stem and three stride-2 stages need 32 pixels.
MIN_SIDE = 32
MAX_SIDE = 8192


def export_onnx(
    model: nn.Module, path: str | os.PathLike[str], example_size: tuple[int, int] = (256, 320), opset: int = 18
) -> Path:
    """Export ``model`` (``(B, 3, H, W)`` -> ``(B, K, H, W)``) to ONNX, batch, height and width dynamic.

    Args:
        model: a :class:`~lrsa_seg.models.Segmentor` or its fused copy, in eval mode.
        path: the ``.onnx`` file to write (weights inside the file).
        example_size: traced input size; any size works (the graph is valid for all of them).
        opset: ONNX opset.

    Returns:
        ``path``. Input ``images`` (float32 ``(B, 3, H, W)``), output ``logits``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.randn(1, 3, *example_size, device=device)
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE),
        3: torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE),
    }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=(dims,),
            input_names=["images"],
            output_names=["logits"],
            opset_version=opset,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path


def onnx_max_abs_diff(path: str | os.PathLike[str], model: nn.Module, sizes: Sequence[tuple[int, int]]) -> list[float]:
    """Max |onnxruntime - PyTorch| of the logits at each ``(H, W)`` in ``sizes`` (random input)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    generator = torch.Generator().manual_seed(0)
    for height, width in sizes:
        images = torch.randn(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(images).float()
        (got,) = session.run(["logits"], {"images": images.numpy()})
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(f"ONNX logits {got.shape} at {height} x {width}, PyTorch {tuple(expected.shape)}")
        diffs.append(float((torch.from_numpy(got) - expected).abs().max()))
    return diffs


def build_for_export(
    name: str, weights: str | None = None, num_classes: int | None = None, fuse: bool = False
) -> nn.Module:
    """A registered segmentor in eval mode, with ``weights`` (any format ``read_weights`` reads), fused or not."""
    from .convert import load_state_dict_checked, read_weights
    from .models import create_model
    from .models.fuse import fuse_for_inference

    state_dict = None
    if weights is not None:
        state_dict = read_weights(weights)
        if num_classes is None and "decode_head.classifier.weight" in state_dict:
            num_classes = state_dict["decode_head.classifier.weight"].shape[0]
    model = create_model(name, num_classes=num_classes)
    if not hasattr(model, "decode_head"):
        raise ValueError(f"{name!r} is not a segmentation model")
    if state_dict is not None:
        load_state_dict_checked(model, state_dict, source=str(weights))
    model.eval()
    return fuse_for_inference(model) if fuse else model


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    return int(parts[0]), int(parts[1])


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg export --model lrformer_t [--weights F] --format onnx --output F [--fuse] [--check H[xW] ...]``."""
    from .models import list_models

    parser = argparse.ArgumentParser(prog="lrsa-seg export", description="Export a segmentor to ONNX.")
    parser.add_argument("--model", required=True, choices=[m for m in list_models() if not m.endswith("_cls")])
    parser.add_argument("--weights", default=None, help="weights file (lrsa-seg, Lightning or official checkpoint)")
    parser.add_argument("--num-classes", type=int, default=None, help="default: from --weights, else 150")
    parser.add_argument("--format", choices=["onnx"], default="onnx")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--fuse", action="store_true", help="export the fused inference copy (faster, same outputs)")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--example-size", type=_size, default=(256, 320), metavar="HxW")
    parser.add_argument(
        "--check",
        type=_size,
        nargs="*",
        default=[(256, 320), (200, 333), (512, 512)],
        metavar="HxW",
        help="compare onnxruntime with PyTorch at these sizes (none: skip)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    try:
        model = build_for_export(args.model, args.weights, args.num_classes, args.fuse)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        parser.error(str(err))
    path = export_onnx(model, args.output, args.example_size, args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB), dynamic batch, height and width")
    if args.check:
        diffs = onnx_max_abs_diff(path, model, args.check)
        for (height, width), diff in zip(args.check, diffs):
            print(f"  onnxruntime vs PyTorch at {height} x {width}: max abs diff {diff:.2e}")
        if max(diffs) > args.tolerance:
            print(f"error: ONNX output differs by more than {args.tolerance}")
            return 1
    return 0
