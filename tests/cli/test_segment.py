"""``lrsa-seg segment`` with weights from an offline Hub cache; evaluating random weights needs a flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrsa_seg.cli import main

from ..conftest import TESTS
from ..test_weights import hub, official_segmentation, put_in_hub, reference  # noqa: F401

TINY = str(TESTS / "conf" / "camvid_tiny.yaml")


def test_segment_a_folder(hub: Path, reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    source = put_in_hub(hub, "seg.pth", official_segmentation(reference))
    images = tmp_path / "images"
    (images / "street").mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(images / "a.jpg")
    Image.fromarray(np.zeros((33, 70, 3), np.uint8)).save(images / "street" / "b.png")
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["segment", "--weights", source, "--input", str(images), "--output", str(out), "--batch-size", "2"]
    assert main(args) == 1  # one image skipped
    err = capsys.readouterr().err
    assert "broken.png" in err and "error: 1 unreadable image(s) skipped" in err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "a_overlay.jpg", "street/b.png", "street/b_overlay.jpg"]
    labels = Image.open(out / "street" / "b.png")
    assert labels.mode == "P" and labels.size == (70, 33) and np.asarray(labels).max() < 5
    assert Image.open(out / "a_overlay.jpg").size[1] == 40
    assert main(["segment", "--weights", source, "--input", str(images / "a.jpg"), "--output", str(out)]) == 0


def test_evaluating_needs_weights(camvid_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for subcommand in ("validate", "test", "predict"):
        assert main([subcommand, "--config", TINY]) == 2
        last = capsys.readouterr().err.splitlines()[-1]  # after Lightning's warnings
        assert last == (
            "error: the model has random weights; pass --ckpt_path or --model.init_args.weights "
            "(--random_weights true runs it anyway)"
        )
    run = tmp_path / "run"
    assert main(["validate", "--config", TINY, "--random_weights", "true", "--trainer.limit_val_batches", "1"]) == 0
    assert not list(run.rglob("config.yaml")) and len(list(run.rglob("config_validate.yaml"))) == 1
    predict = ["predict", "--config", TINY, "--random_weights", "true", "--data.init_args.predict_path", "camvid/test"]
    assert main(predict) == 0
    assert (run / "config_predict.yaml").is_file() and len(list((run / "predictions").glob("*_overlay.jpg"))) == 2
    assert len(list(run.rglob("metrics.csv"))) == 1  # validate's; predict started no logger
