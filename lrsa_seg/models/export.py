"""Export to ONNX and OpenVINO with dynamic batch, height and width; int8 post-training quantization.

LRSA pools every map to a grid whose size depends on the input's height and width through
``round()``. The graph is captured once by ``torch.export`` (non-strict, as ``torch.onnx``'s own
capture does); the model computes the grid in exact integer arithmetic on the symbolic sizes and,
while exporting, pools with two matrix products built from those sizes
(:mod:`lrsa_seg.models.pooling`). The graph therefore computes the right grid and the right
pooling at every input size; an exporter's own ``adaptive_avg_pool2d`` lowering would bake the
example's pooling windows in and be wrong (or fail) at other sizes.

ONNX is written by the dynamo-based ``torch.onnx.export`` (needs ``onnxscript``) from that
program. OpenVINO IR is converted from the ONNX file (``openvino.convert_model``): the same graph
ONNX Runtime runs, converted in seconds, where OpenVINO's own reading of the ``torch.export``
program took minutes for the tiny model. int8 models are made from the fp32 IR by NNCF
(:func:`quantize_openvino`), calibrated on real, preprocessed images.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from .runtime import ExportedModel, import_runtime

# The smallest side exported: 33, since a 32-pixel side gives stride-32 maps of one pixel, which
# the exporter specialises on (its 0/1 rule) and the graph would then hold for no other size.
MIN_SIDE = 33
MAX_SIDE = 8192
# An example batch of 2, for the same reason: a batch of 1 would be specialised to 1.
EXAMPLE_BATCH = 2

Sample = TypeVar("Sample")


def export_program(
    model: nn.Module, example_size: tuple[int, int] = (256, 320), fixed_size: bool = False
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` (``(B, 3, H, W)`` -> ``(B, K, H, W)``), batch dynamic.

    Args:
        model: a :class:`~lrsa_seg.models.Segmentor` or its fused copy, in eval mode.
        example_size: traced input size.
        fixed_size: keep height and width at ``example_size`` (a much faster capture: no symbolic
            size arithmetic); else both are dynamic from :data:`MIN_SIDE` to :data:`MAX_SIDE`.
    """
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.randn(EXAMPLE_BATCH, 3, *example_size, device=device)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1024)}
    if not fixed_size:
        dims[2] = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE)
        dims[3] = torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)
    with (
        warnings.catch_warnings(),
        torch.no_grad(),
        torch.fx.experimental._config.patch(backed_size_oblivious=True),  # as torch.onnx's capture
    ):
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        return torch.export.export(
            model, (example,), dynamic_shapes=(dims,), strict=False, prefer_deferred_runtime_asserts_over_guards=True
        )


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_size: tuple[int, int] = (256, 320),
    opset: int = 18,
    fixed_size: bool = False,
) -> Path:
    """Export ``model`` to ONNX (:func:`export_program`), batch, height and width dynamic.

    Args:
        model: a :class:`~lrsa_seg.models.Segmentor` or its fused copy, in eval mode.
        path: the ``.onnx`` file to write (weights inside the file).
        example_size: traced input size; any size works (the graph is valid for all of them).
        opset: ONNX opset.
        fixed_size: export for ``example_size`` only (see :func:`export_program`).

    Returns:
        ``path``. Input ``images`` (float32 ``(B, 3, H, W)``), output ``logits``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(model, example_size, fixed_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program, dynamo=True, input_names=["images"], output_names=["logits"], opset_version=opset, verbose=False
        )
    onnx_program.save(str(path), external_data=False)
    return path


def export_openvino(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_size: tuple[int, int] = (256, 320),
    opset: int = 18,
    fixed_size: bool = False,
) -> Path:
    """Export ``model`` to OpenVINO IR (``path``: ``.xml``, weights in the ``.bin`` beside it), fp32.

    Converted from :func:`export_onnx`'s graph (a temporary file); arguments as there.
    """
    ov = import_runtime("openvino")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", example_size, opset, fixed_size)
        converted = ov.convert_model(str(onnx_path))
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return path


def pooling_matmuls(model: Any) -> list[str]:
    """The MatMuls of an OpenVINO model that are LRSA's pooling (:func:`~lrsa_seg.models.pooling.pool_by_matmul`).

    An averaging matrix (rank 2) multiplies a map from the left, or a 4-D map from the right; the
    Linear layers multiply 3-D tokens by a weight on the right. Kept in float: in 8 bits over
    ``[0, 1]`` the matrix's entries ``1/n`` (n pixels per cell) would be off by up to ``1/510``,
    several percent of a cell's weight.
    """
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        first, second = (port.get_partial_shape().rank.get_length() for port in op.inputs())
        if first == 2 or (first == 4 and second == 2):
            names.append(op.get_friendly_name())
    return names


def quantize_openvino(
    path: str | os.PathLike[str],
    samples: Sequence[Sample],
    transform: Callable[[Sample], np.ndarray],
    output: str | os.PathLike[str],
) -> Path:
    """int8 post-training quantization of an fp32 OpenVINO IR with NNCF, calibrated on ``samples``.

    Weights are quantized per channel (symmetric), activations per tensor (asymmetric: NNCF's
    ``mixed`` preset for transformer models, whose attention, softmax and LayerNorm patterns it
    keeps in float; SmoothQuant on its MatMuls). Per tensor on purpose: NNCF would quantize LRSA's
    token maps ``(B, N, C)`` per "channel" along ``N``, whose length follows the input size, and
    the int8 model would then run at the calibration size only (and calibration would need one size). LRSA's pooling
    products stay in float (:func:`pooling_matmuls`).

    Args:
        path: the fp32 ``.xml``.
        samples: calibration samples (e.g. image files), all of them used.
        transform: a sample -> the model's input ``(1, 3, H, W)`` float32, preprocessed as at
            inference (sizes may differ between samples; the int8 model takes any size).
        output: the int8 ``.xml`` to write.
    """
    ov, nncf = import_runtime("openvino"), import_runtime("nncf")
    from nncf.quantization import advanced_parameters as advanced

    if not samples:
        raise ValueError("quantization needs at least one calibration sample")
    model = ov.Core().read_model(str(path))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples, transform),
        subset_size=len(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=nncf.IgnoredScope(names=pooling_matmuls(model)),
        advanced_parameters=advanced.AdvancedQuantizationParameters(
            activations_quantization_params=advanced.QuantizationParameters(per_channel=False),
        ),
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(output), compress_to_fp16=False)
    return output


def max_abs_diff(exported: ExportedModel, model: nn.Module, sizes: Sequence[tuple[int, int]]) -> list[float]:
    """Max |exported - PyTorch| of the logits at each ``(H, W)`` in ``sizes`` (random input, batch 1)."""
    diffs = []
    generator = torch.Generator().manual_seed(0)
    for height, width in sizes:
        images = torch.randn(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(images).float()
        got = exported(images)
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(
                f"{exported.runtime} logits {tuple(got.shape)} at {height} x {width}, PyTorch {tuple(expected.shape)}"
            )
        diffs.append(float((got - expected).abs().max()))
    return diffs
