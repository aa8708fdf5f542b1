"""Shared fixtures: tiny datasets written by the tests, in the real layouts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
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


# --- Tiny trees of the paper's datasets, in their real layouts --------------------------------
def blocky_labels(rng: np.random.Generator, values: list[int], height: int, width: int) -> np.ndarray:
    """``(height, width)`` uint8 label map of 16 x 16 blocks drawn from ``values``."""
    labels = rng.choice(np.asarray(values, dtype=np.uint8), size=(height // 16 + 1, width // 16 + 1))
    return np.kron(labels, np.ones((16, 16), dtype=np.uint8))[:height, :width]


def write_pair(image_path: Path, mask_path: Path, mask: np.ndarray, rng: np.random.Generator) -> None:
    """An RGB image that follows ``mask`` (so a model can learn something) and the mask as a PNG."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 60, size=(*mask.shape, 3)) + (mask[..., None].astype(np.int64) * 37) % 190
    Image.fromarray(image.astype(np.uint8)).save(image_path)
    Image.fromarray(mask).save(mask_path)


def write_ade20k(
    root: Path,
    sizes: dict[str, int],
    shapes: tuple[tuple[int, int], ...] = ((64, 96), (80, 64)),
    seed: int = 0,
) -> Path:
    """``root/ADEChallengeData2016/{images,annotations}/{training,validation}``; raw labels 0-150.

    ``sizes`` counts images per folder (``"training"``, ``"validation"``); image ``i`` has
    ``(height, width) = shapes[i % len(shapes)]``.
    """
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for folder, count in sizes.items():
        tag = "train" if folder == "training" else "val"
        for i in range(count):
            height, width = shapes[i % len(shapes)]
            mask = blocky_labels(rng, [0, 1, 2, 3, 13, 150], height, width)
            name = f"ADE_{tag}_{i + 1:08d}"
            write_pair(
                base / "images" / folder / f"{name}.jpg", base / "annotations" / folder / f"{name}.png", mask, rng
            )
    return root


def write_cityscapes(
    root: Path,
    sizes: dict[str, int],
    height: int = 64,
    width: int = 128,
    train_ids: bool = False,
    seed: int = 0,
) -> Path:
    """``root/leftImg8bit/SPLIT/CITY/*_leftImg8bit.png`` + ``root/gtFine/SPLIT/CITY/*_gtFine_labelIds.png``.

    Label ids mix evaluated (7, 8, 11, 21, 26, 33) and ignored (0, 1, 4) ones. The official
    side files (``_color.png``, ``_instanceIds.png``, ``_polygons.json``) are written too;
    ``train_ids`` adds the ``_labelTrainIds.png`` made from the label ids.
    """
    from datamodules.cityscapes import LABEL_ID_TO_TRAIN_ID

    rng = np.random.default_rng(seed)
    cities = {"train": ("aachen", "bochum"), "val": ("frankfurt",), "test": ("berlin",)}
    for split, count in sizes.items():
        for i in range(count):
            city = cities[split][i % len(cities[split])]
            stem = f"{city}_{i:06d}_000019"
            mask = blocky_labels(rng, [0, 1, 4, 7, 8, 11, 21, 26, 33], height, width)
            gt = root / "gtFine" / split / city
            write_pair(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                gt / f"{stem}_gtFine_labelIds.png",
                mask,
                rng,
            )
            Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(gt / f"{stem}_gtFine_color.png")
            Image.fromarray(mask).save(gt / f"{stem}_gtFine_instanceIds.png")
            (gt / f"{stem}_gtFine_polygons.json").write_text("{}")
            if train_ids:
                lut = np.full(256, 255, np.uint8)
                for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
                    lut[label_id] = train_id
                Image.fromarray(lut[mask]).save(gt / f"{stem}_gtFine_labelTrainIds.png")
    return root


def write_coco_stuff(
    root: Path,
    sizes: dict[str, int],
    shapes: tuple[tuple[int, int], ...] = ((64, 80), (72, 64)),
    seed: int = 0,
) -> Path:
    """``root/images/{train2017,val2017}/*.jpg`` + ``root/annotations/...png``; raw 0-181 and 255."""
    rng = np.random.default_rng(seed)
    for folder, count in sizes.items():
        for i in range(count):
            height, width = shapes[i % len(shapes)]
            mask = blocky_labels(rng, [0, 11, 12, 90, 91, 181, 255], height, width)
            name = f"{i + 139:012d}"
            write_pair(
                root / "images" / folder / f"{name}.jpg", root / "annotations" / folder / f"{name}.png", mask, rng
            )
    return root


@pytest.fixture
def ade20k_root(tmp_path: Path) -> Path:
    """Tiny ADE20K: 4 training, 2 validation images of two sizes."""
    return write_ade20k(tmp_path / "ade", {"training": 4, "validation": 2})


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    """Tiny Cityscapes: 4 train (two cities), 2 val, 1 test image of 128 x 64."""
    return write_cityscapes(tmp_path / "cityscapes", {"train": 4, "val": 2, "test": 1})


@pytest.fixture
def coco_stuff_root(tmp_path: Path) -> Path:
    """Tiny COCO-Stuff 164k: 4 train, 2 val images of two sizes."""
    return write_coco_stuff(tmp_path / "coco", {"train2017": 4, "val2017": 2})


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test (give subprocesses ``OMP_NUM_THREADS=1`` too).

    Runs compared for equality then reduce in the same order, and tiny models do not wait on
    OpenMP threads descheduled by other work: on a busy 2-core machine a 64 x 64 step of
    ``lrformer_test`` took 5.7 s of CPU with 2 threads and 0.035 s with 1.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def finish_wandb_run() -> Iterator[None]:
    """End a W&B run a test left open: Lightning's WandbLogger does not, and the next logger would join it."""
    yield
    wandb = sys.modules.get("wandb")  # only where a test imported it
    if wandb is not None and wandb.run is not None:
        wandb.finish()
