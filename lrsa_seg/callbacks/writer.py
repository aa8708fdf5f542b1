"""``predict`` output: a palette label PNG and a colour overlay per image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from ..visualize import overlay, save_label_png

log = logging.getLogger(__name__)


class SegmentationWriter(BasePredictionWriter):
    """Write ``<name>.png`` (palette label map) and ``<name>_overlay.jpg`` per predicted image.

    Names keep the input's relative path and stem. An unreadable input is reported by name
    and skipped. The overlay has a legend of the classes present.

    Args:
        output_dir: folder for the files.
        alpha: weight of the class colours in the overlay.
    """

    def __init__(self, output_dir: str = "predictions", alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.alpha = alpha
        self.skipped: list[str] = []

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
        dataset_class = getattr(trainer.datamodule, "dataset_class", None)
        palette = getattr(dataset_class, "palette", None)
        class_names = getattr(pl_module, "class_names", None)
        for name, image, pred in zip(prediction["name"], prediction["image"], prediction["pred"]):
            labels = pred.cpu().numpy()
            stem = self.output_dir / Path(name).with_suffix("")
            stem.parent.mkdir(parents=True, exist_ok=True)
            save_label_png(labels, stem.with_suffix(".png"), palette)
            rgb = image.permute(1, 2, 0).cpu().numpy()
            picture = overlay(rgb, labels, palette, class_names, alpha=self.alpha)
            Image.fromarray(picture).save(stem.parent / f"{stem.name}_overlay.jpg", quality=90)
