"""``lrsa-seg benchmark --modes pooled``: training-step time per pooled size (issue 22). Behaviour only, no timings."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest

from lrsa_seg.cli import main
from lrsa_seg.cli.benchmark import pooled_models
from lrsa_seg.cli.benchmark.report import pooled_markdown
from lrsa_seg.cli.benchmark.zoo import build_model
from lrsa_seg.models.lrsa import LowResolutionSelfAttention


@pytest.mark.slow  # two worker processes: 12-15 s (its parts run by default: the tests below)
def test_pooled_mode_times_each_pooled_size_in_one_run(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["benchmark", "--modes", "pooled", "--pooled-model", "lrformer_test", "--pooled-sizes", "8"]
    argv += ["--train-sizes", "64", "64", "--train-batch", "1", "--repeats", "1", "--warmup", "0"]
    argv += ["--threads", "1", "--num-classes", "3", "--output", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "benchmark.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"lrformer_test_pool16", "lrformer_test_pool8"}  # 16, the reference, is always timed
    for pooled in (8, 16):
        row = rows[f"lrformer_test_pool{pooled}"]
        assert row["mode"] == "pooled" and row["size"] == [64, 64] and row["batch"] == 1
        assert row["n"] == 1 and row["median_s"] > 0 and "error" not in row
        assert row["overrides"] == dict(pooled_sizes=pooled, head_pooled_size=16, drop_path_rate=0.0)
    table = (out / "benchmark.md").read_text()
    assert "### Training step by pooled size (forward + backward + AdamW), batch 1, 64x64" in table
    assert "| lrformer_test_pool16 | 16 | on |" in table and table.count("| 1.00 |") >= 1


def test_pooled_rows_and_ratios() -> None:
    args = Namespace(pooled_sizes=[48, 8], pooled_model="lrformer_t", pooled_head_size=16, pooled_full=True)
    names = list(pooled_models(args))
    assert names[:3] == ["lrformer_t_pool16", "lrformer_t_pool8", "lrformer_t_pool48"]
    assert names[3:] == ["lrformer_t_pool16_full", "lrformer_t_pool8_full", "lrformer_t_pool48_full"]
    rows = [
        dict(model=name, size=[176, 224], batch=4, n=3, median_s=t, overrides=dict(pooled_sizes=p))
        for name, t, p in [("m_pool16", 2.0, 16), ("m_pool48", 5.0, 48), ("m_pool48_full", 9.0, 48)]
    ]
    lines = pooled_markdown(rows)
    assert any(line.startswith("| m_pool48 | 48 | on | 5.000 |") and line.endswith("| 2.50 |") for line in lines)
    assert any(line.startswith("| m_pool48_full | 48 | off | 9.000 |") and line.endswith("| 4.50 |") for line in lines)


@pytest.mark.parametrize("full", [False, True])
def test_pooled_row_builds_the_model_with_its_pooled_size(full: bool) -> None:
    name = "lrformer_test_pool48" + ("_full" if full else "")
    model, _ = build_model(name, 3, dict(pooled_sizes=48, head_pooled_size=16, drop_path_rate=0.0))
    attns = [m for m in model.modules() if isinstance(m, LowResolutionSelfAttention)]
    assert [a.pooled_size for a in attns] == [48] * 5 + [16] * 2  # lrformer_test: 5 backbone blocks, 2 head blocks
    assert all(a.exact_shortcut is not full for a in attns)
    assert model.training  # timed as a training step
