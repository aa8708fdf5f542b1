"""lrsa-seg: Low-Resolution Self-Attention (LRSA) and LRFormer for semantic segmentation."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["Segmenter", "__version__"]


def __getattr__(name: str) -> Any:
    """``lrsa_seg.Segmenter``, imported on first use so that ``import lrsa_seg`` stays light."""
    if name == "Segmenter":
        from .inference import Segmenter

        return Segmenter
    raise AttributeError(f"module 'lrsa_seg' has no attribute {name!r}")
