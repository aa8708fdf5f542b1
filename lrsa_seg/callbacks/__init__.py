"""Lightning callbacks of lrsa-seg (configs name them ``lrsa_seg.callbacks.<Name>``)."""

from __future__ import annotations

from .config import LoggerSaveConfigCallback
from .writer import SegmentationWriter

__all__ = ["LoggerSaveConfigCallback", "SegmentationWriter"]
