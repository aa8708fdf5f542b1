"""``scripts/gpu_check.py``: its tiny CPU run (``--dry-run``) writes the report the GPU run writes."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

from .conftest import TESTS

SCRIPT = TESTS.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def test_dry_run_writes_the_report(gpu_check: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the SegFormer-B1 rows need transformers (pip install -e .[bench])")
    out = tmp_path / "out"
    assert gpu_check.main(["--dry-run", "--output", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["passed"] and report["dry_run"] and report["environment"]["torch"] == torch.__version__
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["name"] for s in report["stages"]] == ["fit", "inference", "compile", "ablation"]

    bf16, fp16 = stages["fit"]["results"]
    assert stages["fit"]["status"] == "passed"
    assert bf16["precision"] == "bf16-mixed" and bf16["finite"] and bf16["steps"] == 1 and bf16["size"] == "64x64"
    assert fp16 == {"precision": "16-mixed", "skipped": "float16 autocast training needs CUDA"}

    rows = stages["inference"]["results"]
    assert stages["inference"]["status"] == "passed"
    assert [(r["model"], r["size"], r["dtype"]) for r in rows] == [
        ("lrformer_test fused", "64x64", "fp32"),
        ("segformer_b1", "64x64", "fp32"),
    ]
    assert all(r["median_ms"] > 0 and r["output"] == [1, 150, 64, 64] for r in rows)

    (compiled,) = stages["compile"]["results"]
    assert stages["compile"]["status"] == "passed"
    assert compiled["mode"] == "static" and compiled["equal"] and compiled["max_rel_error"] < 1e-5

    ablation = stages["ablation"]
    assert ablation["status"] == "skipped" and ablation["reason"].startswith("dry run")
    command = ablation["results"][0]["command"]
    assert "-m lrsa_seg ablate --config configs/quickstart.yaml --pooled-sizes 8 16 32 48 --output-dir" in command
    assert command.endswith("--trainer.accelerator gpu --trainer.devices 1")

    markdown = (out / "gpu_check.md").read_text()
    assert markdown.startswith("# GPU check: cpu x") and "**PASSED**" in markdown
    assert "| static | 64x64 |" in markdown and "| segformer_b1 | 64x64 | fp32 |" in markdown


def test_a_failed_check_fails_the_command(
    gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_check, "fit_steps", lambda ctx, precision: {"precision": precision, "finite": False})
    args = ["--dry-run", "--stages", "fit", "--output", str(tmp_path), "--work-dir", str(tmp_path / "work")]
    assert gpu_check.main(args) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(s["name"], s["status"]) for s in report["stages"]] == [
        ("fit", "failed"),
        ("inference", "skipped"),
        ("compile", "skipped"),
        ("ablation", "skipped"),
    ]
    assert (
        report["stages"][1]["reason"] == "not selected (--stages)"
        and "**FAILED**" in (tmp_path / "gpu_check.md").read_text()
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_without_a_gpu_the_full_check_refuses(gpu_check: ModuleType, tmp_path: Path) -> None:
    assert gpu_check.main(["--output", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


_FAKE_ABLATE = """
import sys, time
from pathlib import Path
table = Path(sys.argv[1]) / "ablation" / "quickstart"
table.mkdir(parents=True)
(table / "results.csv").write_text("pooled_size,seed,gmacs,test_miou,size\\n8,0,1.0,0.25,512x512\\n")
print("pool 8: done", flush=True)
if sys.argv[2] == "stall":
    time.sleep(60)
"""


@pytest.mark.parametrize("behaviour", ["finish", "stall"])
def test_the_ablation_stage_copies_the_table_and_stops_in_time(
    gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> None:
    args = gpu_check.parse_args(["--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")])
    ctx = gpu_check.make_context(args)
    ctx.dry_run = False
    ctx.ablation_command = [sys.executable, "-c", _FAKE_ABLATE, str(ctx.work_dir), behaviour]
    ctx.ablation_command += ["--config", "configs/quickstart.yaml"]
    for folder in (ctx.output, ctx.work_dir):
        folder.mkdir(parents=True)
    monkeypatch.setattr(gpu_check, "STOP_GRACE_S", 1.0)
    ctx.deadline = time.monotonic() + (30.0 if behaviour == "finish" else 3.0)
    stage = gpu_check.Stage("ablation")
    gpu_check.check_ablation(ctx, stage)
    assert stage.status == ("passed" if behaviour == "finish" else "partial")
    if behaviour == "stall":  # stopped at the deadline, like a pre-emption
        assert stage.results[0]["returncode"] is None and "out of time after pooled sizes [8]" in stage.reason
    assert stage.results[1]["pooled_size"] == 8 and "| 8 | 0 |" in stage.results[0]["table"]
    copied = ctx.output / "ablation"
    assert (copied / "results.csv").is_file() and "pool 8: done" in (copied / "ablation_log_tail.txt").read_text()
