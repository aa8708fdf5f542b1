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
    """LR multiplier at iteration ``step`` of the official schedule (mmengine, chained per iteration).

    ``LinearLR(start_factor=warmup_ratio, begin=0, end=warmup_steps)`` then
    ``PolyLR(power, eta_min, begin=warmup_steps, end=max_steps)``:

    - ``step < warmup_steps``: ``warmup_ratio + (1 - warmup_ratio) * step / warmup_steps``;
    - then the poly decay starts from the last warm-up value (LinearLR stops one step before
      reaching 1) and decays over ``max_steps - warmup_steps`` iterations:
      ``(start - min_lr_ratio) * (1 - (step - warmup_steps) / (max_steps - warmup_steps)) ** power
      + min_lr_ratio``.
    """
    start = 1.0
    if warmup_steps > 0:
        if step < warmup_steps:
            return warmup_ratio + (1 - warmup_ratio) * step / warmup_steps
        start = warmup_ratio + (1 - warmup_ratio) * (warmup_steps - 1) / warmup_steps
    total = max(1, max_steps - warmup_steps)
    progress = min(step - warmup_steps, total) / total
    return (start - min_lr_ratio) * (1 - progress) ** power + min_lr_ratio


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
