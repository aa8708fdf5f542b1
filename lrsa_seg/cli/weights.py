"""``lrsa-seg weights list``: the files of a Hugging Face Hub repository of weights."""

from __future__ import annotations

from ..hub import OFFICIAL_REPO, list_hub_files
from .common import ToolParser


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg weights list [--repo OWNER/REPO] [--revision REV]``: one ``hf://`` address per line."""
    parser = ToolParser("weights", "Pretrained weights on the Hugging Face Hub.")
    parser.add_argument(
        "command", choices=["list"], help="list: the files of a Hub repository as hf:// addresses (needs the network)"
    )
    parser.add_argument("--repo", default=OFFICIAL_REPO, help="Hub repository")
    parser.add_argument("--revision", default=None, help="branch, tag or commit; None: the default branch")
    args = parser.parse_args(argv)
    suffix = f"@{args.revision}" if args.revision else ""
    for filename in list_hub_files(args.repo, args.revision):
        print(f"hf://{args.repo}/{filename}{suffix}")
    return 0
