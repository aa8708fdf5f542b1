"""CamVid (SegNet 11-class split): real urban driving scenes, bundled half-size in ``data/camvid``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX
from lrsa_seg.labels import CAMVID_CLASSES, CAMVID_PALETTE

from .datamodule import SegmentationDataModule
from .dataset import SegmentationDataset
from .files import label_lut

# The copy bundled with the repository (240 x 180, made by scripts/make_camvid_bundle.py).
BUNDLED_ROOT = Path(__file__).resolve().parents[1] / "data" / "camvid"


class CamVid(SegmentationDataset):
    """CamVid: ``{train,val,test}/`` images (.png or .jpg), ``{split}annot/`` masks.

    Mask values 0-10 are the classes, 11 ("Unlabelled") is mapped to the ignore value 255.
    """

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    license = "CC BY-NC 4.0 (the bundled copy: data/camvid/README.md)"
    splits = {"train": ("train", "trainannot"), "val": ("val", "valannot"), "test": ("test", "testannot")}

    def raw_to_train(self) -> np.ndarray:
        """0-10 are the classes; 11 (Unlabelled) and 255 are ignored; anything else is an error."""
        return label_lut({**{k: k for k in range(11)}, 11: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX})


class CamVidDataModule(SegmentationDataModule):
    """CamVid loaders; ``root`` defaults to the bundled half-size copy.

    Args:
        root: CamVid folder (default: the bundled 240 x 180 copy; point it at a full-size one).
        crop_size: training crop ``(height, width)``.
        base_size: training scale ``(long, short)`` multiplied by the random ratio.
        ratio_range: random rescale ratios.
        cat_max_ratio: crop retry threshold for a dominant class.
        batch_size: training batch per device.
        eval_batch_size: validation/test batch per device (CamVid images share one size).
        num_workers: loader processes per device.
        predict_path: folder of images for ``predict`` (default: the test split).
    """

    def __init__(
        self,
        root: str | Path = BUNDLED_ROOT,
        crop_size: tuple[int, int] = (176, 224),
        base_size: tuple[int, int] = (240, 180),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 2,
        predict_path: str | Path | None = None,
    ) -> None:
        super().__init__(
            CamVid, root, crop_size, base_size, ratio_range, cat_max_ratio, batch_size, eval_batch_size,
            num_workers, val_split="val", test_split="test", predict_path=predict_path,
        )  # fmt: skip
