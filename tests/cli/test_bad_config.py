"""Bad configuration: every case is one clear error that names the argument, before any training starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrsa_seg.cli import main
from lrsa_seg.cli.checks import check_data_arguments
from lrsa_seg.errors import ConfigError
from lrsa_seg.task import SemanticSegmentationTask

from ..conftest import TESTS, write_camvid

TINY = str(TESTS / "conf" / "camvid_tiny.yaml")
FIT = ["fit", "--config", TINY]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """Each test runs in its own folder with tiny CamVid at ``camvid/``, one thread."""
    monkeypatch.chdir(tmp_path)
    write_camvid(tmp_path / "camvid", {"train": 4, "val": 2, "test": 2})


def fails(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run the CLI: it must exit with status 2 and train nothing; returns stderr."""
    try:
        code = main(args)
    except SystemExit as exit_:  # errors raised while jsonargparse instantiates the classes
        code = exit_.code
    assert code == 2
    assert not Path("run").exists(), "something ran"
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.init_args.model", "lrformer_xx"], "model.init_args.model: unknown model 'lrformer_xx'; available:"),
        (["--model.init_args.model", "lrformer_t_cls"], "'lrformer_t_cls' is not a segmentation model"),
        (["--model.init_args.pooled_sizes", "0"], "model.init_args.pooled_sizes must all be >= 1, got 0"),
        (["--model.init_args.pooled_sizes", "[16, 0, 16, 16]"], "pooled_sizes must all be >= 1, got [16, 0, 16, 16]"),
        (["--model.init_args.head_pooled_size", "0"], "model.init_args.head_pooled_size must be >= 1, got 0"),
        (["--model.init_args.drop_path_rate", "1.5"], "model.init_args.drop_path_rate must be in [0, 1), got 1.5"),
        (["--model.init_args.class_weights", "[1, 2]"], "init_args.class_weights has 2 entries for num_classes=11"),
        (["--model.init_args.ohem_thresh", "1.5"], "model.init_args.ohem_thresh must be in (0, 1), got 1.5"),
        (["--model.init_args.ohem_min_kept", "0"], "model.init_args.ohem_min_kept must be >= 1, got 0"),
        (["--model.init_args.aux_loss_weight", "-1"], "model.init_args.aux_loss_weight must be >= 0, got -1"),
    ],
    ids=[
        "unknown-model",
        "classifier",
        "pooled-0",
        "pooled-stage-0",
        "head-pooled-0",
        "drop-path",
        "class-weights-length",
        "ohem-thresh",
        "ohem-min-kept",
        "aux-loss-weight",
    ],
)
def test_bad_model_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert message in fails([*FIT, *args], capsys)


def test_num_classes_that_disagrees_with_the_data(capsys: pytest.CaptureFixture) -> None:
    # Before: the link silently replaced 19 by CamVid's 11. Now it is an error ...
    err = fails([*FIT, "--model.init_args.num_classes", "19"], capsys)
    assert "--model.init_args.num_classes=19 disagrees with the data: CamVidDataModule has 11 classes" in err
    err = fails([*FIT, "--model.init_args.class_names", "[a, b]"], capsys)
    assert "--model.init_args.class_names ['a', 'b'] disagrees with the data's classes" in err
    # ... while the same value as the data is accepted.
    assert main([*FIT, "--model.init_args.num_classes", "11", "--trainer.fast_dev_run", "1"]) == 0


def test_checkpoint_of_other_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = tmp_path / "ade.ckpt"
    hparams = {"model": "lrformer_test", "num_classes": 150, "head_pooled_size": 8}
    torch.save({"hyper_parameters": hparams, "state_dict": {}, "global_step": 0}, checkpoint)
    err = fails(["validate", "--config", TINY, "--ckpt_path", str(checkpoint)], capsys)
    assert "--model.init_args.num_classes=150 disagrees with the data: CamVidDataModule has 11 classes" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.init_args.root", "nowhere"], "--data.init_args.root: nowhere does not exist"),
        (["--data.init_args.ratio_range", "[2.0, 1.0]"], "--data.init_args.ratio_range must be 0 < low <= high"),
        (["--data.init_args.ratio_range", "[0.0, 1.0]"], "--data.init_args.ratio_range must be 0 < low <= high"),
        (["--data.init_args.cat_max_ratio", "0"], "--data.init_args.cat_max_ratio must be in (0, 1]"),
        (["--data.init_args.base_size", "[0, 64]"], "--data.init_args.base_size must be positive"),
        (
            ["--data.init_args.crop_size", "[512, 512]"],
            "--data.init_args.crop_size [512, 512] can never be filled: training images are rescaled to fit "
            "base_size [96, 64] x ratio_range [0.5, 2.0], so their short side is at most 128 px",
        ),
    ],
    ids=["missing-root", "ratio-order", "ratio-zero", "cat-max-ratio", "base-size", "crop-too-large"],
)
def test_bad_data_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert message in fails([*FIT, *args], capsys)


def test_missing_folders_for_other_subcommands(capsys: pytest.CaptureFixture) -> None:
    assert "--data.init_args.root: nowhere does not exist" in fails(
        ["test", "--config", TINY, "--data.init_args.root", "nowhere"], capsys
    )
    err = fails(["predict", "--config", TINY, "--data.init_args.predict_path", "no_images"], capsys)
    assert "--data.init_args.predict_path: no_images does not exist" in err


def test_crop_larger_than_some_images_is_padded_not_an_error() -> None:
    # Rescaled images are 32-128 px on the short side: a 112 x 112 crop is often larger and is
    # padded (image 0, mask 255, as mmseg); training runs.
    assert main([*FIT, "--data.init_args.crop_size", "[112, 112]", "--trainer.fast_dev_run", "2"]) == 0


def test_checks_in_python() -> None:
    with pytest.raises(ConfigError, match="model.init_args.num_classes is required"):
        SemanticSegmentationTask("lrformer_test")
    config = {"data": {"init_args": {"crop_size": (64, 64), "base_size": (96, 64), "ratio_range": (0.5, 0.5)}}}
    with pytest.raises(ConfigError, match="short side is at most 32 px"):
        check_data_arguments(config, "fit")
    check_data_arguments(config, "validate")  # augmentation settings matter only for fit
