"""ADE20K (SceneParsing / ADEChallengeData2016): 150 classes, 20,210 training and 2,000 validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX
from lrsa_seg.labels import ADE20K_CLASSES, ADE20K_PALETTE

from .datamodule import SegmentationDataModule
from .dataset import SegmentationDataset
from .files import label_lut

FOLDER = "ADEChallengeData2016"


class ADE20K(SegmentationDataset):
    """ADE20K scene parsing benchmark (MIT SceneParsing, ``ADEChallengeData2016``).

    Layout: ``ADEChallengeData2016/images/{training,validation}/*.jpg`` and
    ``ADEChallengeData2016/annotations/{training,validation}/*.png`` (same stem). ``root`` may
    be ``ADEChallengeData2016`` itself or the folder that holds it. Splits: ``"train"``
    (training) and ``"val"`` (validation).

    Masks hold 0 (other / unlabeled) and 1-150 (the classes). As mmseg's ``reduce_zero_label``:
    0 -> 255 (ignored), k -> k - 1. 255 stays the ignore value; 151-254 are errors.
    """

    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE
    splits = {
        "train": ("images/training", "annotations/training"),
        "val": ("images/validation", "annotations/validation"),
    }
    image_pattern = "*.jpg"
    layout = f"[{FOLDER}/]images/{{training,validation}}/*.jpg and [{FOLDER}/]annotations/{{training,validation}}/*.png"

    @classmethod
    def find_root(cls, root: Path) -> Path:
        """``root/ADEChallengeData2016`` when it exists, else ``root`` (the folder itself)."""
        return root / FOLDER if (root / FOLDER).is_dir() else root

    def raw_to_train(self) -> np.ndarray:
        """``reduce_zero_label``: 0 -> 255, 1-150 -> 0-149, 255 -> 255; 151-254 are errors."""
        return label_lut({0: IGNORE_INDEX, **{k: k - 1 for k in range(1, 151)}, IGNORE_INDEX: IGNORE_INDEX})


class ADE20KDataModule(SegmentationDataModule):
    """ADE20K loaders with the paper's recipe (LRFormer-L uses 640 crops of a 2560 x 640 scale).

    Validation and test both use the validation split (the benchmark's test labels are not public).

    Args:
        root: folder holding ``ADEChallengeData2016`` (or that folder itself).
        crop_size: training crop ``(height, width)``.
        base_size: training scale ``(long, short)`` multiplied by the random ratio.
        ratio_range: random rescale ratios.
        cat_max_ratio: crop retry threshold for a dominant class.
        batch_size: training batch per device.
        eval_batch_size: validation/test batch per device (1: images differ in size).
        num_workers: loader processes per device.
        predict_path: folder of images for ``predict`` (default: the validation split).
    """

    def __init__(
        self,
        root: str | Path,
        crop_size: tuple[int, int] = (512, 512),
        base_size: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        predict_path: str | Path | None = None,
    ) -> None:
        super().__init__(
            ADE20K, root, crop_size, base_size, ratio_range, cat_max_ratio, batch_size, eval_batch_size,
            num_workers, val_split="val", test_split="val", predict_path=predict_path,
        )  # fmt: skip
