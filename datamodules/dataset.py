"""The Dataset every segmentation dataset derives from, and the image folder ``predict`` reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from lrsa_seg.constants import IGNORE_INDEX
from lrsa_seg.errors import DatasetError

from .files import IMAGE_SUFFIXES, Pairing, check_same_size, describe_values, label_lut, read_image, read_mask
from .sampler import SeededIndex
from .transforms import seed_transforms


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
    license: str = ""  # the data's licence, as its distributor states it ("" where not recorded here)
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

    def load_mask(self, index: int) -> np.ndarray:
        """Mapped mask ``(H, W)`` uint8 of sample ``index``, untransformed, without reading its image."""
        mask_path = self.samples[index][1]
        return self.map_mask(read_mask(mask_path), mask_path)

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
            image = read_image(path, upright=True)  # photos as they are shown: EXIF orientation applied
        except DatasetError as err:
            return {"error": str(err), "name": name}
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "name": name}


def collate_single(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch of one sample with a leading batch axis (images of any size, or an error)."""
    (sample,) = batch
    return {k: v.unsqueeze(0) if isinstance(v, torch.Tensor) else [v] for k, v in sample.items()}
