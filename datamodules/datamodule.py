"""The LightningDataModule every dataset's module derives from: splits, loaders, the paper's augmentation."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from .dataset import ImageFolder, SegmentationDataset, collate_single
from .sampler import ResumableSampler
from .transforms import train_transforms
from .workers import init_worker


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

    def train_masks(self) -> tuple[dict[str, Any], Iterator[np.ndarray]]:
        """The training masks, for label statistics (the task's ``class_weights: median_frequency``).

        Returns:
            A JSON-able key that changes when the masks may have (the dataset class, a digest of
            its label table, each mask file's path, size and mtime) and an iterator over the
            masks mapped to train ids ``(H, W)`` uint8, untransformed; files are read only as it runs.
        """
        dataset = self._dataset("train", train=True)
        if not isinstance(dataset, SegmentationDataset):
            raise TypeError(f"{type(self).__name__}: the train split is a {type(dataset).__name__}, not masks")
        stats = [(mask.resolve(), mask.stat()) for _, mask in dataset.samples]
        key = {
            "dataset": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
            "labels": hashlib.sha256(np.ascontiguousarray(dataset.lut).tobytes()).hexdigest(),
            "files": [[str(path), stat.st_size, stat.st_mtime_ns] for path, stat in stats],
        }
        return key, (dataset.load_mask(i) for i in range(len(dataset)))

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
