"""``lrsa-seg``: ``fit`` / ``validate`` / ``test`` / ``predict`` (LightningCLI) and the tools."""

from __future__ import annotations

import os
import sys

from lightning.pytorch.cli import ArgsType

from .. import __version__
from ..allocator import apply_allocator_setting
from ..errors import USER_ERRORS
from . import ablate, benchmark, check_data, convert, demo, export, flops, profile, segment, weights
from .common import fail, run_tool
from .lightning import run_lightning

TOOLS = {
    "flops": (flops, "exact parameter and multiply-accumulate counts"),
    "convert": (convert, "convert weights (official, ImageNet, training checkpoints) to a saved model folder"),
    "segment": (segment, "label maps and overlays for images with pretrained weights (no config)"),
    "demo": (demo, "a web page to segment uploaded images (Gradio, the [demo] extra)"),
    "weights": (weights, "the released models (offline) and a Hub repository's files (online)"),
    "ablate": (ablate, "pool-size ablation: fit + test per pooled size, one table"),
    "check-data": (check_data, "scan a dataset: bad files, orphans, sizes, labels; pixels per class"),
    "benchmark": (benchmark, "latency and peak memory vs SegFormer and the reference, one table"),
    "export": (export, "ONNX export with dynamic height and width, checked with onnxruntime"),
    "profile": (profile, "share of inference latency in LRSA's bilinear upsampling (profiler)"),
}
"""Tools that are not Lightning subcommands: name -> (module with ``main(argv) -> int``, summary)."""


def main(args: ArgsType = None) -> int:
    """Entry point of ``lrsa-seg`` and ``python -m lrsa_seg``."""
    # W&B stays offline unless the user asks otherwise (clusters often have no network).
    os.environ.setdefault("WANDB_MODE", "offline")
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["--version"]:
        print(f"lrsa-seg {__version__}")
        return 0
    try:
        apply_allocator_setting()  # keep freed memory for reuse: no page faults per activation
    except ValueError as err:
        return fail(str(err))
    if argv and argv[0] in TOOLS:
        return run_tool(TOOLS[argv[0]][0].main, argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print("lrsa-seg tools:\n" + "\n".join(f"  {name:<12} {summary}" for name, (_, summary) in TOOLS.items()))
        print("Lightning subcommands (lrsa-seg SUBCOMMAND --help): fit, validate, test, predict")
        print("lrsa-seg --version: the version\n")
    try:
        run_lightning(None if args is None else argv)
    except USER_ERRORS as err:
        # Bad input, not a bug: one line naming the argument or file, no traceback.
        return fail(str(err))
    return 0
