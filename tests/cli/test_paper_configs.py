"""The 12 paper configs: their settings, --print_config, and 2 training steps each on a tiny tree."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import yaml

from lrsa_seg.cli import main
from lrsa_seg.models import list_models

from ..conftest import TESTS, write_ade20k, write_cityscapes, write_coco_stuff

CONFIGS = TESTS.parent / "configs"
VARIANTS = ("t", "s", "b", "l")
DATASETS = ("ade20k", "cityscapes", "coco_stuff")
NAMES = [f"lrformer_{v}_{d}" for d in DATASETS for v in VARIANTS]
DATAMODULES = {
    "ade20k": "datamodules.ADE20KDataModule",
    "cityscapes": "datamodules.CityscapesDataModule",
    "coco_stuff": "datamodules.COCOStuffDataModule",
}
NUM_CLASSES = {"ade20k": 150, "cityscapes": 19, "coco_stuff": 171}
TOTAL_BATCH = {"ade20k": 32, "cityscapes": 8, "coco_stuff": 16}  # docs/recipes.md
# (iterations, validation interval): SegFormer trains COCO-Stuff 80k, the others 160k.
SCHEDULE = {"ade20k": (160000, 16000), "cityscapes": (160000, 16000), "coco_stuff": (80000, 8000)}


def load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def test_the_twelve_configs_exist() -> None:
    found = {p.stem for p in CONFIGS.glob("lrformer_*_*.yaml")}
    assert set(NAMES) <= found


@pytest.mark.parametrize("name", NAMES)
def test_paper_settings(name: str) -> None:
    cfg = load(name)
    variant, dataset = name.split("_", 2)[1:]
    model, data, trainer = cfg["model"]["init_args"], cfg["data"]["init_args"], cfg["trainer"]
    assert cfg["model"]["class_path"] == "lrsa_seg.task.SemanticSegmentationTask"
    assert model["model"] == f"lrformer_{variant}" in list_models() and "drop_path_rate" not in model
    assert (model["lr"], model["weight_decay"], model["head_lr_mult"]) == (6e-5, 0.01, 10.0)
    assert (model["warmup_iters"], model["warmup_ratio"], model["poly_power"], model["min_lr"]) == (1500, 1e-6, 1.0, 0)
    iterations, interval = SCHEDULE[dataset]
    assert model["max_iters"] == trainer["max_steps"] == iterations
    assert trainer["gradient_clip_val"] == 35 and trainer["val_check_interval"] == interval
    assert trainer["check_val_every_n_epoch"] is None  # else the interval must fit in one epoch
    # SyncBN in the head only, as the official norm_cfg; not Lightning's convert-everything switch.
    assert model["head_sync_batchnorm"] is True and "sync_batchnorm" not in trainer and trainer["strategy"] == "ddp"
    assert data["batch_size"] == 4 and trainer["devices"] * data["batch_size"] == TOTAL_BATCH[dataset]
    assert cfg["data"]["class_path"] == DATAMODULES[dataset]
    assert data["ratio_range"] == [0.5, 2.0] and data["cat_max_ratio"] == 0.75 and data["eval_batch_size"] == 1
    if dataset == "cityscapes":
        assert data["crop_size"] == [1024, 1024] and data["base_size"] == [2048, 1024]
        assert model["eval_base_size"] == [2048, 1024]
    elif name == "lrformer_l_ade20k":  # the official L config: 640 crops, 2560 x 640 scale
        assert data["crop_size"] == [640, 640] and data["base_size"] == model["eval_base_size"] == [2560, 640]
    else:
        assert data["crop_size"] == [512, 512] and data["base_size"] == model["eval_base_size"] == [2048, 512]
    if dataset != "cityscapes":
        assert model["eval_size_multiple"] == 32
    # Loggers and callbacks as in quickstart.yaml, each run in its own folder.
    run = f"runs/{name}"
    wandb, csv = trainer["logger"]
    assert wandb["class_path"].endswith("WandbLogger") and wandb["init_args"]["offline"] is True
    assert wandb["init_args"]["name"] == name and wandb["init_args"]["save_dir"] == run
    assert csv["class_path"].endswith("CSVLogger") and csv["init_args"]["save_dir"] == run
    callbacks = trainer["callbacks"]
    best, last = (c["init_args"] for c in callbacks[:2])
    assert best == {
        "dirpath": f"{run}/checkpoints",
        "filename": "best",
        "monitor": "val/mIoU",
        "mode": "max",
        "enable_version_counter": False,
    }
    # A killed job (SIGKILL, no pre-emption signal) loses at most 1000 steps, not a validation interval.
    assert last == {
        "dirpath": f"{run}/checkpoints",
        "filename": "last",
        "every_n_train_steps": 1000,
        "enable_version_counter": False,
    }
    assert trainer["val_check_interval"] % last["every_n_train_steps"] == 0
    classes = [c["class_path"].rsplit(".", 1)[1] for c in callbacks]
    assert classes[:4] == ["ModelCheckpoint", "ModelCheckpoint", "LearningRateMonitor", "RichProgressBar"]


@pytest.mark.parametrize("name", NAMES)
def test_print_config(name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(CONFIGS / f"{name}.yaml"), "--print_config"])
    assert exit_.value.code == 0
    assert DATAMODULES[name.split("_", 2)[2]].rsplit(".", 1)[1] in capsys.readouterr().out


class Probe(L.Callback):
    """Records what the run built and how far it got."""

    seen: dict = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Probe.seen = {
            "global_step": trainer.global_step,
            "model": pl_module.hparams.model,
            "num_classes": pl_module.hparams.num_classes,
            "max_iters": pl_module.hparams.max_iters,
            "lr": pl_module.hparams.lr,
            "val_batches": trainer.num_val_batches,
            "datamodule": type(trainer.datamodule).__name__,
        }


CPU = [
    "--trainer.accelerator", "cpu",
    "--trainer.devices", "1",
    "--trainer.strategy", "auto",
    "--trainer.sync_batchnorm", "false",
]  # fmt: skip


# Building LRFormer-S/B/L and two real steps of each take minutes on a 2-core CPU (weight init of up
# to 111M parameters; oneDNN compiles kernels for every new layer shape on the first step), so by
# default these run for LRFormer-T on each dataset, and for all 12 configs with `pytest -m slow`.
RUN_NAMES = [n if "_t_" in n else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]


@pytest.mark.parametrize("name", RUN_NAMES)
def test_instantiates_everything(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Model, datamodule, trainer, loggers and callbacks of the config as written (fit is not run)."""
    monkeypatch.chdir(tmp_path)
    built = {}

    def fake_fit(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, **_: object) -> None:
        built.update(trainer=trainer, model=model, datamodule=datamodule)

    monkeypatch.setattr(L.Trainer, "fit", fake_fit)
    # The root must exist (the CLI checks data paths); nothing is read before fit.
    assert main(["fit", "--config", str(CONFIGS / f"{name}.yaml"), "--data.init_args.root", str(tmp_path), *CPU]) == 0
    trainer, model, datamodule = built["trainer"], built["model"], built["datamodule"]
    variant, dataset = name.split("_", 2)[1:]
    assert model.hparams.model == f"lrformer_{variant}" and model.hparams.num_classes == NUM_CLASSES[dataset]
    assert len(model.class_names) == NUM_CLASSES[dataset] and model.class_names[0] != "0"
    iterations, interval = SCHEDULE[dataset]
    assert model.hparams.max_iters == trainer.max_steps == iterations and trainer.val_check_interval == interval
    assert type(datamodule).__name__ == DATAMODULES[dataset].rsplit(".", 1)[1]
    assert [type(lg).__name__ for lg in trainer.loggers] == ["WandbLogger", "CSVLogger"]
    assert (
        trainer.progress_bar_callback is not None and type(trainer.progress_bar_callback).__name__ == "RichProgressBar"
    )
    assert {type(c).__name__ for c in trainer.callbacks} >= {"ModelCheckpoint", "LearningRateMonitor"}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper_data")
    return {
        "ade20k": write_ade20k(root / "ade", {"training": 4, "validation": 2}),
        "cityscapes": write_cityscapes(root / "cityscapes", {"train": 4, "val": 2}),
        "coco_stuff": write_coco_stuff(root / "coco", {"train2017": 4, "val2017": 2}),
    }


@pytest.mark.parametrize("name", RUN_NAMES)
def test_two_training_steps(name: str, trees: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dataset = name.split("_", 2)[2]
    logger = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "run"}}]
    callbacks = [{"class_path": f"{__name__}.Probe"}]
    Probe.seen = {}
    code = main(
        [
            "fit",
            "--config", str(CONFIGS / f"{name}.yaml"),
            "--data.init_args.root", str(trees[dataset]),
            "--data.init_args.crop_size", "[64, 64]",
            "--data.init_args.batch_size", "2",
            "--data.init_args.num_workers", "0",
            # Small pooled sizes and eval scale keep the runs fast on a CPU.
            "--model.init_args.pooled_sizes", "4",
            "--model.init_args.head_pooled_size", "8",
            "--model.init_args.eval_base_size", "[96, 64]",
            "--trainer.fast_dev_run", "2",
            *CPU,
            "--trainer.logger", json.dumps(logger),
            "--trainer.callbacks", json.dumps(callbacks),
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
        ]
    )  # fmt: skip
    assert code == 0
    seen = Probe.seen
    assert seen["global_step"] == 2 and seen["val_batches"] == [2]
    assert seen["model"] == f"lrformer_{name.split('_')[1]}" and seen["num_classes"] == NUM_CLASSES[dataset]
    assert seen["max_iters"] == SCHEDULE[dataset][0] and seen["lr"] == 6e-5
    assert seen["datamodule"] == DATAMODULES[dataset].rsplit(".", 1)[1]
