"""COCO-Stuff 164k: 171 classes (80 things, 91 stuff), 118k training and 5k validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX
from lrsa_seg.labels import COCO_STUFF_CLASSES, COCO_STUFF_PALETTE

from .datamodule import SegmentationDataModule
from .dataset import SegmentationDataset
from .files import label_lut

TRAIN_IDS_SUFFIX = "_labelTrainIds.png"
# Raw values 0-181 are COCO category ids minus one; these 11 ids have no category.
UNUSED_IDS = frozenset({11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90})
RAW_TO_TRAIN_ID = {raw: i for i, raw in enumerate(v for v in range(182) if v not in UNUSED_IDS)}


class COCOStuff(SegmentationDataset):
    """COCO-Stuff 164k (COCO 2017 images with the stuff + thing pixel maps).

    Layout: ``images/{train2017,val2017}/*.jpg`` (COCO 2017 images) and
    ``annotations/{train2017,val2017}/*.png`` (``stuffthingmaps_trainval2017``), same stem.
    Splits: ``"train"`` and ``"val"``.

    Raw masks hold 0-181 (COCO category id - 1) and 255 (unlabeled). The 171 used ids map in
    increasing order to 0-170; the 11 unused ids, 255 and any other value become 255. A ready
    ``X_labelTrainIds.png`` beside ``X.png`` (mmseg's ``coco_stuff164k`` converter) is used only
    for images without the raw ``X.png``, which is the official annotation; in it only 0-170
    and 255 are valid.
    """

    classes = COCO_STUFF_CLASSES
    palette = COCO_STUFF_PALETTE
    splits = {"train": ("images/train2017", "annotations/train2017"), "val": ("images/val2017", "annotations/val2017")}
    image_pattern = "*.jpg"
    layout = "images/{train2017,val2017}/*.jpg and annotations/{train2017,val2017}/*.png"

    def raw_to_train(self) -> np.ndarray:
        """Raw 0-181 without the 11 unused ids -> 0-170 in order; every other value -> 255."""
        return label_lut({**dict.fromkeys(range(256), IGNORE_INDEX), **RAW_TO_TRAIN_ID})

    def lut_for(self, mask: Path) -> np.ndarray:
        """``*_labelTrainIds.png`` files: 0-170 and 255 as they are, anything else an error."""
        if mask.name.endswith(TRAIN_IDS_SUFFIX):
            return label_lut({**{k: k for k in range(len(self.classes))}, IGNORE_INDEX: IGNORE_INDEX})
        return self.lut

    def mask_candidates(self, image: Path) -> tuple[Path, ...]:
        """``X.png`` (raw), then ``X_labelTrainIds.png``, for image ``X.jpg``."""
        raw = (self.mask_dir / image.relative_to(self.image_dir)).with_suffix(".png")
        return raw, raw.with_name(f"{raw.stem}{TRAIN_IDS_SUFFIX}")


class COCOStuffDataModule(SegmentationDataModule):
    """COCO-Stuff 164k loaders with the paper's recipe: 512 x 512 crops of a 2048 x 512 scale.

    Validation and test both use ``val2017``.

    Args:
        root: folder holding ``images/`` and ``annotations/``.
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
            COCOStuff, root, crop_size, base_size, ratio_range, cat_max_ratio, batch_size, eval_batch_size,
            num_workers, val_split="val", test_split="val", predict_path=predict_path,
        )  # fmt: skip
