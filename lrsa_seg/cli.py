"""``lrsa-seg``: LightningCLI (fit / validate / test / predict) plus the project's tools."""

from __future__ import annotations

import importlib
import os
import sys

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

# Tools that are not Lightning subcommands: name -> (module with main(argv) -> int, summary).
TOOLS = {
    "flops": ("lrsa_seg.flops", "exact parameter and multiply-accumulate counts"),
    "convert": ("lrsa_seg.convert", "convert an official LRFormer checkpoint"),
}


class SegmentationCLI(LightningCLI):
    """LightningCLI that takes ``num_classes`` and class names from the datamodule."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the dataset's classes to the model."""
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.init_args.class_names", apply_on="instantiate")


def run_lightning(args: ArgsType = None) -> SegmentationCLI:
    """Run a Lightning subcommand; returns the CLI (its ``trainer`` and ``model``)."""
    import lightning as L

    import datamodules  # noqa: F401 (so configs can name datamodules by class name)
    from lrsa_seg.callbacks import LoggerSaveConfigCallback
    from lrsa_seg.task import SemanticSegmentationTask

    return SegmentationCLI(
        SemanticSegmentationTask,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggerSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        args=args,
    )


def main(args: ArgsType = None) -> int:
    """Entry point of ``lrsa-seg`` and ``python -m lrsa_seg``."""
    # W&B stays offline unless the user asks otherwise (clusters often have no network).
    os.environ.setdefault("WANDB_MODE", "offline")
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in TOOLS:
        module = importlib.import_module(TOOLS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    if not argv or argv[0] in ("-h", "--help"):
        print("lrsa-seg tools:\n" + "\n".join(f"  {name:<12} {summary}" for name, (_, summary) in TOOLS.items()))
        print("Lightning subcommands (lrsa-seg SUBCOMMAND --help): fit, validate, test, predict\n")
    run_lightning(None if args is None else argv)
    return 0
