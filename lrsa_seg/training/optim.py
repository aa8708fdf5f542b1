"""The paper's optimisation: AdamW parameter groups and the warm-up + poly schedule, as pure functions."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..models.official import ours_key_to_official


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


def official_multipliers(name: str) -> tuple[bool, bool]:
    """``(in_head, no_decay)`` of parameter ``name`` under the official ``paramwise_cfg``.

    The official configs give ``custom_keys={"head": lr_mult 10, "norm": decay_mult 0}``. mmengine
    sorts the keys by length, then alphabetically (``head`` before ``norm``), and applies the
    first key contained in the parameter's official name. So every decode-head parameter gets the
    head's lr and keeps its weight decay, norms included; backbone parameters whose official name
    contains ``norm`` get no decay; the stem's BatchNorms (``patch_embed1.conv1.{1,4,7}``) do.
    """
    try:
        official = ours_key_to_official(name)
    except KeyError:  # not an LRFormer parameter: the same rule on our own name
        official = name
    if "head" in official:
        return True, False
    return False, "norm" in official


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """AdamW groups as the official configs resolve them (:func:`official_multipliers`).

    Decode-head parameters get ``lr * head_lr_mult`` and weight decay; backbone norm parameters
    get no weight decay.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(official_multipliers(name), []).append(param)
    return [
        {
            "params": params,
            "lr": lr * (head_lr_mult if in_head else 1.0),
            "weight_decay": 0.0 if no_decay else weight_decay,
            "name": f"{'head' if in_head else 'backbone'}{'_norm' if no_decay else ''}",
        }
        for (in_head, no_decay), params in sorted(groups.items())
    ]
