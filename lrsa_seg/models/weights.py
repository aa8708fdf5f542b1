"""Loading a state dict into a model strictly, every problem reported at once, naming the source."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..errors import CheckpointMismatchError


def short_list(keys: list[str], limit: int = 12) -> str:
    """The first ``limit`` keys, comma-separated, and how many more there are."""
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _same_name(key: str) -> str:
    return key


def state_dict_mismatches(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], key_name: Callable[[str], str] = _same_name
) -> list[str]:
    """Human-readable problems (missing keys, unexpected keys, shape mismatches); empty if none.

    ``key_name`` maps a model key to the name the report uses (e.g. the one in the source file).
    """
    expected = model.state_dict()
    missing = [key_name(k) for k in expected if k not in state_dict]
    unexpected = [key_name(k) for k in state_dict if k not in expected]
    shapes = [
        f"{key_name(k)}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {short_list(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {short_list(shapes)}")
    return problems


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "state dict",
    key_name: Callable[[str], str] = _same_name,
) -> None:
    """``load_state_dict(strict=True)`` that reports every problem at once, naming ``source``; keys as ``key_name``."""
    problems = state_dict_mismatches(model, state_dict, key_name)
    if problems:
        raise CheckpointMismatchError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
