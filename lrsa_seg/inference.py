"""One-call inference: ``Segmenter.from_pretrained(SRC)(image)`` -> a label map at the image's size.

The weights say which model they hold and how its inputs were prepared (classes, palette,
mean/std, test-time resize: :func:`~lrsa_seg.models.pretrained.inference_metadata`); the
segmenter runs the fused inference copy of the model (:func:`~lrsa_seg.models.fuse_for_inference`),
or the model exported by ``lrsa-seg export`` run by ONNX Runtime or OpenVINO
(:mod:`lrsa_seg.models.runtime`) with the same preprocessing and postprocessing, and shares the
model as the Hub keeps models (:meth:`Segmenter.save_pretrained`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from datamodules.files import read_image, upright_rgb

from .constants import IMAGE_MEAN, IMAGE_STD
from .errors import ConfigError
from .models import fuse_for_inference, load_pretrained
from .models.pretrained import VALUE_SCALE
from .models.runtime import RUNTIMES, ExportedModel, Runtime, check_classes, find_exported, load_exported
from .models.segmentor import Segmentor, predict_logits, rescale, resize_to_multiple
from .visualize import default_palette
from .visualize import overlay as overlay_picture

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
"""A path, a PIL image, an ``(H, W, 3)`` uint8 array or a ``(3, H, W)`` uint8 tensor (RGB)."""

_PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def image_array(image: ImageInput) -> np.ndarray:
    """Any :data:`ImageInput` -> ``(H, W, 3)`` uint8 RGB; an unreadable file raises ``DatasetError`` naming it.

    Files and PIL images are turned upright by their EXIF orientation first, as photo viewers show them.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image), upright=True)
    if isinstance(image, Image.Image):
        return upright_rgb(image)
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, H, W) uint8, got {tuple(image.shape)} {image.dtype}")
        return image.permute(1, 2, 0).cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        return image
    raise TypeError(f"image must be a path, PIL image, array or tensor, got {type(image).__name__}")


class Segmenter:
    """A pretrained segmentation model with its preprocessing, classes and palette.

    Args:
        model: a :class:`Segmentor` with its weights.
        metadata: :func:`~lrsa_seg.models.pretrained.inference_metadata` (missing entries: class indices as
            names, the default palette, ImageNet mean/std, no test-time resize).
        device: where to run, e.g. ``"cpu"``, ``"cuda"``.
        precision: ``"32"``, ``"bf16"`` or ``"16"`` (autocast).
        mode: ``"whole"`` image or ``"slide"`` windows of ``crop_size`` every ``stride``.
        crop_size: sliding window ``(h, w)``.
        stride: sliding stride ``(h, w)``.
        batch_size: most images per forward pass (same-size images of a list are batched).
        exported: run this exported model (:func:`~lrsa_seg.models.runtime.load_exported`) instead of
            ``model``'s fused copy; ``device`` must then be the CPU and ``precision`` ``"32"``.
    """

    def __init__(
        self,
        model: Segmentor,
        metadata: dict[str, Any],
        device: str | torch.device = "cpu",
        precision: Literal["32", "bf16", "16"] = "32",
        mode: Literal["whole", "slide"] = "whole",
        crop_size: tuple[int, int] = (512, 512),
        stride: tuple[int, int] = (341, 341),
        batch_size: int = 8,
        exported: ExportedModel | None = None,
    ) -> None:
        if precision not in _PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        if mode not in ("whole", "slide"):
            raise ConfigError(f"mode must be 'whole' or 'slide', got {mode!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.metadata = dict(metadata)
        self.source_model = model  # unfused, for save_pretrained (the fused copy's keys differ)
        self.device = torch.device(device)
        self.precision = precision
        self.mode = mode
        self.crop_size = tuple(crop_size)
        self.stride = tuple(stride)
        self.num_classes = model.num_classes
        self.class_names: list[str] = list(metadata.get("class_names") or [str(i) for i in range(self.num_classes)])
        self.palette: list[tuple[int, int, int]] = [
            (int(r), int(g), int(b)) for r, g, b in (metadata.get("palette") or default_palette(self.num_classes))
        ]
        self.base_size = tuple(metadata["base_size"]) if metadata.get("base_size") else None
        self.size_multiple = metadata.get("size_multiple")
        # mean/std apply to pixels on 0..value_scale; on uint8 (0..255) they scale by 255 / value_scale.
        scale = VALUE_SCALE / float(metadata.get("value_scale") or VALUE_SCALE)
        mean = torch.tensor(metadata.get("mean") or IMAGE_MEAN, dtype=torch.float32).view(1, 3, 1, 1) * scale
        std = torch.tensor(metadata.get("std") or IMAGE_STD, dtype=torch.float32).view(1, 3, 1, 1) * scale
        self.mean, self.std = mean.to(self.device), std.to(self.device)
        self.runtime = "torch" if exported is None else exported.runtime
        if exported is None:
            self.model: Segmentor | ExportedModel = fuse_for_inference(model.eval().to(self.device))
            return
        if self.device.type != "cpu" or precision != "32":
            raise ConfigError(
                f"runtime {exported.runtime!r} runs on the CPU in float32; got device {str(self.device)!r}, "
                f"precision {precision!r}"
            )
        check_classes(exported, self.num_classes)
        self.model = exported

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike[str],
        model: str | None = None,
        device: str | torch.device = "cpu",
        precision: Literal["32", "bf16", "16"] = "32",
        mode: Literal["whole", "slide"] = "whole",
        crop_size: tuple[int, int] = (512, 512),
        stride: tuple[int, int] = (341, 341),
        batch_size: int = 8,
        allow_pickle: bool = False,
        runtime: Runtime = "torch",
        exported: str | os.PathLike[str] | None = None,
    ) -> Segmenter:
        """Load a segmentation model of any supported format (:func:`~lrsa_seg.models.load_pretrained`).

        Args:
            source: a saved model's folder, ``hf://OWNER/REPO`` or ``OWNER/REPO``, a weights file
                (official ``.pth``, Lightning ``.ckpt``, ``.pt``, ``.safetensors``), ``hf://OWNER/REPO/PATH``
                or an http(s) URL.
            model: registered variant (``lrformer_t`` ...); needed only where the file does not say
                and its shapes fit no variant.
            device: as in :class:`Segmenter`.
            precision: as in :class:`Segmenter`.
            mode: as in :class:`Segmenter`.
            crop_size: as in :class:`Segmenter`.
            stride: as in :class:`Segmenter`.
            batch_size: as in :class:`Segmenter`.
            allow_pickle: allow arbitrary unpickling (only for files you trust).
            runtime: ``"torch"`` (the fused PyTorch model), or ``"onnxruntime"`` / ``"openvino"`` to run
                the exported model (CPU, float32); ``source`` still gives the classes, palette and
                preprocessing.
            exported: the exported file for ``runtime`` (``.onnx``, or OpenVINO ``.xml`` such as an int8
                ``model_int8.xml``); None: the one ``lrsa-seg export`` wrote into the saved model folder
                ``source`` (``onnx/model.onnx``, ``openvino/model.xml``).
        """
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime == "torch" and exported is not None:
            raise ConfigError("exported= is run by runtime='onnxruntime' or 'openvino', not 'torch'")
        pretrained = load_pretrained(source, model, allow_pickle=allow_pickle)
        checkpoint = pretrained.checkpoint
        if not checkpoint.has_head or not isinstance(pretrained.model, Segmentor):
            raise ConfigError(
                f"{checkpoint.source}: {checkpoint.format} holds only a backbone; segmenting needs a segmentation "
                "model (fine-tune it first: create_model(NAME, num_classes=K, weights=SRC, weights_scope='backbone'))"
            )
        return cls(
            pretrained.model,
            pretrained.model.config["metadata"],
            device,
            precision,
            mode,
            crop_size,
            stride,
            batch_size,
            None if runtime == "torch" else load_exported(find_exported(source, runtime, exported), runtime),
        )

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write the model as ``model.safetensors`` + ``config.json`` + model card, with this segmenter's metadata."""
        return self.source_model.save_pretrained(folder, metadata=self.metadata)

    def push_to_hub(self, repo_id: str, private: bool = False) -> str:
        """:meth:`save_pretrained` to the Hub repository ``repo_id``; returns the commit's address."""
        return self.source_model.push_to_hub(repo_id, metadata=self.metadata, private=private)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = _PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 RGB -> ``(B, 3, H, W)`` float32 with the model's mean and std."""
        return (batch.to(self.device).permute(0, 3, 1, 2).float() - self.mean) / self.std

    def model_input(self, image: ImageInput) -> torch.Tensor:
        """What the model receives for ``image`` in whole mode: ``(1, 3, h, w)`` float32, normalized and resized.

        The test-time resize of :meth:`predict_probs` (``base_size``, ``size_multiple``); e.g. the
        calibration data of an int8 export.
        """
        normalized = rescale(self.normalize(torch.tensor(image_array(image))[None]), self.base_size)
        return resize_to_multiple(normalized, self.size_multiple) if self.size_multiple else normalized

    @torch.inference_mode()
    def predict_probs(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Class probabilities ``(K, H, W)`` float32 per ``(H, W, 3)`` uint8 image; same-size images batched.

        Batches hold at most :attr:`batch_size` images, so a long list does not exhaust memory.
        """
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(images):
            by_size.setdefault(array.shape, []).append(index)
        batches = [
            same[start : start + self.batch_size]
            for same in by_size.values()
            for start in range(0, len(same), self.batch_size)
        ]
        results: dict[int, torch.Tensor] = {}
        for indices in batches:
            normalized = self.normalize(torch.stack([torch.tensor(images[i]) for i in indices]))  # copies: any array
            with self._autocast():
                probs = predict_logits(
                    self.model,
                    normalized,
                    mode=self.mode,
                    crop_size=self.crop_size,
                    stride=self.stride,
                    base_size=self.base_size,
                    size_multiple=self.size_multiple,
                )
            results.update(zip(indices, probs.float().cpu()))
        return [results[i] for i in range(len(images))]

    def __call__(
        self, image: ImageInput | Sequence[ImageInput], return_probs: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Segment one image or a list of them (any sizes).

        Args:
            image: an :data:`ImageInput` or a list of them.
            return_probs: return class probabilities ``(K, H, W)`` float32 instead of labels.

        Returns:
            Per image, labels ``(H, W)`` int64 at the input's size (or probabilities); a list for a list.
        """
        single = not isinstance(image, (list, tuple))
        arrays = [image_array(item) for item in ([image] if single else image)]
        outputs = [p if return_probs else p.argmax(dim=0) for p in self.predict_probs(arrays)]
        return outputs[0] if single else outputs

    def overlay(self, image: ImageInput, labels: torch.Tensor | np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The class colours over ``image`` with a legend of the classes present: ``(H, W + legend, 3)`` uint8 RGB."""
        labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        return overlay_picture(image_array(image), labels, self.palette, self.class_names, alpha)
