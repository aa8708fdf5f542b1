"""``lrsa-seg convert``: any supported weights file -> a saved model folder (safetensors + config.json + card)."""

from __future__ import annotations

from ..hub import push_folder
from ..models import load_pretrained
from ..models.sharing import save_pretrained
from .common import ToolParser


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg convert SRC OUT_DIR [--model lrformer_t] [--allow-pickle] [--push-to-hub OWNER/REPO]``."""
    parser = ToolParser(
        "convert",
        "Convert weights (official segmentation or ImageNet checkpoint, a training checkpoint of this project, "
        "a 0.1 .pt file ...) to a saved model folder: model.safetensors, config.json (model, classes, "
        "preprocessing, provenance) and README.md (model card), checked by a strict load.",
    )
    parser.add_argument("src", help="source: a path, folder, hf://OWNER/REPO[/PATH][@REVISION] or an http(s) URL")
    parser.add_argument("dst", help="output folder (created; its three files are replaced)")
    parser.add_argument(
        "--model", default=None, help="registered model name, e.g. lrformer_t (default: identified from the shapes)"
    )
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow arbitrary unpickling (only for files you trust)"
    )
    parser.add_argument(
        "--push-to-hub", default=None, metavar="OWNER/REPO", help="also upload the folder to this Hub repository"
    )
    args = parser.parse_args(argv)
    pretrained = load_pretrained(args.src, args.model, allow_pickle=args.allow_pickle)
    checkpoint = pretrained.checkpoint
    print(checkpoint.describe())
    # A backbone-only source saves only the backbone: a random head must not pass for a trained one.
    folder = save_pretrained(
        pretrained.model, args.dst, metrics=checkpoint.metrics, backbone_only=not checkpoint.has_head
    )
    n = sum(p.numel() for p in pretrained.model.parameters())
    what = f"{checkpoint.num_classes} classes" if checkpoint.has_head else "backbone only (the head is not saved)"
    print(f"wrote {folder}: {checkpoint.model}, {what}, {n:,} parameters")
    if args.push_to_hub:
        print(f"pushed to {push_folder(folder, args.push_to_hub)}")
    return 0
