"""``lrsa-seg``: LightningCLI (fit / validate / test / predict) plus the project's tools."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from lrsa_seg.allocator import apply_allocator_setting

# Tools that are not Lightning subcommands: name -> (module with main(argv) -> int, summary).
TOOLS = {
    "flops": ("lrsa_seg.flops", "exact parameter and multiply-accumulate counts"),
    "convert": ("lrsa_seg.convert", "convert an official LRFormer checkpoint"),
    "ablate": ("lrsa_seg.ablate", "pool-size ablation: fit + test per pooled size, one table"),
    "check-data": ("lrsa_seg.check_data", "scan a dataset: bad files, orphans, sizes, labels; pixels per class"),
    "benchmark": ("lrsa_seg.benchmark", "latency and peak memory vs SegFormer and the reference, one table"),
    "export": ("lrsa_seg.export", "ONNX export with dynamic height and width, checked with onnxruntime"),
}


class SegmentationCLI(LightningCLI):
    """LightningCLI that takes ``num_classes`` and class names from the datamodule.

    Every trainer gets atomic checkpoint files and fault tolerance (:mod:`lrsa_seg.reliability`),
    and the configuration is checked before anything runs.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the dataset's classes to the model."""
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.init_args.class_names", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Lightning's merge of the ``--ckpt_path`` file's hyper-parameters into the config, read safely.

        Lightning 2.6 reads the file here with ``torch.load(weights_only=True)`` whatever
        ``--weights_only`` says (so a file that needs unpickling can never be resumed) and lets a
        corrupt file end in a zip/pickle traceback. This reads it with ``torch_load``:
        errors name the file, and ``--weights_only false`` is honoured.
        """
        from lrsa_seg.convert import torch_load
        from lrsa_seg.reliability import WEIGHTS_ONLY_OPT_IN

        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():  # "last", "best", URLs: resolved by the trainer
            return
        allow_pickle = self.config[subcommand].get("weights_only") is False
        checkpoint = torch_load(path, allow_pickle=allow_pickle, opt_in=WEIGHTS_ONLY_OPT_IN)
        hparams = dict(checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write(f"Parsing of the hyper-parameters of {path} failed!\n")
            raise

    def instantiate_classes(self) -> None:
        """Instantiate, then refuse values that disagree with the data and paths that do not exist."""
        from lrsa_seg.reliability import check_data_arguments, check_linked_arguments, user_error_in

        config = self.config.get(self.subcommand) if self.subcommand else self.config
        check_data_arguments(config, self.subcommand)
        try:
            super().instantiate_classes()
        except ValueError as err:  # jsonargparse wraps errors of the classes' __init__
            cause = user_error_in(err)
            if cause is None:
                raise
            raise cause from None
        check_linked_arguments(config, self.datamodule)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The configured trainer with :class:`AtomicCheckpointIO` and :class:`FaultTolerance` added."""
        from lrsa_seg.reliability import harden_trainer

        return harden_trainer(super().instantiate_trainer(**kwargs))


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
    try:
        apply_allocator_setting()  # keep freed memory for reuse: no page faults per activation
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in TOOLS:
        module = importlib.import_module(TOOLS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    if not argv or argv[0] in ("-h", "--help"):
        print("lrsa-seg tools:\n" + "\n".join(f"  {name:<12} {summary}" for name, (_, summary) in TOOLS.items()))
        print("Lightning subcommands (lrsa-seg SUBCOMMAND --help): fit, validate, test, predict\n")
    from datamodules import DatasetError
    from lrsa_seg.reliability import USER_ERRORS

    try:
        run_lightning(None if args is None else argv)
    except (*USER_ERRORS, DatasetError) as err:
        # Bad input, not a bug: one line naming the argument or file, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
