"""Base classes shared by every dataset: one Dataset and one LightningDataModule.

A dataset class only declares its layout (``splits``), its classes and its label mapping; the
pairing of images with masks, the lazy label checks and the loaders live here once.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .sampler import ResumableSampler, SeededIndex
from .transforms import IGNORE_INDEX, seed_transforms, train_transforms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


WORKER_IGNORED_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
"""Signals DataLoader workers ignore: pre-emption signals are for the main process."""


def init_worker(worker_id: int, rank: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: ignore :data:`WORKER_IGNORED_SIGNALS`, then seed as Lightning does.

    Slurm (scancel, the time limit) and ``pkill -f`` send SIGTERM to every process of a job. A
    worker that died of it first ended the run with "DataLoader worker is killed by signal"
    before the main process could save its checkpoint. The main process saves, exits and shuts
    its workers down (they also leave within seconds once it is gone; one hung in I/O stays
    until the job's final SIGKILL, as torch's ``terminate()`` fallback sends SIGTERM).
    ``rank``: the process's global rank, which Lightning also passes.
    """
    for name in WORKER_IGNORED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank)  # what Lightning adds to loaders without an init function


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


class Pairing(NamedTuple):
    """How the files of one split pair up; nothing here raises.

    Attributes:
        pairs: ``(image, mask)`` paths that belong together.
        images_without_masks: ``(image, expected mask)`` for images whose mask is missing.
        masks_without_images: mask files that no image claims.
    """

    pairs: list[tuple[Path, Path]]
    images_without_masks: list[tuple[Path, Path]]
    masks_without_images: list[Path]


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """Raise ``DatasetError`` naming both files when image ``(H, W, 3)`` and mask ``(H, W)`` differ in size."""
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]}, "
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}"
        )


def describe_values(values: Iterable[int]) -> str:
    """Integers as sorted ranges, e.g. ``[0, 1, 2, 5, 255]`` -> ``"0-2, 5, 255"``."""
    ranges: list[list[int]] = []
    for value in sorted(int(v) for v in values):
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1][1] = value
        else:
            ranges.append([value, value])
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


class SegmentationDataset(Dataset):
    """Image/mask pairs of one split, with the dataset's label mapping applied.

    Subclasses set ``classes``, ``palette``, ``splits`` (split -> (images folder, masks folder)
    under ``root``), the file patterns, and override :meth:`mask_candidates`,
    :meth:`raw_to_train` / :meth:`lut_for` and :meth:`find_root` as needed.

    ``ds[i]`` is ``{"image": uint8 (3, H, W), "mask": int64 (H, W), "name": str}`` with 255 as
    the ignore value; ``transforms`` (an albumentations pipeline) is applied to the numpy arrays
    first. Label values the mapping does not know raise ``DatasetError`` naming the mask file, so
    a wrong label never reaches the loss.

    Args:
        root: dataset folder (layout in the subclass's docstring).
        split: one of ``splits``.
        transforms: albumentations pipeline applied to ``image=(H, W, 3), mask=(H, W)``.
        require_masks: raise when an image has no mask or the split is empty (default). False
            only records them in ``pairing`` (``lrsa-seg check-data`` collects every problem).
    """

    # Class attributes; SegmentationFolder sets classes/palette per instance.
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    splits: ClassVar[dict[str, tuple[str, str]]] = {}
    image_pattern: ClassVar[str] = "*"
    """Glob (searched recursively) of the image files; only ``IMAGE_SUFFIXES`` count."""
    mask_patterns: ClassVar[tuple[str, ...]] = ("*.png",)
    """Globs (searched recursively) of the mask files, for finding masks without images."""
    layout: ClassVar[str] = ""
    """Expected folder layout, quoted when a folder is missing."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Callable[..., Any] | None = None,
        *,
        require_masks: bool = True,
    ) -> None:
        self.root = self.find_root(Path(root))
        if split not in self.splits:
            raise DatasetError(f"{type(self).__name__}: unknown split {split!r}; choose from {sorted(self.splits)}")
        self.split = split
        image_dir, mask_dir = (self.root / d for d in self.splits[split])
        self._open(image_dir, mask_dir, transforms, require_masks)

    def _open(
        self, image_dir: Path, mask_dir: Path, transforms: Callable[..., Any] | None, require_masks: bool
    ) -> None:
        """Check the folders, build the label table and pair the files (shared by every dataset)."""
        self.transforms = transforms
        self.image_dir, self.mask_dir = image_dir, mask_dir
        hint = f"; expected {self.layout}" if self.layout else ""
        for kind, folder in (("image", image_dir), ("mask", mask_dir)):
            if not folder.is_dir():
                raise DatasetError(f"{type(self).__name__}: {kind} folder {folder} not found (root={self.root}){hint}")
        self.lut = self.raw_to_train()
        self.pairing = self.pair()
        self.samples = self.pairing.pairs
        if require_masks:
            self._require_masks()

    # --- what a dataset declares -------------------------------------------------------
    @classmethod
    def find_root(cls, root: Path) -> Path:
        """The dataset folder given what the user passed as ``root``. Default: ``root`` itself."""
        return root

    def raw_to_train(self) -> np.ndarray:
        """Lookup table raw mask value -> train id (255 ignore, -1 error). Default: identity."""
        return label_lut({**{k: k for k in range(len(self.classes))}, IGNORE_INDEX: IGNORE_INDEX})

    def lut_for(self, mask: Path) -> np.ndarray:
        """Lookup table for one mask file (datasets that accept two encodings pick by name)."""
        return self.lut

    def images(self) -> Iterator[Path]:
        """Image files of the split (recursive, sorted)."""
        return (
            p
            for p in sorted(self.image_dir.rglob(self.image_pattern))
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )

    def masks(self) -> list[Path]:
        """Mask files of the split (recursive, sorted), whether an image claims them or not."""
        found = {p for pattern in self.mask_patterns for p in self.mask_dir.rglob(pattern) if p.is_file()}
        return sorted(found)

    def mask_candidates(self, image: Path) -> tuple[Path, ...]:
        """Possible masks of ``image``, preferred first. Default: same relative path and stem, ``.png``."""
        return ((self.mask_dir / image.relative_to(self.image_dir)).with_suffix(".png"),)

    # --- shared machinery ----------------------------------------------------------------
    def pair(self) -> Pairing:
        """Pair every image with its first existing mask candidate; list what is left over."""
        pairs, missing, claimed = [], [], set()
        for image in self.images():
            candidates = self.mask_candidates(image)
            claimed.update(candidates)
            mask = next((m for m in candidates if m.is_file()), None)
            if mask is None:
                missing.append((image, candidates[0]))
            else:
                pairs.append((image, mask))
        return Pairing(pairs, missing, [m for m in self.masks() if m not in claimed])

    def _require_masks(self) -> None:
        missing = self.pairing.images_without_masks
        if missing:
            names = ", ".join(f"{i.name} (expected {m})" for i, m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"{len(missing)} image(s) in {self.image_dir} have no mask: {names}{more}")
        if not self.samples:
            raise DatasetError(f"{type(self).__name__}: no images in {self.image_dir}")

    @property
    def num_classes(self) -> int:
        """Number of classes (255 is ignored, not a class)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def map_mask(self, raw: np.ndarray, mask_path: Path) -> np.ndarray:
        """Raw mask ``(H, W)`` -> train ids ``(H, W)`` uint8; unknown values raise ``DatasetError``."""
        lut = self.lut_for(mask_path)
        mask = lut[raw]
        if (mask < 0).any():
            bad = sorted(int(v) for v in np.unique(raw[mask < 0]))
            raise DatasetError(
                f"{mask_path}: label values {bad[:10]} are outside the {self.num_classes} classes of "
                f"{type(self).__name__} and the ignore value {IGNORE_INDEX} "
                f"(valid values in this file: {describe_values(np.flatnonzero(lut >= 0))})"
            )
        return mask.astype(np.uint8)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(H, W, 3)`` uint8 and mapped mask ``(H, W)`` uint8 of sample ``index``, checked."""
        image_path, mask_path = self.samples[index]
        image, raw = read_image(image_path), read_mask(mask_path)
        check_same_size(image, raw, image_path, mask_path)
        return image, self.map_mask(raw, mask_path)

    def __getitem__(self, index: int | SeededIndex) -> dict[str, Any]:
        """Sample ``index``; ``(index, seed)`` (from :class:`ResumableSampler`) also fixes its augmentation."""
        index, seed = index if isinstance(index, tuple) else (index, None)
        image, mask = self.load(index)
        if self.transforms is not None:
            if hasattr(self.transforms, "transforms"):
                if seed is None:
                    # Follow torch's RNG, which seed_everything and the DataLoader workers seed.
                    seed = int(torch.randint(0, 2**31 - 1, ()).item())
                seed_transforms(self.transforms, seed)
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

    Subclasses fix ``dataset_class`` and the paper's defaults; one that does not build its
    datasets from ``(root, split)`` overrides :meth:`make_dataset`, :meth:`scan_splits` and the
    class properties (see ``SegmentationFolderDataModule``).

    Args:
        dataset_class: the dataset.
        root: its root folder (None when :meth:`make_dataset` is overridden).
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
        root: str | Path | None,
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
        self.root = None if root is None else Path(root)
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
        self._train_sampler: ResumableSampler | None = None

    @property
    def num_classes(self) -> int:
        """Classes of the dataset (linked to the model's ``num_classes``)."""
        return len(self.dataset_class.classes)

    @property
    def classes(self) -> list[str]:
        """Class names of the dataset."""
        return list(self.dataset_class.classes)

    def make_dataset(
        self, split: str, transforms: Callable[..., Any] | None = None, require_masks: bool = True
    ) -> SegmentationDataset:
        """A new dataset of ``split`` (the only place datasets are built)."""
        if self.root is None:
            raise ValueError(f"{type(self).__name__}: root is needed to build {self.dataset_class.__name__}")
        return self.dataset_class(self.root, split, transforms, require_masks=require_masks)

    def scan_splits(self) -> dict[str, bool]:
        """Splits ``lrsa-seg check-data`` scans: name -> whether this datamodule uses it (so it must exist)."""
        used = {"train", self.val_split, self.test_split}
        return {split: split in used for split in self.dataset_class.splits}

    def _dataset(self, split: str, train: bool = False) -> Dataset:
        if split not in self.datasets:
            transforms = None
            if train:
                transforms = train_transforms(self.crop_size, self.base_size, self.ratio_range, self.cat_max_ratio)
            self.datasets[split] = self.make_dataset(split, transforms)
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
        rank = self.trainer.global_rank if self.trainer is not None else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=functools.partial(init_worker, rank=rank),
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

    @property
    def train_sampler(self) -> ResumableSampler:
        """The training order (made once): a function of (seed, epoch), resumable mid-epoch."""
        if self._train_sampler is None:
            self._train_sampler = ResumableSampler(self._dataset("train", train=True))
        return self._train_sampler

    def train_dataloader(self) -> DataLoader:
        """Shuffled training crops; the last incomplete batch is dropped (BatchNorm needs > 1)."""
        dataset = self._dataset("train", train=True)
        return self._loader(dataset, self.batch_size, shuffle=False, sampler=self.train_sampler, drop_last=True)

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
