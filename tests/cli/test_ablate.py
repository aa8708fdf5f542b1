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
    COLUMNS,
    SIZE_COLUMNS,
    AblationRow,
    cell,
    fields_of_test_metrics,
    markdown_table,
    plot_results,
    read_results,
    read_results_csv,
    read_rows,
    recorded_rows,
    run_name,
    write_csv,
)
from lrsa_seg.callbacks.ablation import FIT_SUMMARY, TEST_SUMMARY
from lrsa_seg.cli import main
from lrsa_seg.cli.ablate.config import PATH_ARGS, _subclass_nodes, make_run_config, redirect_paths, resolve_config
from lrsa_seg.cli.ablate.runner import run_forwarding_signals, run_pooled_size

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
    assert "| 4 | 0 | 8 |" in markdown and "| 8 | 0 | 8 |" in markdown and "64x64" in markdown
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
    assert fit["row"]["steps"] == 2  # continued from the checkpoint, not trained again
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
    assert [(r.pooled_size, r.gmacs) for r in rows] == [(4, 0.5), (16, 0.7)]
    assert set(recorded_rows(ablation)) == {(4, 0)}


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
    assert config["trainer"]["callbacks"][-1]["class_path"] == "lrsa_seg.callbacks.AblationRecorder"
    assert config["seed_everything"] == 0
    seeded = make_run_config(base, 32, 8, run.with_name("pool32_seed2"), "quickstart", "q", (128, 256), 1, 3, seed=2)
    assert (
        seeded["seed_everything"] == 2
        and seeded["trainer"]["logger"][0]["init_args"]["name"] == "quickstart-pool32_seed2"
    )
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


@pytest.mark.parametrize(
    "flag", ["--ckpt_path", "--model.init_args.pooled_sizes=4", "--print_config", "--seed_everything=3"]
)
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


# --- Seeds and the one row type ------------------------------------------------------------------
# The header of results.csv before seeds existed (the committed quickstart table until then).
HEADER_BEFORE_SEEDS = (
    "pooled_size,head_pooled_size,params,gmacs,latency_ms,val_miou,test_miou,test_miou_small,test_miou_medium,"
    "test_miou_large,train_time_s,epochs,steps,size,device,precision"
)


def test_the_row_type_is_the_table() -> None:
    assert COLUMNS[:2] == ("pooled_size", "seed") and set(SIZE_COLUMNS) < set(COLUMNS)
    assert fields_of_test_metrics({"test/mIoU": 0.5, "test/mIoU_small": float("nan"), "test/mIoU_large": 0.25}) == {
        "test_miou": 0.5,
        "test_miou_small": None,  # NaN: no test image has a small region
        "test_miou_medium": None,
        "test_miou_large": 0.25,
    }
    assert set(fields_of_test_metrics({})) < set(COLUMNS)


def test_a_results_csv_from_before_seeds_reads_as_seed_0_and_round_trips(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text(
        HEADER_BEFORE_SEEDS + "\n"
        "8,16,13229171,14.16331808,237.13,0.4139,0.3047,0.1719,0.2876,0.5065,523.67,7,637,512x512,cpu x2,32-true\n"
        "16,16,13229171,15.083699264,290.23,0.3957,0.3152,,,,702.72,7,637,512x512,cpu x2,32-true\n"
    )
    rows = read_rows(old)
    assert [r.key for r in rows] == [(8, 0), (16, 0)]
    assert rows[0].params == 13229171 and rows[0].test_miou_small == 0.1719 and rows[1].test_miou_small is None
    assert rows[0].size == "512x512" and rows[0].precision == "32-true"
    rows.append(AblationRow(16, 2, gmacs=15.08, test_miou=0.31, size="512x512"))
    new = tmp_path / "results.csv"
    write_csv(rows, new)
    assert new.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert read_rows(new) == rows
    assert read_results_csv(new)[2] == rows[2].to_dict()  # the plain-dict view of notebooks and the README test
    assert read_results_csv(new)[0]["seed"] == 0


def test_rows_are_keyed_by_pooled_size_and_seed(tmp_path: Path) -> None:
    assert (run_name(16), run_name(16, 0), run_name(16, 2)) == ("pool16", "pool16", "pool16_seed2")
    ablation = tmp_path / "ablation" / "x"
    runs = ablation / "runs"
    ablation.mkdir(parents=True)
    write_csv(
        [AblationRow(16, seed, gmacs=1.0 + seed / 10) for seed in (0, 1, 2)] + [AblationRow(8)],
        ablation / "results.csv",
    )
    (runs / "pool16_seed1").mkdir(parents=True)  # an attempt in progress: its folder decides
    (runs / "pool16_seed2").mkdir()
    result = {**AblationRow(16, 2, gmacs=1.3).to_dict(), "model": "lrformer_test", "wandb_id": "x"}
    (runs / "pool16_seed2" / "result.json").write_text(json.dumps(result))
    assert set(recorded_rows(ablation)) == {(8, 0), (16, 0)}
    assert [(r.key, r.gmacs) for r in read_results(ablation)] == [((8, 0), None), ((16, 0), 1.0), ((16, 2), 1.3)]


def test_table_and_plot_show_the_mean_and_range_over_seeds() -> None:
    common = dict(head_pooled_size=16, params=13_000_000, gmacs=15.08, size="512x512")
    rows = [
        AblationRow(16, seed, latency_ms=latency, test_miou=miou, **common)
        for seed, latency, miou in ((2, 310.0, 0.32), (0, 290.0, 0.30), (1, 300.0, 0.31))
    ]
    rows.append(AblationRow(8, 0, latency_ms=237.1, test_miou=0.3047, test_miou_small=0.17, **common))
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| pooled size | seeds | head pooled size |")
    # One seed: the plain value. Several: mean (min–max), and one value where they agree (params, GMACs).
    assert lines[2] == "| 8 | 0 | 16 | 13.00 | 15.08 | 237.1 | - | 30.47 | 17.00 / - / - | - |"
    assert (
        lines[3]
        == "| 16 | 0, 1, 2 | 16 | 13.00 | 15.08 | 300.0 (290.0–310.0) | - | 31.00 (30.00–32.00) | - / - / - | - |"
    )
    assert cell([0.2, None, 0.4], ".1f", 100) == "30.0 (20.0–40.0)" and cell([None], ".1f") == "-"
    assert cell([8, 16], "d") == "12.0 (8–16)"

    fig = plot_results(rows)
    ax_miou, ax_cost, ax_latency = fig.axes
    (test_line,) = [line for line in ax_miou.get_lines() if line.get_label() == "test mIoU"]
    assert list(test_line.get_xdata()) == [8, 16] and test_line.get_ydata()[1] == pytest.approx(31.0)
    (bars,) = ax_miou.collections  # the range of the 16 row's test mIoU; one seed and agreeing seeds draw none
    assert [list(segment[:, 1]) for segment in bars.get_segments()] == [pytest.approx([30.0, 32.0])]
    assert len(ax_latency.collections) == 1 and not ax_cost.collections
    assert "range over seeds" in ax_miou.get_title()


def test_ablate_runs_every_size_at_every_seed_and_skips_recorded_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def run(base: dict, size: int, ablation_dir: Path, *args: object) -> dict:
        seed = args[-1]
        calls.append((size, seed))
        folder = ablation_dir / "runs" / run_name(size, seed)
        folder.mkdir(parents=True)
        row = AblationRow(size, seed, gmacs=float(size), test_miou=0.3 + seed / 100, size="64x64")
        (folder / "result.json").write_text(json.dumps(row.to_dict()))
        return row.to_dict()

    monkeypatch.setattr("lrsa_seg.cli.ablate.run_pooled_size", run)
    ablation = tmp_path / "ablation" / "tiny"
    ablation.mkdir(parents=True)
    (ablation / "results.csv").write_text("pooled_size,gmacs,test_miou,size\n8,8.0,0.25,64x64\n")  # before seeds
    args = ["ablate", "--config", str(TINY), "--pooled-sizes", "8", "4", "--seeds", "1", "0", "--name", "tiny", *FAST]
    assert main(args) == 0
    assert calls == [(4, 0), (4, 1), (8, 1)]  # seed by seed, sizes ascending; (8, seed 0) is recorded
    assert "pool 8: recorded in results.csv and no run folder here" in capsys.readouterr().out
    assert [r.key for r in read_rows(ablation / "results.csv")] == [(4, 0), (4, 1), (8, 0), (8, 1)]
    markdown = (ablation / "results.md").read_text()
    assert "| 4 | 0, 1 | - | - | 4.00 | - | - | 30.50 (30.00–31.00) |" in markdown
    assert "| 8 | 0, 1 | - | - | 8.00 | - | - | 28.00 (25.00–31.00) |" in markdown


def test_a_run_folder_from_before_seeds_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # runs/pool16/ as ablate wrote it before seeds and the recorder's move, interrupted after a checkpoint.
    base = resolve_config([str(TINY)], [])
    ablation = tmp_path / "ablation" / "tiny"
    run = (ablation / "runs" / "pool16").resolve()
    old = make_run_config(base, 16, None, run, "tiny", "tiny-pool16-abcd1234", (64, 64), 1, 1)
    old["trainer"]["callbacks"][-1]["class_path"] = "lrsa_seg.cli.ablate.recorder.AblationRecorder"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "run_config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    commands = []

    def lightning(stage: str, config: Path, *extra: str) -> int:
        commands.append((stage, *extra))
        fit_row = {"val_miou": 0.4, "train_time_s": 12.5, "epochs": 1, "steps": 2}
        test_row = {
            **fields_of_test_metrics({"test/mIoU": 0.3}),
            "head_pooled_size": 8,
            "params": 1000,
            "gmacs": 0.1,
            "latency_ms": 2.0,
            "size": "64x64",
            "device": "cpu x1",
            "precision": "32-true",
        }
        summaries = {
            "fit": (FIT_SUMMARY, {"row": fit_row, "best_checkpoint": "", "last_checkpoint": "", "resumed_from": None}),
            "test": (TEST_SUMMARY, {"row": test_row, "metrics": {"test/mIoU": 0.3}, "backbone_pooled_sizes": [16]}),
        }
        name, summary = summaries[stage]
        (config.parent / name).write_text(json.dumps(summary))
        return 0

    monkeypatch.setattr("lrsa_seg.cli.ablate.runner._run_lightning", lightning)
    result = run_pooled_size(base, 16, ablation, "tiny", None, (64, 64), 1, 1)
    assert commands == [("fit", "--ckpt_path", "last"), ("test", "--ckpt_path", "last")]
    out = capsys.readouterr().out
    assert "pool 16: resuming fit from the last checkpoint" in out and "config changed" not in out
    assert result["model"] == "lrformer_test"
    assert AblationRow.from_record(json.loads((run / "result.json").read_text())) == AblationRow(
        16, 0, 8, 1000, 0.1, 2.0, 0.4, 0.3, None, None, None, 12.5, 1, 2, "64x64", "cpu x1", "32-true"
    )
    config = yaml.safe_load((run / "run_config.yaml").read_text())
    assert config["trainer"]["callbacks"][-1]["class_path"] == "lrsa_seg.callbacks.AblationRecorder"
    assert config["seed_everything"] == 0
