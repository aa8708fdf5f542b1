"""Issue 7: the optimised paths give the same outputs (no timing thresholds here, behaviour only).

The oracle is the straightforward implementation in :mod:`lrsa_seg.models.reference`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrsa_seg.cli import main
from lrsa_seg.models import create_model, from_official, pooled_grid
from lrsa_seg.models.fuse import FusedSegmentor, fuse_for_inference
from lrsa_seg.models.pooling import pool_by_matmul, round_ratio
from lrsa_seg.models.reference import reference_like

from ..conftest import DATA

REFERENCES = ["lrformer_tiny_pool16.pt", "lrformer_tiny_pool8_wide.pt"]
# Sizes where every feature map stays on the same side of the conv backend's size heuristics,
# so one dynamic graph serves all of them (smaller maps would re-trace once, by design of torch).
SIZES = [(96, 128), (128, 96), (77, 150)]


def _random_eval_stats(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and LayerScales, so every fold is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.normal_(1, 0.2, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def _rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1.0))


def test_pooled_grid_integer_rule_equals_python_round() -> None:
    # The pooled-grid rule (docs/lrsa.md#pooled-grid) in float64 (numpy rounds half to even like Python)
    # against the integer form.
    n = 1100  # includes sides of 1000, where round(x + 0.001) meets exact halves
    h = np.arange(1, n + 1, dtype=np.int64)[:, None]
    w = np.arange(1, n + 1, dtype=np.int64)[None, :]
    for p in (1, 4, 6, 8, 11, 16, 22, 32, 48):
        wide = w >= h
        ratio = np.maximum(1, np.round(np.where(wide, w, h) * p / np.where(wide, h, w) + 0.001)).astype(np.int64)
        rows, cols = np.where(wide, p, ratio), np.where(wide, ratio, p)
        ours_rows = np.maximum(p, round_ratio(h * p, w))
        ours_cols = np.maximum(p, round_ratio(w * p, h))
        assert (ours_rows == rows).all() and (ours_cols == cols).all(), p
    assert pooled_grid(1000, 2499, 1) == (1, round(2499 / 1000 + 0.001)) == (1, 2)
    assert pooled_grid(1409, 1000, 11) == (round(1409 * 11 / 1000 + 0.001), 11)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_pooling_by_matmul_equals_adaptive_pooling(channels_last: bool) -> None:
    x = torch.randn(2, 5, 37, 23)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sizes = [(16, 10), (11, 7), (4, 3), (48, 30)]  # the last pools up (repeats pixels)
    for got, size in zip(pool_by_matmul(x, sizes), sizes):
        assert torch.allclose(got, F.adaptive_avg_pool2d(x, size), atol=1e-6)
    # With a BatchNorm's per-channel affine folded in (the fused head), in either layout.
    scale, shift = torch.rand(5) + 0.5, torch.randn(5)
    for got, size in zip(pool_by_matmul(x, sizes, (scale, shift)), sizes):
        expected = F.adaptive_avg_pool2d(x, size) * scale.view(-1, 1, 1) + shift.view(-1, 1, 1)
        assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_and_fused_match_official_vectors(name: str) -> None:
    ref = torch.load(DATA / name, weights_only=True)
    model = from_official(ref["config"], ref["state_dict"])
    with torch.no_grad():
        assert (reference_like(model)(ref["input"]) - ref["logits_upsampled"]).abs().max() <= 1e-5
    fused = fuse_for_inference(model)
    with torch.inference_mode():
        features = fused.backbone(ref["input"])
        for ours, theirs in zip(features, ref["features"]):
            assert (ours - theirs).abs().max() <= 1e-4
        assert (fused(ref["input"]) - ref["logits_upsampled"]).abs().max() <= 1e-4


@pytest.mark.parametrize("size", [(96, 128), (77, 150), (150, 64)])
def test_optimised_paths_equal_reference_oracle(size: tuple[int, int]) -> None:
    model = _random_eval_stats(create_model("lrformer_test", num_classes=7))
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        oracle = reference_like(model)(x)
        plain = model(x)
        fused = fuse_for_inference(model)(x)
        fused_nchw = fuse_for_inference(model, channels_last=False)(x)
        channels_last = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert _rel_max(plain, oracle) <= 1e-5
    assert _rel_max(channels_last, plain) <= 1e-5
    assert _rel_max(fused, plain) <= 1e-4
    assert _rel_max(fused_nchw, fused) <= 1e-4
    assert fused.is_contiguous(memory_format=torch.channels_last)
    assert fused_nchw.is_contiguous()


def test_fuse_leaves_the_model_alone_and_is_frozen() -> None:
    model = create_model("lrformer_test", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert isinstance(fused, FusedSegmentor) and fused.num_classes == 3
    assert not fused.training and not any(p.requires_grad for p in fused.parameters())
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(TypeError, match="Segmentor or an LRFormer"):
        fuse_for_inference(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_fused_backbone_alone() -> None:
    model = _random_eval_stats(create_model("lrformer_test", num_classes=3))
    x = torch.randn(1, 3, 96, 160)
    with torch.inference_mode():
        for ours, theirs in zip(fuse_for_inference(model.backbone)(x), model.backbone(x)):
            assert _rel_max(ours, theirs) <= 1e-4


@pytest.mark.parametrize(
    "scope",
    [
        "fused-block",
        pytest.param("fused-head-block", marks=pytest.mark.slow),  # the pooling's BatchNorm: also unit-tested
        pytest.param("fused-model", marks=pytest.mark.slow),
        pytest.param("model", marks=pytest.mark.slow),
    ],
)  # Dynamo's symbolic-shape tracing of a whole model takes 1-4 minutes on 2 cores; one fused block
# (the part whose pooled grid, pyramid and upsampling sizes depend on H and W) takes seconds.
def test_compile_fullgraph_dynamic_one_graph_for_all_sizes(scope: str) -> None:
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = _random_eval_stats(create_model("lrformer_test", num_classes=3, depths=(1, 1, 1, 1)))
    if scope == "fused-block":
        eager, channels, stride = fuse_for_inference(model).backbone.stages[1].blocks[0], 32, 8
    elif scope == "fused-head-block":  # its BatchNorm applied by the pooling, channels-last as in the model
        eager, channels, stride = fuse_for_inference(model).decode_head.block1, 32, 8
    else:
        eager, channels, stride = (fuse_for_inference(model) if scope == "fused-model" else model), 3, 1
    counter = CompileCounter()
    compiled = torch.compile(eager, backend=counter, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for height, width in SIZES:
            x = torch.randn(1, channels, height // stride, width // stride)
            if scope == "fused-head-block":
                x = x.contiguous(memory_format=torch.channels_last)
            assert _rel_max(compiled(x.clone()), eager(x.clone())) <= 1e-4  # the fused block adds in place
    assert counter.frame_count == 1  # no graph break, no recompilation per size
    torch._dynamo.reset()


def test_lightning_predict_runs_under_inference_mode() -> None:
    from lrsa_seg.task import SemanticSegmentationTask

    task = SemanticSegmentationTask(model="lrformer_test", num_classes=3)
    seen: list[bool] = []
    predict_step = task.predict_step

    def spy(batch: dict, batch_idx: int) -> dict:
        seen.append(torch.is_inference_mode_enabled())
        return predict_step(batch, batch_idx)

    task.predict_step = spy  # type: ignore[method-assign]
    images = [{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "name": "a.png"}]
    loader = torch.utils.data.DataLoader(images, batch_size=1)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.predict(task, loader)
    assert seen == [True]


def test_segformer_peer_builds_and_upsamples() -> None:
    pytest.importorskip("transformers")
    from lrsa_seg.cli.benchmark.zoo import build_model

    model, _ = build_model("segformer_b0", num_classes=5)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 5, 64, 96)


@pytest.mark.slow  # a worker process per row plus the matmul worker: about a minute on 2 cores
def test_benchmark_cli_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["benchmark", "--models", "lrformer_test", "lrformer_test_fused", "lrformer_test_ref"]
    argv += ["--sizes", "64", "96", "--repeats", "1", "--warmup", "0", "--train-batch", "2", "--output", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "benchmark.json").read_text())
    rows = {(r["model"], r["mode"]): r for r in report["rows"]}
    for name in ("lrformer_test", "lrformer_test_fused", "lrformer_test_ref", "matmul_2048"):
        assert rows[name, "infer"]["n"] == 1 and rows[name, "infer"]["median_s"] > 0
        assert rows[name, "infer"]["peak_rss_mib"] > 0
    assert rows["lrformer_test", "infer"]["gflops"] > 0
    assert ("lrformer_test_fused", "train") not in rows  # inference-only models are not trained
    assert rows["lrformer_test", "train"]["n"] == 1
    assert report["machine"]["threads"] == 2
    table = (out / "benchmark.md").read_text()
    assert "| lrformer_test_fused | 64x96 |" in table and "Training step" in table


@pytest.mark.slow  # the dynamo-based exporter takes minutes on a 2-core machine
def test_onnx_export_dynamic_size_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from lrsa_seg.models.export import max_abs_diff
    from lrsa_seg.models.runtime import load_exported

    model = _random_eval_stats(create_model("lrformer_test", num_classes=5))
    weights, path = tmp_path / "weights.pt", tmp_path / "model.onnx"
    torch.save(model.state_dict(), weights)
    argv = ["export", "--model", "lrformer_test", "--weights", str(weights), "--format", "onnx"]
    assert main([*argv, "--output", str(path), "--fuse", "--check"]) == 0  # --check with no sizes: skip it
    # One graph, three sizes (77 x 150 is not a multiple of 32), against the unfused PyTorch model.
    assert max(max_abs_diff(load_exported(path, "onnxruntime"), model, [(96, 128), (77, 150), (160, 96)])) <= 1e-4


_FAULTS_OF_WARM_PASSES = """
import resource, torch
from lrsa_seg.allocator import apply_allocator_setting
print(apply_allocator_setting())
from lrsa_seg.models import create_model, fuse_for_inference
model = fuse_for_inference(create_model("lrformer_test", num_classes=19))
x = torch.randn(1, 3, 1024, 1024)  # the 80 MiB of logits are above glibc's largest mmap threshold
with torch.inference_mode():
    model(x)
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.parametrize("setting", ["retain", "system"])
def test_allocator_setting_reuses_freed_pages(setting: str) -> None:
    # Warm passes of a model: with "retain" they reuse the pages of the earlier passes; with
    # glibc as it is, every block above the mmap threshold is unmapped on free and faulted in again.
    # The median of five: with "retain" an early warm pass may still grow the heap once (32 MiB
    # seen, in pass 2 or 3 depending on thread timing) when a block does not fit a freed hole.
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if setting == "system" and thp.is_file() and "[always]" in thp.read_text():
        pytest.skip("with transparent huge pages always on, a fresh mapping faults per 2 MiB, not per page")
    env = dict(os.environ, LRSA_SEG_ALLOCATOR=setting)
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_OF_WARM_PASSES], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == setting
    assert len(out) == 6
    faults = statistics.median(int(n) for n in out[1:])
    logits_pages = 19 * 1024 * 1024 * 4 // 4096
    if setting == "retain":
        assert faults < logits_pages // 100, out
    else:
        assert faults >= logits_pages, out


def test_bad_allocator_setting_is_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("LRSA_SEG_ALLOCATOR", "jemalloc")
    assert main(["fit", "--help"]) == 2
    assert "LRSA_SEG_ALLOCATOR='jemalloc': expected 'retain' or 'system'" in capsys.readouterr().err
