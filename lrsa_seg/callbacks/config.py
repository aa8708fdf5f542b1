"""Saving the resolved config: ``config.yaml`` beside the logs of a fit, and the whole config in W&B."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save the config beside the logs and log the full resolved config to W&B.

    ``fit`` writes ``config.yaml``; ``validate``/``test``/``predict`` write ``config_<stage>.yaml``, so
    evaluating a run never overwrites the record of its training.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Name the file after the stage, then save it."""
        name = TrainerFn(stage).value  # "fit", "validate", "test", "predict" (Lightning passes the enum)
        if name != TrainerFn.FITTING.value and not self.already_saved:
            stem, dot, suffix = self.config_filename.rpartition(".")
            self.config_filename = f"{stem}_{name}{dot}{suffix}" if dot else f"{suffix}_{name}"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Send the resolved config to every W&B logger of the run."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.clone().as_dict(), allow_val_change=True)
