"""Reading image and mask files, and the label checks every dataset shares; errors name the file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from lrsa_seg.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def upright_rgb(image: Image.Image) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 of a photo turned upright by its EXIF orientation (as viewers show it)."""
    return np.asarray((ImageOps.exif_transpose(image) or image).convert("RGB"))


def read_image(path: Path, upright: bool = False) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8; a corrupt or unreadable file raises ``DatasetError`` naming it.

    ``upright`` applies the EXIF orientation (:func:`upright_rgb`): for images segmented on
    their own; never for training images, whose masks are stored unrotated.
    """
    try:
        with Image.open(path) as img:
            return upright_rgb(img) if upright else np.asarray(img.convert("RGB"))
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
