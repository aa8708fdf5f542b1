"""At the end of each validation and test: the confusion matrix as a picture, per-class scores as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger


def row_normalised(confusion: torch.Tensor) -> np.ndarray:
    """``(K, K)`` counts (rows: ground truth) -> each row divided by its sum (rows without pixels stay 0)."""
    counts = confusion.double().cpu().numpy()
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def confusion_figure(confusion: torch.Tensor, class_names: list[str], title: str) -> Any:
    """A matplotlib ``Figure`` (made without pyplot) of the row-normalised confusion matrix."""
    from matplotlib.figure import Figure

    matrix = row_normalised(confusion)
    size = 2.5 + 0.45 * len(class_names)
    fig = Figure(figsize=(size, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90)
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="prediction", ylabel="ground truth", title=title)
    if len(class_names) <= 30:  # the fractions stay readable
        for (row, col), value in np.ndenumerate(matrix):
            if value >= 0.005:
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the class's pixels")
    return fig


def confusion_chart(confusion: torch.Tensor, class_names: list[str], title: str) -> Any:
    """The row-normalised ``(K, K)`` matrix as W&B's interactive confusion-matrix chart.

    ``wandb.plot.confusion_matrix`` counts per-sample label lists (millions of pixels here);
    this feeds its chart (``wandb/confusion_matrix/v1``) the fractions of the counts instead.
    """
    import wandb

    matrix = row_normalised(confusion)
    data = [
        [truth, pred, float(matrix[i, j])] for i, truth in enumerate(class_names) for j, pred in enumerate(class_names)
    ]
    return wandb.plot_table(
        "wandb/confusion_matrix/v1",
        wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data),
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": f"{title} (fraction of the class's pixels)"},
    )


class EvaluationReport(L.Callback):
    """Write ``confusion_<split>_step<N>.png`` (row-normalised) and, with W&B, log it with a per-class table.

    Reads the confusion matrix the task keeps after each validation and test
    (``SemanticSegmentationTask.last_confusion``). On W&B: ``<split>/confusion_matrix`` (the
    picture), ``<split>/confusion_chart`` (the same fractions as W&B's interactive confusion-matrix
    chart) and ``<split>/per_class`` (a ``wandb.Table`` of IoU, accuracy and labelled pixels per
    class). Global rank 0 only; costs one small plot per evaluation (about 0.3 s).

    Args:
        output_dir: folder of the PNGs.
    """

    def __init__(self, output_dir: str = "visuals") -> None:
        self.output_dir = Path(output_dir)

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        confusion = getattr(pl_module, "last_confusion", {}).get(split)
        if confusion is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        names = list(getattr(pl_module, "class_names", [str(i) for i in range(confusion.shape[0])]))
        step = trainer.global_step
        fig = confusion_figure(confusion, names, f"{split} confusion (row-normalised), step {step}")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"confusion_{split}_step{step}.png"
        fig.savefig(path, dpi=100)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                tp = confusion.diagonal().double()
                labelled, predicted = confusion.sum(1).double(), confusion.sum(0).double()
                iou = (tp / (labelled + predicted - tp).clamp(min=1)).tolist()
                accuracy = (tp / labelled.clamp(min=1)).tolist()
                table = wandb.Table(
                    columns=["class", "IoU", "accuracy", "pixels"],
                    data=[[n, i, a, int(p)] for n, i, a, p in zip(names, iou, accuracy, labelled.tolist())],
                )
                # Through the logger: W&B gets "trainer/global_step" beside them, as for the scalars.
                logger.log_metrics(
                    {
                        f"{split}/confusion_matrix": wandb.Image(str(path)),
                        f"{split}/confusion_chart": confusion_chart(confusion, names, f"{split} step {step}"),
                        f"{split}/per_class": table,
                    },
                    step=step,
                )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the task has computed the validation's confusion matrix."""
        self._report(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the task has computed the test's confusion matrix."""
        self._report(trainer, pl_module, "test")
