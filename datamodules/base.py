"""Base classes shared by every dataset: one Dataset and one LightningDataModule.

A dataset class only declares its layout (``splits``), its classes and its label mapping; the
pairing of images with masks, the lazy label checks and the loaders live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .transforms import IGNORE_INDEX, seed_transforms, train_transforms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """Bad or missing data; the message names the file or folder."""


def read_image(path: Path) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8; a corrupt or unreadable file raises ``DatasetError`` naming it."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable or corrupt image ({err})") from err


def read_mask(path: Path) -> np.ndarray:
    """Single-channel label map ``(H, W)`` uint8 (palette PNGs give their indices)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(f"{path}: a mask must be single-channel (mode L or P), got mode {img.mode}")
            mask = np.asarray(img)
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise DatasetError(f"{path}: unreadable or corrupt mask ({err})") from err
    if mask.dtype != np.uint8:
        if mask.max(initial=0) > 255:
            raise DatasetError(f"{path}: mask values up to {int(mask.max())} do not fit 0-255")
        mask = mask.astype(np.uint8)
    return mask


def label_lut(mapping: dict[int, int], default: int = -1) -> np.ndarray:
    """A 256-entry lookup table raw value -> train id; ``-1`` marks values that are errors."""
    lut = np.full(256, default, dtype=np.int16)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


class SegmentationDataset(Dataset):
    """Image/mask pairs of one split, with the dataset's label mapping applied.

    Subclasses set ``classes``, ``splits`` (split -> (images folder, masks folder) under
    ``root``), and override :meth:`mask_path` and :meth:`raw_to_train` as needed.

    ``ds[i]`` is ``{"image": uint8 (3, H, W), "mask": int64 (H, W), "name": str}`` with 255 as
    the ignore value; ``transforms`` (an albumentations pipeline) is applied to the numpy arrays
    first. Label values the mapping does not know raise ``DatasetError`` naming the mask file, so
    a wrong label never reaches the loss.
    """

    classes: ClassVar[tuple[str, ...]] = ()
    palette: ClassVar[tuple[tuple[int, int, int], ...]] = ()
    splits: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable[..., Any] | None = None) -> None:
        self.root = Path(root)
        if split not in self.splits:
            raise DatasetError(f"{type(self).__name__}: unknown split {split!r}; choose from {sorted(self.splits)}")
        self.split = split
        self.transforms = transforms
        self.image_dir, self.mask_dir = (self.root / d for d in self.splits[split])
        if not self.image_dir.is_dir():
            raise DatasetError(f"{type(self).__name__}: image folder {self.image_dir} not found (root={self.root})")
        if not self.mask_dir.is_dir():
            raise DatasetError(f"{type(self).__name__}: mask folder {self.mask_dir} not found (root={self.root})")
        self.lut = self.raw_to_train()
        self.samples = self._pair()

    # --- what a dataset declares -------------------------------------------------------
    def raw_to_train(self) -> np.ndarray:
        """Lookup table raw mask value -> train id (255 ignore, -1 error). Default: identity."""
        return label_lut({**{k: k for k in range(len(self.classes))}, IGNORE_INDEX: IGNORE_INDEX})

    def images(self) -> Iterator[Path]:
        """Image files of the split (recursive, sorted)."""
        return (p for p in sorted(self.image_dir.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def mask_path(self, image: Path) -> Path:
        """The mask of ``image``: same relative path and stem under the mask folder, ``.png``."""
        return (self.mask_dir / image.relative_to(self.image_dir)).with_suffix(".png")

    # --- shared machinery ----------------------------------------------------------------
    def _pair(self) -> list[tuple[Path, Path]]:
        pairs, missing = [], []
        for image in self.images():
            mask = self.mask_path(image)
            (pairs if mask.is_file() else missing).append((image, mask))
        if missing:
            names = ", ".join(f"{i.name} (expected {m})" for i, m in missing[:5])
            raise DatasetError(f"{len(missing)} image(s) in {self.image_dir} have no mask: {names}")
        if not pairs:
            raise DatasetError(f"{type(self).__name__}: no images in {self.image_dir}")
        return pairs

    @property
    def num_classes(self) -> int:
        """Number of classes (255 is ignored, not a class)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(H, W, 3)`` uint8 and mapped mask ``(H, W)`` uint8 of sample ``index``, checked."""
        image_path, mask_path = self.samples[index]
        image, raw = read_image(image_path), read_mask(mask_path)
        if image.shape[:2] != raw.shape:
            raise DatasetError(
                f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]}, "
                f"mask {mask_path} is {raw.shape[1]}x{raw.shape[0]}"
            )
        mask = self.lut[raw]
        if (mask < 0).any():
            bad = sorted(int(v) for v in np.unique(raw[mask < 0]))
            raise DatasetError(
                f"{mask_path}: label values {bad[:10]} are outside the {self.num_classes} classes of "
                f"{type(self).__name__} and the ignore value {IGNORE_INDEX}"
            )
        return image, mask.astype(np.uint8)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.load(index)
        if self.transforms is not None:
            if hasattr(self.transforms, "transforms"):
                # Follow torch's RNG, which seed_everything and the DataLoader workers seed.
                seed_transforms(self.transforms, int(torch.randint(0, 2**31 - 1, ()).item()))
            out = self.transforms(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "name": str(self.samples[index][0].relative_to(self.image_dir)),
        }


class ImageFolder(Dataset):
    """Every image under a folder, any size, for ``predict``.

    An unreadable image gives ``{"error": message, "name": ...}`` instead of raising, so one bad
    file is reported and skipped, not fatal.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"predict folder {self.root} not found")
        self.files = [p for p in sorted(self.root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not self.files:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        name = str(path.relative_to(self.root))
        try:
            image = read_image(path)
        except DatasetError as err:
            return {"error": str(err), "name": name}
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "name": name}


def collate_single(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch of one sample with a leading batch axis (images of any size, or an error)."""
    (sample,) = batch
    return {k: v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v] for k, v in sample.items()}


class SegmentationDataModule(L.LightningDataModule):
    """Loaders for one :class:`SegmentationDataset` class with the paper's augmentation.

    Args:
        dataset_class: the dataset.
        root: its root folder.
        crop_size: training crop ``(height, width)``.
        base_size: training scale ``(long, short)`` that random ratios multiply (mmseg ``scale``).
        ratio_range: random rescale ratios.
        cat_max_ratio: crop retry threshold for a dominant class (1.0 disables).
        batch_size: training batch per device.
        eval_batch_size: validation/test batch per device (1 for datasets of mixed sizes).
        num_workers: loader processes per device.
        val_split: split used for validation.
        test_split: split used for testing (and for ``predict`` without ``predict_path``).
        predict_path: folder of images (any size) for ``predict``.
    """

    def __init__(
        self,
        dataset_class: type[SegmentationDataset],
        root: str | Path,
        crop_size: tuple[int, int] = (512, 512),
        base_size: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        val_split: str = "val",
        test_split: str = "test",
        predict_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if min(crop_size) < 32:
            raise ValueError(f"crop_size must be at least 32 x 32, got {crop_size}")
        self.dataset_class = dataset_class
        self.root = Path(root)
        self.crop_size = tuple(crop_size)
        self.base_size = tuple(base_size)
        self.ratio_range = tuple(ratio_range)
        self.cat_max_ratio = cat_max_ratio
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.val_split, self.test_split = val_split, test_split
        self.predict_path = predict_path
        self.datasets: dict[str, Dataset] = {}

    @property
    def num_classes(self) -> int:
        """Classes of the dataset (linked to the model's ``num_classes``)."""
        return len(self.dataset_class.classes)

    @property
    def classes(self) -> list[str]:
        """Class names of the dataset."""
        return list(self.dataset_class.classes)

    def _dataset(self, split: str, train: bool = False) -> Dataset:
        if split not in self.datasets:
            transforms = (
                train_transforms(self.crop_size, self.base_size, self.ratio_range, self.cat_max_ratio) if train else None
            )
            self.datasets[split] = self.dataset_class(self.root, split, transforms)
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        """Build only the splits that ``stage`` needs."""
        if stage == "fit":
            self._dataset("train", train=True)
        if stage in ("fit", "validate"):
            self._dataset(self.val_split)
        if stage == "test":
            self._dataset(self.test_split)
        if stage == "predict" and self.predict_path is not None:
            self.datasets["predict"] = ImageFolder(self.predict_path)
        elif stage == "predict":
            self._dataset(self.test_split)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        kwargs: dict[str, Any] = {}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # The default distributed sampler pads with repeated samples, which would count
            # them twice in the metrics; this one gives each sample to exactly one process.
            kwargs["sampler"] = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return self._loader(dataset, self.eval_batch_size, shuffle=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training crops; the last incomplete batch is dropped (BatchNorm needs > 1)."""
        return self._loader(self._dataset("train", train=True), self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """Whole validation images, original size."""
        return self._eval_loader(self.val_split)

    def test_dataloader(self) -> DataLoader:
        """Whole test images, original size."""
        return self._eval_loader(self.test_split)

    def predict_dataloader(self) -> DataLoader:
        """One image at a time (any size): ``predict_path`` or the test split."""
        dataset = self.datasets.get("predict") or self._dataset(self.test_split)
        kwargs: dict[str, Any] = {}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            kwargs["sampler"] = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return self._loader(dataset, 1, shuffle=False, collate_fn=collate_single, **kwargs)
