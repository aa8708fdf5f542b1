"""``lrsa-seg weights``: the released models (offline) and the files of a Hub repository (online)."""

from __future__ import annotations

from ..hub import list_hub_files
from ..models.pretrained import OFFICIAL_REPO, PRETRAINED
from .common import ToolParser


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg weights released`` | ``lrsa-seg weights list [--repo OWNER/REPO] [--revision REV]``."""
    parser = ToolParser("weights", "Pretrained weights: the released models, and Hub repositories' files.")
    parser.add_argument(
        "command",
        choices=["released", "list"],
        help="released: one line per released model (variant, dataset, classes, test resize, stated mIoU); "
        "list: the files of a Hub repository as hf:// addresses (needs the network)",
    )
    parser.add_argument("--repo", default=OFFICIAL_REPO, help="Hub repository")
    parser.add_argument("--revision", default=None, help="branch, tag or commit; None: the default branch")
    args = parser.parse_args(argv)
    if args.command == "released":
        for cfg in PRETRAINED.values():
            resize = f"{cfg.base_size[0]}x{cfg.base_size[1]}" + (f" /{cfg.size_multiple}" if cfg.size_multiple else "")
            print(
                f"{cfg.name}\t{cfg.num_classes} classes\ttest resize {resize}\tstated mIoU {cfg.miou}%\t{cfg.hub_repo}"
            )
        return 0
    suffix = f"@{args.revision}" if args.revision else ""
    for filename in list_hub_files(args.repo, args.revision):
        print(f"hf://{args.repo}/{filename}{suffix}")
    return 0
