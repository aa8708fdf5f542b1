"""Your own data: a folder of images and a folder of masks, paired by file name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrsa_seg.constants import IGNORE_INDEX

from .datamodule import SegmentationDataModule
from .dataset import SegmentationDataset
from .files import label_lut

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


def folder_lut(
    num_classes: int, ignore_index: int = IGNORE_INDEX, label_map: dict[int, int] | None = None
) -> np.ndarray:
    """Raw mask value -> train id table of a :class:`SegmentationFolder`; bad arguments raise ``ValueError``.

    Without ``label_map`` the raw values are the train ids ``0 .. num_classes - 1``. With it, only
    its keys are valid. Either way ``ignore_index`` (raw) becomes 255 and every other value is
    an error.
    """
    if not 1 <= num_classes <= IGNORE_INDEX:
        raise ValueError(f"num_classes must be in 1-{IGNORE_INDEX}, got {num_classes}")
    if not 0 <= ignore_index <= 255:
        raise ValueError(f"ignore_index must be a mask value 0-255, got {ignore_index}")
    if label_map is None:
        if ignore_index < num_classes:
            raise ValueError(
                f"ignore_index {ignore_index} is also class {ignore_index} of {num_classes}; "
                "pass a label_map (raw value -> train id) to say which values are which classes"
            )
        mapping = {k: k for k in range(num_classes)}
    else:
        mapping = {int(raw): int(train_id) for raw, train_id in label_map.items()}
        bad_raw = sorted(k for k in mapping if not 0 <= k <= 255)
        if bad_raw:
            raise ValueError(f"label_map keys must be mask values 0-255, got {bad_raw}")
        bad_ids = sorted({v for v in mapping.values() if not (0 <= v < num_classes or v == IGNORE_INDEX)})
        if bad_ids:
            raise ValueError(f"label_map values must be train ids 0-{num_classes - 1} or {IGNORE_INDEX}, got {bad_ids}")
        if mapping.get(ignore_index, IGNORE_INDEX) != IGNORE_INDEX:
            raise ValueError(f"label_map maps the ignore_index {ignore_index} to class {mapping[ignore_index]}")
    return label_lut({**mapping, ignore_index: IGNORE_INDEX})


class SegmentationFolder(SegmentationDataset):
    """Images under ``images_dir`` paired with masks under ``masks_dir`` by relative path and stem.

    ``images_dir/a/b.jpg`` pairs with ``masks_dir/a/b.png`` (or ``.tif``, ``.tiff``, ``.bmp``:
    masks must be lossless and single-channel), in a folder of their own. Images may have any
    size; each mask has its image's size.

    Args:
        images_dir: folder of images (searched recursively).
        masks_dir: folder of masks.
        num_classes: number of classes.
        ignore_index: raw mask value to ignore (becomes 255).
        label_map: raw mask value -> train id (0 .. num_classes - 1, or 255 to ignore); values
            not in it are errors. None: raw values are the train ids.
        class_names: names of the classes (default ``"0"``, ``"1"``, ...).
        transforms: albumentations pipeline applied to ``image=(H, W, 3), mask=(H, W)``.
        require_masks: raise when an image has no mask or the folder is empty (see the base class).
    """

    def __init__(
        self,
        images_dir: str | Path,
        masks_dir: str | Path,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        label_map: dict[int, int] | None = None,
        class_names: Sequence[str] | None = None,
        transforms: Callable[..., Any] | None = None,
        *,
        require_masks: bool = True,
    ) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if Path(images_dir).resolve() == Path(masks_dir).resolve():
            raise ValueError(f"images_dir and masks_dir must be different folders, both are {images_dir}")
        self.classes = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
        self.ignore_index = ignore_index
        self.label_map = label_map
        self.root, self.split = Path(images_dir), "folder"
        self._folder_lut = folder_lut(num_classes, ignore_index, label_map)
        self._open(Path(images_dir), Path(masks_dir), transforms, require_masks)

    def raw_to_train(self) -> np.ndarray:
        """The table made from ``num_classes``, ``ignore_index`` and ``label_map``."""
        return self._folder_lut

    def masks(self) -> list[Path]:
        """Files with a mask suffix under ``masks_dir``."""
        return sorted(p for p in self.mask_dir.rglob("*") if p.suffix.lower() in MASK_SUFFIXES and p.is_file())

    def mask_candidates(self, image: Path) -> tuple[Path, ...]:
        """Same relative path and stem under ``masks_dir``, one per suffix in ``MASK_SUFFIXES``."""
        base = self.mask_dir / image.relative_to(self.image_dir)
        return tuple(base.with_suffix(suffix) for suffix in MASK_SUFFIXES)


class SegmentationFolderDataModule(SegmentationDataModule):
    """Loaders for your own image/mask folders (:class:`SegmentationFolder`), with the paper's augmentation.

    Args:
        train_images: training images folder.
        train_masks: training masks folder.
        val_images: validation images folder.
        val_masks: validation masks folder.
        num_classes: number of classes.
        test_images: test images folder (default: validate and test on the validation folders).
        test_masks: test masks folder.
        ignore_index: raw mask value to ignore.
        label_map: raw mask value -> train id (see :class:`SegmentationFolder`).
        class_names: names of the classes.
        crop_size: training crop ``(height, width)``.
        base_size: training scale ``(long, short)`` multiplied by the random ratio.
        ratio_range: random rescale ratios.
        cat_max_ratio: crop retry threshold for a dominant class.
        batch_size: training batch per device.
        eval_batch_size: validation/test batch per device (1 unless all images share one size).
        num_workers: loader processes per device.
        predict_path: folder of images for ``predict`` (default: the test folders).
    """

    def __init__(
        self,
        train_images: str | Path,
        train_masks: str | Path,
        val_images: str | Path,
        val_masks: str | Path,
        num_classes: int,
        test_images: str | Path | None = None,
        test_masks: str | Path | None = None,
        ignore_index: int = IGNORE_INDEX,
        label_map: dict[int, int] | None = None,
        class_names: list[str] | None = None,
        crop_size: tuple[int, int] = (512, 512),
        base_size: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        predict_path: str | Path | None = None,
    ) -> None:
        if (test_images is None) != (test_masks is None):
            raise ValueError("give both test_images and test_masks, or neither")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        folder_lut(num_classes, ignore_index, label_map)  # bad arguments fail here, not at setup
        self.folders = {"train": (Path(train_images), Path(train_masks)), "val": (Path(val_images), Path(val_masks))}
        if test_images is not None and test_masks is not None:
            self.folders["test"] = (Path(test_images), Path(test_masks))
        self.folder_num_classes = num_classes
        self.ignore_index = ignore_index
        self.label_map = label_map
        self.class_names = class_names
        super().__init__(
            SegmentationFolder, None, crop_size, base_size, ratio_range, cat_max_ratio, batch_size, eval_batch_size,
            num_workers, val_split="val", test_split="test" if "test" in self.folders else "val",
            predict_path=predict_path,
        )  # fmt: skip

    @property
    def num_classes(self) -> int:
        """Classes of the folders (linked to the model's ``num_classes``)."""
        return self.folder_num_classes

    @property
    def classes(self) -> list[str]:
        """Class names (linked to the model's ``class_names``)."""
        return list(self.class_names) if self.class_names is not None else [str(i) for i in range(self.num_classes)]

    def make_dataset(
        self, split: str, transforms: Callable[..., Any] | None = None, require_masks: bool = True
    ) -> SegmentationDataset:
        """The :class:`SegmentationFolder` of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in self.folders:
            raise ValueError(f"{type(self).__name__}: no {split!r} folders; have {sorted(self.folders)}")
        images, masks = self.folders[split]
        return SegmentationFolder(
            images, masks, self.num_classes, self.ignore_index, self.label_map, self.class_names, transforms,
            require_masks=require_masks,
        )  # fmt: skip

    def scan_splits(self) -> dict[str, bool]:
        """Every configured pair of folders (all are used)."""
        return dict.fromkeys(self.folders, True)
