"""Shared fixtures: tiny datasets written by the tests, in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).parent
DATA = TESTS / "data"


def write_camvid(root: Path, sizes: dict[str, int], height: int = 64, width: int = 96, seed: int = 0) -> Path:
    """A CamVid tree (``train/``, ``trainannot/``, ...) of random images with blocky labels 0-11."""
    rng = np.random.default_rng(seed)
    for split, count in sizes.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            labels = rng.integers(0, 12, size=(height // 16 + 1, width // 16 + 1), dtype=np.uint8)
            mask = np.kron(labels, np.ones((16, 16), dtype=np.uint8))[:height, :width]
            image = (rng.integers(0, 60, size=(height, width, 3)) + mask[..., None] * 16).astype(np.uint8)
            Image.fromarray(image).save(root / split / f"seq_{i:04d}.png")
            Image.fromarray(mask).save(root / f"{split}annot" / f"seq_{i:04d}.png")
    return root


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    """Tiny CamVid: 4 train, 3 val (odd, for the DDP no-double-count check), 2 test images."""
    return write_camvid(tmp_path / "camvid", {"train": 4, "val": 3, "test": 2})
