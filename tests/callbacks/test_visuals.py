"""What the model learns, in pictures: confusion matrices, sample predictions, mAcc and per-class accuracy."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrsa_seg.callbacks.evaluation import row_normalised
from lrsa_seg.callbacks.samples import sample_grid
from lrsa_seg.cli import main

from ..conftest import TESTS

TINY = str(TESTS / "conf" / "camvid_tiny.yaml")


def test_row_normalised_rows_sum_to_one_or_zero() -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    matrix = row_normalised(confusion)
    assert np.allclose(matrix.sum(axis=1), [1, 0, 1])
    assert matrix[0, 0] == 0.75 and matrix[2, 2] == 0.5


def test_sample_grid_has_a_row_per_image_and_a_legend() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    truth = np.full((20, 30), 255)
    truth[:10] = 1
    rows = [(image, truth, np.ones((20, 30), np.int64)), (image[:10], truth[:10], np.zeros((10, 30), np.int64))]
    grid = sample_grid(rows, None, ["a", "b"])
    assert grid.shape[0] == 20 + 4 + 10 + 4 and grid.shape[1] > 3 * 30  # 3 panels and the legend


def test_fit_and_test_write_the_pictures_and_log_macc(
    camvid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY]) == 0
    visuals = tmp_path / "run" / "visuals"
    assert sorted(p.name for p in visuals.glob("confusion_val_step*.png")) == [
        "confusion_val_step2.png",
        "confusion_val_step4.png",
    ]
    samples = sorted(visuals.glob("samples_step*.png"))
    assert [p.name for p in samples] == ["samples_step2.png", "samples_step4.png"]
    with Image.open(samples[0]) as grid:
        assert grid.size[0] > 3 * 96  # image, ground truth, prediction and legend side by side
    assert main(["test", "--config", TINY, "--ckpt_path", str(tmp_path / "run/checkpoints/best.ckpt")]) == 0
    assert list(visuals.glob("confusion_test_step*.png"))
    rows = [r for path in (tmp_path / "run").glob("**/metrics.csv") for r in csv.DictReader(open(path))]
    assert any(r.get("val/mAcc") for r in rows) and any(r.get("test/mAcc") for r in rows)
    assert any(r.get("test/Acc/Road") for r in rows)


def test_size_iou_is_logged_on_request(camvid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Asked for at test time of a checkpoint trained without it: the command decides, not the file.
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", TINY, "--trainer.max_epochs", "1"]) == 0
    last = str(tmp_path / "run/checkpoints/last.ckpt")
    for asked in ("false", "true"):
        before = set((tmp_path / "run").glob("**/metrics.csv"))
        assert main(["test", "--config", TINY, "--ckpt_path", last, "--model.init_args.size_iou", asked]) == 0
        (new,) = set((tmp_path / "run").glob("**/metrics.csv")) - before
        rows = list(csv.DictReader(open(new)))
        assert any(r.get("test/mIoU") for r in rows)
        assert any(r.get("test/mIoU_small") or r.get("test/mIoU_large") for r in rows) == (asked == "true")
