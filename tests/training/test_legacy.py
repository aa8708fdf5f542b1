"""Checkpoints written before the library/commands split (lrsa-seg 0.1, commit 19e9603) still work.

``tests/data/legacy/camvid_tiny_v0.1.ckpt`` was written by that version: ``lrsa-seg fit --config
tests/conf/camvid_tiny.yaml --trainer.max_steps 2`` on the tiny generated CamVid (4 train images,
batch 2), so it stopped at the end of epoch 0 with the old ``FaultTolerance`` callback state.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lrsa_seg.cli import main
from lrsa_seg.models import create_model
from lrsa_seg.models.weights import load_state_dict_checked
from lrsa_seg.weights import read_weights

from ..conftest import DATA, TESTS

LEGACY = DATA / "legacy" / "camvid_tiny_v0.1.ckpt"
TINY = str(TESTS / "conf" / "camvid_tiny.yaml")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, camvid_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_legacy_checkpoint_names_what_this_version_has() -> None:
    ckpt = torch.load(LEGACY, weights_only=True)
    assert ckpt["hyper_parameters"]["_class_path"] == "lrsa_seg.task.SemanticSegmentationTask"
    assert "FaultTolerance" in ckpt["callbacks"]  # the pre-split state this version must still read


def test_legacy_checkpoint_tests_through_the_cli(tmp_path: Path) -> None:
    assert main(["test", "--config", TINY, "--ckpt_path", str(LEGACY)]) == 0
    assert list((tmp_path / "run").glob("**/metrics.csv"))


def test_legacy_checkpoint_resumes_with_its_data_position(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level(logging.WARNING):
        assert main(["fit", "--config", TINY, "--ckpt_path", str(LEGACY), "--trainer.max_steps", "3"]) == 0
    assert "no data-position state" not in caplog.text  # the old FaultTolerance state was read
    assert torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["global_step"] == 3


def test_legacy_checkpoint_loads_as_weights() -> None:
    model = create_model("lrformer_test", num_classes=11, head_pooled_size=8)
    load_state_dict_checked(model, read_weights(LEGACY), source=str(LEGACY))
