"""mIoU by object size: the confusion matrix restricted to the pixels of small, medium or large regions.

The paper observes that too small a pooled size hurts small objects. To measure that, every
labelled pixel is given the size of the ground-truth region it belongs to: a connected
component (8-connectivity) of its class in the ground-truth mask, with COCO's area thresholds
(small < 32², medium 32² to 96², large >= 96² pixels, counted at the resolution the metric
sees, i.e. the evaluated masks). For each size, the usual confusion matrix is accumulated over
those pixels only, so per-class IoU = TP / (TP + FN + FP) where a false positive is a pixel of a
region of that size, labelled another class, predicted as this one. mIoU of a size averages the
classes that have pixels of that size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torchmetrics import Metric

from .constants import IGNORE_INDEX

SIZE_NAMES = ("small", "medium", "large")
AREA_THRESHOLDS = (32**2, 96**2)
"""COCO's region areas between small / medium and medium / large."""


def region_sizes(mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(H, W)`` labels -> ``(H, W)`` int64 size of each pixel's region: 0 small, 1 medium, 2 large, -1 ignored."""
    sizes = np.full(mask.shape, -1, dtype=np.int64)
    for label in np.unique(mask):
        if label == ignore_index:
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats((mask == label).astype(np.uint8), connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA]
        size_of_component = np.searchsorted(np.asarray(AREA_THRESHOLDS), areas, side="right")
        inside = components > 0  # component 0 is the background of this binary mask
        sizes[inside] = size_of_component[components[inside]]
    return sizes


def class_scores(confmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class IoU and accuracy (float64) of a confusion matrix (rows: ground truth, columns: prediction).

    IoU = TP / (TP + FN + FP), accuracy = TP / (TP + FN); 0 for a class neither labelled nor predicted.
    """
    tp, labelled, predicted = confmat.diagonal().double(), confmat.sum(1).double(), confmat.sum(0).double()
    return tp / (labelled + predicted - tp).clamp(min=1), tp / labelled.clamp(min=1)


class SizeBinnedIoU(Metric):
    """Macro mIoU per ground-truth region size (see the module doc); compute -> ``{"small": ..., ...}``."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        confmat = torch.zeros(len(SIZE_NAMES), num_classes, num_classes, dtype=torch.long)
        self.add_state("confmat", default=confmat, dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``preds`` and ``target``: ``(B, H, W)`` class indices (target 255 ignored)."""
        k = self.num_classes
        for pred, mask in zip(preds.cpu().numpy(), target.cpu().numpy()):
            sizes = region_sizes(mask, self.ignore_index)
            valid = (sizes >= 0) & (mask < k)
            index = sizes[valid] * k * k + mask[valid].astype(np.int64) * k + pred[valid].astype(np.int64)
            counts = np.bincount(index, minlength=len(SIZE_NAMES) * k * k)
            self.confmat += torch.from_numpy(counts.reshape(len(SIZE_NAMES), k, k)).to(self.confmat.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """Macro mIoU of each size over the classes present in it (NaN where a size has no pixels)."""
        out = {}
        for name, confmat in zip(SIZE_NAMES, self.confmat):
            iou, _ = class_scores(confmat)
            present = confmat.sum(1) > 0
            out[name] = iou[present].mean() if present.any() else torch.tensor(float("nan"), dtype=torch.double)
        return out
