"""The pool-size ablation's callback: what it records in ``fit`` and ``test`` makes one table row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lrsa_seg.ablation import AblationRow
from lrsa_seg.callbacks import AblationRecorder
from lrsa_seg.callbacks.ablation import FIT_SUMMARY, TEST_SUMMARY, pooled_sizes_of
from lrsa_seg.cli import main
from lrsa_seg.models import create_model

from ..conftest import TESTS

TINY = str(TESTS / "conf" / "camvid_tiny.yaml")


def test_pooled_sizes_of_reads_the_modules() -> None:
    with torch.device("meta"):
        model = create_model("lrformer_test", num_classes=3, pooled_sizes=4, head_pooled_size=8)
    assert pooled_sizes_of(model) == {"backbone_pooled_sizes": [4], "head_pooled_size": 8}
    with torch.device("meta"):
        model = create_model("lrformer_test", num_classes=3, pooled_sizes=(4, 8, 8, 8))
    assert pooled_sizes_of(model) == {"backbone_pooled_sizes": [4, 8], "head_pooled_size": 16}


def test_fit_and_test_summaries_make_a_row(camvid_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = [
        "--trainer.callbacks+=lrsa_seg.callbacks.AblationRecorder",
        "--trainer.callbacks.output_dir=summaries",
        "--trainer.callbacks.measure_size=[64, 64]",
        "--trainer.callbacks.warmup_runs=0",
        "--trainer.callbacks.latency_runs=1",
    ]
    common = ["--config", TINY, "--model.init_args.size_iou", "true", *recorder]
    assert main(["fit", *common, "--trainer.max_epochs", "1"]) == 0
    assert main(["test", *common, "--ckpt_path", str(tmp_path / "run/checkpoints/best.ckpt")]) == 0
    fit = json.loads((tmp_path / "summaries" / FIT_SUMMARY).read_text())
    test = json.loads((tmp_path / "summaries" / TEST_SUMMARY).read_text())
    # The two "row" parts are AblationRow fields, no key twice: the runner builds the row from them.
    row = AblationRow(pooled_size=test["backbone_pooled_sizes"][0], seed=0, **fit["row"], **test["row"])
    assert row.pooled_size == 16 and row.head_pooled_size == 8  # lrformer_test's default and the config's
    assert row.epochs == 1 and row.steps == 2 and row.train_time_s > 0 and 0 <= row.val_miou <= 1
    assert row.test_miou == test["metrics"]["test/mIoU"] and row.test_miou_small is not None
    assert row.size == "64x64" and row.device.startswith("cpu") and row.params > 0 and row.gmacs > 0
    assert fit["best_checkpoint"].endswith("best.ckpt") and AblationRecorder.__module__ == "lrsa_seg.callbacks.ablation"
