"""Albumentations 2.0.8 pipelines reproducing the paper's (mmseg) training recipe.

Training: random rescale (ratio of a base scale, aspect kept) -> random crop with
``cat_max_ratio`` -> horizontal flip -> photometric distortion -> pad to the crop (image 0,
mask 255). Evaluation applies no transform: the task resizes images and scores against the
original-size masks. Images stay uint8; the task normalizes them on the device.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.transforms_interface import DualTransform, ImageOnlyTransform

from lrsa_seg.constants import IGNORE_INDEX, IMAGE_MEAN


class RandomRescale(DualTransform):
    """mmseg ``RandomResize(scale, ratio_range, keep_ratio=True)``.

    Samples ``r`` in ``ratio_range`` and resizes (aspect kept) to the largest size that fits
    ``(long * r, short * r)``; images bilinear, masks nearest.
    """

    def __init__(
        self, base_size: tuple[int, int], ratio_range: tuple[float, float] = (0.5, 2.0), p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.base_size = (max(base_size), min(base_size))
        self.ratio_range = ratio_range

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Draw the ratio and compute the ``(width, height)`` to resize to."""
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(*self.ratio_range)
        scale = min(self.base_size[0] * ratio / max(height, width), self.base_size[1] * ratio / min(height, width))
        return {"size": (max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5)))}

    def apply(self, img: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize the image bilinearly."""
        return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize the mask with nearest neighbour (labels are not interpolated)."""
        return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by ``repr`` and serialization."""
        return ("base_size", "ratio_range")


class CatMaxRatioCrop(BaseCrop):
    """mmseg ``RandomCrop(crop_size, cat_max_ratio)``: a random crop (up to the image size).

    Up to 10 tries to find a crop where no single class covers more than ``cat_max_ratio`` of
    the labelled pixels, so crops are not all road or sky.
    """

    def __init__(self, height: int, width: int, cat_max_ratio: float = 0.75, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.height, self.width, self.cat_max_ratio = height, width, cat_max_ratio

    def _random_coords(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        height, width = shape[:2]
        top = self.py_random.randint(0, max(0, height - self.height))
        left = self.py_random.randint(0, max(0, width - self.width))
        return left, top, min(width, left + self.width), min(height, top + self.height)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Crop coordinates ``(x_min, y_min, x_max, y_max)`` satisfying ``cat_max_ratio`` if possible."""
        coords = self._random_coords(params["shape"])
        mask = data.get("mask")
        if self.cat_max_ratio >= 1.0 or mask is None:
            return {"crop_coords": coords}
        for _ in range(10):
            crop = mask[coords[1] : coords[3], coords[0] : coords[2]]
            counts = np.bincount(crop.ravel(), minlength=256)[:IGNORE_INDEX]
            if (counts > 0).sum() > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
            coords = self._random_coords(params["shape"])
        return {"crop_coords": coords}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by ``repr`` and serialization."""
        return ("height", "width", "cat_max_ratio")


PAD_COLOUR = tuple(round(c) for c in IMAGE_MEAN)
"""uint8 RGB fill of padded crops: the ImageNet mean, which normalises to about 0."""


class PhotoMetricDistortion(ImageOnlyTransform):
    """mmseg 1.x ``PhotoMetricDistortion`` on a uint8 RGB image, as the official code computes it.

    Each step runs with probability 0.5 and ends in uint8 (``float32 * alpha + beta``, clipped
    to [0, 255], truncated by ``astype(uint8)``):

    1. brightness: ``+ U(-brightness_delta, brightness_delta)``;
    2. contrast ``x U(contrast_range)`` here when ``contrast_first`` (mmseg's ``mode == 1``);
    3. saturation: OpenCV HSV (H in [0, 180)), ``S x U(saturation_range)``, back;
    4. hue: ``H + randint(-hue_delta, hue_delta)`` (numpy's randint: ``hue_delta`` itself is never
       drawn) modulo 180, back;
    5. contrast here otherwise (``mode == 0``).

    mmseg works on BGR; brightness and contrast treat the channels alike and OpenCV's RGB<->HSV
    gives the same H, S, V as BGR<->HSV, so the result is mmseg's with the channels reversed.
    The draws come from ``self.py_random`` (``seed_transforms`` seeds them); a step that is not
    applied still draws its value, so the draws have mmseg's distribution, not its sequence.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def get_params(self) -> dict[str, Any]:
        """Draw each step's coin and value; ``None`` marks a step that is skipped."""
        rng = self.py_random

        def maybe(value: float | int) -> float | int | None:
            return value if rng.random() < 0.5 else None

        brightness = maybe(rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = rng.random() < 0.5
        contrast = maybe(rng.uniform(*self.contrast_range))
        saturation = maybe(rng.uniform(*self.saturation_range))
        hue = maybe(rng.randint(-self.hue_delta, self.hue_delta - 1))
        return {
            "brightness": brightness,
            "contrast_first": contrast_first,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
        }

    @staticmethod
    def _convert(img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None = None,
        contrast_first: bool = False,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: int | None = None,
        **params: Any,
    ) -> np.ndarray:
        """Distort a uint8 RGB ``(H, W, 3)`` image with the drawn parameters."""
        if brightness is not None:
            img = self._convert(img, beta=brightness)
        if contrast_first and contrast is not None:
            img = self._convert(img, alpha=contrast)
        if saturation is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=saturation)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + hue) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and contrast is not None:
            img = self._convert(img, alpha=contrast)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments shown by ``repr`` and serialization."""
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


def train_transforms(
    crop_size: tuple[int, int],
    base_size: tuple[int, int],
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
) -> A.Compose:
    """The paper's training augmentation; output is exactly ``crop_size``."""
    crop_h, crop_w = crop_size
    return A.Compose(
        [
            RandomRescale(base_size, ratio_range),
            CatMaxRatioCrop(crop_h, crop_w, cat_max_ratio),
            A.HorizontalFlip(p=0.5),
            PhotoMetricDistortion(),
            # mmseg normalises, then pads the image with 0 (the mean colour) and the mask with 255. Our
            # images stay uint8 until the task normalises them, so the pad is the mean colour
            # rounded: within half a grey level (< 0.009 after normalising) of mmseg's 0.
            A.PadIfNeeded(
                crop_h,
                crop_w,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_COLOUR,
                fill_mask=IGNORE_INDEX,
            ),
        ]
    )


def seed_transforms(transforms: A.BaseCompose, seed: int) -> None:
    """Give every transform of ``transforms`` its own seed derived from ``seed``.

    ``Compose.set_random_seed`` gives all transforms the SAME seed, which correlates their draws
    (e.g. the flip decision with the scale ratio); spawned seeds keep them independent.
    """
    children = [t for t in transforms.transforms if hasattr(t, "set_random_seed")]
    for child, sequence in zip(children, np.random.SeedSequence(seed).spawn(len(children))):
        child_seed = int(sequence.generate_state(1)[0])
        if isinstance(child, A.BaseCompose):
            seed_transforms(child, child_seed)
        else:
            child.set_random_seed(child_seed)
