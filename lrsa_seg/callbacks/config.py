"""Saving the resolved config: ``config.yaml`` beside the logs, and the whole config in W&B."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` beside the logs and log the full resolved config to W&B."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Send the resolved config to every W&B logger of the run."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.clone().as_dict(), allow_val_change=True)
