"""``lrsa-seg convert``: any supported weights file (official release included) -> an lrsa-seg weights file."""

from __future__ import annotations

from ..weights import convert_checkpoint, load_weights_file
from .common import ToolParser


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg convert SRC OUT.pt [--model lrformer_t]``."""
    parser = ToolParser(
        "convert",
        "Convert a weights file (official segmentation or ImageNet checkpoint, Lightning checkpoint, ...) "
        "to an lrsa-seg weights file that carries its preprocessing, checked by a strict load.",
    )
    parser.add_argument("src", help="source: a path, hf://OWNER/REPO/PATH[@REVISION] or an http(s) URL")
    parser.add_argument("dst", help="output file for lrsa-seg")
    parser.add_argument(
        "--model", default=None, help="registered model name, e.g. lrformer_t (default: identified from the shapes)"
    )
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow arbitrary unpickling (only for files you trust)"
    )
    args = parser.parse_args(argv)
    weights = load_weights_file(args.src, args.allow_pickle)
    print(weights.describe())
    out = convert_checkpoint(weights, args.dst, args.model)
    n = sum(
        v.numel()
        for k, v in out.state_dict.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    what = f"{out.model_kwargs['num_classes']} classes" if out.has_head else "backbone only"
    print(f"wrote {args.dst}: {out.model}, {what}, {n:,} parameters")
    return 0
