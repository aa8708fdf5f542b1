"""``lrsa-seg flops``: exact parameter and multiply-accumulate counts of a registered model.

With ``--attention``: attention-only multiply-accumulates (issue #15) of LRFormer models and of
SegFormer ``segformer_b0`` .. ``segformer_b5`` (analytic), at one or several sizes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from ..errors import ConfigError
from ..models import create_model, list_models
from ..models.flops import ATTENTION_CONVENTIONS, SEGFORMER_VARIANTS, attention_report, flops_report
from .common import ToolParser, add_size_argument, sizes_of


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg flops --model lrformer_t --size 512 512 --num-classes 150 [--json] [--table]``.

    ``lrsa-seg flops --attention --model lrformer_s segformer_b2 --sizes 1024 1024 1536 1536 [--json]``.
    """
    parser = ToolParser("flops", "Exact parameters and multiply-accumulates (on the meta device: computes nothing).")
    parser.add_argument(
        "--model",
        required=True,
        nargs="+",
        choices=[*list_models(), *SEGFORMER_VARIANTS],
        help="registered model name (several, and segformer_b0..b5, only with --attention)",
    )
    add_size_argument(parser, "--size", [512, 512], "input size")
    add_size_argument(parser, "--sizes", None, "input sizes for --attention (replace --size)", multiple=True)
    parser.add_argument(
        "--num-classes", type=int, default=None, help="output classes (None: 150 for segmentors, 1000 for classifiers)"
    )
    parser.add_argument("--pooled-size", type=int, default=None, help="backbone LRSA pooled size (all stages)")
    parser.add_argument("--head-pooled-size", type=int, default=None, help="head LRSA pooled size")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (per model and size with --attention)"
    )
    parser.add_argument("--table", action="store_true", help="also give MACs per module")
    parser.add_argument("--depth", type=int, default=3, help="module depth of the table")
    parser.add_argument(
        "--attention", action="store_true", help="attention-only MACs of the whole network, total and per stage"
    )
    parser.add_argument(
        "--convention",
        choices=sorted(ATTENTION_CONVENTIONS),
        default="full",
        help="with --attention: 'full' = projections, QK^T, AV and key/value reduction; 'core' = QK^T and AV",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.pooled_size is not None:
        overrides["pooled_sizes"] = args.pooled_size
    if args.head_pooled_size is not None:
        overrides["head_pooled_size"] = args.head_pooled_size
    if args.attention:
        return _attention(parser, args, overrides)
    if len(args.model) > 1 or args.model[0] in SEGFORMER_VARIANTS or args.sizes is not None:
        parser.error("several models, segformer_b0..b5 and --sizes need --attention")
    (name,) = args.model
    ((height, width),) = sizes_of(parser, "--size", args.size)
    try:
        with torch.device("meta"):  # shapes only: counting computes nothing
            model = create_model(name, num_classes=args.num_classes, **overrides)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    report = flops_report(model, height, width, depth=args.depth)
    report["model"] = name
    if not args.table:
        report.pop("per_module")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{name} at {height} x {width}: {report['params']:,} parameters, {report['gmacs']:.2f} GMACs")
    for module, macs in report.get("per_module", {}).items():
        print(f"  {module:<48} {macs / 1e9:10.3f} GMACs")
    return 0


def _attention(parser: argparse.ArgumentParser, args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """``--attention``: one row (or JSON line) per model and size."""
    sizes = sizes_of(parser, "--sizes", args.sizes) if args.sizes else sizes_of(parser, "--size", args.size)
    if overrides and any(name in SEGFORMER_VARIANTS for name in args.model):
        parser.error("--pooled-size / --head-pooled-size apply to LRFormer models only")
    if args.num_classes is not None:
        overrides["num_classes"] = args.num_classes
    try:
        rows = attention_report(args.model, sizes, args.convention, **overrides)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"attention-only GMACs ({args.convention}): {ATTENTION_CONVENTIONS[args.convention]}")
    for row in rows:
        height, width = row["size"]
        stages = "  ".join(f"{stage} {gmacs:.3f}" for stage, gmacs in row["per_stage"].items())
        print(f"  {row['model']:<14} {height:>5} x {width:<5} {row['attention_gmacs']:9.3f}   ({stages})")
    return 0
