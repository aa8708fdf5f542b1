"""Lightning callbacks of lrsa-seg (configs name them ``lrsa_seg.callbacks.<Name>``)."""

from __future__ import annotations

from .ablation import AblationRecorder
from .config import LoggerSaveConfigCallback
from .evaluation import EvaluationReport
from .samples import SamplePredictions
from .writer import SegmentationWriter

__all__ = [
    "AblationRecorder",
    "EvaluationReport",
    "LoggerSaveConfigCallback",
    "SamplePredictions",
    "SegmentationWriter",
]
