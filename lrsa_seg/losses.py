"""The training loss: cross-entropy (class weights, OHEM) plus an optional Dice or Lovasz-Softmax term.

Plain PyTorch and numpy (no Lightning), so each piece can be checked against its definition:

- :class:`SegmentationLoss`: what ``SemanticSegmentationTask`` trains with;
- :func:`ohem_pixel_weights`: mmseg 1.x ``OHEMPixelSampler`` with a threshold;
- :func:`dice_loss`, :func:`lovasz_softmax_loss`: the auxiliary losses on the softmax;
- :func:`class_pixel_counts`, :func:`median_frequency_weights`, :func:`cached_median_frequency`:
  SegNet's median-frequency class balancing from the training masks, cached as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from .constants import IGNORE_INDEX
from .errors import ConfigError

MEDIAN_FREQUENCY = "median_frequency"
"""The ``class_weights`` value that asks for median-frequency balancing."""
LossAverage = Literal["all_pixels", "labelled_pixels"]
AuxLoss = Literal["dice", "lovasz"]


def ohem_pixel_weights(
    logits: torch.Tensor, target: torch.Tensor, thresh: float, min_kept: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Online hard example mining as mmseg 1.x ``OHEMPixelSampler(thresh, min_kept)``: 1 for kept pixels, else 0.

    A labelled pixel is kept when the softmax probability of its true class is below
    ``max(thresh, p_k)``, where ``p_k`` is the ``k``-th lowest of those probabilities in the batch
    (0-based ``k = min(min_kept * B, labelled - 1)``): so about ``min_kept`` pixels per image at
    least are kept even when the model is confident. Ignored pixels get 0. No gradient flows.

    Args:
        logits: ``(B, K, H, W)``.
        target: ``(B, H, W)`` class indices, ``ignore_index`` for unlabelled pixels.
        thresh: probability threshold in (0, 1).
        min_kept: pixels kept per image at least (mmseg multiplies it by the batch size).
        ignore_index: the unlabelled value.

    Returns:
        ``(B, H, W)`` weights in ``logits.dtype``.
    """
    with torch.no_grad():
        valid = target != ignore_index
        # The ignored pixels' class is a placeholder; their probability is never used.
        probs = logits.softmax(dim=1).gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
        valid_probs = probs[valid]
        threshold = torch.as_tensor(thresh, dtype=probs.dtype, device=probs.device)
        if valid_probs.numel() > 0:
            k = min(min_kept * target.shape[0], valid_probs.numel() - 1)
            # kthvalue is 1-based: the value mmseg reads at index k of the ascending sort.
            threshold = torch.maximum(threshold, valid_probs.kthvalue(k + 1).values)
        return (valid & (probs < threshold)).to(logits.dtype)


def _valid_one_hot(target: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` labels -> float one-hot ``(B, K, H, W)`` (0 on ignored pixels), valid mask ``(B, H, W)``."""
    valid = target != ignore_index
    one_hot = F.one_hot(target.masked_fill(~valid, 0), num_classes).permute(0, 3, 1, 2).float()
    return one_hot * valid.unsqueeze(1), valid


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, eps: float = 1e-7
) -> torch.Tensor:
    """Multiclass soft Dice loss on the softmax, over the batch: mean of ``1 - Dice(c)`` over present classes.

    ``Dice(c) = 2 sum(p_c t_c) / sum(p_c + t_c)`` over the labelled pixels of the whole batch
    (smp's ``DiceLoss("multiclass", smooth=0)``), averaged over the classes that occur in the
    labels (smp averages over all classes with 0 for the absent ones). Ignored pixels count
    nowhere; a batch without labelled pixels gives 0 (with a graph, so backward works).

    Args:
        logits: ``(B, K, H, W)``.
        target: ``(B, H, W)`` class indices, ``ignore_index`` for unlabelled pixels.
        ignore_index: the unlabelled value.
        eps: floor of the denominator.

    Returns:
        Scalar loss in [0, 1].
    """
    probs = logits.float().softmax(dim=1)
    one_hot, valid = _valid_one_hot(target, logits.shape[1], ignore_index)
    probs = probs * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    cardinality = (probs + one_hot).sum(dims)
    present = one_hot.sum(dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    dice = 2.0 * intersection / cardinality.clamp_min(eps)
    return (1.0 - dice)[present].mean()


def lovasz_softmax_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Lovasz-Softmax (Berman et al. 2018), ``classes="present"``, over the whole batch (smp's ``per_image=False``).

    For each class present in the labels, the Lovasz extension of the Jaccard loss at the
    errors ``|1[y = c] - p_c|`` of the labelled pixels; the mean over those classes. Ignored
    pixels are left out; a batch without labelled pixels gives 0 (with a graph).

    Args:
        logits: ``(B, K, H, W)``.
        target: ``(B, H, W)`` class indices, ``ignore_index`` for unlabelled pixels.
        ignore_index: the unlabelled value.

    Returns:
        Scalar loss in [0, 1].
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, num_classes)  # (P, K)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    fg = F.one_hot(labels, num_classes).to(probs.dtype)  # (P, K)
    present = fg.sum(0) > 0
    if not present.any():
        return logits.sum() * 0.0
    probs, fg = probs[:, present], fg[:, present]
    errors = (fg - probs).abs()
    errors_sorted, order = errors.sort(dim=0, descending=True)
    fg_sorted = fg.gather(0, order)
    # Alg. 1 of the paper: the Jaccard loss of the first i sorted errors, then its increments.
    gts = fg_sorted.sum(0)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    return (errors_sorted * grad).sum(0).mean()


AUX_LOSSES = {"dice": dice_loss, "lovasz": lovasz_softmax_loss}


class SegmentationLoss(nn.Module):
    """Cross-entropy with the ignore value, optional class weights and OHEM, plus an optional auxiliary loss.

    The cross-entropy term is ``sum(w[y] m l) / D`` over the pixels, with ``l`` the per-pixel CE,
    ``w`` the class weights (1 without), ``m`` the OHEM weights (1 without, 0 on ignored pixels):

    - ``average="all_pixels"``: ``D`` = all pixels, ignored ones included: mmseg's
      ``CrossEntropyLoss(avg_non_ignore=False)`` with ``class_weight`` and a sampler's pixel weight;
    - ``average="labelled_pixels"``: ``D = sum(w[y])`` over the labelled pixels: PyTorch's
      ``cross_entropy(weight=w)`` mean (without class weights, the labelled pixel count, as
      mmseg's ``avg_non_ignore=True``; with them, mmseg would still divide by the count). With
      OHEM the denominator keeps every labelled pixel, as mmseg's does.

    Then ``+ aux_weight * aux(logits, target)`` (:data:`AUX_LOSSES`).

    Args:
        class_weight: ``(K,)`` weights, or None; a buffer that follows the module's device and
            may be set later (``median_frequency`` is computed at ``setup``). Not in the state dict.
        average: see above.
        ohem_thresh: :func:`ohem_pixel_weights` threshold; None: no OHEM.
        ohem_min_kept: :func:`ohem_pixel_weights` ``min_kept``.
        aux: ``"dice"``, ``"lovasz"`` or None.
        aux_weight: factor of the auxiliary loss.
        ignore_index: the unlabelled value.
    """

    class_weight: torch.Tensor | None

    def __init__(
        self,
        class_weight: torch.Tensor | None = None,
        average: LossAverage = "all_pixels",
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100000,
        aux: AuxLoss | None = None,
        aux_weight: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.average = average
        self.ohem_thresh, self.ohem_min_kept = ohem_thresh, ohem_min_kept
        self.aux, self.aux_weight = aux, aux_weight
        self.ignore_index = ignore_index

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The CE term of ``(B, K, H, W)`` logits and ``(B, H, W)`` labels (scalar)."""
        weight = None if self.class_weight is None else self.class_weight.to(logits.dtype)
        if self.ohem_thresh is None and self.average == "labelled_pixels":
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none")
        if self.ohem_thresh is not None:
            per_pixel = per_pixel * ohem_pixel_weights(
                logits, target, self.ohem_thresh, self.ohem_min_kept, self.ignore_index
            )
        if self.average == "all_pixels":
            return per_pixel.mean()  # ignored pixels are zeros in this mean
        valid = target != self.ignore_index
        denominator = valid.sum() if weight is None else weight[target[valid]].sum()
        return per_pixel.sum() / denominator

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of logits ``(B, K, H, W)`` against labels ``(B, H, W)`` (``ignore_index`` unlabelled)."""
        loss = self.cross_entropy(logits, target)
        if self.aux is not None:
            loss = loss + self.aux_weight * AUX_LOSSES[self.aux](logits, target, self.ignore_index)
        return loss

    def extra_repr(self) -> str:
        """The options, as ``print(task)`` shows them."""
        return (
            f"average={self.average!r}, class_weight={self.class_weight is not None}, "
            f"ohem_thresh={self.ohem_thresh}, ohem_min_kept={self.ohem_min_kept}, aux={self.aux!r}, "
            f"aux_weight={self.aux_weight}"
        )


# --- median-frequency class balancing ------------------------------------------------------
def class_pixel_counts(
    masks: Iterable[np.ndarray], num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-class pixel counts and labelled pixels of the images holding each class.

    Args:
        masks: label maps ``(H, W)`` with values ``0 .. num_classes - 1`` or ``ignore_index``.
        num_classes: K.
        ignore_index: the unlabelled value (counted nowhere).

    Returns:
        ``(class_pixels (K,), image_pixels (K,), images)``: ``image_pixels[c]`` sums the labelled
        pixels of the images in which class ``c`` occurs; ``images`` counts the masks.
    """
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    images = 0
    for mask in masks:
        counts = np.bincount(np.asarray(mask).ravel(), minlength=max(256, ignore_index + 1)).astype(np.int64)
        counts[ignore_index] = 0
        if counts[num_classes:].any():
            bad = sorted(int(v) for v in np.flatnonzero(counts[num_classes:]) + num_classes)
            raise ValueError(f"mask {images}: values {bad[:10]} are neither classes 0-{num_classes - 1} nor ignored")
        counts = counts[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += counts.sum()
        images += 1
    return class_pixels, image_pixels, images


def median_frequency_weights(class_pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """SegNet's median-frequency balancing (Eigen & Fergus 2015): ``median(freq) / freq(c)``.

    ``freq(c) = class_pixels[c] / image_pixels[c]``; the median is over the classes that occur.
    A class that never occurs gets weight 0 (it has no frequency; it gives no loss anyway).

    Returns:
        ``(K,)`` float64 weights.
    """
    present = class_pixels > 0
    weights = np.zeros(len(class_pixels), dtype=np.float64)
    if present.any():
        freq = class_pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights


def cached_median_frequency(
    cache: Path, key: Any, masks: Iterable[np.ndarray], num_classes: int, write: bool = True
) -> tuple[list[float], dict[str, Any]]:
    """:func:`median_frequency_weights` of ``masks``, read from ``cache`` when it was made for the same ``key``.

    Args:
        cache: JSON file: ``{"key", "num_classes", "weights", "class_pixels", "image_pixels", "images"}``.
        key: JSON-able description of the masks (files, sizes, times, label table): any change
            recomputes. ``masks`` is only iterated on a miss.
        masks: label maps ``(H, W)``.
        num_classes: K.
        write: write the cache on a miss (one process of a distributed run).

    Returns:
        The weights and the whole record (``record["cached"]``: whether it came from the file).
    """
    key = json.loads(json.dumps(key))  # the form it takes in the file (tuples become lists)
    try:
        record = json.loads(cache.read_text())
        if record.get("key") == key and record.get("num_classes") == num_classes:
            return [float(w) for w in record["weights"]], {**record, "cached": True}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, unreadable or another layout: recompute
    class_pixels, image_pixels, images = class_pixel_counts(masks, num_classes)
    weights = median_frequency_weights(class_pixels, image_pixels).tolist()
    record = {
        "method": "median_frequency",
        "num_classes": num_classes,
        "weights": weights,
        "class_pixels": class_pixels.tolist(),
        "image_pixels": image_pixels.tolist(),
        "images": images,
        "key": key,
    }
    if write:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(record, indent=1))
        os.replace(partial, cache)  # readers never see half a file
    return weights, {**record, "cached": False}


def loss_option_problem(
    num_classes: int,
    class_weights: str | Sequence[float] | None,
    ohem_thresh: float | None,
    ohem_min_kept: int,
    aux: str | None,
    aux_weight: float,
) -> str | None:
    """What is wrong with the loss options, starting with the argument's name (None if nothing)."""
    if isinstance(class_weights, str) and class_weights != MEDIAN_FREQUENCY:
        return f"class_weights must be {MEDIAN_FREQUENCY!r} or a list of numbers, got {class_weights!r}"
    if class_weights is not None and not isinstance(class_weights, str):
        if len(class_weights) != num_classes:
            return f"class_weights has {len(class_weights)} entries for num_classes={num_classes}"
        if not all(np.isfinite(w) and w >= 0 for w in class_weights):
            return f"class_weights must all be finite and >= 0, got {list(class_weights)}"
    if ohem_thresh is not None and not 0.0 < ohem_thresh < 1.0:
        return f"ohem_thresh must be in (0, 1), got {ohem_thresh}"
    if ohem_min_kept < 1:
        return f"ohem_min_kept must be >= 1, got {ohem_min_kept}"
    if aux is not None and aux not in AUX_LOSSES:
        return f"aux_loss must be one of {sorted(AUX_LOSSES)} or null, got {aux!r}"
    if not aux_weight >= 0.0:  # also refuses NaN
        return f"aux_loss_weight must be >= 0, got {aux_weight}"
    return None


def median_frequency_of_datamodule(
    datamodule: Any, cache: Path, class_names: Sequence[str], write: bool = True
) -> torch.Tensor:
    """``(K,)`` median-frequency weights of a datamodule's training masks through ``cache``; says what it used.

    ``datamodule.train_masks()`` gives ``(key, masks)`` (:class:`datamodules.SegmentationDataModule`).
    """
    train_masks = getattr(datamodule, "train_masks", None)
    if train_masks is None:
        raise ConfigError(
            "model.init_args.class_weights: 'median_frequency' needs a datamodule with training masks "
            "(a datamodules.SegmentationDataModule)"
        )
    key, masks = train_masks()
    weights, record = cached_median_frequency(cache, key, masks, len(class_names), write=write)
    absent = [name for name, count in zip(class_names, record["class_pixels"]) if count == 0]
    if absent:
        rank_zero_warn(f"class_weights: classes {absent} occur in no training mask; their weight is 0")
    listed = ", ".join(f"{name} {w:.4g}" for name, w in zip(class_names, weights))
    source = f"read from {cache}" if record["cached"] else f"{record['images']} training masks, saved to {cache}"
    rank_zero_info(f"class weights (median frequency, {source}): {listed}")
    return torch.tensor(weights, dtype=torch.float32)
