"""Measuring and formatting helpers shared by the ablation table and the benchmark."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


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


def fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``; ``-`` for a missing (non-numeric) value."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return format(value * scale if scale != 1.0 else value, spec)
