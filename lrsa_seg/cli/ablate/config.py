"""The run config of one pooled size and seed: the resolved base config with seed, paths, logger and callbacks set."""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ...ablation import run_name
from ...callbacks import AblationRecorder
from ...callbacks.ablation import MONITOR
from ...io import write_atomic

RUN_CONFIG = "run_config.yaml"


# init_args that name an output file or folder (callbacks, loggers, profilers).
PATH_ARGS = ("dirpath", "save_dir", "dir", "output_dir", "log_dir", "root_dir")


CHECKPOINT_CLASS = "lightning.pytorch.callbacks.ModelCheckpoint"


def resolve_config(configs: Sequence[str], overrides: Sequence[str]) -> dict[str, Any]:
    """The complete ``fit`` config of ``--config`` files plus overrides, as a dict.

    Raises ``SystemExit`` with LightningCLI's message when the config or an override is invalid.
    """
    from ..lightning import run_lightning

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
    seed: int = 0,
) -> dict[str, Any]:
    """The complete LightningCLI config of one run of the ablation; ``base`` is not modified.

    Args:
        base: the resolved ``fit`` config (:func:`resolve_config`).
        pooled_size: backbone LRSA pooled size, set for all stages.
        head_pooled_size: the head's pooled size; ``None`` keeps the configured one.
        run_dir: absolute folder of the run; every output path of the trainer is moved into it.
        name: ablation name: W&B group ``ablate-<name>``, run name ``<name>-<run_name>`` (``<name>-pool<N>``
            for seed 0, ``<name>-pool<N>_seed<S>`` otherwise).
        wandb_id: W&B run id shared by the run's fit, test and resumed fit.
        measure_size: ``(height, width)`` of the MACs count and the latency.
        warmup_runs: untimed forward passes before the latency is timed.
        latency_runs: timed forward passes (median).
        seed: ``seed_everything`` of the run (replaces the config's).

    Returns:
        The config as plain data, to be written as YAML and passed to ``fit`` / ``test --config``.
    """
    config = json.loads(json.dumps(base))  # deep copy of plain data
    config["seed_everything"] = seed
    init_args = config["model"].setdefault("init_args", {})
    init_args["pooled_sizes"] = pooled_size
    # The paper's point about small pooled sizes is small objects: the test also reports mIoU by
    # ground-truth region size (test only; one connected-component pass per test image).
    init_args["size_iou"] = True
    if head_pooled_size is not None:
        init_args["head_pooled_size"] = head_pooled_size
    config["ckpt_path"] = None
    trainer = config.setdefault("trainer", {})
    callbacks = _as_list(trainer.get("callbacks"))
    trainer["callbacks"] = callbacks
    redirect_paths(trainer, run_dir)
    for logger in wandb_loggers(config):
        logger["init_args"].update(
            name=f"{name}-{run_name(pooled_size, seed)}",
            group=f"ablate-{name}",
            id=wandb_id,
            version=None,
            resume="allow",
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
            "class_path": f"lrsa_seg.callbacks.{AblationRecorder.__name__}",
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
