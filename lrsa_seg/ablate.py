"""``lrsa-seg ablate``: the pool-size ablation as one command, one W&B run per pooled size.

For every pooled size ``N`` the backbone's LRSA pooled size is set to ``N`` in all four stages
(``model.init_args.pooled_sizes``); the head's stays as configured unless ``--head-pooled-size``
is given. Each size is one ``fit`` and one ``test`` of the best checkpoint, in its own folder
``<output-dir>/<name>/runs/pool<N>/``; the table ``results.csv`` / ``results.md`` and the plot
``pool_size.png`` are written to ``<output-dir>/<name>/``.

How the runs are executed: **one subprocess per Lightning command** (``python -m lrsa_seg fit
--config runs/pool<N>/run_config.yaml``, then ``test``), not ``lrsa_seg.cli.run_lightning`` in
this process. Reasons:

* Isolation. An ablation compares runs, so nothing may leak from one run into the next: global
  seeds and RNG streams, ``torch.backends`` flags a config may set (``deterministic``,
  ``benchmark``), float32 matmul precision, the W&B run of the process (a second
  ``wandb.init`` in one process needs an explicit ``finish``), allocator caches and CUDA memory,
  dataloader workers. A fresh process per command gives every size the same starting state.
* DDP works. Lightning's DDP launcher starts the other ranks by re-running the current
  command line; in a subprocess that is ``lrsa-seg fit ...``, exactly as when run by hand, while
  in this process it would re-run the whole ablation on every rank.
* One failing or killed run cannot corrupt the state of the next; the parent only reads files.
* Every run is reproducible by hand: its folder holds the complete resolved config and the
  printed command line.

The cost is the start-up of two Python processes per size (a few seconds), negligible next to
training.

Overrides such as ``--trainer.max_epochs 1`` are applied first; the resolved config
(``lrsa-seg fit --print_config``) is then edited as a whole, because LightningCLI can address a
list element such as the second ``ModelCheckpoint`` only through the last one. Every path of the
trainer's callbacks, loggers and profiler (``dirpath``, ``save_dir``, ``output_dir`` ...) is moved
into the run folder (keeping its place relative to ``trainer.default_root_dir``), a
``WandbLogger`` gets the ablation's ``group``, a ``name`` per size and a fixed ``id`` (so ``fit``,
``test`` and a resumed ``fit`` log to one W&B run), checkpoints ``best`` (on ``val/mIoU``) and
``last`` are added if the config lacks them, and :class:`AblationRecorder` is appended to the
callbacks.

Resuming: a size whose ``result.json`` exists (written atomically once its test is done) is
skipped; any other size whose folder holds an earlier attempt runs ``fit --ckpt_path last``
(continuing from ``last.ckpt``, or finishing at once when training was complete), then ``test``.
A note is printed when the config of a skipped or resumed size differs from this invocation's.
The run folders are not committed but ``results.csv`` is: a size with a row there and no run
folder (a fresh clone of a repository holding the table) is skipped too, and its row kept.
The tables list every finished size in the ablation's folder, so sizes can be added later.

The parameters, MACs and latency are measured in the ``test`` process by
:class:`AblationRecorder`, on the test device (GPU when the trainer uses one) with the trainer's
precision, and logged to the run's loggers, so W&B holds them next to the metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .convert import write_atomic
from .flops import count_macs, count_params
from .models.lrsa import LowResolutionSelfAttention
from .reliability import ConfigError

MONITOR = "val/mIoU"
TEST_METRIC = "test/mIoU"
RUN_CONFIG = "run_config.yaml"
RESULT = "result.json"
FIT_SUMMARY = "fit_summary.json"
TEST_SUMMARY = "test_summary.json"
# init_args that name an output file or folder (callbacks, loggers, profilers).
PATH_ARGS = ("dirpath", "save_dir", "dir", "output_dir", "log_dir", "root_dir")
CHECKPOINT_CLASS = "lightning.pytorch.callbacks.ModelCheckpoint"
COLUMNS = (
    "pooled_size",
    "head_pooled_size",
    "params",
    "gmacs",
    "latency_ms",
    "val_miou",
    "test_miou",
    "train_time_s",
    "epochs",
    "steps",
    "size",
    "device",
    "precision",
)


# --- measurements and the callback that runs inside each fit / test process ---------------------
def median_latency(fn: Callable[[], Any], warmup: int = 3, runs: int = 10, device: torch.device | None = None) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls.

    CUDA work is synchronised before each clock read, so the time covers the kernels.
    """
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so that readers see the old file or the complete new one, never part."""
    write_atomic(path, lambda f: json.dump(data, f, indent=2), binary=False)


def _scalar(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class AblationRecorder(Callback):
    """Record what the ablation table needs, from inside the ``fit`` and ``test`` processes.

    ``fit`` writes ``fit_summary.json``: the best ``val/mIoU`` over validation epochs, the training
    time (validation excluded) summed over resumed sessions (both are kept in the checkpoints,
    so a resumed fit continues them), epochs, steps and the best / last checkpoint paths.
    ``test`` writes ``test_summary.json``: the test metrics, parameters, multiply-accumulates at
    ``measure_size`` (:func:`lrsa_seg.flops.count_macs`) and the median inference latency of the
    network at that size (batch 1, on the test device, under the trainer's precision); the model
    numbers are also logged to the trainer's loggers (``model/*``). Only global rank 0 writes.

    Args:
        output_dir: folder of the summaries (the run folder).
        measure_size: ``(height, width)`` of the MACs count and the latency.
        warmup_runs: untimed forward passes before timing.
        latency_runs: timed forward passes (the median is reported).
    """

    def __init__(
        self,
        output_dir: str,
        measure_size: tuple[int, int] = (512, 512),
        warmup_runs: int = 3,
        latency_runs: int = 10,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.measure_size = (int(measure_size[0]), int(measure_size[1]))
        self.warmup_runs = warmup_runs
        self.latency_runs = latency_runs
        self.best_val: float | None = None
        self.train_time_s = 0.0  # finished training time of earlier sessions and epochs
        self._session_start: float | None = None
        self._val_start: float | None = None
        self._val_time = 0.0  # validation time of the current session

    def _elapsed(self) -> float:
        if self._session_start is None:
            return self.train_time_s
        return self.train_time_s + time.perf_counter() - self._session_start - self._val_time

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint, so that a resumed fit continues the time and the best score."""
        return {"best_val": self.best_val, "train_time_s": self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the best score and the training time of the interrupted run."""
        self.best_val = state_dict.get("best_val")
        self.train_time_s = float(state_dict.get("train_time_s", 0.0))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start this session's clock."""
        self._session_start, self._val_time = time.perf_counter(), 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validation time is not training time."""
        if not trainer.sanity_checking:
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Track the best validation score (before the checkpoint callbacks save this state)."""
        if trainer.sanity_checking:
            return
        if self._val_start is not None:
            self._val_time += time.perf_counter() - self._val_start
            self._val_start = None
        score = trainer.callback_metrics.get(MONITOR)
        if score is not None and math.isfinite(_scalar(score)):
            self.best_val = max(_scalar(score), self.best_val if self.best_val is not None else -math.inf)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Fold this session's time into the total."""
        self.train_time_s, self._session_start = self._elapsed(), None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write ``fit_summary.json``."""
        if not trainer.is_global_zero:
            return
        checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
        best = next((cb.best_model_path for cb in checkpoints if cb.monitor == MONITOR and cb.best_model_path), "")
        last = next((cb.last_model_path or cb.best_model_path for cb in checkpoints if cb.monitor is None), "")
        write_json_atomic(
            self.output_dir / FIT_SUMMARY,
            {
                "best_val_miou": self.best_val,
                "train_time_s": self.train_time_s,
                "epochs": trainer.current_epoch,
                "steps": trainer.global_step,
                "best_checkpoint": best,
                "last_checkpoint": last,
                "resumed_from": trainer.ckpt_path,
            },
        )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure the network and write ``test_summary.json``."""
        if not trainer.is_global_zero:
            return
        network = getattr(pl_module, "model", pl_module)
        height, width = self.measure_size
        macs, _ = count_macs(network, height, width)
        was_training = network.training
        network.eval()
        x = torch.randn(1, 3, height, width, device=pl_module.device)
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            latency = median_latency(lambda: network(x), self.warmup_runs, self.latency_runs, pl_module.device)
        network.train(was_training)
        device = pl_module.device
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
        model_numbers = {
            "model/params": count_params(network),
            "model/gmacs": macs / 1e9,
            "model/latency_ms": latency * 1e3,
        }
        for logger in trainer.loggers:
            logger.log_metrics(model_numbers, step=trainer.global_step)
        write_json_atomic(
            self.output_dir / TEST_SUMMARY,
            {
                "metrics": {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
                "params": model_numbers["model/params"],
                "macs": macs,
                "latency_ms": model_numbers["model/latency_ms"],
                "size": [height, width],
                "device": device_name,
                "precision": str(trainer.precision),
                "warmup_runs": self.warmup_runs,
                "latency_runs": self.latency_runs,
                "ckpt_path": trainer.ckpt_path,
                **pooled_sizes_of(network),
            },
        )


def pooled_sizes_of(network: torch.nn.Module) -> dict[str, Any]:
    """The pooled sizes a network really uses: ``{"backbone_pooled_sizes": [...], "head_pooled_size": n}``.

    Backbone sizes are the distinct ones of its LRSA modules (one value when all stages share it);
    the head's is ``None`` when the network has no LRSA under ``decode_head`` or several sizes there.
    """
    sizes: dict[bool, set[int]] = {True: set(), False: set()}
    for name, module in network.named_modules():
        if isinstance(module, LowResolutionSelfAttention):
            sizes[name.startswith("decode_head.")].add(module.pooled_size)
    head = sorted(sizes[True])
    return {"backbone_pooled_sizes": sorted(sizes[False]), "head_pooled_size": head[0] if len(head) == 1 else None}


# --- the run configs ---------------------------------------------------------------------------
def resolve_config(configs: Sequence[str], overrides: Sequence[str]) -> dict[str, Any]:
    """The complete ``fit`` config of ``--config`` files plus overrides, as a dict.

    Raises ``SystemExit`` with LightningCLI's message when the config or an override is invalid.
    """
    from .cli import run_lightning

    args = ["fit", *(a for c in configs for a in ("--config", c)), *overrides, "--print_config"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        # LightningCLI warns when args are given while sys.argv holds other ones (ours).
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            run_lightning(args)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise
    return yaml.safe_load(out.getvalue())


def _subclass_nodes(node: Any) -> list[dict[str, Any]]:
    """Every ``{"class_path": ..., "init_args": {...}}`` in a config tree, outermost first."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str) and isinstance(node.get("init_args"), dict):
            found.append(node)
        for value in node.values():
            found += _subclass_nodes(value)
    elif isinstance(node, list):
        for value in node:
            found += _subclass_nodes(value)
    return found


def _as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def redirect_paths(trainer: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """Move the trainer's output paths into ``run_dir``, in place; returns ``{old: new}``.

    ``default_root_dir`` becomes ``run_dir``; a path of a callback, logger or profiler
    (:data:`PATH_ARGS`) under the old ``default_root_dir`` keeps its relative place, any other
    one becomes ``run_dir / <its last component>`` (made unique). ``None`` paths are left alone:
    Lightning derives them from ``default_root_dir`` or the logger, both in ``run_dir`` now.
    """
    old_root = trainer.get("default_root_dir")
    old_root_abs = Path(old_root).resolve() if old_root else None
    trainer["default_root_dir"] = str(run_dir)
    mapping: dict[str, str] = {}
    for node in _subclass_nodes(trainer):
        init_args = node["init_args"]
        for key in PATH_ARGS:
            old = init_args.get(key)
            if not isinstance(old, str) or not old:
                continue
            if old not in mapping:
                old_abs = Path(old).resolve()
                if old_root_abs is not None and old_abs.is_relative_to(old_root_abs):
                    new = run_dir / old_abs.relative_to(old_root_abs)
                else:
                    new, i = run_dir / old_abs.name, 1
                    while str(new) in mapping.values():
                        new, i = run_dir / f"{old_abs.name}_{i}", i + 1
                mapping[old] = str(new)
            init_args[key] = mapping[old]
    return mapping


def _is_class(node: dict[str, Any], name: str) -> bool:
    return node["class_path"].rsplit(".", 1)[-1] == name


def wandb_loggers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``WandbLogger`` entries of ``config["trainer"]["logger"]``."""
    loggers = _as_list(config.get("trainer", {}).get("logger"))
    return [n for n in loggers if isinstance(n, dict) and "class_path" in n and _is_class(n, "WandbLogger")]


def make_run_config(
    base: dict[str, Any],
    pooled_size: int,
    head_pooled_size: int | None,
    run_dir: Path,
    name: str,
    wandb_id: str,
    measure_size: tuple[int, int],
    warmup_runs: int,
    latency_runs: int,
) -> dict[str, Any]:
    """The complete LightningCLI config of one run of the ablation; ``base`` is not modified.

    Args:
        base: the resolved ``fit`` config (:func:`resolve_config`).
        pooled_size: backbone LRSA pooled size, set for all stages.
        head_pooled_size: the head's pooled size; ``None`` keeps the configured one.
        run_dir: absolute folder of the run; every output path of the trainer is moved into it.
        name: ablation name: W&B group ``ablate-<name>``, run name ``<name>-pool<N>``.
        wandb_id: W&B run id shared by the run's fit, test and resumed fit.
        measure_size: ``(height, width)`` of the MACs count and the latency.
        warmup_runs: untimed forward passes before the latency is timed.
        latency_runs: timed forward passes (median).

    Returns:
        The config as plain data, to be written as YAML and passed to ``fit`` / ``test --config``.
    """
    config = json.loads(json.dumps(base))  # deep copy of plain data
    init_args = config["model"].setdefault("init_args", {})
    init_args["pooled_sizes"] = pooled_size
    if head_pooled_size is not None:
        init_args["head_pooled_size"] = head_pooled_size
    config["ckpt_path"] = None
    trainer = config.setdefault("trainer", {})
    callbacks = _as_list(trainer.get("callbacks"))
    trainer["callbacks"] = callbacks
    redirect_paths(trainer, run_dir)
    for logger in wandb_loggers(config):
        logger["init_args"].update(
            name=f"{name}-pool{pooled_size}", group=f"ablate-{name}", id=wandb_id, version=None, resume="allow"
        )
    checkpoints = [c for c in callbacks if isinstance(c, dict) and _is_class(c, "ModelCheckpoint")]
    checkpoint_args = [c.get("init_args") or {} for c in checkpoints]
    if not any(a.get("monitor") == MONITOR for a in checkpoint_args):
        callbacks.append(_checkpoint(run_dir, "best", monitor=MONITOR, mode="max"))
    if not any(a.get("save_last") or re.match(r"last(-\d+)?$", str(a.get("filename"))) for a in checkpoint_args):
        callbacks.append(_checkpoint(run_dir, "last"))
    if trainer.get("enable_checkpointing") is False:
        trainer["enable_checkpointing"] = None  # the ablation needs its checkpoints to resume
    callbacks.append(
        {
            "class_path": f"{__name__}.{AblationRecorder.__name__}",
            "init_args": {
                "output_dir": str(run_dir),
                "measure_size": list(measure_size),
                "warmup_runs": warmup_runs,
                "latency_runs": latency_runs,
            },
        }
    )
    return config


def _checkpoint(run_dir: Path, filename: str, **kwargs: Any) -> dict[str, Any]:
    init_args = {"dirpath": str(run_dir / "checkpoints"), "filename": filename, "enable_version_counter": False}
    return {"class_path": CHECKPOINT_CLASS, "init_args": {**init_args, **kwargs}}


def _wandb_id(config: dict[str, Any]) -> str | None:
    return next((n["init_args"].get("id") for n in wandb_loggers(config) if n["init_args"].get("id")), None)


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    header = f"# lrsa-seg ablate: one run of the pool-size ablation; rerun with\n#   {_command('fit', path)}\n"
    write_atomic(path, lambda f: f.write(header + yaml.safe_dump(config, sort_keys=False)), binary=False)


def _command(stage: str, config: Path, *extra: str) -> str:
    return " ".join(["python -m lrsa_seg", stage, "--config", str(config), *extra])


# --- the results table -------------------------------------------------------------------------
def recorded_rows(ablation_dir: Path) -> dict[int, dict[str, Any]]:
    """Rows of the existing ``results.csv`` whose pooled size has no run folder here, by size.

    The run folders (checkpoints, logs) are not committed, the table is: in a fresh clone these
    rows are the record of the sizes finished elsewhere, so they are kept and not run again.
    """
    path = ablation_dir / "results.csv"
    if not path.is_file():
        return {}
    try:
        rows = read_results_csv(path)
    except ValueError as err:
        raise ConfigError(f"{path}: not a results table of lrsa-seg ablate ({err}); fix or delete it") from err
    if any(row.get("pooled_size") is None for row in rows):
        raise ConfigError(f"{path}: a row has no pooled_size; fix or delete it")
    runs = ablation_dir / "runs"
    return {row["pooled_size"]: row for row in rows if not (runs / f"pool{row['pooled_size']}").exists()}


def read_results(ablation_dir: Path) -> list[dict[str, Any]]:
    """Rows (:data:`COLUMNS`) of every finished size, by pooled size.

    A size's ``runs/pool<N>/result.json`` when its folder is here, else its row of the existing
    ``results.csv`` (:func:`recorded_rows`).
    """
    rows = recorded_rows(ablation_dir)
    for path in sorted((ablation_dir / "runs").glob(f"pool*/{RESULT}")):
        with open(path) as f:
            result = json.load(f)
        rows[result["pooled_size"]] = {key: result.get(key) for key in COLUMNS}
    return [rows[size] for size in sorted(rows)]


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv``, numbers converted (empty cells give ``None``)."""
    ints, floats = (
        ("pooled_size", "head_pooled_size", "params", "epochs", "steps"),
        (
            "gmacs",
            "latency_ms",
            "val_miou",
            "test_miou",
            "train_time_s",
        ),
    )
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = dict(raw)
            for key in ints + floats:
                if key in row:
                    value = row[key]
                    row[key] = None if value in ("", None) else (int(value) if key in ints else float(value))
            rows.append(row)
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """``results.csv``: one row per pooled size, mIoU as fractions, raw counts."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return format(value * scale if scale != 1.0 else value, spec)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (mIoU in %, parameters in millions)."""
    size = rows[0]["size"] if rows else "?"
    lines = [
        f"| pooled size | head pooled size | params (M) | GMACs @ {size} | latency @ {size} (ms) "
        "| val mIoU best (%) | test mIoU (%) | train time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pooled_size']} | {_fmt(r['head_pooled_size'], 'd')} | {_fmt(r['params'], '.2f', 1e-6)} "
            f"| {_fmt(r['gmacs'], '.2f')} | {_fmt(r['latency_ms'], '.1f')} | {_fmt(r['val_miou'], '.2f', 100)} "
            f"| {_fmt(r['test_miou'], '.2f', 100)} | {_fmt(r['train_time_s'], '.0f')} |"
        )
    return "\n".join(lines)


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, name: str, warmup_runs: int, latency_runs: int) -> None:
    """``results.md``: the table and what its columns mean."""
    first = rows[0] if rows else {}
    text = f"""# Pool-size ablation `{name}`

The backbone's LRSA pooled size is set in all four stages; the head's is the column
"head pooled size". GMACs (multiply-accumulates, `torch.utils.flop_counter`, attention counted on
the plain path) and latency are at {first.get("size", "?")} (height x width), batch 1; latency is
the median of {latency_runs} forward passes after {warmup_runs} warm-up pass(es) on {first.get("device", "?")}
({first.get("precision", "?")} precision), measured in the test process. "val mIoU best" is the
best validation mIoU over the epochs; "test mIoU" is that of the best checkpoint. Train time is
the wall time of training with validation excluded, summed over resumed sessions.

{markdown_table(rows)}
"""
    path.write_text(text)


def plot_results(rows: Sequence[dict[str, Any]], path: str | Path | None = None) -> Any:
    """Plot mIoU (val best, test) and GMACs / latency against the pooled size; save to ``path`` if given.

    Returns the matplotlib ``Figure``, made without pyplot, so it neither needs nor changes a
    backend (``savefig`` renders PNG with Agg); a notebook shows it with ``display(fig)``.
    """
    from matplotlib.figure import Figure

    sizes = [r["pooled_size"] for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_miou, ax_cost = fig.subplots(1, 2)
    for key, label, marker in (("val_miou", "val mIoU (best)", "o"), ("test_miou", "test mIoU", "s")):
        points = [(s, r[key] * 100) for s, r in zip(sizes, rows) if r.get(key) is not None]
        if points:
            ax_miou.plot(*zip(*points), marker=marker, label=label)
    ax_miou.set(xlabel="backbone pooled size", ylabel="mIoU (%)", title="Accuracy")
    ax_miou.legend()
    size = rows[0]["size"] if rows else ""
    ax_cost.plot(sizes, [r["gmacs"] for r in rows], marker="o", color="C2", label="GMACs")
    ax_cost.set(xlabel="backbone pooled size", ylabel=f"GMACs @ {size}", title="Cost")
    ax_latency = ax_cost.twinx()
    ax_latency.plot(sizes, [r["latency_ms"] for r in rows], marker="^", color="C3", linestyle="--", label="latency")
    ax_latency.set_ylabel(f"latency @ {size} (ms)")
    handles = ax_cost.get_legend_handles_labels()[0] + ax_latency.get_legend_handles_labels()[0]
    ax_cost.legend(handles, [h.get_label() for h in handles], loc="upper left")
    for ax in (ax_miou, ax_cost):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(alpha=0.3)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def write_tables(ablation_dir: Path, name: str, warmup_runs: int, latency_runs: int) -> list[dict[str, Any]]:
    """Write ``results.csv``, ``results.md`` and ``pool_size.png`` from the finished runs."""
    rows = read_results(ablation_dir)
    if not rows:
        return rows
    write_csv(rows, ablation_dir / "results.csv")
    write_markdown(rows, ablation_dir / "results.md", name, warmup_runs, latency_runs)
    plot_results(rows, ablation_dir / "pool_size.png")
    return rows


# --- running one pooled size -------------------------------------------------------------------
def _log(message: str) -> None:
    print(f"[ablate] {message}", flush=True)


FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
"""Pre-emption signals that ``ablate`` passes on to its running ``fit``/``test`` process."""


def run_forwarding_signals(command: Sequence[str]) -> int:
    """Run ``command`` to its end, passing :data:`FORWARDED_SIGNALS` sent to this process on to it.

    ``kill <ablate pid>`` then pre-empts the ablation like a signal to the whole job: the
    ``fit`` process saves ``last.ckpt`` and exits with 128 + signum (a child left running alone
    would have trained on without its parent). Returns the child's exit status, or 128 + signum
    when a signal came (even if the child then ended normally), so the ablation stops there. On
    Ctrl-C (which reaches the child too) the child gets 30 s to shut down before it is killed.
    """
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if child:
            child[0].send_signal(signum)

    # Installed before the child starts, so no signal falls between the two; one that comes
    # first is passed on as soon as the child exists.
    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        child.append(subprocess.Popen(command))
        proc = child[0]
        for signum in received:
            proc.send_signal(signum)
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.wait(timeout=30)
            raise
        return 128 + received[0] if received else returncode
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if child and child[0].poll() is None:
            child[0].kill()
            child[0].wait()


def _run_lightning(stage: str, config: Path, *extra: str) -> int:
    _log(f"$ {_command(stage, config, *extra)}")
    return run_forwarding_signals([sys.executable, "-m", "lrsa_seg", stage, "--config", str(config), *extra])


def _read_json(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def _comparable(config: dict[str, Any] | None) -> Any:
    return json.loads(json.dumps(config)) if config is not None else None


class RunFailedError(RuntimeError):
    """A ``fit`` or ``test`` subprocess of the ablation failed."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


def run_pooled_size(
    base: dict[str, Any],
    pooled_size: int,
    ablation_dir: Path,
    name: str,
    head_pooled_size: int | None,
    measure_size: tuple[int, int],
    warmup_runs: int,
    latency_runs: int,
) -> dict[str, Any]:
    """Fit and test one pooled size, or skip or resume it; returns its ``result.json`` content.

    Raises :class:`RunFailedError` when ``fit`` or ``test`` fails (the run can be resumed) or the
    tested network does not use ``pooled_size``. See :func:`make_run_config` for the arguments.
    """
    run_dir = (ablation_dir / "runs" / f"pool{pooled_size}").resolve()
    config_path, result_path = run_dir / RUN_CONFIG, run_dir / RESULT
    previous = _read_yaml(config_path)
    wandb_id = (previous and _wandb_id(previous)) or f"{re.sub(r'[^A-Za-z0-9_-]', '-', name)[:40]}-pool{pooled_size}-"
    if wandb_id.endswith("-"):
        wandb_id += secrets.token_hex(4)
    config = make_run_config(
        base, pooled_size, head_pooled_size, run_dir, name, wandb_id, measure_size, warmup_runs, latency_runs
    )
    changed = previous is not None and _comparable(previous) != _comparable(config)
    if result_path.is_file():
        note = (
            " (its config differs from this invocation's: delete its folder and results.csv row to redo it)"
            if changed
            else ""
        )
        _log(f"pool {pooled_size}: finished earlier, skipping{note}")
        return _read_json(result_path)
    resume = previous is not None
    if changed:
        _log(f"pool {pooled_size}: the config changed since the interrupted attempt; resuming with the new one")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_yaml(config_path, config)
    for stale in (FIT_SUMMARY, TEST_SUMMARY):
        (run_dir / stale).unlink(missing_ok=True)

    _log(f"pool {pooled_size}: {'resuming fit from the last checkpoint' if resume else 'fit'} in {run_dir}")
    returncode = _run_lightning("fit", config_path, *(["--ckpt_path", "last"] if resume else []))
    if returncode != 0 or not (run_dir / FIT_SUMMARY).is_file():
        raise RunFailedError(f"pool {pooled_size}: fit failed (exit code {returncode})", returncode or 1)
    fit = _read_json(run_dir / FIT_SUMMARY)

    ckpt = fit["best_checkpoint"] if fit["best_checkpoint"] and Path(fit["best_checkpoint"]).is_file() else "last"
    _log(f"pool {pooled_size}: test of {ckpt}")
    returncode = _run_lightning("test", config_path, "--ckpt_path", ckpt)
    if returncode != 0 or not (run_dir / TEST_SUMMARY).is_file():
        raise RunFailedError(f"pool {pooled_size}: test failed (exit code {returncode})", returncode or 1)
    test = _read_json(run_dir / TEST_SUMMARY)
    if test["backbone_pooled_sizes"] != [pooled_size]:
        raise RunFailedError(
            f"pool {pooled_size}: the tested model's backbone uses pooled sizes {test['backbone_pooled_sizes']}; "
            "does the config's model take model.init_args.pooled_sizes?",
            1,
        )

    model_args = config["model"].get("init_args", {})
    result = {
        "pooled_size": pooled_size,
        "head_pooled_size": test["head_pooled_size"],
        "params": test["params"],
        "gmacs": test["macs"] / 1e9,
        "latency_ms": test["latency_ms"],
        "val_miou": fit["best_val_miou"],
        "test_miou": test["metrics"].get(TEST_METRIC),
        "train_time_s": fit["train_time_s"],
        "epochs": fit["epochs"],
        "steps": fit["steps"],
        "size": "x".join(str(s) for s in test["size"]),
        "device": test["device"],
        "precision": test["precision"],
        "model": model_args.get("model"),
        "best_checkpoint": fit["best_checkpoint"],
        "test_metrics": test["metrics"],
        "wandb_id": _wandb_id(config),
    }
    write_json_atomic(result_path, result)
    _log(f"pool {pooled_size}: done, test mIoU {_fmt(result['test_miou'], '.2f', 100)}%")
    return result


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg ablate --config CFG --pooled-sizes 8 16 32 48 [options] [LightningCLI overrides]``."""
    parser = argparse.ArgumentParser(
        prog="lrsa-seg ablate",
        allow_abbrev=False,
        description="The pool-size ablation: fit + test per backbone pooled size, one W&B run each, one table.",
        epilog="Any further --key value is a LightningCLI override for every run, e.g. --trainer.max_epochs 1.",
    )
    parser.add_argument("--config", action="append", required=True, help="LightningCLI config (repeatable)")
    parser.add_argument("--pooled-sizes", nargs="+", type=int, required=True, metavar="N")
    parser.add_argument("--head-pooled-size", type=int, default=None, help="default: as configured")
    parser.add_argument("--name", default=None, help="ablation name (default: the first config's stem)")
    parser.add_argument("--output-dir", default="ablation", help="parent folder of <name>/")
    parser.add_argument("--latency-size", nargs=2, type=int, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--warmup-runs", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=10)
    args, overrides = parser.parse_known_args(argv)
    if overrides and not overrides[0].startswith("--"):
        parser.error(f"unexpected argument {overrides[0]!r}: overrides are --key value or --key=value")
    for flag in ("--ckpt_path", "--print_config", "--model.init_args.pooled_sizes", "--config"):
        if any(o == flag or o.startswith(flag + "=") for o in overrides):
            parser.error(f"{flag} is set by the ablation, not as an override")
    if min(args.pooled_sizes) < 1 or (args.head_pooled_size is not None and args.head_pooled_size < 1):
        parser.error("pooled sizes must be >= 1")
    if min(args.latency_size) < 32 or args.latency_runs < 1 or args.warmup_runs < 0:
        parser.error("--latency-size must be at least 32 x 32, --latency-runs >= 1, --warmup-runs >= 0")
    name = args.name or Path(args.config[0]).stem
    ablation_dir = Path(args.output_dir) / name
    measure_size = (args.latency_size[0], args.latency_size[1])

    try:
        recorded = recorded_rows(ablation_dir)  # read before any run: a broken results.csv stops here
    except ConfigError as err:
        parser.error(str(err))
    base = resolve_config(args.config, overrides)
    if not wandb_loggers(base):
        _log("the config has no WandbLogger: the runs are not tracked in W&B")
    sizes = sorted(set(args.pooled_sizes))
    _log(f"{name}: pooled sizes {sizes} -> {ablation_dir}")
    try:
        for size in sizes:
            if size in recorded:
                row_size, measured_at = recorded[size]["size"], "x".join(str(s) for s in measure_size)
                note = f"; its latency was measured at {row_size}, not {measured_at}" if row_size != measured_at else ""
                _log(
                    f"pool {size}: recorded in results.csv and no run folder here (a fresh clone?), skipping{note}; "
                    "delete its row to run it again"
                )
                continue
            run_pooled_size(
                base,
                size,
                ablation_dir,
                name,
                args.head_pooled_size,
                measure_size,
                args.warmup_runs,
                args.latency_runs,
            )
    except (RunFailedError, KeyboardInterrupt) as err:
        _log(f"{err or 'interrupted'}; rerun the same command to resume")
        write_tables(ablation_dir, name, args.warmup_runs, args.latency_runs)
        return err.returncode if isinstance(err, RunFailedError) else 130
    rows = write_tables(ablation_dir, name, args.warmup_runs, args.latency_runs)
    print(markdown_table(rows))
    _log(f"wrote {ablation_dir / 'results.csv'}, {ablation_dir / 'results.md'} and {ablation_dir / 'pool_size.png'}")
    return 0
