"""``lrsa-seg ablate``: the pool-size ablation on tiny generated CamVid data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from lrsa_seg.ablation import (
    SIZE_COLUMNS,
    markdown_table,
    plot_results,
    read_results,
    read_results_csv,
    recorded_rows,
    write_csv,
)
from lrsa_seg.cli import main
from lrsa_seg.cli.ablate.config import PATH_ARGS, _subclass_nodes, make_run_config, redirect_paths, resolve_config
from lrsa_seg.cli.ablate.recorder import pooled_sizes_of
from lrsa_seg.cli.ablate.runner import run_forwarding_signals
from lrsa_seg.models import create_model

from ..conftest import TESTS

REPO = TESTS.parent
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
TINY = TESTS / "conf" / "camvid_tiny.yaml"
FAST = ["--trainer.max_epochs", "1", "--latency-size", "64", "64", "--warmup-runs", "1", "--latency-runs", "2"]
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, camvid_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder holding the tiny dataset at ``camvid/``."""
    monkeypatch.chdir(tmp_path)


def all_paths(config: dict) -> list[str]:
    return [
        node["init_args"][key]
        for node in _subclass_nodes(config["trainer"])
        for key in PATH_ARGS
        if isinstance(node["init_args"].get(key), str)
    ]


@pytest.mark.slow  # six fit/test subprocesses: about 90 s on 2 cores
def test_ablate_writes_the_table_and_resumes(
    tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the runs' processes: a tiny model gains nothing from threads
    # W&B is left out here (it adds seconds per process); test_run_config_of_the_quickstart checks its settings.
    args = ["ablate", "--config", str(TINY), "--pooled-sizes", "8", "4", "--name", "tiny", *FAST]
    assert main(args) == 0
    ablation = tmp_path / "ablation" / "tiny"
    runs = ablation / "runs"

    rows = read_results_csv(ablation / "results.csv")
    assert [r["pooled_size"] for r in rows] == [4, 8]
    for row in rows:
        assert row["head_pooled_size"] == 8  # as configured: --head-pooled-size not given
        assert row["params"] > 100_000 and 0 < row["gmacs"] < 1 and row["latency_ms"] > 0
        assert 0 <= row["val_miou"] <= 1 and 0 <= row["test_miou"] <= 1
        # IoU by region size: the tiny masks' random 16x16 blocks make no region of 32² pixels (NaN -> None).
        small, medium, large = (row[key] for key in SIZE_COLUMNS)
        assert 0 <= small <= 1 and medium is None and large is None
        assert row["train_time_s"] > 0 and row["steps"] == 2 and row["epochs"] == 1
        assert row["size"] == "64x64" and row["device"].startswith("cpu")
    assert rows[0]["gmacs"] < rows[1]["gmacs"]  # a larger pooled grid costs more
    assert rows[0]["params"] == rows[1]["params"]  # the pooled size adds no parameters
    markdown = (ablation / "results.md").read_text()
    assert "| 4 | 8 |" in markdown and "| 8 | 8 |" in markdown and "64x64" in markdown
    assert (ablation / "pool_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for size in (4, 8):
        run = runs / f"pool{size}"
        result = json.loads((run / "result.json").read_text())
        config = yaml.safe_load((run / "run_config.yaml").read_text())
        assert config["model"]["init_args"]["pooled_sizes"] == size
        assert all(p.startswith(str(run)) for p in all_paths(config))
        assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
        hparams = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
        assert hparams["hyper_parameters"]["pooled_sizes"] == size
        assert result["model"] == "lrformer_test" and result["test_metrics"]["test/mIoU"] == result["test_miou"]
        assert len(list(run.glob("lightning_logs/version_*/metrics.csv"))) == 2  # the fit and the test
    assert not (tmp_path / "run").exists()  # nothing went to the config's own folder

    # Resume: pool 4 is finished, pool 8 was interrupted after its last checkpoint.
    finished = runs / "pool4" / "checkpoints" / "last.ckpt"
    mtime = finished.stat().st_mtime_ns
    (runs / "pool8" / "result.json").unlink()
    capfd.readouterr()
    assert main(args) == 0
    out = capfd.readouterr().out
    assert "pool 4: finished earlier, skipping" in out
    assert "pool 8: resuming fit from the last checkpoint" in out
    assert finished.stat().st_mtime_ns == mtime
    fit = json.loads((runs / "pool8" / "fit_summary.json").read_text())
    assert fit["resumed_from"] == str(runs / "pool8" / "checkpoints" / "last.ckpt")
    assert fit["steps"] == 2  # continued from the checkpoint, not trained again
    assert (runs / "pool8" / "result.json").is_file()
    table = read_results_csv(ablation / "results.csv")
    assert [r["pooled_size"] for r in table] == [4, 8]

    # A fresh clone holds the committed table but no run folders: pool 4 keeps its row, no rerun.
    shutil.rmtree(runs / "pool4")
    capfd.readouterr()
    assert main(args) == 0
    out = capfd.readouterr().out
    assert "pool 4: recorded in results.csv and no run folder here (a fresh clone?), skipping" in out
    assert "pool 8: finished earlier, skipping" in out
    assert not (runs / "pool4").exists()
    assert read_results_csv(ablation / "results.csv") == table


def test_read_results_keeps_recorded_rows_without_a_run_folder(tmp_path: Path) -> None:
    ablation = tmp_path / "ablation" / "x"
    row = {"pooled_size": 4, "head_pooled_size": 8, "params": 10, "gmacs": 0.5, "size": "64x64"}
    ablation.mkdir(parents=True)
    write_csv([row, {**row, "pooled_size": 8}, {**row, "pooled_size": 16}], ablation / "results.csv")
    (ablation / "runs" / "pool8").mkdir(parents=True)  # an attempt in progress: its folder decides
    (ablation / "runs" / "pool16").mkdir()
    (ablation / "runs" / "pool16" / "result.json").write_text(json.dumps({**row, "pooled_size": 16, "gmacs": 0.7}))
    rows = read_results(ablation)
    assert [(r["pooled_size"], r["gmacs"]) for r in rows] == [(4, 0.5), (16, 0.7)]
    assert set(recorded_rows(ablation)) == {4}


def test_run_config_of_the_quickstart(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = resolve_config([QUICKSTART], ["--trainer.max_epochs", "1"])
    run = tmp_path / "ablation" / "quickstart" / "runs" / "pool32"
    config = make_run_config(base, 32, 8, run, "quickstart", "quickstart-pool32-abc", (128, 256), 1, 3)
    assert config["model"]["init_args"]["pooled_sizes"] == 32 and config["model"]["init_args"]["head_pooled_size"] == 8
    assert config["model"]["init_args"]["size_iou"] is True  # the test reports mIoU by region size
    assert config["trainer"]["max_epochs"] == 1 and config["trainer"]["default_root_dir"] == str(run)
    assert sorted(all_paths(config)) == sorted(
        [str(run)] * 2
        + [str(run / "checkpoints")] * 2
        + [str(run / "predictions")]
        + [str(run / "visuals")] * 2
        + [str(run)]
    )  # W&B and CSV save_dir, two checkpoints, the prediction writer, the two picture callbacks, the recorder
    wandb = config["trainer"]["logger"][0]["init_args"]
    assert (wandb["group"], wandb["name"], wandb["id"], wandb["resume"]) == (
        "ablate-quickstart",
        "quickstart-pool32",
        "quickstart-pool32-abc",
        "allow",
    )
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in config["trainer"]["callbacks"]]
    assert callbacks.count("ModelCheckpoint") == 2  # the config's best and last are kept, not added
    assert callbacks[-1] == "AblationRecorder"
    assert base["trainer"]["default_root_dir"] == "runs/quickstart"  # the base is not modified
    # The run config is a valid LightningCLI config for fit and test.
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    for stage in ("fit", "test"):
        with pytest.raises(SystemExit) as exit_:
            main([stage, "--config", str(path), "--print_config"])
        assert exit_.value.code == 0
    assert "pooled_sizes: 32" in capsys.readouterr().out


def test_run_config_adds_missing_checkpoints(tmp_path: Path) -> None:
    base = resolve_config([str(TINY)], ["--trainer.callbacks=[]", "--trainer.logger=false"])
    config = make_run_config(base, 4, None, tmp_path / "pool4", "t", "t-pool4-x", (64, 64), 1, 1)
    checkpoints = [c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith("Checkpoint")]
    assert [(c["filename"], c.get("monitor")) for c in checkpoints] == [("best", "val/mIoU"), ("last", None)]
    assert config["model"]["init_args"]["head_pooled_size"] == 8  # as configured


def test_redirect_paths_keeps_layout_and_separates_outside_paths(tmp_path: Path) -> None:
    trainer = {
        "default_root_dir": "out/exp",
        "callbacks": [
            {"class_path": "a.ModelCheckpoint", "init_args": {"dirpath": "out/exp/ckpt/best"}},
            {"class_path": "a.ModelCheckpoint", "init_args": {"dirpath": "/elsewhere/ckpt", "filename": "x"}},
            {"class_path": "a.Writer", "init_args": {"output_dir": "/other/ckpt"}},
            {"class_path": "a.NoPath", "init_args": {"dirpath": None}},
        ],
        "profiler": {"class_path": "a.Profiler", "init_args": {"dirpath": "out/exp"}},
    }
    redirect_paths(trainer, tmp_path)
    callbacks = trainer["callbacks"]
    assert trainer["default_root_dir"] == str(tmp_path)
    assert callbacks[0]["init_args"]["dirpath"] == str(tmp_path / "ckpt" / "best")
    assert callbacks[1]["init_args"]["dirpath"] == str(tmp_path / "ckpt")
    assert callbacks[2]["init_args"]["output_dir"] == str(tmp_path / "ckpt_1")  # distinct folders stay distinct
    assert callbacks[3]["init_args"]["dirpath"] is None
    assert trainer["profiler"]["init_args"]["dirpath"] == str(tmp_path)


@pytest.mark.parametrize("flag", ["--ckpt_path", "--model.init_args.pooled_sizes=4", "--print_config"])
def test_ablate_rejects_what_it_sets(flag: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["ablate", "--config", str(TINY), "--pooled-sizes", "4", flag, "x"])
    assert exit_.value.code == 2


def test_table_by_region_size_and_a_row_recorded_before_it(tmp_path: Path) -> None:
    row = {"pooled_size": 8, "head_pooled_size": 16, "params": 10, "gmacs": 0.5, "test_miou": 0.3, "size": "64x64"}
    by_size = dict(zip(SIZE_COLUMNS, (0.125, 0.25, 0.5)))
    # A results.csv written before the by-size columns existed: its cells read as missing.
    (tmp_path / "old.csv").write_text("pooled_size,test_miou,size\n16,0.25,64x64\n")
    old = read_results_csv(tmp_path / "old.csv")[0]
    write_csv([{**row, **by_size}, old], tmp_path / "results.csv")
    rows = read_results_csv(tmp_path / "results.csv")
    assert [rows[0][key] for key in SIZE_COLUMNS] == [0.125, 0.25, 0.5]
    assert [rows[1][key] for key in SIZE_COLUMNS] == [None, None, None]
    lines = markdown_table(rows).splitlines()
    assert "test mIoU small / medium / large (%)" in lines[0]
    assert "| 30.00 | 12.50 / 25.00 / 50.00 |" in lines[2]
    assert "| 25.00 | - / - / - |" in lines[3]


def test_plot_results_without_a_display() -> None:
    rows = [
        {"pooled_size": s, "gmacs": g, "latency_ms": t, "val_miou": v, "test_miou": None, "size": "64x64"}
        | dict(zip(SIZE_COLUMNS, by_size))
        for s, g, t, v, by_size in ((8, 1.0, 3.0, 0.2, (0.1, 0.2, 0.3)), (16, 1.5, 4.0, 0.3, (None, None, None)))
    ]
    fig = plot_results(rows)
    assert len(fig.axes) == 3  # mIoU, GMACs and its latency twin
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["val mIoU (best)", "test, small regions", "test, medium regions", "test, large regions"]


def test_pooled_sizes_of_reads_the_modules() -> None:
    with torch.device("meta"):
        model = create_model("lrformer_test", num_classes=3, pooled_sizes=4, head_pooled_size=8)
    assert pooled_sizes_of(model) == {"backbone_pooled_sizes": [4], "head_pooled_size": 8}
    with torch.device("meta"):
        model = create_model("lrformer_test", num_classes=3, pooled_sizes=(4, 8, 8, 8))
    assert pooled_sizes_of(model) == {"backbone_pooled_sizes": [4, 8], "head_pooled_size": 16}


_PREEMPTIBLE_CHILD = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, lambda *_: (Path("saved").touch(), sys.exit(int(sys.argv[1]))))
Path("ready").touch()
time.sleep(60)
"""


@pytest.mark.parametrize("child_exit", [128 + signal.SIGTERM, 0], ids=["child-exits-143", "child-exits-0"])
def test_signal_to_ablate_reaches_the_running_fit(tmp_path: Path, child_exit: int) -> None:
    # `kill <ablate pid>` must pre-empt the fit it runs (which saves and exits 143), not orphan
    # it; and the ablation stops there even when the child then ends normally.
    def send_when_ready() -> None:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").is_file() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=send_when_ready)
    sender.start()
    returncode = run_forwarding_signals([sys.executable, "-c", _PREEMPTIBLE_CHILD, str(child_exit)])
    sender.join()
    assert returncode == 128 + signal.SIGTERM
    assert (tmp_path / "saved").is_file()  # the child's handler ran (unsignalled it would sleep on)
    assert signal.getsignal(signal.SIGTERM) == before


def test_ablate_names_a_broken_results_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "ablation" / "tiny" / "results.csv"
    table.parent.mkdir(parents=True)
    table.write_text("pooled_size,gmacs\nsixteen,1.0\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "--config", str(TINY), "--pooled-sizes", "8", "--name", "tiny", *FAST])
    assert exit_info.value.code == 2
    assert "ablation/tiny/results.csv: not a results table of lrsa-seg ablate" in capsys.readouterr().err
    assert not (table.parent / "runs").exists()
