"""Predictions on a fixed set of validation images, every k validations: a PNG grid and W&B overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from ..constants import IGNORE_INDEX
from ..visualize import colorize, overlay


def sample_grid(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], palette: Any, names: list[str]) -> np.ndarray:
    """One row per image: the image, its ground truth, the prediction with a legend; ``(H, W, 3)`` uint8."""
    pictures = []
    for image, truth, pred in rows:
        truth_colours = np.where((truth == IGNORE_INDEX)[..., None], 0, colorize(truth, palette)).astype(np.uint8)
        pictures.append(np.concatenate([image, truth_colours, overlay(image, pred, palette, names)], axis=1))
    width = max(p.shape[1] for p in pictures)
    padded = [np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
    return np.concatenate(padded, axis=0)


class SamplePredictions(L.Callback):
    """Every ``every_n_validations`` validations, predict ``num_images`` fixed validation images.

    Writes ``samples_step<N>.png`` (rows: image | ground truth | prediction with a legend of the
    classes present) into ``output_dir`` and, with a W&B logger, logs ``val/samples``: one
    ``wandb.Image`` per image with ``prediction`` and ``ground_truth`` masks and class labels
    (interactive overlays). Cost: ``num_images`` extra forward passes at the end of a logged
    validation (the images are kept on the CPU after the first one), on global rank 0 only.

    Args:
        output_dir: folder of the grids.
        num_images: how many validation images (spread evenly over the validation set).
        every_n_validations: log at the 1st, (1+k)th, ... validation after the sanity check.
    """

    def __init__(self, output_dir: str = "visuals", num_images: int = 4, every_n_validations: int = 1) -> None:
        if num_images < 1 or every_n_validations < 1:
            raise ValueError("SamplePredictions: num_images and every_n_validations must be >= 1")
        self.output_dir = Path(output_dir)
        self.num_images, self.every_n_validations = num_images, every_n_validations
        self._samples: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._validations = 0

    def _collect(self, trainer: L.Trainer) -> None:
        loaders = trainer.val_dataloaders
        dataset = (loaders[0] if isinstance(loaders, (list, tuple)) else loaders).dataset
        # Spread over the split: consecutive video frames would show the same scene N times.
        for index in np.linspace(0, len(dataset) - 1, min(self.num_images, len(dataset))).round().astype(int):
            sample = dataset[int(index)]
            self._samples.append((sample["image"], sample["mask"]))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Predict the fixed images and write / log them."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations:
            return
        if not self._samples:
            self._collect(trainer)
        names = list(pl_module.class_names)
        palette = getattr(getattr(trainer.datamodule, "dataset_class", None), "palette", None)
        was_training = pl_module.training
        pl_module.eval()
        rows = []
        with torch.no_grad():
            for image, mask in self._samples:
                probs = pl_module.predict_probs(image[None].to(pl_module.device))
                pred = probs.argmax(dim=1)[0].cpu().numpy()
                rows.append((image.permute(1, 2, 0).numpy(), mask.numpy(), pred))
        pl_module.train(was_training)
        step = trainer.global_step
        self.output_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample_grid(rows, palette, names)).save(self.output_dir / f"samples_step{step}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                labels = {i: name for i, name in enumerate(names)} | {IGNORE_INDEX: "unlabelled"}
                images = [
                    wandb.Image(
                        image,
                        masks={
                            "prediction": {"mask_data": pred, "class_labels": labels},
                            "ground_truth": {"mask_data": truth, "class_labels": labels},
                        },
                    )
                    for image, truth, pred in rows
                ]
                logger.log_metrics({"val/samples": images}, step=step)
