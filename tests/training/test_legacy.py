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
from lrsa_seg.training.optim import norm_first_groups, parameter_groups, regroup_optimizer_state

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
    model = create_model("lrformer_test", weights=LEGACY)  # classes and head pooled size from its hyper-parameters
    assert model.num_classes == 11 and model.config["model_kwargs"]["head_pooled_size"] == 8


def test_legacy_optimizer_state_moves_to_todays_groups_by_parameter() -> None:
    ckpt = torch.load(LEGACY, weights_only=True)
    model = create_model("lrformer_test", num_classes=11, head_pooled_size=8)
    old = norm_first_groups(model)
    saved = ckpt["optimizer_states"][0]
    flat = [name for _, names in old for name in names]  # saved keys run across the groups in order
    moments = {flat[key]: state["exp_avg"] for key, state in saved["state"].items()}
    groups = parameter_groups(model, lr=0.002, weight_decay=0.01, head_lr_mult=10.0)

    assert regroup_optimizer_state(ckpt, model, groups)
    names = {id(p): n for n, p in model.named_parameters()}
    regrouped = ckpt["optimizer_states"][0]
    for group, saved_group in zip(groups, regrouped["param_groups"]):
        assert (saved_group["name"], saved_group["weight_decay"]) == (group["name"], group["weight_decay"])
        assert saved_group["initial_lr"] == group["lr"]
        for param, key in zip(group["params"], saved_group["params"]):
            torch.testing.assert_close(regrouped["state"][key]["exp_avg"], moments[names[id(param)]], rtol=0, atol=0)
    assert ckpt["lr_schedulers"][0]["base_lrs"] == [g["lr"] for g in groups]
    head = next(g for g in regrouped["param_groups"] if g["name"] == "head")
    assert head["weight_decay"] == 0.01 and len(head["params"]) == 36 + 16  # head norms joined the head
    assert not regroup_optimizer_state(ckpt, model, groups)  # already in today's layout
