"""Callbacks: prediction PNG writer and W&B config logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

log = logging.getLogger(__name__)


def default_palette(num_colors: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: distinct colours for any number of classes."""
    palette = []
    for index in range(num_colors):
        rgb, c = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette.append((rgb[0], rgb[1], rgb[2]))
    return palette


class SegmentationWriter(BasePredictionWriter):
    """Write ``<name>.png`` (palette label map) and ``<name>_overlay.jpg`` per predicted image.

    Names keep the input's relative path and stem. An unreadable input is reported by name
    and skipped.

    Args:
        output_dir: folder for the files.
        alpha: weight of the class colours in the overlay.
    """

    def __init__(self, output_dir: str = "predictions", alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.alpha = alpha
        self.skipped: list[str] = []

    def _palette(self, trainer: L.Trainer) -> list[tuple[int, int, int]]:
        dataset_class = getattr(trainer.datamodule, "dataset_class", None)
        palette = list(getattr(dataset_class, "palette", ()) or ())
        return palette + default_palette()[len(palette) :]

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Save the label PNG and colour overlay of each image of the batch."""
        if "error" in prediction:
            for name, error in zip(prediction["name"], prediction["error"]):
                log.warning("skipping %s: %s", name, error)
                print(f"skipped unreadable image {name}: {error}")
                self.skipped.append(name)
            return
        palette = self._palette(trainer)
        colours = np.array(palette, dtype=np.uint8)
        flat_palette = [c for rgb in palette for c in rgb]
        for name, image, pred in zip(prediction["name"], prediction["image"], prediction["pred"]):
            labels = pred.cpu().numpy()
            stem = self.output_dir / Path(name).with_suffix("")
            stem.parent.mkdir(parents=True, exist_ok=True)
            label_png = Image.fromarray(labels, mode="P")
            label_png.putpalette(flat_palette)
            label_png.save(stem.with_suffix(".png"))
            rgb = image.permute(1, 2, 0).cpu().numpy().astype(np.float32)
            overlay = (1 - self.alpha) * rgb + self.alpha * colours[labels].astype(np.float32)
            Image.fromarray(overlay.round().clip(0, 255).astype(np.uint8)).save(
                stem.parent / f"{stem.name}_overlay.jpg", quality=90
            )


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` beside the logs and log the full resolved config to W&B."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Send the resolved config to every W&B logger of the run."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config.clone().as_dict(), allow_val_change=True)
