"""ONNX export with dynamic height and width, checked against onnxruntime.

LRSA pools every map to a grid whose size depends on the input's height and width through
``round()``. The exporter used here is the dynamo-based one (``torch.onnx.export(...,
dynamo=True)``, needs ``onnxscript``); the model computes the grid in exact integer arithmetic on
the symbolic sizes and, while exporting, pools with two matrix products built from those sizes
(:mod:`lrsa_seg.models.pooling`). The ONNX graph therefore computes the right grid and the
right pooling at every input size; the exporter's own ``adaptive_avg_pool2d`` lowering would
bake the example's pooling windows in and be wrong (or fail) at other sizes.
"""

from __future__ import annotations

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
