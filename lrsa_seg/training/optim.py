"""The paper's optimisation: AdamW parameter groups and the warm-up + poly schedule, as pure functions."""

from __future__ import annotations

from typing import Any

from torch import nn


def warmup_poly_factor(
    step: int,
    max_steps: int,
    warmup_steps: int,
    warmup_ratio: float = 1e-6,
    power: float = 1.0,
    min_lr_ratio: float = 0.0,
) -> float:
    """LR multiplier of mmseg's schedule: poly decay to ``min_lr_ratio``, linear warm-up on top.

    ``poly = (1 - step / max_steps) ** power`` (scaled into ``[min_lr_ratio, 1]``); during the
    first ``warmup_steps`` it is multiplied by a factor rising linearly from ``warmup_ratio``
    to 1.
    """
    progress = min(step, max_steps) / max(1, max_steps)
    factor = (1 - progress) ** power * (1 - min_lr_ratio) + min_lr_ratio
    if step < warmup_steps:
        factor *= 1 - (1 - step / warmup_steps) * (1 - warmup_ratio)
    return factor


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """AdamW groups: normalization parameters get no weight decay; the decode head gets ``lr * head_lr_mult``."""
    norm_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm))
        for p in m.parameters(recurse=False)
    }
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith("decode_head."), id(param) in norm_params), []).append(param)
    return [
        {
            "params": params,
            "lr": lr * (head_lr_mult if is_head else 1.0),
            "weight_decay": 0.0 if is_norm else weight_decay,
            "name": f"{'head' if is_head else 'backbone'}{'_norm' if is_norm else ''}",
        }
        for (is_head, is_norm), params in sorted(groups.items())
    ]
