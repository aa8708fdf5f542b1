"""``lrsa-seg check-data``: every kind of bad input is reported by file name and fails the run."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrsa_seg.cli import main

from ..conftest import TESTS, write_ade20k, write_cityscapes

CONFIGS = TESTS.parent / "configs"


def check_data(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["check-data", "--workers", "0", *args])
    return code, capsys.readouterr().out


def pixels(out: str, name: str) -> list[int]:
    """The pixel counts printed for class ``name``, one per split."""
    line = next(line for line in out.splitlines() if re.match(rf"\s+\d+\s+{re.escape(name)}\s", line))
    return [int(v.replace(",", "")) for v in line.split()[-2:]]


def test_good_ade20k_from_a_config(ade20k_root: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = str(CONFIGS / "lrformer_t_ade20k.yaml")
    code, out = check_data(["--config", cfg, "--data.init_args.root", str(ade20k_root)], capsys)
    assert code == 0, out
    assert "ADE20KDataModule: 150 classes" in out and "train: 4 pairs" in out and "val: 2 pairs" in out
    assert "OK: 6 pairs checked, no problems." in out
    # Raw 1 (wall), 150 (flag) and 0 (ignored) are in the tiny masks; counts add up to every pixel.
    train_pixels = 2 * (64 * 96 + 80 * 64)
    counted = [pixels(out, n)[0] for n in ("wall", "building", "sky", "person", "flag", "(ignored)")]
    assert sum(counted) == train_pixels and all(c > 0 for c in counted)
    assert "class(es) have no pixels in train" in out


def test_good_cityscapes_from_class_path(cityscapes_root: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--data.class_path", "datamodules.CityscapesDataModule", "--data.init_args.root", str(cityscapes_root)]
    code, out = check_data(args, capsys)
    assert code == 0, out
    assert "train: 4 pairs" in out and "val: 2 pairs" in out and "test: 1 pairs" in out
    assert pixels(out, "road")[0] > 0 and pixels(out, "bicycle")[0] > 0


def test_every_problem_is_named(ade20k_root: Path, capsys: pytest.CaptureFixture) -> None:
    base = ade20k_root / "ADEChallengeData2016"
    images, masks = base / "images/training", base / "annotations/training"
    (images / "ADE_train_00000001.jpg").write_bytes(b"garbage")  # corrupt image
    (masks / "ADE_train_00000002.png").write_bytes((masks / "ADE_train_00000002.png").read_bytes()[:50])  # truncated
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "ADE_train_00000003.png")  # size mismatch
    bad = np.asarray(Image.open(masks / "ADE_train_00000004.png")).copy()
    bad[:2, :2] = 151
    Image.fromarray(bad).save(masks / "ADE_train_00000004.png")  # label outside the classes
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "ADE_train_00000005.jpg")  # no mask
    (base / "annotations/validation/ADE_val_00000099.png").write_bytes(b"")  # no image
    code, out = check_data(
        ["--config", str(CONFIGS / "lrformer_t_ade20k.yaml"), "--data.init_args.root", str(ade20k_root)], capsys
    )
    assert code == 1
    assert "PROBLEMS: 6" in out
    sections = dict(re.findall(r"^  ([a-z/ ,-]+) \(\d+\):\n((?:    .*\n?)+)", out, re.MULTILINE))
    assert "ADE_train_00000001.jpg: unreadable or corrupt image" in sections["unreadable, corrupt or wrong-format file"]
    assert "ADE_train_00000002.png: unreadable or corrupt mask" in sections["unreadable, corrupt or wrong-format file"]
    assert re.search(
        r"image .*ADE_train_00000003.jpg is 96x64, mask .*ADE_train_00000003.png is 8x8",
        sections["image/mask size mismatch"],
    )
    assert (
        "ADE_train_00000004.png: label values [151]"
        in sections["label values outside the classes and the ignore value"]
    )
    assert (
        "[train] " in sections["image without mask"]
        and "ADE_train_00000005.jpg (expected " in sections["image without mask"]
    )
    assert "[val] " in sections["mask without image"] and "ADE_val_00000099.png" in sections["mask without image"]


def test_missing_split_fails_but_an_unused_one_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_cityscapes(tmp_path / "cs", {"train": 2, "val": 1})  # no test split: not used, skipped
    args = ["--data.class_path", "datamodules.CityscapesDataModule", "--data.init_args.root", str(root)]
    code, out = check_data(args, capsys)
    assert code == 0, out
    assert re.search(r"test: skipped, not used .*/leftImg8bit/test not found", out)
    root = write_ade20k(tmp_path / "ade", {"training": 2})  # no validation split: used, so a problem
    code, out = check_data(
        ["--data.class_path", "datamodules.ADE20KDataModule", "--data.init_args.root", str(root)], capsys
    )
    assert code == 1
    assert re.search(r"missing or empty split \(1\):\n    \[val\] .*images/validation not found", out)


def test_folder_datamodule_with_reader_processes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = write_ade20k(tmp_path, {"training": 2, "validation": 1}) / "ADEChallengeData2016"
    args = ["--data.class_path", "datamodules.SegmentationFolderDataModule", "--data.init_args.num_classes", "150"]
    for split, folder in (("train", "training"), ("val", "validation")):
        args += [f"--data.init_args.{split}_images", str(base / "images" / folder)]
        args += [f"--data.init_args.{split}_masks", str(base / "annotations" / folder)]
    # Raw values are the train ids 0-149 by default, so ADE20K's raw 150 is a bad label.
    code = main(["check-data", *args, "--workers", "1", "--data.init_args.ignore_index", "255"])
    out = capsys.readouterr().out
    assert code == 1 and "label values [150] are outside the 150 classes of SegmentationFolder" in out
    args += [
        "--data.init_args.ignore_index",
        "0",
        "--data.init_args.label_map",
        "{" + ", ".join(f'"{k}": {k - 1}' for k in range(1, 151)) + "}",
    ]
    code, out = check_data(args, capsys)
    assert code == 0, out
    assert "SegmentationFolderDataModule: 150 classes" in out and "train: 2 pairs" in out


def test_splits_option_and_bad_config(tmp_path: Path, ade20k_root: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--data.class_path", "datamodules.ADE20KDataModule", "--data.init_args.root", str(ade20k_root)]
    code, out = check_data([*args, "--splits", "[val]"], capsys)
    assert code == 0 and "val: 2 pairs" in out and "train:" not in out
    empty = tmp_path / "empty.yaml"
    empty.write_text("model: {}\n")
    assert main(["check-data", "--config", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --config {empty} has no data: section\n"
