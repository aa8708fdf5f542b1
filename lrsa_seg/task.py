"""SemanticSegmentationTask: the LightningModule that trains, evaluates and predicts."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex

from .constants import IGNORE_INDEX, IMAGE_MEAN, IMAGE_STD
from .errors import CheckpointMismatchError, ConfigError
from .losses import MEDIAN_FREQUENCY, SegmentationLoss, loss_option_problem, median_frequency_of_datamodule
from .metrics import SIZE_NAMES, SizeBinnedIoU, class_scores
from .models import CLASSIFIER_SUFFIX, create_model, fuse_for_inference, load_pretrained
from .models.checkpoint import CHECKPOINT_KEY, record_from_hparams
from .models.segmentor import predict_logits
from .training.optim import parameter_groups, regroup_optimizer_state, sync_head_batchnorm, warmup_poly_factor

CLASS_WEIGHTS_FILE = "class_weights.json"
"""The median-frequency cache, in the trainer's ``default_root_dir``."""
CLASS_WEIGHTS_KEY = "lrsa_seg_class_weights"
"""Where a checkpoint keeps the computed median-frequency weights."""


class SemanticSegmentationTask(L.LightningModule):
    """Train and evaluate a registered segmentation model with the paper's recipe.

    Args:
        model: registered name (``lrsa_seg.models.list_models()``), e.g. ``lrformer_t``.
        num_classes: output classes; required in Python, linked from the datamodule by the CLI
            (a different value given there is an error).
        pooled_sizes: backbone LRSA pooled size, one int or one per stage (None: the variant's 16).
        head_pooled_size: LRHead LRSA pooled size (None: the variant's 32).
        drop_path_rate: stochastic depth (None: the variant's).
        init_scheme: how a new model's weights are drawn: ``"official"`` (the release's scheme) or
            ``"fan_out"`` (lrsa-seg 0.1's: every conv normal(0, sqrt(2 / fan_out)), zero bias).
        weights: starting weights, any source :func:`~lrsa_seg.models.load_pretrained` reads, loaded
            strictly when fit/validate/test/predict starts unless a checkpoint is restored then. Not
            a hyper-parameter: checkpoints record it (source, SHA-256, format) and never open it again.
        weights_scope: ``"auto"`` loads the whole model, or only the backbone when the file has no
            head; ``"backbone"`` takes only the backbone from any file (fine-tuning on new classes).
        class_names: names for per-class IoU (linked from the datamodule by the CLI).
        lr: base learning rate (AdamW).
        weight_decay: AdamW weight decay (none on normalization parameters).
        betas: AdamW betas.
        head_lr_mult: learning-rate multiplier of the decode head.
        warmup_iters: linear warm-up iterations.
        warmup_ratio: LR factor at the start of warm-up.
        max_iters: iterations of the poly decay (None: the trainer's total steps).
        poly_power: power of the poly decay.
        min_lr: LR at the end of the decay.
        eval_mode: ``"whole"`` image or ``"slide"`` window inference for val/test/predict.
        eval_crop_size: sliding window ``(h, w)``.
        eval_stride: sliding stride ``(h, w)``.
        eval_base_size: resize eval images keeping the ratio to fit ``(long, short)`` first (the
            paper's test scale, e.g. ``(2048, 512)``); None keeps the native size.
        eval_size_multiple: round eval sizes to a multiple (32 = the paper's AlignResize); None: any size.
        tta_scales: multi-scale test-time factors.
        tta_flip: also average the horizontally flipped prediction.
        fused_eval: validate, test and predict with a fused inference copy of the model
            (:func:`~lrsa_seg.models.fuse_for_inference`, rebuilt at the start of each loop):
            same predictions up to float rounding, fewer passes over memory.
        grad_checkpointing: recompute backbone blocks in backward to save memory.
        loss_average: how the cross-entropy is averaged: ``"all_pixels"`` divides the (class- and
            OHEM-weighted) sum over the labelled pixels by all pixels, as the official mmseg loss
            (``avg_non_ignore=False``); ``"labelled_pixels"`` by the labelled pixels only, or with
            class weights by the sum of their weights (PyTorch's weighted mean).
        class_weights: cross-entropy weight per class: a list of ``num_classes`` values, or
            ``"median_frequency"``: SegNet's median-frequency balancing computed at ``fit`` from
            the training masks (``median(freq) / freq(c)``, ``freq(c)`` = pixels of ``c`` / labelled
            pixels of the images holding ``c``; 0 for classes never seen), cached in
            ``<default_root_dir>/class_weights.json`` and kept in checkpoints. None: unweighted.
        ohem_thresh: online hard example mining as mmseg's ``OHEMPixelSampler``: only pixels whose
            true-class probability is below this (0-1) give loss, at least ``ohem_min_kept`` per
            image (the threshold rises to keep them). None: every pixel.
        ohem_min_kept: OHEM's minimum number of kept pixels per image of the batch.
        aux_loss: an added loss on the softmax: ``"dice"`` (soft Dice over the classes present)
            or ``"lovasz"`` (Lovasz-Softmax, classes present); ignored pixels excluded.
        aux_loss_weight: factor of ``aux_loss``.
        head_sync_batchnorm: in multi-GPU training, synchronise the decode head's BatchNorms across
            processes (the official ``norm_cfg=SyncBN`` of the head; the backbone stem's stay
            per-GPU, unlike Lightning's ``trainer.sync_batchnorm``, which converts every one).
        size_iou: also report test mIoU over small / medium / large ground-truth regions
            (``test/mIoU_small`` ..., :mod:`lrsa_seg.metrics`; costs a connected-component pass
            per test image on the CPU).
    """

    monitor = "val/mIoU"
    mode = "max"

    def __init__(
        self,
        model: str = "lrformer_t",
        num_classes: int | None = None,
        pooled_sizes: int | list[int] | None = None,
        head_pooled_size: int | None = None,
        drop_path_rate: float | None = None,
        init_scheme: Literal["official", "fan_out"] = "official",
        weights: str | None = None,
        weights_scope: Literal["auto", "backbone"] = "auto",
        class_names: list[str] | None = None,
        lr: float = 6e-5,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        head_lr_mult: float = 10.0,
        warmup_iters: int = 1500,
        warmup_ratio: float = 1e-6,
        max_iters: int | None = None,
        poly_power: float = 1.0,
        min_lr: float = 0.0,
        eval_mode: Literal["whole", "slide"] = "whole",
        eval_crop_size: tuple[int, int] = (512, 512),
        eval_stride: tuple[int, int] = (341, 341),
        eval_base_size: tuple[int, int] | None = None,
        eval_size_multiple: int | None = None,
        tta_scales: list[float] = [1.0],  # noqa: B006 (jsonargparse needs a literal default)
        tta_flip: bool = False,
        fused_eval: bool = True,
        grad_checkpointing: bool = False,
        loss_average: Literal["all_pixels", "labelled_pixels"] = "all_pixels",
        size_iou: bool = False,
        class_weights: Literal["median_frequency"] | list[float] | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100000,
        aux_loss: Literal["dice", "lovasz"] | None = None,
        aux_loss_weight: float = 1.0,
        head_sync_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        # The starting weights are where fitting starts, not a setting to replay: rebuilding the task
        # from its own checkpoint must not open them (torchgeo's BaseTask leaves them out too).
        self.save_hyperparameters(ignore=["weights", "weights_scope"])
        self.starting_weights: tuple[str, Literal["auto", "backbone"]] | None = (
            (weights, weights_scope) if weights is not None else None
        )
        self.starting_weights_record: dict[str, Any] | None = None
        if weights_scope not in ("auto", "backbone"):
            raise ConfigError(f"model.init_args.weights_scope must be 'auto' or 'backbone', got {weights_scope!r}")
        if num_classes is None:
            raise ConfigError("model.init_args.num_classes is required (the CLI links it from the data)")
        if num_classes < 1:
            raise ConfigError(f"model.init_args.num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"model.init_args.class_names has {len(class_names)} names for num_classes={num_classes}")
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self._fused: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = ()  # a tuple: not a submodule (checkpoints)
        self.exported: Callable[[torch.Tensor], torch.Tensor] | None = None  # run instead of the model (--runtime)
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # --- the three parts of the configuration, as torchgeo's tasks split them ---------------
    def configure_models(self) -> None:
        """Build ``self.model`` from the registered name and overrides; load ``weights``."""
        h = self.hparams
        if h.model.endswith(CLASSIFIER_SUFFIX):
            raise ConfigError(
                f"model.init_args.model: {h.model!r} is not a segmentation model (use one without the _cls suffix)"
            )
        sizes = [h.pooled_sizes] if isinstance(h.pooled_sizes, int) else list(h.pooled_sizes or [])
        checks = {
            "pooled_sizes": (min(sizes, default=1) >= 1, "must all be >= 1"),
            "head_pooled_size": (h.head_pooled_size is None or h.head_pooled_size >= 1, "must be >= 1"),
            "drop_path_rate": (h.drop_path_rate is None or 0.0 <= h.drop_path_rate < 1.0, "must be in [0, 1)"),
        }
        for name, (ok, rule) in checks.items():
            if not ok:
                raise ConfigError(f"model.init_args.{name} {rule}, got {h[name]}")
        overrides: dict[str, Any] = {name: h[name] for name in checks if h[name] is not None}
        if isinstance(h.pooled_sizes, list):
            overrides["pooled_sizes"] = tuple(h.pooled_sizes)
        overrides["init_scheme"] = h.init_scheme
        try:
            self.model = create_model(h.model, num_classes=h.num_classes, **overrides)
        except ValueError as err:
            raise ConfigError(f"model.init_args.model: {err}") from err
        if not hasattr(self.model, "decode_head"):
            raise ConfigError(
                f"model.init_args.model: {h.model!r} is not a segmentation model (use one without the _cls suffix)"
            )
        self.model.backbone.set_grad_checkpointing(h.grad_checkpointing)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def configure_losses(self) -> None:
        """``self.criterion``: cross-entropy with the ignore value (:class:`~lrsa_seg.losses.SegmentationLoss`)."""
        h = self.hparams
        weights, thresh, min_kept = h.get("class_weights"), h.get("ohem_thresh"), h.get("ohem_min_kept", 100000)
        aux, aux_weight = h.get("aux_loss"), h.get("aux_loss_weight", 1.0)
        problem = loss_option_problem(h.num_classes, weights, thresh, min_kept, aux, aux_weight)
        if problem:
            raise ConfigError(f"model.init_args.{problem}")
        self.criterion = SegmentationLoss(
            None if weights is None or isinstance(weights, str) else torch.tensor(weights, dtype=torch.float32),
            h.get("loss_average", "all_pixels"),
            thresh,
            min_kept,
            aux,
            aux_weight,
        )

    def setup(self, stage: str) -> None:
        """Before fitting: median-frequency class weights (unless a checkpoint brings them); head SyncBN."""
        if stage == "fit" and self.hparams.get("class_weights") == MEDIAN_FREQUENCY:
            self.criterion.class_weight = self.median_frequency_weights().to(self.device)
        if stage == "fit" and self.hparams.get("head_sync_batchnorm") and self.trainer.world_size > 1:
            device = self.trainer.strategy.root_device.type
            if device == "cpu":  # torch's SyncBatchNorm trains on accelerators only
                rank_zero_warn("head_sync_batchnorm: SyncBatchNorm needs GPUs; the head keeps per-process BatchNorm")
            else:
                rank_zero_info(f"head_sync_batchnorm: {sync_head_batchnorm(self.model)} head BatchNorms synchronised")

    def median_frequency_weights(self) -> torch.Tensor:
        """``(K,)`` weights from the datamodule's training masks, through the run folder's cache."""
        cache = Path(self.trainer.default_root_dir) / CLASS_WEIGHTS_FILE
        return median_frequency_of_datamodule(
            self.trainer.datamodule, cache, self.class_names, self.trainer.is_global_zero
        )

    def configure_metrics(self) -> None:
        """Macro mIoU, pixel accuracy (aAcc) and mean class accuracy (mAcc) per split; a confusion matrix.

        The confusion matrix (rows: ground truth, columns: prediction; 255 ignored) gives the
        per-class IoU and accuracy at the end of each validation and test, and is kept in
        :attr:`last_confusion` for callbacks (``lrsa_seg.callbacks.EvaluationReport``).
        """
        num_classes = self.hparams.num_classes
        metrics = MetricCollection(
            {
                "mIoU": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=IGNORE_INDEX),
                "aAcc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX),
                "mAcc": MulticlassAccuracy(num_classes, average="macro", ignore_index=IGNORE_INDEX),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self.test_confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self.test_size_iou = SizeBinnedIoU(num_classes) if self.hparams.get("size_iou") else None
        self.last_confusion: dict[str, torch.Tensor] = {}

    def load_starting_weights(self) -> None:
        """Load ``weights`` into the model now (strictly, :func:`~lrsa_seg.models.load_pretrained`), once.

        Called when fitting, validating, testing or predicting starts without a checkpoint to restore.
        """
        if self.starting_weights is None:
            return
        source, scope = self.starting_weights
        h = self.hparams
        # Training has no pickle switch: a file that needs one is converted once, by choice.
        # Into the model the optimizer may already hold (the same tensors, on their device).
        pretrained = load_pretrained(
            source,
            h.model,
            scope=scope,
            opt_in=f"`lrsa-seg convert {source} OUT_DIR --allow-pickle`",
            into=self.model,
        )
        rank_zero_info(pretrained.checkpoint.describe())
        self.starting_weights, self.starting_weights_record = None, pretrained.checkpoint.record()

    def on_fit_start(self) -> None:
        """Load the starting weights unless a checkpoint was restored (it replaces them); validate/test/predict too."""
        self.load_starting_weights()

    on_validation_start = on_test_start = on_predict_start = on_fit_start  # a no-op once loaded

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what inference needs beside the weights, and computed class weights.

        Inference needs the model name and kwargs, classes, palette and preprocessing. The
        median-frequency weights stay outside the state dict, which weight loaders read strictly.
        """
        dataset_class = getattr(getattr(self.trainer, "datamodule", None), "dataset_class", None)
        record = record_from_hparams(
            self.hparams, getattr(dataset_class, "palette", None), getattr(dataset_class, "__name__", None)
        )
        record["provenance"] = {
            "starting_weights": self.starting_weights_record,
            "data_license": getattr(dataset_class, "license", "") or None,
        }
        checkpoint[CHECKPOINT_KEY] = record
        if self.hparams.get("class_weights") == MEDIAN_FREQUENCY and self.criterion.class_weight is not None:
            checkpoint[CLASS_WEIGHTS_KEY] = self.criterion.class_weight.tolist()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the starting weights; take the checkpoint's median-frequency weights; resume 0.1 groups as today's.

        The saved weights replace those computed at ``setup``, so a resumed run trains with the
        loss it started with. Checkpoints written with the 0.1 optimizer groups (norms first) are
        moved to today's groups.
        """
        h = self.hparams
        # The checkpoint replaces the starting weights: never open them; carry their record on.
        self.starting_weights = None
        record = checkpoint.get(CHECKPOINT_KEY) or {}
        self.starting_weights_record = (record.get("provenance") or {}).get("starting_weights")
        saved_weights = checkpoint.get(CLASS_WEIGHTS_KEY)
        if h.get("class_weights") == MEDIAN_FREQUENCY and saved_weights is not None:
            self.criterion.class_weight = torch.tensor(saved_weights, dtype=torch.float32, device=self.device)
        if not checkpoint.get("optimizer_states"):  # weights only (test, predict): no groups to check
            return
        groups = parameter_groups(self.model, h.lr, h.weight_decay, h.head_lr_mult)
        try:
            changed = regroup_optimizer_state(checkpoint, self.model, groups)
        except ValueError as err:
            raise CheckpointMismatchError(f"optimizer state: {err}") from err
        if changed:
            rank_zero_warn(
                "the checkpoint's optimizer used the 0.1 parameter groups (every norm without weight decay); "
                "resuming with the official ones (decode-head norms decayed), moments carried over"
            )

    # --- forward -------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` RGB -> float, ImageNet-normalized."""
        return (images.float() - self.image_mean) / self.image_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float 0-255 ``(B, 3, H, W)`` -> logits ``(B, K, H, W)``."""
        return self.model(self.normalize(images))

    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Test-time class probabilities ``(B, K, H, W)`` with the configured inference mode and TTA."""
        h = self.hparams
        return predict_logits(
            self._fused[0] if self._fused else self.model,
            self.normalize(images),
            mode=h.eval_mode,
            crop_size=tuple(h.eval_crop_size),
            stride=tuple(h.eval_stride),
            base_size=tuple(h.eval_base_size) if h.eval_base_size else None,
            size_multiple=h.eval_size_multiple,
            scales=tuple(h.tta_scales),
            flip=h.tta_flip,
        )

    # --- steps ---------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """The loss (:attr:`criterion`) on the crop; a non-finite loss stops the run naming the batch.

        A batch without any labelled pixel (all 255, e.g. crops of unlabelled regions) has no
        loss: cross-entropy's mean over zero pixels would be NaN. It counts as 0 (zero
        gradients) with a warning naming the files.
        """
        logits = self(batch["image"])
        if (batch["mask"] != IGNORE_INDEX).any():
            loss = self.criterion(logits.float(), batch["mask"])
        else:
            rank_zero_warn(
                f"step {self.global_step}, batch {batch_idx}: no labelled pixels in files {batch.get('name')}; "
                "the batch contributes no loss"
            )
            loss = logits.float().sum() * 0.0
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}, batch {batch_idx}: "
                f"files {batch.get('name')}"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _evaluate(
        self, batch: dict[str, Any], metrics: MetricCollection, confusion: MulticlassConfusionMatrix
    ) -> torch.Tensor:
        preds = self.predict_probs(batch["image"]).argmax(dim=1)
        metrics.update(preds, batch["mask"])
        confusion.update(preds, batch["mask"])
        self.log_dict(metrics, batch_size=batch["image"].shape[0], prog_bar=True)
        return preds

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score the whole original-size images."""
        self._evaluate(batch, self.val_metrics, self.val_confusion)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score the whole original-size images."""
        preds = self._evaluate(batch, self.test_metrics, self.test_confusion)
        if self.test_size_iou is not None:
            self.test_size_iou.update(preds, batch["mask"])

    def _log_per_class(self, split: str, confusion: MulticlassConfusionMatrix) -> None:
        """Per-class IoU and accuracy from the split's confusion matrix (synced across processes)."""
        matrix = confusion.compute()
        confusion.reset()
        self.last_confusion[split] = matrix.detach().cpu()
        iou, accuracy = class_scores(matrix)
        self.log_dict({f"{split}/IoU/{name}": value for name, value in zip(self.class_names, iou.float())})
        self.log_dict({f"{split}/Acc/{name}": value for name, value in zip(self.class_names, accuracy.float())})

    def on_validation_epoch_start(self) -> None:
        """Fuse the current weights for this validation (and test, and prediction), or run :attr:`exported`."""
        if self.hparams.fused_eval or self.exported is not None:
            self._fused = (self.exported or fuse_for_inference(self.model),)

    on_test_epoch_start = on_predict_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        """Per-class IoU and accuracy (synced across processes by torchmetrics); drop the fused copy."""
        self._fused = ()
        self._log_per_class("val", self.val_confusion)

    def on_test_epoch_end(self) -> None:
        """Per-class IoU and accuracy (and IoU by region size), synced across processes; drop the fused copy."""
        self._fused = ()
        self._log_per_class("test", self.test_confusion)
        if self.test_size_iou is not None:
            by_size = self.test_size_iou.compute()
            self.log_dict({f"test/mIoU_{size}": by_size[size].float() for size in SIZE_NAMES})
            self.test_size_iou.reset()

    def on_predict_epoch_end(self) -> None:
        """Drop the fused copy."""
        self._fused = ()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"name", "image", "pred"}`` (labels ``(B, H, W)`` uint8); ``{"name", "error"}`` for a bad file."""
        if "error" in batch:
            return {"name": batch["name"], "error": batch["error"]}
        preds = self.predict_probs(batch["image"]).argmax(dim=1).to(torch.uint8)
        return {"name": batch["name"], "image": batch["image"], "pred": preds}

    # --- optimisation --------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with parameter groups and a per-iteration warm-up + poly schedule."""
        h = self.hparams
        optimizer = torch.optim.AdamW(
            parameter_groups(self.model, h.lr, h.weight_decay, h.head_lr_mult), lr=h.lr, betas=tuple(h.betas)
        )
        max_iters = h.max_iters or self.trainer.estimated_stepping_batches
        if not math.isfinite(max_iters):
            raise ValueError("model.max_iters is needed when the trainer has no max_steps/max_epochs")
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_poly_factor(
                step, int(max_iters), h.warmup_iters, h.warmup_ratio, h.poly_power, h.min_lr / h.lr
            ),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "monitor": self.monitor},
        }
