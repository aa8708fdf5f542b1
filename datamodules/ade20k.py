"""ADE20K (SceneParsing / ADEChallengeData2016): 150 classes, 20,210 training and 2,000 validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX

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

    classes = (
        "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
        "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
        "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
        "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
        "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
        "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
        "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
        "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
        "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
        "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
        "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship",
        "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
        "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
        "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
        "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
        "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
    )  # fmt: skip
    # The benchmark's color150 map (as in the official SceneParsing toolkit and mmseg).
    palette = (
        (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
        (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
        (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
        (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
        (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
        (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
        (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
        (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
        (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
        (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
        (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
        (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
        (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
        (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
        (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
        (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
        (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
        (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
        (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
        (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
        (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
        (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
        (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
        (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
        (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
    )  # fmt: skip
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
