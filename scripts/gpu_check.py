"""The one-command GPU check: mixed-precision fit, inference against SegFormer-B1, compile, the ablation.

    bash scripts/gpu_check.sh [--output gpu_check] [--work-dir runs/gpu_check] [--total-s 510]
    python scripts/gpu_check.py --dry-run --output /tmp/gpu_check     # tiny, on the CPU, in seconds

On one NVIDIA GPU, without network, within ``--total-s`` seconds (default 510: under 9 minutes
with the start-up), in this order, each stage with its own time budget:

1. ``fit``: a few optimizer steps of LRFormer-T on random 512x512 batches through
   :class:`lrsa_seg.task.SemanticSegmentationTask` and a Lightning ``Trainer`` in ``bf16-mixed`` and
   in ``16-mixed`` (GradScaler); every loss and every parameter afterwards must be finite.
2. ``inference``: the fused copy of LRFormer-T (:func:`lrsa_seg.models.fuse.fuse_for_inference`)
   against SegFormer-B1 (Hugging Face ``transformers``, random init from its config, logits
   upsampled to the input like ours), batch 1, at 512x512, 1024x1024 and 1024x2048, float32 and
   bfloat16 autocast: median and min latency of ``--runs`` forward passes after ``--warmup``
   (``torch.cuda.synchronize`` around each) and the peak memory (``torch.cuda.max_memory_allocated``,
   weights included, and the weights alone).
3. ``compile``: ``torch.compile`` of the fused model (inductor), static shapes at 512x512:
   compile time (the first call), latency against eager, and the largest difference to the eager
   output relative to its largest value (must be under ``--compile-tolerance``). With
   ``--compile-dynamic`` also ``dynamic=True`` at 512x512 and 1024x1024 while the stage's budget
   lasts (off by default: a compile cannot be stopped half-way, and its time is hard to foresee).
4. ``ablation``: ``lrsa-seg ablate --config configs/quickstart.yaml --pooled-sizes 8 16 32 48``
   at seed 0 with ``--trainer.accelerator gpu --trainer.devices 1``, its run folders in
   ``--work-dir`` (not in ``--output``: they hold checkpoints), with all the time left. Out of
   time, it is stopped like a pre-emption (its ``fit`` saves ``last.ckpt``) and marked
   ``partial``; the same command later resumes it. Its table is copied to ``<output>/ablation/``.

A stage or row that does not fit in its budget is skipped with the reason; a check that fails
makes the exit status 1 (``partial`` and ``skipped`` do not). ``<output>/gpu_check.json`` and
``gpu_check.md`` name the GPU, torch, CUDA and transformers versions, and are rewritten after every
stage. ``--dry-run`` runs the same code tiny on the CPU, for tests: ``lrformer_test``, one 64x64
input in float32, one ``bf16-mixed`` step, a static compile with the ``eager`` backend, no ablation.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 150  # ADE20K's, for both models
FULL_SIZES = ((512, 512), (1024, 1024), (1024, 2048))
DRY_SIZES = ((64, 64),)
BUDGETS = {"fit": 80.0, "inference": 90.0, "compile": 150.0, "ablation": float("inf")}
"""Seconds per stage; each also ends at the total deadline. The ablation gets all the time left."""
MIN_START = {"fit": 20.0, "inference": 20.0, "compile": 30.0, "ablation": 120.0}
"""A stage is skipped when less than this is left of the total."""
STOP_GRACE_S = 30.0  # how long a stopped ablation gets to save its checkpoint
LOG_TAIL_LINES = 200  # of the ablation's log (in --work-dir), copied to the output


@dataclass
class Stage:
    """One stage's outcome: ``passed``, ``failed``, ``partial`` (ran out of its budget) or ``skipped``."""

    name: str
    status: str = "skipped"
    reason: str = ""
    seconds: float = 0.0
    budget_s: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Context:
    """What every stage needs: where to run, how big, until when."""

    device: torch.device
    dry_run: bool
    model: str
    sizes: tuple[tuple[int, int], ...]
    dtypes: tuple[str, ...]
    fit_size: tuple[int, int]
    fit_steps: int
    fit_batch: int
    warmup: int
    runs: int
    compile_backend: str
    compile_dynamic: bool
    compile_tolerance: float
    output: Path
    work_dir: Path
    ablation_command: list[str]
    deadline: float = 0.0  # the current stage's, time.monotonic()

    def left(self) -> float:
        """Seconds left of the current stage's budget."""
        return self.deadline - time.monotonic()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _allocated_mib(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def timed(fn: Callable[[], Any], warmup: int, runs: int, device: torch.device) -> dict[str, float]:
    """Median and min wall time (ms) of ``fn()`` over ``runs`` calls after ``warmup``, synchronised."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": len(times)}


def environment(device: torch.device) -> dict[str, Any]:
    """GPU, versions and host of the run."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu_memory_gib": round(props.total_memory / 2**30, 1), "capability": f"{props.major}.{props.minor}"}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    from lrsa_seg import __version__

    info["lrsa_seg"] = __version__
    return info


# --- 1. Mixed-precision fit steps --------------------------------------------------------------
class _RandomSegmentation(torch.utils.data.Dataset):
    """``n`` random images with random labels (a fixed seed), in the datamodules' sample layout."""

    def __init__(self, n: int, size: tuple[int, int]) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, *size, generator=generator)
        self.masks = torch.randint(0, NUM_CLASSES, (n, *size), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "mask": self.masks[index]}


def fit_steps(ctx: Context, precision: str) -> dict[str, Any]:
    """``ctx.fit_steps`` training steps of the task under ``precision``; losses, step times, memory."""
    import lightning as L

    from lrsa_seg.task import SemanticSegmentationTask

    losses: list[float] = []
    times: list[float] = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
            _sync(ctx.device)
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, *args: Any) -> None:
            _sync(ctx.device)
            times.append((time.perf_counter() - self.start) * 1e3)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss.detach().float()))

    L.seed_everything(0, verbose=False)
    task = SemanticSegmentationTask(model=ctx.model, num_classes=NUM_CLASSES, warmup_iters=1, max_iters=ctx.fit_steps)
    data = torch.utils.data.DataLoader(
        _RandomSegmentation(ctx.fit_steps * ctx.fit_batch, ctx.fit_size), batch_size=ctx.fit_batch
    )
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    trainer = L.Trainer(
        accelerator="gpu" if ctx.device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=ctx.fit_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(ctx.work_dir / "fit"),
        callbacks=[Recorder()],
    )
    trainer.fit(task, train_dataloaders=data)
    params_finite = all(bool(torch.isfinite(p).all()) for p in task.parameters())
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return {
        "precision": precision,
        "model": ctx.model,
        "size": "x".join(map(str, ctx.fit_size)),
        "batch": ctx.fit_batch,
        "steps": len(losses),
        "losses": losses,
        "finite": len(losses) == ctx.fit_steps and all(map(_finite, losses)) and params_finite,
        "first_step_ms": times[0] if times else None,
        "step_ms_median": statistics.median(times[1:]) if len(times) > 1 else None,
        "peak_mib": _peak_mib(ctx.device),
        "grad_scale": float(scaler.get_scale()) if scaler is not None else None,
    }


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def check_fit(ctx: Context, stage: Stage) -> None:
    """bf16-mixed and 16-mixed fit steps with finite losses."""
    for precision in ("bf16-mixed", "16-mixed"):
        if ctx.device.type == "cpu" and precision == "16-mixed":
            stage.results.append({"precision": precision, "skipped": "float16 autocast training needs CUDA"})
            continue
        if ctx.device.type == "cuda" and precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            stage.results.append({"precision": precision, "skipped": "this GPU has no bfloat16"})
            continue
        if ctx.left() < MIN_START["fit"] / 2:
            stage.results.append({"precision": precision, "skipped": f"{ctx.left():.0f} s left of the stage"})
            stage.status, stage.reason = "partial", "out of time"
            continue
        try:
            result = fit_steps(ctx, precision)
        except Exception as err:  # a non-finite loss raises in the task
            result = {"precision": precision, "finite": False, "error": f"{type(err).__name__}: {err}"}
        stage.results.append(result)
        _free(ctx.device)
    if any(r.get("finite") is False for r in stage.results):
        stage.status, stage.reason = "failed", "a loss or parameter is not finite, or the fit raised"


# --- 2. Inference: fused LRFormer against SegFormer-B1 -----------------------------------------
def build_lrformer(ctx: Context) -> torch.nn.Module:
    """The fused inference copy of ``ctx.model`` (random init, seed 0), on the device."""
    from lrsa_seg.models import create_model
    from lrsa_seg.models.fuse import fuse_for_inference

    torch.manual_seed(0)
    model = create_model(ctx.model, num_classes=NUM_CLASSES).to(ctx.device).eval()
    return fuse_for_inference(model)  # on the model's device


def build_segformer(ctx: Context) -> torch.nn.Module:
    """SegFormer-B1 from its config (random init, no download), logits upsampled to the input."""
    import torch.nn.functional as F
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    from lrsa_seg.cli.benchmark.zoo import SEGFORMER

    class Upsampled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = SegformerForSemanticSegmentation(SegformerConfig(num_labels=NUM_CLASSES, **SEGFORMER["b1"]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.model(pixel_values=x).logits  # stride 4
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return Upsampled().eval().to(ctx.device)


def _inference_row(ctx: Context, model: torch.nn.Module, size: tuple[int, int], dtype: str) -> dict[str, Any]:
    """Latency of ``model`` on one random image; the peak memory counter is reset first."""
    x = torch.randn(1, 3, *size, device=ctx.device)
    autocast = torch.autocast(ctx.device.type, torch.bfloat16, enabled=dtype == "bf16")
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    try:
        with torch.inference_mode(), autocast:
            row: dict[str, Any] = timed(lambda: model(x), ctx.warmup, ctx.runs, ctx.device)
            row["output"] = list(model(x).shape)
    except Exception as err:  # out of memory, or a model that cannot take the size: recorded, not raised
        row = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
    return row


def check_inference(ctx: Context, stage: Stage) -> None:
    """Latency and peak memory of both models at every size, float32 and bfloat16 autocast."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        stage.reason = "transformers is not installed (pip install -e .[bench]): SegFormer-B1 rows skipped"
    builders = {f"{ctx.model} fused": build_lrformer}
    if not stage.reason:
        builders["segformer_b1"] = build_segformer
    dtypes = [d for d in ctx.dtypes if d != "bf16" or ctx.device.type == "cpu" or torch.cuda.is_bf16_supported()]
    last_row_s = 0.0
    for name, build in builders.items():
        _free(ctx.device)
        before = _allocated_mib(ctx.device)
        model = build(ctx)
        weights = None if before is None else _allocated_mib(ctx.device) - before
        for height, width in ctx.sizes:
            for dtype in dtypes:
                row: dict[str, Any] = {"model": name, "size": f"{height}x{width}", "dtype": dtype}
                stage.results.append(row)
                if ctx.left() < 2 * last_row_s + 1:
                    row["skipped"] = f"{ctx.left():.0f} s left of the stage"
                    stage.status, stage.reason = "partial", "out of time: some rows skipped"
                    continue
                start = time.monotonic()
                row |= _inference_row(ctx, model, (height, width), dtype)
                peak = _peak_mib(ctx.device)
                row |= {"peak_mib": None if peak is None else peak - before, "weights_mib": weights}
                _free(ctx.device)
                last_row_s = time.monotonic() - start
        del model
    ours = [r for r in stage.results if r["model"] == f"{ctx.model} fused"]
    if any("error" in r for r in ours) or any(r.get("output", [0, NUM_CLASSES])[1] != NUM_CLASSES for r in ours):
        stage.status, stage.reason = "failed", "the fused model failed at a size"
    elif stage.status == "skipped":
        stage.status = "passed"


# --- 3. torch.compile of the fused model -------------------------------------------------------
def _compiled_row(ctx: Context, model: torch.nn.Module, compiled: Any, size: tuple[int, int], mode: str) -> dict:
    x = torch.randn(1, 3, *size, device=ctx.device)
    with torch.inference_mode():
        reference = model(x)
        start = time.perf_counter()
        out = compiled(x)
        _sync(ctx.device)
        first_call_s = time.perf_counter() - start
        eager = timed(lambda: model(x), ctx.warmup, ctx.runs, ctx.device)
        fast = timed(lambda: compiled(x), ctx.warmup, ctx.runs, ctx.device)
    error = float((out.float() - reference.float()).abs().max() / reference.float().abs().max().clamp(min=1e-12))
    agree = float((out.argmax(1) == reference.argmax(1)).float().mean())
    return {
        "mode": mode,
        "size": f"{size[0]}x{size[1]}",
        "first_call_s": first_call_s,
        "eager_median_ms": eager["median_ms"],
        "compiled_median_ms": fast["median_ms"],
        "speedup": eager["median_ms"] / fast["median_ms"],
        "max_rel_error": error,
        "argmax_agreement": agree,
        "equal": error <= ctx.compile_tolerance,
    }


def check_compile(ctx: Context, stage: Stage) -> None:
    """Static compile at the first size; then ``dynamic=True`` at the first two sizes, if time is left."""
    import torch._dynamo

    model = build_lrformer(ctx)
    plans = [("static", False, ctx.sizes[:1])]
    if ctx.compile_dynamic:
        plans.append(("dynamic", True, ctx.sizes[:2]))
    for mode, dynamic, sizes in plans:
        torch._dynamo.reset()
        compiled = torch.compile(model, dynamic=dynamic, backend=ctx.compile_backend)
        for size in sizes:
            spent = max((r.get("first_call_s", 0.0) for r in stage.results), default=0.0)
            if stage.results and ctx.left() < 4 * spent + 5:  # dynamic shapes trace several times longer
                stage.results.append({"mode": mode, "size": f"{size[0]}x{size[1]}", "skipped": "out of time"})
                stage.status, stage.reason = "partial", "out of time: a compile was skipped"
                continue
            try:
                stage.results.append(_compiled_row(ctx, model, compiled, size, mode))
            except Exception as err:
                message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                stage.results.append({"mode": mode, "size": f"{size[0]}x{size[1]}", "error": message})
            _free(ctx.device)
    if any("error" in r or r.get("equal") is False for r in stage.results):
        stage.status, stage.reason = "failed", "compile raised, or its output differs from eager"
    elif stage.status == "skipped":
        stage.status = "passed"


# --- 4. The quickstart ablation ----------------------------------------------------------------
def check_ablation(ctx: Context, stage: Stage) -> None:
    """Run ``lrsa-seg ablate`` until it ends or the time is up; copy its table to the output."""
    from lrsa_seg.ablation import markdown_table, read_rows

    stage.results.append({"command": " ".join(ctx.ablation_command)})
    if ctx.dry_run:
        stage.reason = "dry run: the ablation trains for minutes (tests/cli/test_ablate.py runs it tiny)"
        return
    log = ctx.work_dir / "ablation.log"
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen(ctx.ablation_command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            returncode: int | None = proc.wait(timeout=max(1.0, ctx.left() - STOP_GRACE_S))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # passed on to its fit, which saves last.ckpt
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            returncode = None
    table = ctx.work_dir / "ablation" / Path(ctx.ablation_command[ctx.ablation_command.index("--config") + 1]).stem
    rows = read_rows(table / "results.csv") if (table / "results.csv").is_file() else []
    copied = ctx.output / "ablation"
    copied.mkdir(exist_ok=True)
    for name in ("results.csv", "results.md", "pool_size.png"):
        if (table / name).is_file():
            shutil.copy2(table / name, copied / name)
    lines = log.read_text(errors="replace").splitlines()
    (copied / "ablation_log_tail.txt").write_text("\n".join(lines[-LOG_TAIL_LINES:]) + "\n")
    stage.results += [row.to_dict() for row in rows]
    stage.results[0] |= {"returncode": returncode, "log": str(log), "table": markdown_table(rows) if rows else ""}
    if returncode is None:
        done = sorted(r.pooled_size for r in rows)
        stage.status, stage.reason = "partial", f"out of time after pooled sizes {done}; rerun to resume"
    elif returncode != 0:
        stage.status, stage.reason = "failed", f"exit status {returncode}; see ablation/ablation_log_tail.txt"
    else:
        stage.status = "passed"


CHECKS: dict[str, Callable[[Context, Stage], None]] = {
    "fit": check_fit,
    "inference": check_inference,
    "compile": check_compile,
    "ablation": check_ablation,
}


# --- Report ------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, list):
        return ", ".join(map(_cell, value))
    return "-" if value is None else str(value).replace("|", "/").replace("\n", " ")


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


COLUMNS = {
    "fit": (
        "precision", "size", "batch", "steps", "losses", "finite", "first_step_ms", "step_ms_median", "peak_mib",
        "grad_scale", "skipped", "error",
    ),
    "inference": (
        "model", "size", "dtype", "median_ms", "min_ms", "runs", "peak_mib", "weights_mib", "skipped", "error",
    ),
    "compile": (
        "mode", "size", "first_call_s", "eager_median_ms", "compiled_median_ms", "speedup", "max_rel_error",
        "argmax_agreement", "equal", "skipped", "error",
    ),
}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the machine, one line per stage, then each stage's rows."""
    env = report["environment"]
    lines = [
        f"# GPU check: {env['device']}",
        "",
        f"torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), transformers {env['transformers']}, "
        f"lrsa-seg {env['lrsa_seg']}; {report['started']}; {report['seconds']:.0f} s of {report['total_s']:.0f} s"
        + ("; **dry run** (tiny, CPU)" if report["dry_run"] else ""),
        "",
        f"**{'PASSED' if report['passed'] else 'FAILED'}**",
        "",
        _table(report["stages"], ("name", "status", "seconds", "budget_s", "reason")),
    ]
    for stage in report["stages"]:
        rows = stage["results"]
        if not rows:
            continue
        lines += ["", f"## {stage['name']}", ""]
        if stage["name"] == "ablation":
            lines += [f"`{rows[0]['command']}`", "", rows[0].get("table", "")]
        else:
            lines.append(_table(rows, [c for c in COLUMNS[stage["name"]] if any(c in r for r in rows)]))
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], output: Path) -> None:
    """``gpu_check.json`` and ``gpu_check.md`` in ``output``."""
    (output / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / "gpu_check.md").write_text(markdown(report))


# --- Command -----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--output", type=Path, default=REPO / "gpu_check", help="folder of the JSON and Markdown")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "gpu_check", help="runs and checkpoints")
    parser.add_argument("--total-s", type=float, default=510.0, help="time for all stages together (seconds)")
    parser.add_argument("--stages", nargs="+", choices=list(CHECKS), default=list(CHECKS), help="stages to run")
    parser.add_argument("--dry-run", action="store_true", help="tiny, on the CPU, no ablation: for tests")
    parser.add_argument("--warmup", type=int, default=None, help="untimed passes (default 10; dry run 0)")
    parser.add_argument("--runs", type=int, default=None, help="timed passes, median (default 30; dry run 1)")
    parser.add_argument("--compile-dynamic", action="store_true", help="also compile with dynamic=True")
    parser.add_argument("--compile-tolerance", type=float, default=1e-2, help="max |compiled - eager| / max |eager|")
    parser.add_argument("--ablation-config", default="configs/quickstart.yaml", help="config of lrsa-seg ablate")
    parser.add_argument("--pooled-sizes", nargs="+", default=["8", "16", "32", "48"], help="the ablation's sizes")
    parser.add_argument(
        "--ablation-override", action="append", default=[], metavar="ARG", help="extra ablate argument (repeatable)"
    )
    return parser.parse_args(argv)


def make_context(args: argparse.Namespace) -> Context:
    """The run's settings: the full check on the GPU, or the tiny one on the CPU (``--dry-run``)."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    ablate = [sys.executable, "-m", "lrsa_seg", "ablate", "--config", args.ablation_config, "--pooled-sizes"]
    ablate += [*args.pooled_sizes, "--output-dir", str(args.work_dir.resolve() / "ablation")]
    ablate += ["--trainer.accelerator", "gpu", "--trainer.devices", "1", *args.ablation_override]
    return Context(
        device=device,
        dry_run=args.dry_run,
        model="lrformer_test" if args.dry_run else "lrformer_t",
        sizes=DRY_SIZES if args.dry_run else FULL_SIZES,
        dtypes=("fp32",) if args.dry_run else ("fp32", "bf16"),
        fit_size=(64, 64) if args.dry_run else (512, 512),
        fit_steps=1 if args.dry_run else 6,
        fit_batch=1 if args.dry_run else 2,
        warmup=args.warmup if args.warmup is not None else (0 if args.dry_run else 10),
        runs=args.runs if args.runs is not None else (1 if args.dry_run else 30),
        compile_backend="eager" if args.dry_run else "inductor",
        compile_dynamic=args.compile_dynamic,
        compile_tolerance=args.compile_tolerance,
        output=args.output.resolve(),
        work_dir=args.work_dir.resolve(),
        ablation_command=ablate,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stages within the total time; 0 if no check failed, 1 if one did, 2 without a GPU."""
    start = time.monotonic()
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; --dry-run runs the tiny CPU version", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # SegFormer is built from its config: nothing to download
    ctx = make_context(args)
    ctx.output.mkdir(parents=True, exist_ok=True)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    total_deadline = start + args.total_s
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "dry_run": args.dry_run,
        "total_s": args.total_s,
        "environment": environment(ctx.device),
        "stages": [],
        "passed": True,
        "seconds": 0.0,
    }
    for name, check in CHECKS.items():
        stage = Stage(name)
        left = total_deadline - time.monotonic()
        stage.budget_s = round(min(BUDGETS[name], left), 1)
        if name not in args.stages:
            stage.reason = "not selected (--stages)"
        elif left < MIN_START[name] and not args.dry_run:
            stage.reason = f"only {left:.0f} s left of --total-s {args.total_s:.0f}"
        else:
            ctx.deadline = time.monotonic() + stage.budget_s
            stage_start = time.monotonic()
            print(f"gpu_check: {name} (budget {stage.budget_s:.0f} s)", flush=True)
            try:
                check(ctx, stage)
                if stage.status == "skipped" and not stage.reason:
                    stage.status = "passed"
            except Exception as err:
                stage.status, stage.reason = "failed", f"{type(err).__name__}: {err}"
                stage.results.append({"error": traceback.format_exc(limit=5)})
            stage.seconds = round(time.monotonic() - stage_start, 1)
            _free(ctx.device)
        report["stages"].append(asdict(stage))
        report["passed"] = all(s["status"] != "failed" for s in report["stages"])
        report["seconds"] = time.monotonic() - start
        write_report(report, ctx.output)
        print(f"gpu_check: {name}: {stage.status} {stage.reason}", flush=True)
    print(markdown(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
