"""Segmentor: backbone + decode head, logits at the input size, whole or sliding inference."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .head import LRHead
from .lrformer import LRFormer
from .sharing import push_to_hub, save_pretrained


class Segmentor(nn.Module):
    """``model(x)`` gives logits at the input's ``H x W``.

    ``model.backbone(x)`` gives the four stage maps, ``model.decode_head(features)`` the
    stride-8 logits. A model built by the registry knows its name and arguments
    (``model.config``), so that :meth:`save_pretrained` can write it as the Hub keeps models.
    """

    def __init__(self, backbone: LRFormer, decode_head: LRHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.config: dict[str, Any] = {}

    def save_pretrained(
        self,
        folder: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card (:mod:`lrsa_seg.models.sharing`).

        Read it back with ``lrsa_seg.models.load_pretrained(folder)``, ``create_model(weights=folder)``
        or ``Segmenter.from_pretrained(folder)``.
        """
        return save_pretrained(self, folder, metadata, provenance, metrics)

    def push_to_hub(
        self,
        repo_id: str,
        metadata: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        private: bool = False,
    ) -> str:
        """:meth:`save_pretrained` to the Hub repository ``repo_id`` (created if absent); returns the commit URL."""
        return push_to_hub(self, repo_id, metadata, provenance, metrics, private)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.decode_head.classifier.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> logits ``(B, num_classes, H, W)`` (bilinear, align_corners=False)."""
        logits = self.decode_head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def slide_inference(
    model: nn.Module, images: torch.Tensor, crop_size: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Sliding-window logits: crops of ``crop_size`` every ``stride``, overlaps averaged.

    The last window in each direction is aligned to the image edge, so every pixel is covered;
    an image smaller than the crop is run whole. ``(B, 3, H, W)`` -> ``(B, K, H, W)``.
    """
    height, width = images.shape[-2:]
    crop_h, crop_w = min(crop_size[0], height), min(crop_size[1], width)
    stride_h, stride_w = stride
    if stride_h < 1 or stride_w < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    logits: torch.Tensor | None = None
    counts = images.new_zeros((1, 1, height, width))
    for r in range(rows):
        for c in range(cols):
            top = min(r * stride_h, height - crop_h)
            left = min(c * stride_w, width - crop_w)
            out = model(images[..., top : top + crop_h, left : left + crop_w])
            if logits is None:
                logits = images.new_zeros((images.shape[0], out.shape[1], height, width), dtype=out.dtype)
            logits[..., top : top + crop_h, left : left + crop_w] += out
            counts[..., top : top + crop_h, left : left + crop_w] += 1
    assert logits is not None
    return logits / counts


def resize_to_multiple(images: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Bilinearly resize ``(B, C, H, W)`` so both sides are multiples of ``multiple``, rounded UP.

    As the official AlignResize (``ceil(side / multiple) * multiple``: 683 -> 704).
    """
    height, width = images.shape[-2:]
    size = (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
    if size == (height, width):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def rescale(images: torch.Tensor, base_size: tuple[int, int] | None, scale: float = 1.0) -> torch.Tensor:
    """The test-time resize of :func:`predict_logits`: bilinear, aspect kept, sides at least 32.

    To the largest size fitting ``base_size`` ``(long, short)`` (None: the native size), times ``scale``.
    """
    height, width = images.shape[-2:]
    base = 1.0
    if base_size is not None:
        base = min(max(base_size) / max(height, width), min(base_size) / min(height, width))
    if base * scale == 1.0:
        return images
    size = (max(32, int(height * base * scale + 0.5)), max(32, int(width * base * scale + 0.5)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mode: str = "whole",
    crop_size: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
    base_size: tuple[int, int] | None = None,
    size_multiple: int | None = None,
    scales: tuple[float, ...] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Test-time logits at the input's size, averaged over scales and flips.

    Args:
        model: maps ``(B, 3, h, w)`` to logits at ``(h, w)``.
        images: normalized ``(B, 3, H, W)``.
        mode: ``"whole"`` (one pass over the image) or ``"slide"`` (windows of ``crop_size``).
        crop_size: sliding window ``(h, w)``.
        stride: sliding stride ``(h, w)``.
        base_size: first resize (aspect kept) to the largest size fitting ``(long, short)``, the
            paper's test scale (e.g. ``(2048, 512)``); ``None`` keeps the native size.
        size_multiple: in whole mode, round the sides to multiples of this (the paper's
            AlignResize uses 32); ``None`` runs any size as it is.
        scales: multi-scale test-time augmentation factors.
        flip: also run the horizontally flipped image.

    Returns:
        Softmax probabilities averaged over the augmentations, ``(B, K, H, W)``.
    """
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    height, width = images.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        scaled = rescale(images, base_size, scale)
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            if mode == "slide":
                logits = slide_inference(model, x, crop_size, stride)
            else:
                logits = model(resize_to_multiple(x, size_multiple) if size_multiple else x)
            if flipped:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probs = logits.float().softmax(dim=1)
            total = probs if total is None else total + probs
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))
