"""The LightningCLI of ``lrsa-seg``: fit / validate / test / predict with the project's checks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

import datamodules  # noqa: F401 (so configs can name datamodules by class name)

from ..callbacks import LoggerSaveConfigCallback
from ..errors import ConfigError, user_error_in
from ..io import torch_load
from ..models.runtime import RUNTIMES, ExportedModel, check_classes, find_exported, load_exported
from ..task import SemanticSegmentationTask
from ..training import WEIGHTS_ONLY_OPT_IN, harden_trainer
from .checks import check_data_arguments, check_linked_arguments

EVALUATION_OPTIONS = (
    "eval_mode",
    "eval_crop_size",
    "eval_stride",
    "eval_base_size",
    "eval_size_multiple",
    "tta_scales",
    "tta_flip",
    "fused_eval",
    "size_iou",
)
"""Task arguments that say how to evaluate, not what the model is: a checkpoint does not override them."""


class SegmentationCLI(LightningCLI):
    """LightningCLI that takes ``num_classes`` and class names from the datamodule.

    Every trainer gets atomic checkpoint files and fault tolerance (:mod:`lrsa_seg.training`),
    and the configuration is checked before anything runs.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link the dataset's classes to the model; the switch that allows evaluating random weights."""
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.init_args.class_names", apply_on="instantiate")
        parser.add_argument(
            "--random_weights",
            type=bool,
            default=False,
            help="validate/test/predict with neither --ckpt_path nor --model.init_args.weights (random weights)",
        )
        parser.add_argument(
            "--runtime",
            type=str,
            default="torch",
            help="validate/test/predict with the exported model run by onnxruntime or openvino instead of "
            "PyTorch (same data, metrics and outputs); one of " + ", ".join(RUNTIMES),
        )
        parser.add_argument(
            "--exported",
            type=str | None,
            default=None,
            help="the exported file --runtime runs (.onnx, OpenVINO .xml); default: the one `lrsa-seg export` "
            "wrote into the saved model folder --model.init_args.weights",
        )

    def _parse_ckpt_path(self) -> None:
        """Lightning's merge of the ``--ckpt_path`` file's hyper-parameters into the config, read safely.

        The evaluation options (:data:`EVALUATION_OPTIONS`) are not taken from the file: those of
        the config and command line apply.

        Lightning 2.6 reads the file here with ``torch.load(weights_only=True)`` whatever
        ``--weights_only`` says (so a file that needs unpickling can never be resumed) and lets a
        corrupt file end in a zip/pickle traceback. This reads it with ``torch_load``:
        errors name the file, and ``--weights_only false`` is honoured.
        """
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
        # The file decides the model; the command decides how to evaluate it (size_iou or slide
        # inference asked for at test time would otherwise be replaced by the values of the fit).
        init_args = f"{subcommand}.model.init_args"
        asked = {
            key: self.config.get(f"{init_args}.{key}")
            for key in EVALUATION_OPTIONS
            if f"{init_args}.{key}" in self.config
        }
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write(f"Parsing of the hyper-parameters of {path} failed!\n")
            raise
        for key, value in asked.items():
            self.config[f"{init_args}.{key}"] = value

    def instantiate_classes(self) -> None:
        """Instantiate, then refuse values that disagree with the data and paths that do not exist."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        check_data_arguments(config, self.subcommand)
        check_weights_given(config, self.subcommand)
        try:
            super().instantiate_classes()
        except ValueError as err:  # jsonargparse wraps errors of the classes' __init__
            cause = user_error_in(err)
            if cause is None:
                raise
            raise cause from None
        check_linked_arguments(config, self.datamodule)
        self.model.exported = exported_model(config, self.subcommand)
        if self.model.exported is not None:
            check_classes(self.model.exported, self.model.hparams.num_classes)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The configured trainer with :class:`AtomicCheckpointIO` and :class:`FaultTolerance` added.

        ``predict`` runs without loggers: it has nothing to track, and a logger would start a run.
        """
        trainer = harden_trainer(super().instantiate_trainer(**kwargs))
        if self.subcommand == "predict":
            trainer.loggers = []
        return trainer


def check_weights_given(config: Any, subcommand: str | None) -> None:
    """Evaluating needs trained weights: ``--ckpt_path`` or ``--model.init_args.weights`` (or ``--random_weights``)."""
    if subcommand not in ("validate", "test", "predict") or config.get("random_weights"):
        return
    if config.get("runtime", "torch") != "torch":  # the exported file holds the weights
        return
    if not config.get("ckpt_path") and not config.get("model.init_args.weights"):
        raise ConfigError(
            "the model has random weights; pass --ckpt_path or --model.init_args.weights "
            "(--random_weights true runs it anyway)"
        )


def exported_model(config: Any, subcommand: str | None) -> ExportedModel | None:
    """The model ``--runtime`` / ``--exported`` ask for (:mod:`lrsa_seg.models.runtime`); None for PyTorch."""
    runtime, exported = config.get("runtime", "torch"), config.get("exported")
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch":
        if exported is not None:
            raise ConfigError("--exported is run by --runtime onnxruntime or openvino, not torch")
        return None
    if subcommand not in ("validate", "test", "predict"):
        raise ConfigError(f"--runtime {runtime} runs an exported model in validate, test or predict, not {subcommand}")
    weights = config.get("model.init_args.weights")
    if exported is None and weights is None:
        raise ConfigError(
            f"--runtime {runtime} needs --exported PATH (or --model.init_args.weights a saved model folder)"
        )
    return load_exported(find_exported(weights, runtime, exported), runtime)


def run_lightning(args: ArgsType = None) -> SegmentationCLI:
    """Run a Lightning subcommand; returns the CLI (its ``trainer`` and ``model``)."""
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
