"""COCO-Stuff 164k: 171 classes (80 things, 91 stuff), 118k training and 5k validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX

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

    classes = (
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
        "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
        "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
        "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
        "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
        "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
        "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
        "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
        "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
        "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge",
        "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
        "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
        "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
        "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
        "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
        "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
        "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
        "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
        "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
        "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
        "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
    )  # fmt: skip
    # mmseg's COCO-Stuff colours.
    palette = (
        (0, 192, 64), (0, 192, 64), (0, 64, 96), (128, 192, 192), (0, 64, 64), (0, 192, 224),
        (0, 192, 192), (128, 192, 64), (0, 192, 96), (128, 192, 64), (128, 32, 192), (0, 0, 224),
        (0, 0, 64), (0, 160, 192), (128, 0, 96), (128, 0, 192), (0, 32, 192), (128, 128, 224),
        (0, 0, 192), (128, 160, 192), (128, 128, 0), (128, 0, 32), (128, 32, 0), (128, 0, 128),
        (64, 128, 32), (0, 160, 0), (0, 0, 0), (192, 128, 160), (0, 32, 0), (0, 128, 128),
        (64, 128, 160), (128, 160, 0), (0, 128, 0), (192, 128, 32), (128, 96, 128), (0, 0, 128),
        (64, 0, 32), (0, 224, 128), (128, 0, 0), (192, 0, 160), (0, 96, 128), (128, 128, 128),
        (64, 0, 160), (128, 224, 128), (128, 128, 64), (192, 0, 32), (128, 96, 0), (128, 0, 192),
        (0, 128, 32), (64, 224, 0), (0, 0, 64), (128, 128, 160), (64, 96, 0), (0, 128, 192),
        (0, 128, 160), (192, 224, 0), (0, 128, 64), (128, 128, 32), (192, 32, 128), (0, 64, 192),
        (0, 0, 32), (64, 160, 128), (128, 64, 64), (128, 0, 160), (64, 32, 128), (128, 192, 192),
        (0, 0, 160), (192, 160, 128), (128, 192, 0), (128, 0, 96), (192, 32, 0), (128, 64, 128),
        (64, 128, 96), (64, 160, 0), (0, 64, 0), (192, 128, 224), (64, 32, 0), (0, 192, 128),
        (64, 128, 224), (192, 160, 0), (0, 192, 0), (192, 128, 96), (192, 96, 128), (0, 64, 128),
        (64, 0, 96), (64, 224, 128), (128, 64, 0), (192, 0, 224), (64, 96, 128), (128, 192, 128),
        (64, 0, 224), (192, 224, 128), (128, 192, 64), (192, 0, 96), (192, 96, 0), (128, 64, 192),
        (0, 128, 96), (0, 224, 0), (64, 64, 64), (128, 128, 224), (0, 96, 0), (64, 192, 192),
        (0, 128, 224), (128, 224, 0), (64, 192, 64), (128, 128, 96), (128, 32, 128), (64, 0, 192),
        (0, 64, 96), (0, 160, 128), (192, 0, 64), (128, 64, 224), (0, 32, 128), (192, 128, 192),
        (0, 64, 224), (128, 160, 128), (192, 128, 0), (128, 64, 32), (128, 32, 64), (192, 0, 128),
        (64, 192, 32), (0, 160, 64), (64, 0, 0), (192, 192, 160), (0, 32, 64), (64, 128, 128),
        (64, 192, 160), (128, 160, 64), (64, 128, 0), (192, 192, 32), (128, 96, 192), (64, 0, 128),
        (64, 64, 32), (0, 224, 192), (192, 0, 0), (192, 64, 160), (0, 96, 192), (192, 128, 128),
        (64, 64, 160), (128, 224, 192), (192, 128, 64), (192, 64, 32), (128, 96, 64), (192, 0, 192),
        (0, 192, 32), (64, 224, 64), (64, 0, 64), (128, 192, 160), (64, 96, 64), (64, 128, 192),
        (0, 192, 160), (192, 224, 64), (64, 128, 64), (128, 192, 32), (192, 32, 192), (64, 64, 192),
        (0, 64, 32), (64, 160, 192), (192, 64, 64), (128, 64, 160), (64, 32, 192), (192, 192, 192),
        (0, 64, 160), (192, 160, 192), (192, 192, 0), (128, 64, 96), (192, 32, 64), (192, 64, 128),
        (64, 192, 96), (64, 160, 64), (64, 64, 0),
    )  # fmt: skip
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
