"""``lrsa-seg profile``: the share of inference latency spent in LRSA's bilinear upsampling (paper: 0.8%)."""

from __future__ import annotations

import json

import torch

from ..models import create_model, list_models
from ..models.profiling import attention_upsampling_share
from .common import ToolParser, add_size_argument, sizes_of


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg profile --models lrformer_t lrformer_s --sizes 512 512 2048 2048 [--json]``."""
    parser = ToolParser("profile", "Profile inference; report the share of LRSA's bilinear upsampling.")
    segmentors = [m for m in list_models() if not m.endswith("_cls")]
    parser.add_argument("--models", nargs="+", choices=segmentors, default=["lrformer_t"], help="segmentors")
    add_size_argument(parser, "--sizes", [(512, 512)], "input sizes", multiple=True)
    parser.add_argument("--num-classes", type=int, default=150, help="output classes")
    parser.add_argument("--runs", type=int, default=3, help="profiled forward passes per row")
    parser.add_argument("--warmup", type=int, default=1, help="unprofiled passes first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row")
    args = parser.parse_args(argv)
    sizes = sizes_of(parser, "--sizes", args.sizes)
    if not sizes or args.runs < 1:
        parser.error("--sizes needs at least one H W pair and --runs must be >= 1")
    if not args.json:
        print("| model | input | forward (ms) | LRSA upsampling (ms) | share | calls |\n|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=args.num_classes).eval().to(args.device)
        for height, width in sizes:
            row = attention_upsampling_share(model, height, width, args.runs, args.warmup)
            row.update(model=name, size=[height, width])
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"| {name} | {height} x {width} | {row['forward_ms']:.1f} | {row['upsample_ms']:.2f} "
                    f"| {row['share']:.2%} | {row['calls']} |",
                    flush=True,
                )
    return 0
