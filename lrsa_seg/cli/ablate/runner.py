"""Running one pooled size at one seed: ``fit`` then ``test`` in subprocesses, resumable, signals passed on."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ...ablation import RESULT, AblationRow, run_name
from ...callbacks.ablation import FIT_SUMMARY, TEST_SUMMARY
from ...io import write_json_atomic
from ...reporting import fmt
from .config import RUN_CONFIG, _command, _read_yaml, _wandb_id, _write_yaml, make_run_config


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


# Run configs written before the recorder moved to lrsa_seg.callbacks name its old place.
_MOVED = {"lrsa_seg.cli.ablate.recorder.AblationRecorder": "lrsa_seg.callbacks.AblationRecorder"}


def _comparable(config: dict[str, Any] | None) -> Any:
    if config is None:
        return None
    text = json.dumps(config)
    for old, new in _MOVED.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    return json.loads(text)


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
    seed: int = 0,
) -> dict[str, Any]:
    """Fit and test one pooled size at one seed, or skip or resume it; returns its ``result.json`` content.

    The run's folder is ``runs/<run_name>/`` (:func:`lrsa_seg.ablation.run_name`: ``pool<N>`` for
    seed 0, as before seeds existed, so an interrupted run of that layout resumes). Raises
    :class:`RunFailedError` when ``fit`` or ``test`` fails (the run can be resumed) or the tested
    network does not use ``pooled_size``. See :func:`make_run_config` for the arguments.
    """
    folder = run_name(pooled_size, seed)
    label = run_label(pooled_size, seed)
    run_dir = (ablation_dir / "runs" / folder).resolve()
    config_path, result_path = run_dir / RUN_CONFIG, run_dir / RESULT
    previous = _read_yaml(config_path)
    wandb_id = (previous and _wandb_id(previous)) or f"{re.sub(r'[^A-Za-z0-9_-]', '-', name)[:40]}-{folder}-"
    if wandb_id.endswith("-"):
        wandb_id += secrets.token_hex(4)
    config = make_run_config(
        base, pooled_size, head_pooled_size, run_dir, name, wandb_id, measure_size, warmup_runs, latency_runs, seed
    )
    changed = previous is not None and _comparable(previous) != _comparable(config)
    if result_path.is_file():
        note = (
            " (its config differs from this invocation's: delete its folder and results.csv row to redo it)"
            if changed
            else ""
        )
        _log(f"{label}: finished earlier, skipping{note}")
        return _read_json(result_path)
    resume = previous is not None
    if changed:
        _log(f"{label}: the config changed since the interrupted attempt; resuming with the new one")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_yaml(config_path, config)
    for stale in (FIT_SUMMARY, TEST_SUMMARY):
        (run_dir / stale).unlink(missing_ok=True)

    _log(f"{label}: {'resuming fit from the last checkpoint' if resume else 'fit'} in {run_dir}")
    returncode = _run_lightning("fit", config_path, *(["--ckpt_path", "last"] if resume else []))
    if returncode != 0 or not (run_dir / FIT_SUMMARY).is_file():
        raise RunFailedError(f"{label}: fit failed (exit code {returncode})", returncode or 1)
    fit = _read_json(run_dir / FIT_SUMMARY)

    ckpt = fit["best_checkpoint"] if fit["best_checkpoint"] and Path(fit["best_checkpoint"]).is_file() else "last"
    _log(f"{label}: test of {ckpt}")
    returncode = _run_lightning("test", config_path, "--ckpt_path", ckpt)
    if returncode != 0 or not (run_dir / TEST_SUMMARY).is_file():
        raise RunFailedError(f"{label}: test failed (exit code {returncode})", returncode or 1)
    test = _read_json(run_dir / TEST_SUMMARY)
    if test["backbone_pooled_sizes"] != [pooled_size]:
        raise RunFailedError(
            f"{label}: the tested model's backbone uses pooled sizes {test['backbone_pooled_sizes']}; "
            "does the config's model take model.init_args.pooled_sizes?",
            1,
        )

    row = AblationRow(pooled_size=pooled_size, seed=seed, **fit["row"], **test["row"])
    result = {
        **row.to_dict(),
        "model": config["model"].get("init_args", {}).get("model"),
        "best_checkpoint": fit["best_checkpoint"],
        "test_metrics": test["metrics"],
        "wandb_id": _wandb_id(config),
    }
    write_json_atomic(result_path, result)
    _log(f"{label}: done, test mIoU {fmt(row.test_miou, '.2f', 100)}%")
    return result


def run_label(pooled_size: int, seed: int = 0) -> str:
    """How the log names a run: ``pool <N>`` for seed 0, ``pool <N> seed <S>`` otherwise."""
    return f"pool {pooled_size}" if seed == 0 else f"pool {pooled_size} seed {seed}"
