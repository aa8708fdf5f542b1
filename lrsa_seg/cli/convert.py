"""``lrsa-seg convert``: an official LRFormer checkpoint -> an lrsa-seg weights file."""

from __future__ import annotations

from ..weights import convert_checkpoint
from .common import ToolParser


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg convert OFFICIAL.pth OUT.pt --model lrformer_t``."""
    parser = ToolParser("convert", "Convert an official LRFormer checkpoint (checked by a strict load).")
    parser.add_argument("src", help="official checkpoint (mmseg .pth with state_dict/meta, or a bare state dict)")
    parser.add_argument("dst", help="output file for lrsa-seg")
    parser.add_argument("--model", required=True, help="registered model name, e.g. lrformer_t")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow arbitrary unpickling (only for files you trust)"
    )
    args = parser.parse_args(argv)
    out = convert_checkpoint(args.src, args.dst, args.model, args.allow_pickle)
    n = sum(
        v.numel()
        for k, v in out["state_dict"].items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    print(f"wrote {args.dst}: {args.model}, {out['model_kwargs']['num_classes']} classes, {n:,} parameters")
    return 0
