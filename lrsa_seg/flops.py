"""Exact parameter and multiply-accumulate counts with ``torch.utils.flop_counter``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models.lrsa import LowResolutionSelfAttention, set_fused_attention


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


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg flops --model lrformer_t --size 512 512 --num-classes 150 [--json] [--table]``."""
    import argparse
    import json

    from .models import create_model, list_models

    parser = argparse.ArgumentParser(prog="lrsa-seg flops", description="Exact parameters and MACs of a model.")
    parser.add_argument("--model", required=True, choices=list_models())
    parser.add_argument("--size", nargs=2, type=int, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=None, help="default: 150 (segmentors), 1000 (classifiers)")
    parser.add_argument("--pooled-size", type=int, default=None, help="backbone LRSA pooled size (all stages)")
    parser.add_argument("--head-pooled-size", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--table", action="store_true", help="also give MACs per module")
    parser.add_argument("--depth", type=int, default=3, help="module depth of the table")
    args = parser.parse_args(argv)
    height, width = args.size
    if min(height, width) < 32:
        parser.error(f"--size must be at least 32 x 32, got {height} x {width}")
    overrides: dict[str, Any] = {}
    if args.pooled_size is not None:
        overrides["pooled_sizes"] = args.pooled_size
    if args.head_pooled_size is not None:
        overrides["head_pooled_size"] = args.head_pooled_size
    try:
        with torch.device("meta"):  # shapes only: counting computes nothing
            model = create_model(args.model, num_classes=args.num_classes, **overrides)
    except ValueError as err:
        parser.error(str(err))
    report = flops_report(model, height, width, depth=args.depth)
    report["model"] = args.model
    if not args.table:
        report.pop("per_module")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.model} at {height} x {width}: {report['params']:,} parameters, {report['gmacs']:.2f} GMACs")
    for name, macs in report.get("per_module", {}).items():
        print(f"  {name:<48} {macs / 1e9:10.3f} GMACs")
    return 0
