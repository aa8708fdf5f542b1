"""Exported models run by ONNX Runtime or OpenVINO, called like the PyTorch model they came from.

An :class:`ExportedModel` maps normalized images ``(B, 3, H, W)`` float32 to logits ``(B, K, H, W)``,
as a :class:`~lrsa_seg.models.Segmentor` does, so everything that runs a model on prepared inputs
(:func:`~lrsa_seg.models.segmentor.predict_logits`: test-time resize, sliding windows, flips)
runs an exported one unchanged: :class:`~lrsa_seg.Segmenter` (``runtime=``), ``lrsa-seg test
--runtime`` and ``lrsa-seg segment --runtime``. The runtimes are optional packages (ONNX Runtime:
the ``dev`` extra; OpenVINO: the ``deploy`` extra), imported when a model is loaded.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError

Runtime = Literal["torch", "onnxruntime", "openvino"]
RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")

EXPORTED_FILES = {"onnxruntime": Path("onnx") / "model.onnx", "openvino": Path("openvino") / "model.xml"}
"""Where ``lrsa-seg export`` writes into a saved model's folder, and where a runtime looks by default."""

_PACKAGES = {
    "onnxruntime": ("onnxruntime", "pip install onnxruntime"),
    "openvino": ("openvino", "pip install 'lrsa-seg[deploy]'"),
    "nncf": ("nncf", "pip install 'lrsa-seg[deploy]'"),
}


def import_runtime(name: str) -> Any:
    """The package ``name`` (``onnxruntime``, ``openvino``, ``nncf``), or a ``ConfigError`` saying how to install it."""
    module, install = _PACKAGES[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{name} is not installed ({install})") from None


class ExportedModel:
    """An exported segmentor: ``model(images)`` -> logits, like the PyTorch model.

    Attributes:
        path: the exported file.
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        num_classes: output classes ``K`` (from the file's output shape).
        fixed_size: the only ``(H, W)`` the file accepts, or None where height and width are dynamic.
    """

    runtime: str

    def __init__(self, path: Path, num_classes: int, fixed_size: tuple[int, int] | None) -> None:
        self.path = path
        self.num_classes = num_classes
        self.fixed_size = fixed_size

    def run(self, images: np.ndarray) -> np.ndarray:
        """``(B, 3, H, W)`` float32 -> ``(B, K, H, W)`` float32 (the runtime's own call)."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized ``(B, 3, H, W)`` -> logits ``(B, K, H, W)`` float32 on the input's device."""
        if self.fixed_size is not None and tuple(images.shape[-2:]) != self.fixed_size:
            height, width = self.fixed_size
            raise ConfigError(
                f"{self.path} was exported for {height} x {width} inputs only, got "
                f"{images.shape[-2]} x {images.shape[-1]} (export without --fixed-size for any size)"
            )
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        return torch.from_numpy(self.run(array)).to(images.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, num_classes={self.num_classes})"


def _static(dim: Any) -> int | None:
    """A dimension as an int, None where it is dynamic (ONNX: a name or 0; OpenVINO: ``?``)."""
    if isinstance(dim, int):
        return dim if dim > 0 else None
    if hasattr(dim, "is_static"):
        return dim.get_length() if dim.is_static else None
    return None


class OnnxRuntimeModel(ExportedModel):
    """An ``.onnx`` file run by ONNX Runtime on the CPU."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (given,), (output,) = self.session.get_inputs(), self.session.get_outputs()
        self.input_name = given.name
        height, width = (_static(d) for d in given.shape[2:])
        super().__init__(path, _static(output.shape[1]) or 0, (height, width) if height and width else None)

    def run(self, images: np.ndarray) -> np.ndarray:
        """One session run."""
        return self.session.run(None, {self.input_name: images})[0]


class OpenVinoModel(ExportedModel):
    """An OpenVINO IR (``.xml`` + ``.bin``) compiled for the CPU."""

    runtime = "openvino"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ov = import_runtime("openvino")
        core = ov.Core()
        model = core.read_model(str(path))
        shape = model.inputs[0].get_partial_shape()
        height, width = _static(shape[2]), _static(shape[3])
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        self.compiled = core.compile_model(model, "CPU", config)
        classes = _static(model.outputs[0].get_partial_shape()[1]) or 0
        super().__init__(path, classes, (height, width) if height and width else None)

    def run(self, images: np.ndarray) -> np.ndarray:
        """One inference (outputs copied out of the request)."""
        return np.asarray(self.compiled(images)[0])


def load_exported(path: str | os.PathLike[str], runtime: str, threads: int | None = None) -> ExportedModel:
    """An exported model file, ready to run.

    Args:
        path: ``.onnx`` for ``"onnxruntime"``; OpenVINO IR ``.xml`` (its ``.bin`` beside it) for
            ``"openvino"``.
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        threads: CPU threads of the runtime (None: its default, all cores).
    """
    if runtime not in EXPORTED_FILES:
        raise ConfigError(f"runtime must be one of {', '.join(EXPORTED_FILES)} for an exported file, got {runtime!r}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no exported model there (write one with `lrsa-seg export --format ...`)")
    suffix = EXPORTED_FILES[runtime].suffix
    if path.suffix != suffix:
        raise ConfigError(f"{path}: runtime {runtime!r} reads {suffix} files")
    return OnnxRuntimeModel(path, threads) if runtime == "onnxruntime" else OpenVinoModel(path, threads)


def find_exported(source: str | os.PathLike[str], runtime: str, exported: str | os.PathLike[str] | None) -> Path:
    """The exported file for ``runtime``: ``exported`` if given, else the one inside the saved model ``source``.

    ``lrsa-seg export --weights FOLDER`` writes ``FOLDER/openvino/model.xml`` or ``FOLDER/onnx/model.onnx``
    (:data:`EXPORTED_FILES`); other sources (Hub, checkpoints) need ``exported``.
    """
    if exported is not None:
        return Path(exported)
    default = Path(os.fspath(source)) / EXPORTED_FILES[runtime]
    if default.is_file():
        return default
    raise ConfigError(
        f"runtime {runtime!r}: no {EXPORTED_FILES[runtime]} in {source}; pass the exported file "
        f"(exported=PATH, --exported PATH) or write it with `lrsa-seg export --weights {source} --format "
        f"{'onnx' if runtime == 'onnxruntime' else 'openvino'}`"
    )


def check_classes(model: ExportedModel, num_classes: int) -> None:
    """Refuse an exported file whose output classes differ from the model's or the data's."""
    if model.num_classes and model.num_classes != num_classes:
        raise ConfigError(f"{model.path} gives {model.num_classes} classes, expected {num_classes}")
