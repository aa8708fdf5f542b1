"""Cityscapes (fine annotations): 19 classes, 2,975 training and 500 validation images of 2048 x 1024."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX
from lrsa_seg.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

from .datamodule import SegmentationDataModule
from .dataset import SegmentationDataset
from .files import label_lut

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"

# Official label id -> train id of the 19 evaluated classes (cityscapesScripts labels.py).
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


class Cityscapes(SegmentationDataset):
    """Cityscapes with the fine annotations (``leftImg8bit`` + ``gtFine``).

    Layout: ``leftImg8bit/{train,val,test}/CITY/*_leftImg8bit.png`` and
    ``gtFine/{train,val,test}/CITY/*_gtFine_labelIds.png`` (official packages
    ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``). The test split's public
    masks are placeholders: score on ``val``.

    Masks: ``*_gtFine_labelIds.png`` (official label ids) map to the 19 train ids; every label id
    that is not evaluated (and any other value) becomes 255. A ready
    ``*_gtFine_labelTrainIds.png`` (cityscapesScripts ``createTrainIdLabelImgs``) is used only
    for images without a ``labelIds`` file: the official ``labelIds`` come with every download,
    while ``labelTrainIds`` are derived by a script and can be stale or made with an edited label
    table. In ``labelTrainIds`` files only 0-18 and 255 are valid.
    """

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    splits = {split: (f"leftImg8bit/{split}", f"gtFine/{split}") for split in ("train", "val", "test")}
    image_pattern = f"*{IMAGE_SUFFIX}"
    mask_patterns = (f"*{LABEL_IDS_SUFFIX}", f"*{TRAIN_IDS_SUFFIX}")
    layout = "leftImg8bit/{train,val,test}/CITY/*_leftImg8bit.png and gtFine/{train,val,test}/CITY/*_gtFine_*.png"

    def raw_to_train(self) -> np.ndarray:
        """``labelIds``: the 19 evaluated ids -> 0-18, every other value -> 255."""
        return label_lut({**dict.fromkeys(range(256), IGNORE_INDEX), **LABEL_ID_TO_TRAIN_ID})

    def lut_for(self, mask: Path) -> np.ndarray:
        """``labelTrainIds`` files: 0-18 and 255 as they are, anything else an error."""
        if mask.name.endswith(TRAIN_IDS_SUFFIX):
            return label_lut({**{k: k for k in range(len(self.classes))}, IGNORE_INDEX: IGNORE_INDEX})
        return self.lut

    def mask_candidates(self, image: Path) -> tuple[Path, ...]:
        """``CITY/X_gtFine_labelIds.png``, then ``CITY/X_gtFine_labelTrainIds.png``, for ``CITY/X_leftImg8bit.png``."""
        relative = image.relative_to(self.image_dir)
        stem = relative.name.removesuffix(IMAGE_SUFFIX)
        folder = self.mask_dir / relative.parent
        return folder / f"{stem}{LABEL_IDS_SUFFIX}", folder / f"{stem}{TRAIN_IDS_SUFFIX}"


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes loaders with the paper's recipe: 1024 x 1024 crops of a 2048 x 1024 scale.

    Validation and test both use ``val`` (the test split's labels are withheld).

    Args:
        root: Cityscapes folder holding ``leftImg8bit/`` and ``gtFine/``.
        crop_size: training crop ``(height, width)``.
        base_size: training scale ``(long, short)`` multiplied by the random ratio.
        ratio_range: random rescale ratios.
        cat_max_ratio: crop retry threshold for a dominant class.
        batch_size: training batch per device.
        eval_batch_size: validation/test batch per device.
        num_workers: loader processes per device.
        predict_path: folder of images for ``predict``, e.g. ``leftImg8bit/test`` for a benchmark
            submission (default: the validation split).
    """

    def __init__(
        self,
        root: str | Path,
        crop_size: tuple[int, int] = (1024, 1024),
        base_size: tuple[int, int] = (2048, 1024),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        predict_path: str | Path | None = None,
    ) -> None:
        super().__init__(
            Cityscapes, root, crop_size, base_size, ratio_range, cat_max_ratio, batch_size, eval_batch_size,
            num_workers, val_split="val", test_split="val", predict_path=predict_path,
        )  # fmt: skip
