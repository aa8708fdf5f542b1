"""Exact parameter and multiply-accumulate counts with ``torch.utils.flop_counter``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .lrsa import LowResolutionSelfAttention, set_fused_attention


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int, width: int, batch: int = 1) -> tuple[int, dict[str, int]]:
    """Multiply-accumulates of one eval forward at ``height x width``, total and per module.

    Counted by :class:`FlopCounterMode` (FLOPs / 2) over matmuls and convolutions, the
    operators the paper counts. The input is made on the model's device: a model built under
    ``torch.device("meta")`` is counted without computing anything. The plain attention path
    is used while counting, because the counter has no formula for the fused SDPA kernel on
    CPU and would report 0 for it.
    """
    was_training = model.training
    fused = {m: m.fused_attention for m in model.modules() if isinstance(m, LowResolutionSelfAttention)}
    model.eval()
    set_fused_attention(model, False)
    try:
        counter = FlopCounterMode(display=False, depth=None)
        with torch.no_grad(), counter:
            device = next(model.parameters()).device
            model(torch.zeros(batch, 3, height, width, device=device))
    finally:
        for module, enabled in fused.items():
            module.fused_attention = enabled
        model.train(was_training)
    # The counter names modules "<RootClass>.<path>"; keep the path ("" is the whole model).
    per_module = {
        name.partition(".")[2]: sum(ops.values()) // 2
        for name, ops in counter.get_flop_counts().items()
        if name != "Global"
    }
    return counter.get_total_flops() // 2, per_module


def flops_report(model: nn.Module, height: int, width: int, depth: int = 2) -> dict[str, Any]:
    """``{"params", "macs", "gmacs", "size", "per_module"}``; modules down to ``depth`` dots."""
    macs, per_module = count_macs(model, height, width)
    table = {name: n for name, n in per_module.items() if name and name.count(".") < depth}
    return {
        "params": count_params(model),
        "macs": macs,
        "gmacs": macs / 1e9,
        "size": [height, width],
        "per_module": table,
    }
