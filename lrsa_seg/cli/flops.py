"""``lrsa-seg flops``: exact parameter and multiply-accumulate counts of a registered model."""

from __future__ import annotations

import json
from typing import Any

import torch

from ..errors import ConfigError
from ..models import create_model, list_models
from ..models.flops import flops_report
from .common import ToolParser, add_size_argument, sizes_of


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg flops --model lrformer_t --size 512 512 --num-classes 150 [--json] [--table]``."""
    parser = ToolParser("flops", "Exact parameters and multiply-accumulates (on the meta device: computes nothing).")
    parser.add_argument("--model", required=True, choices=list_models(), help="registered model name")
    add_size_argument(parser, "--size", [512, 512], "input size")
    parser.add_argument(
        "--num-classes", type=int, default=None, help="output classes (None: 150 for segmentors, 1000 for classifiers)"
    )
    parser.add_argument("--pooled-size", type=int, default=None, help="backbone LRSA pooled size (all stages)")
    parser.add_argument("--head-pooled-size", type=int, default=None, help="head LRSA pooled size")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--table", action="store_true", help="also give MACs per module")
    parser.add_argument("--depth", type=int, default=3, help="module depth of the table")
    args = parser.parse_args(argv)
    ((height, width),) = sizes_of(parser, "--size", args.size)
    overrides: dict[str, Any] = {}
    if args.pooled_size is not None:
        overrides["pooled_sizes"] = args.pooled_size
    if args.head_pooled_size is not None:
        overrides["head_pooled_size"] = args.head_pooled_size
    try:
        with torch.device("meta"):  # shapes only: counting computes nothing
            model = create_model(args.model, num_classes=args.num_classes, **overrides)
    except ValueError as err:
        raise ConfigError(str(err)) from None
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
