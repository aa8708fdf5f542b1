"""PhotoMetricDistortion against mmseg 1.x's algorithm, re-written here from reading it.

mmseg (``mmseg/datasets/transforms/transforms.py``) works on the BGR uint8 image with
``numpy.random``: ``randint(2)`` coins, ``uniform`` values, ``randint(-18, 18)`` for the hue
(upper bound excluded); each step casts to float32, applies ``* alpha + beta``, clips to
[0, 255] and casts back to uint8; HSV is OpenCV's (``mmcv.bgr2hsv`` = ``COLOR_BGR2HSV``).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import pytest

from datamodules.transforms import PhotoMetricDistortion, seed_transforms, train_transforms


class Replay:
    """A ``numpy.random`` stand-in answering mmseg's calls, in mmseg's order, with our transform's draws."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.calls: list[tuple[Any, ...]] = []
        self.step = ""  # which mmseg step is drawing (set by the reference below)

    def randint(self, low: int, high: int | None = None) -> int:
        self.calls.append(("randint", low, high))
        if high is None:  # a coin: randint(2)
            assert low == 2
            return self._coin()
        assert (low, high) == (-18, 18)
        return self.params["hue"]

    def uniform(self, low: float, high: float) -> float:
        self.calls.append(("uniform", low, high))
        expected = {"brightness": (-32, 32), "contrast": (0.5, 1.5), "saturation": (0.5, 1.5)}[self.step]
        assert (low, high) == expected
        return self.params[self.step]

    def _coin(self) -> int:
        if self.step == "mode":
            return 1 if self.params["contrast_first"] else 0
        return int(self.params[self.step] is not None)


def mmseg_photometric(img_bgr: np.ndarray, random: Replay) -> np.ndarray:
    """mmseg 1.x PhotoMetricDistortion.transform on a BGR uint8 image."""

    def convert(img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
        img = img.astype(np.float32) * alpha + beta
        return np.clip(img, 0, 255).astype(np.uint8)

    def brightness(img: np.ndarray) -> np.ndarray:
        random.step = "brightness"
        if random.randint(2):
            return convert(img, beta=random.uniform(-32, 32))
        return img

    def contrast(img: np.ndarray) -> np.ndarray:
        random.step = "contrast"
        if random.randint(2):
            return convert(img, alpha=random.uniform(0.5, 1.5))
        return img

    def saturation(img: np.ndarray) -> np.ndarray:
        random.step = "saturation"
        if random.randint(2):
            img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            img[:, :, 1] = convert(img[:, :, 1], alpha=random.uniform(0.5, 1.5))
            img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        return img

    def hue(img: np.ndarray) -> np.ndarray:
        random.step = "hue"
        if random.randint(2):
            img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            img[:, :, 0] = (img[:, :, 0].astype(int) + random.randint(-18, 18)) % 180
            img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
        return img

    img = brightness(img_bgr)
    random.step = "mode"
    mode = random.randint(2)
    if mode == 1:
        img = contrast(img)
    img = saturation(img)
    img = hue(img)
    if mode == 0:
        img = contrast(img)
    return img


@pytest.mark.parametrize("seed", range(12))
def test_equals_mmseg_with_the_same_draws(seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    transform = PhotoMetricDistortion()
    transform.set_random_seed(seed)
    params = transform.get_params()
    transform.set_random_seed(seed)
    ours = transform(image=image)["image"]  # the full call draws the same parameters
    official = mmseg_photometric(np.ascontiguousarray(image[:, :, ::-1]), Replay(params))[:, :, ::-1]
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, official)


def test_every_branch_is_exercised_and_equal() -> None:
    image = np.random.default_rng(99).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    transform = PhotoMetricDistortion()
    for first in (True, False):
        for params in (
            {"brightness": 31.7, "contrast": 1.43, "saturation": 0.61, "hue": -18},
            {"brightness": -25.2, "contrast": 0.55, "saturation": 1.49, "hue": 17},
            {"brightness": None, "contrast": None, "saturation": None, "hue": None},
        ):
            params = {**params, "contrast_first": first}
            ours = transform.apply(image, **params)
            official = mmseg_photometric(np.ascontiguousarray(image[:, :, ::-1]), Replay(params))[:, :, ::-1]
            np.testing.assert_array_equal(ours, official)
            assert params["brightness"] is None or not np.array_equal(ours, image)


def test_draws_cover_mmseg_ranges() -> None:
    transform = PhotoMetricDistortion()
    transform.set_random_seed(0)
    draws = [transform.get_params() for _ in range(2000)]
    hues = {d["hue"] for d in draws if d["hue"] is not None}
    assert hues == set(range(-18, 18))  # numpy randint(-18, 18): 18 excluded
    for key, (low, high) in {"brightness": (-32, 32), "contrast": (0.5, 1.5), "saturation": (0.5, 1.5)}.items():
        values = [d[key] for d in draws if d[key] is not None]
        assert low <= min(values) and max(values) <= high
        assert 0.4 < len(values) / len(draws) < 0.6  # p = 0.5
    assert 0.4 < np.mean([d["contrast_first"] for d in draws]) < 0.6


def test_train_pipeline_uses_it_and_stays_reproducible() -> None:
    pipeline = train_transforms((32, 32), (64, 48))
    assert any(isinstance(t, PhotoMetricDistortion) for t in pipeline.transforms)
    assert not any(isinstance(t, (A.RandomBrightnessContrast, A.HueSaturationValue)) for t in pipeline.transforms)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (40, 50), dtype=np.uint8)
    outputs = []
    for _ in range(2):
        seed_transforms(pipeline, 7)
        outputs.append(pipeline(image=image, mask=mask)["image"])
    np.testing.assert_array_equal(*outputs)
