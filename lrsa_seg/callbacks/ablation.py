"""The pool-size ablation's callback: records, inside each ``fit`` and ``test`` process, the fields of its row."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..ablation import fields_of_test_metrics
from ..io import write_json_atomic
from ..models.flops import count_macs, count_params
from ..models.lrsa import LowResolutionSelfAttention
from ..reporting import median_latency

MONITOR = "val/mIoU"
FIT_SUMMARY = "fit_summary.json"
TEST_SUMMARY = "test_summary.json"


def _scalar(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class AblationRecorder(Callback):
    """Record the fields of the run's :class:`lrsa_seg.ablation.AblationRow`, from inside ``fit`` and ``test``.

    ``fit`` writes ``fit_summary.json``: under ``"row"`` the best ``val/mIoU`` over validation
    epochs, the training time (validation excluded) summed over resumed sessions (both are kept
    in the checkpoints, so a resumed fit continues them), epochs and steps; beside it the best /
    last checkpoint paths. ``test`` writes ``test_summary.json``: under ``"row"`` the test mIoU
    (also by region size), the head's pooled size, parameters, multiply-accumulates at
    ``measure_size`` (:func:`lrsa_seg.models.flops.count_macs`) and the median inference latency
    of the network at that size (batch 1, on the test device, under the trainer's precision);
    beside it all test metrics and the backbone's pooled sizes. The model numbers are also
    logged to the trainer's loggers (``model/*``). Only global rank 0 writes. The runner builds
    the row from the two ``"row"`` parts, so their keys are :class:`~lrsa_seg.ablation.AblationRow` fields.

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
                "row": {
                    "val_miou": self.best_val,
                    "train_time_s": self.train_time_s,
                    "epochs": trainer.current_epoch,
                    "steps": trainer.global_step,
                },
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
        metrics = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        pooled = pooled_sizes_of(network)
        write_json_atomic(
            self.output_dir / TEST_SUMMARY,
            {
                "row": {
                    **fields_of_test_metrics(metrics),
                    "head_pooled_size": pooled["head_pooled_size"],
                    "params": model_numbers["model/params"],
                    "gmacs": model_numbers["model/gmacs"],
                    "latency_ms": model_numbers["model/latency_ms"],
                    "size": f"{height}x{width}",
                    "device": device_name,
                    "precision": str(trainer.precision),
                },
                "metrics": metrics,
                "backbone_pooled_sizes": pooled["backbone_pooled_sizes"],
                "warmup_runs": self.warmup_runs,
                "latency_runs": self.latency_runs,
                "ckpt_path": trainer.ckpt_path,
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
