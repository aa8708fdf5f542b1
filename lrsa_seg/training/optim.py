"""The paper's optimisation: AdamW parameter groups and the warm-up + poly schedule, as pure functions."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

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
    ``PolyLR(power, eta_min, begin=warmup_steps, end=max_steps)``, in closed form. mmengine's
    schedulers span ``total_iters = end - begin - 1`` iterations, so:

    - ``step < warmup_steps``: ``warmup_ratio + (1 - warmup_ratio) * step / (warmup_steps - 1)``,
      which reaches 1 at the last warm-up iteration (1499 of 0-1499);
    - then the poly decay starts from that value (1) at ``warmup_steps`` and reaches
      ``min_lr_ratio`` at the last iteration ``max_steps - 1``:
      ``(1 - min_lr_ratio) * (1 - (step - warmup_steps) / (max_steps - warmup_steps - 1)) ** power
      + min_lr_ratio``; later steps keep that value.
    """
    start = 1.0
    if warmup_steps > 0:
        span = warmup_steps - 1
        if step < warmup_steps:
            return warmup_ratio + (1 - warmup_ratio) * step / span if span else warmup_ratio
        if not span:  # a one-iteration LinearLR only applies its start factor
            start = warmup_ratio
    total = max_steps - warmup_steps - 1
    if total <= 0:  # a one-iteration PolyLR keeps the value it starts from
        return start
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


def norm_first_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """``(group name, parameter names)`` in the order lrsa-seg 0.1 built its AdamW groups.

    That version took every ``LayerNorm``/``BatchNorm2d``/``GroupNorm`` parameter out of weight
    decay, head ones included, where the official ``custom_keys`` let ``head`` win. Kept only so
    that :func:`regroup_optimizer_state` can resume a checkpoint written with that layout.
    """
    norm_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, (nn.LayerNorm, _BatchNorm, nn.GroupNorm))
        for p in m.parameters(recurse=False)
    }
    groups: dict[tuple[bool, bool], list[str]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name.startswith("decode_head."), id(param) in norm_params), []).append(name)
    return [
        (f"{'head' if is_head else 'backbone'}{'_norm' if is_norm else ''}", names)
        for (is_head, is_norm), names in sorted(groups.items())
    ]


def _layout(groups: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """``(name, parameter count)`` of each optimizer group, saved or built."""
    return [(g.get("name", ""), len(g["params"])) for g in groups]


def regroup_optimizer_state(checkpoint: dict[str, Any], model: nn.Module, groups: list[dict[str, Any]]) -> bool:
    """Rewrite a checkpoint's AdamW and LambdaLR states, in place, to the parameter groups ``groups``.

    ``groups`` is what :func:`parameter_groups` builds now (``params`` are the parameters of
    ``model``). A checkpoint with that layout is left alone (returns False). One written with the
    0.1 layout (:func:`norm_first_groups`) gets each parameter's moments moved to its new group;
    each new group keeps the schedule's progress (``lr / initial_lr`` of the group its first
    parameter came from) with its own base lr and weight decay. Returns True when it rewrote.

    Raises:
        ValueError: the saved groups match neither layout.
    """
    states = checkpoint.get("optimizer_states") or []
    if len(states) != 1:
        return False
    saved = states[0]
    if _layout(saved["param_groups"]) == _layout(groups):
        return False
    old = norm_first_groups(model)
    old_layout = [(name, len(params)) for name, params in old]
    if _layout(saved["param_groups"]) != old_layout:
        raise ValueError(
            f"the checkpoint's optimizer groups {_layout(saved['param_groups'])} match neither this version's "
            f"{_layout(groups)} nor the 0.1 layout {old_layout}"
        )
    names = {id(p): n for n, p in model.named_parameters()}
    new_names = [[names[id(p)] for p in g["params"]] for g in groups]
    # Saved state is keyed by the parameter's position across the groups, in group order.
    old_index: dict[str, tuple[int, int]] = {}  # name -> (saved group, saved state key)
    for group_idx, (saved_group, (_, params)) in enumerate(zip(saved["param_groups"], old)):
        for key, name in zip(saved_group["params"], params):
            old_index[name] = (group_idx, key)
    new_state, new_groups, position = {}, [], 0
    for group, params in zip(groups, new_names):
        source = saved["param_groups"][old_index[params[0]][0]]
        progress = source["lr"] / source["initial_lr"] if source["initial_lr"] else 0.0
        keys = []
        for name in params:
            if old_index[name][1] in saved["state"]:
                new_state[position] = saved["state"][old_index[name][1]]
            keys.append(position)
            position += 1
        hyper = {k: v for k, v in source.items() if k != "params"}
        hyper.update(
            name=group["name"], weight_decay=group["weight_decay"], initial_lr=group["lr"], lr=group["lr"] * progress
        )
        new_groups.append({**hyper, "params": keys})
    saved["state"], saved["param_groups"] = new_state, new_groups
    for scheduler in checkpoint.get("lr_schedulers") or []:
        scheduler["base_lrs"] = [g["initial_lr"] for g in new_groups]
        scheduler["_last_lr"] = [g["lr"] for g in new_groups]
        if "lr_lambdas" in scheduler:
            scheduler["lr_lambdas"] = [None] * len(new_groups)
    return True


def sync_head_batchnorm(model: nn.Module) -> int:
    """Replace the BatchNorms of ``model.decode_head`` by ``SyncBatchNorm``, in place; returns how many.

    The official configs set ``norm_cfg=SyncBN`` on the decode head only; the backbone's stem
    BatchNorms stay per-GPU. (Lightning's ``sync_batchnorm`` would convert every BatchNorm.) The
    parameters and buffers are the same tensors, so an optimizer built later sees them unchanged.
    """
    before = sum(isinstance(m, nn.SyncBatchNorm) for m in model.decode_head.modules())
    model.decode_head = nn.SyncBatchNorm.convert_sync_batchnorm(model.decode_head)
    return sum(isinstance(m, nn.SyncBatchNorm) for m in model.decode_head.modules()) - before
