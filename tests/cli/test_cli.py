"""The main job through the real CLI on tiny generated CamVid data."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrsa_seg.cli import main

from ..conftest import TESTS

REPO = TESTS.parent
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
TINY = str(TESTS / "conf" / "camvid_tiny.yaml")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, camvid_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder holding the tiny dataset at ``camvid/``."""
    monkeypatch.chdir(tmp_path)


def metrics_of(run: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(run.glob("**/metrics.csv")):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return rows


def test_fit_test_predict(camvid_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    main(["fit", "--config", TINY])
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    ckpt = torch.load(last, weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["model"] == "lrformer_test"
    assert ckpt["hyper_parameters"]["num_classes"] == 11  # linked from the datamodule

    main(["test", "--config", TINY, "--ckpt_path", str(best)])
    rows = metrics_of(run)
    assert any(r.get("train/loss") for r in rows)
    assert any(r.get("val/mIoU") for r in rows)
    test_rows = [r for r in rows if r.get("test/mIoU")]
    assert test_rows and 0.0 <= float(test_rows[-1]["test/mIoU"]) <= 1.0
    assert "test/IoU/Road" in test_rows[-1]

    # predict on a folder of images of other sizes, one of them corrupt
    images = tmp_path / "to_predict"
    images.mkdir()
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.full((33, 129, 3), 200, np.uint8)).save(images / "b.jpg")
    (images / "broken.png").write_bytes(b"not an image")
    main(["predict", "--config", TINY, "--ckpt_path", str(best), "--data.init_args.predict_path", str(images)])
    out = run / "predictions"
    labels = np.asarray(Image.open(out / "a.png"))
    assert labels.shape == (50, 70) and labels.max() < 11
    assert Image.open(out / "a.png").mode == "P"
    assert Image.open(out / "b.png").size == (129, 33)
    assert (out / "a_overlay.jpg").is_file() and (out / "b_overlay.jpg").is_file()
    assert not (out / "broken.png").exists()


def test_resume_from_last(camvid_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    main(["fit", "--config", TINY, "--trainer.max_epochs", "1"])
    main(["fit", "--config", TINY, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1


def test_bf16_mixed_on_cpu(camvid_root: Path, tmp_path: Path) -> None:
    main(["fit", "--config", TINY, "--trainer.fast_dev_run", "2", "--trainer.precision", "bf16-mixed"])


def test_fit_with_median_frequency_weights_and_dice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    args = ["fit", "--config", TINY, "--model.init_args.class_weights", "median_frequency"]
    args += ["--model.init_args.aux_loss", "dice", "--trainer.fast_dev_run", "true"]
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    cache = tmp_path / "run" / "class_weights.json"
    record = json.loads(cache.read_text())
    assert record["method"] == "median_frequency" and record["images"] == 4 and len(record["weights"]) == 11
    assert 1.0 in record["weights"] and all(w >= 0 for w in record["weights"])  # the median class weighs 1
    assert "class weights (median frequency, 4 training masks, saved to" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    assert "class weights (median frequency, read from run/class_weights.json)" in caplog.text  # no recount


def test_print_config_and_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", QUICKSTART, "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "lrformer_t" in printed and "CamVidDataModule" in printed


def test_weights_initialisation(camvid_root: Path, tmp_path: Path) -> None:
    from lrsa_seg.task import SemanticSegmentationTask

    ref = torch.load(TESTS / "data" / "lrformer_tiny_pool16.pt", weights_only=True)
    official = tmp_path / "official.pth"
    torch.save({"state_dict": ref["state_dict"], "meta": {}}, official)
    # Same classes: the whole model loads strictly, when fitting (or evaluating) starts.
    task = SemanticSegmentationTask("lrformer_test", num_classes=5, weights=str(official))
    assert not torch.equal(task.model.decode_head.classifier.bias, ref["state_dict"]["decode_head.conv_seg.bias"])
    task.load_starting_weights()
    assert torch.equal(task.model.decode_head.classifier.bias, ref["state_dict"]["decode_head.conv_seg.bias"])
    assert task.starting_weights_record["source"] == str(official) and len(task.starting_weights_record["sha256"]) == 64
    # Other classes: strict fails naming the classifier; the backbone scope loads.
    with pytest.raises(ValueError, match="decode_head.conv_seg.weight"):  # named as the file names it
        SemanticSegmentationTask("lrformer_test", num_classes=11, weights=str(official)).load_starting_weights()
    task = SemanticSegmentationTask("lrformer_test", num_classes=11, weights=str(official), weights_scope="backbone")
    task.load_starting_weights()
    key = "backbone.block1.0.attn.q.0.weight"
    assert torch.equal(task.model.backbone.stages[0].blocks[0].attn.q.weight, ref["state_dict"][key])
    # A backbone-only official state dict (no prefix) loads into the backbone strictly.
    backbone_only = tmp_path / "backbone.pth"
    torch.save(
        {k[len("backbone.") :]: v for k, v in ref["state_dict"].items() if k.startswith("backbone.")}, backbone_only
    )
    task = SemanticSegmentationTask("lrformer_test", num_classes=11, weights=str(backbone_only))
    task.load_starting_weights()
    assert torch.equal(task.model.backbone.stages[0].blocks[0].attn.q.weight, ref["state_dict"][key])


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "lrsa_seg", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # two processes start and train: about a minute on 2 cores
def test_ddp_two_processes_fit_and_validate_matches_single(camvid_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    fit = _run_cli(["fit", "--config", TINY, "--trainer.max_epochs", "1", *ddp], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    results = {}
    for name, extra in (("single", ["--trainer.devices", "1"]), ("ddp", ddp)):
        out = tmp_path / f"validate_{name}"
        logger = ["--trainer.logger.init_args.save_dir", str(out)]
        proc = _run_cli(["validate", "--config", TINY, *logger, *extra, "--ckpt_path", str(last)], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = [r for r in metrics_of(out) if r.get("val/mIoU")]
        results[name] = (float(rows[-1]["val/mIoU"]), float(rows[-1]["val/aAcc"]))
    # 3 validation images over 2 processes: a padded sampler would count one twice.
    assert results["ddp"] == pytest.approx(results["single"], abs=1e-6)


def test_wandb_offline_run_logs_resolved_config(tmp_path: Path) -> None:
    wandb_logger = [
        "--trainer.logger+=lightning.pytorch.loggers.WandbLogger",
        "--trainer.logger.save_dir", str(tmp_path / "run"),  # absolute: wandb keeps the first run's root
        "--trainer.logger.project", "lrsa-seg-test",
        "--trainer.logger.offline", "true",
    ]  # fmt: skip
    main(["fit", "--config", TINY, "--trainer.max_epochs", "1", "--model.init_args.lr", "0.00123", *wandb_logger])
    import wandb

    wandb.finish()  # in-process the run is only flushed to disk when it finishes
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    data = run_file.read_bytes()
    # The resolved config (not just the task's hyper-parameters) is in the run: trainer and data too.
    # (values are JSON inside the record, so quotes may be escaped: match the bare text)
    assert b"0.00123" in data and b"gradient_clip_val" in data and b"CamVidDataModule" in data
