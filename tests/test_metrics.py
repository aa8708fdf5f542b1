"""mIoU by region size, checked on masks whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import torch

from lrsa_seg.metrics import SizeBinnedIoU, region_sizes


def test_region_sizes_use_connected_components_and_coco_areas() -> None:
    mask = np.zeros((200, 200), np.uint8)  # class 0: the large background
    mask[10:20, 10:20] = 1  # 100 px: small
    mask[50:100, 50:100] = 1  # 2,500 px, same class, not connected: medium
    mask[150:152, 0:200] = 255  # ignored
    sizes = region_sizes(mask)
    assert sizes[15, 15] == 0 and sizes[60, 60] == 1 and sizes[0, 199] == 2 and sizes[151, 5] == -1


def test_size_binned_iou_by_hand() -> None:
    target = np.zeros((200, 200), np.int64)
    target[10:20, 10:20] = 1  # a small object of class 1 (100 px)
    pred = target.copy()
    pred[10:20, 10:15] = 0  # half of it missed
    metric = SizeBinnedIoU(num_classes=2)
    metric.update(torch.from_numpy(pred)[None], torch.from_numpy(target)[None])
    out = metric.compute()
    # small pixels: the 100 px of class 1 only; class 1 IoU 50/100, class 0 has none there
    assert float(out["small"]) == 0.5
    # large pixels: class 0's region; its 50 missed pixels are small-region pixels, not counted here
    assert float(out["large"]) == 1.0
    assert torch.isnan(out["medium"])
