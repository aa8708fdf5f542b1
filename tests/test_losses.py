"""The loss options, each computed here from its definition (or the official code's) and compared.

OHEM and the weighted cross-entropy follow mmsegmentation 1.x as written in
``mmseg/structures/sampler/ohem_pixel_sampler.py`` (``OHEMPixelSampler.sample`` with a ``thresh``)
and ``mmseg/models/losses/{cross_entropy_loss,utils}.py`` (``cross_entropy`` + ``weight_reduce_loss``,
``avg_non_ignore=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrsa_seg.losses import (
    SegmentationLoss,
    cached_median_frequency,
    class_pixel_counts,
    dice_loss,
    lovasz_softmax_loss,
    median_frequency_weights,
    ohem_pixel_weights,
)

IGNORE = 255


def random_batch(seed: int = 0, shape: tuple[int, int, int, int] = (2, 5, 7, 9)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    b, k, h, w = shape
    logits = torch.randn(b, k, h, w, generator=generator) * 2
    target = torch.randint(0, k, (b, h, w), generator=generator)
    target[0, :2] = IGNORE  # some unlabelled rows
    target[1, :, 0] = IGNORE
    return logits, target


# --- OHEM and the weighted cross-entropy, as mmseg computes them ----------------------------
def mmseg_ohem_sample(logits: torch.Tensor, target: torch.Tensor, thresh: float, min_kept: int) -> torch.Tensor:
    """``OHEMPixelSampler(thresh, min_kept).sample``, pixel by pixel from its source."""
    batch_kept = min_kept * target.shape[0]
    probs = F.softmax(logits, dim=1)
    pixels = [(b, i, j) for b in range(target.shape[0]) for i in range(target.shape[1]) for j in range(target.shape[2])]
    valid = [p for p in pixels if target[p].item() != IGNORE]
    true_prob = {p: probs[p[0], target[p], p[1], p[2]].item() for p in valid}
    sort_prob = sorted(true_prob.values())
    min_threshold = sort_prob[min(batch_kept, len(sort_prob) - 1)] if sort_prob else 0.0
    threshold = max(min_threshold, thresh)
    weight = torch.zeros(target.shape)
    for p in valid:
        if true_prob[p] < threshold:
            weight[p] = 1.0
    return weight


def mmseg_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, class_weight: torch.Tensor | None
) -> torch.Tensor:
    """``cross_entropy(reduction='mean', avg_non_ignore=False)``: ``(F.cross_entropy(none) * weight).mean()``."""
    loss = F.cross_entropy(logits, target, weight=class_weight, reduction="none", ignore_index=IGNORE)
    if weight is not None:
        loss = loss * weight.float()
    return loss.mean()


@pytest.mark.parametrize(
    ("thresh", "min_kept"),
    [(0.7, 1), (0.3, 2), (0.05, 20), (0.05, 1000), (0.99, 100000)],
    ids=["thresh-wins", "thresh-wins-2", "min-kept-raises", "min-kept-beyond-all", "default-min-kept"],
)
def test_ohem_matches_mmseg(thresh: float, min_kept: int) -> None:
    logits, target = random_batch()
    expected = mmseg_ohem_sample(logits, target, thresh, min_kept)
    ours = ohem_pixel_weights(logits, target, thresh, min_kept)
    assert torch.equal(ours, expected)
    assert 0 < ours.sum() and not ours[target == IGNORE].any()
    class_weight = torch.tensor([0.5, 1.0, 2.0, 0.0, 3.0])
    for weights in (None, class_weight):
        loss = SegmentationLoss(weights, ohem_thresh=thresh, ohem_min_kept=min_kept)
        reference = mmseg_cross_entropy(logits, target, expected, weights)
        assert loss(logits, target).item() == pytest.approx(reference.item(), rel=1e-6)


def test_ohem_min_kept_raises_the_threshold() -> None:
    logits, target = random_batch()
    labelled = int((target != IGNORE).sum())
    few = ohem_pixel_weights(logits, target, 0.01, 1).sum()
    # k = min(min_kept * B, labelled - 1): the k lowest probabilities fall under the raised threshold.
    assert ohem_pixel_weights(logits, target, 0.01, 10).sum() == 20 > few
    assert ohem_pixel_weights(logits, target, 0.01, 10**6).sum() == labelled - 1  # strictly below the largest
    none = torch.full_like(target, IGNORE)
    assert ohem_pixel_weights(logits, none, 0.5, 10).sum() == 0


def test_default_loss_is_the_former_criterion_bit_for_bit() -> None:
    logits, target = random_batch()
    former = nn.CrossEntropyLoss(ignore_index=IGNORE, reduction="none")(logits, target).mean()
    assert torch.equal(SegmentationLoss()(logits, target), former)
    former_labelled = nn.CrossEntropyLoss(ignore_index=IGNORE)(logits, target)
    assert torch.equal(SegmentationLoss(average="labelled_pixels")(logits, target), former_labelled)


def test_class_weighted_averages() -> None:
    logits, target = random_batch()
    weights = torch.tensor([0.5, 1.0, 2.0, 0.0, 3.0])
    per_pixel = F.cross_entropy(logits, target, weight=weights, reduction="none", ignore_index=IGNORE)
    # all_pixels: mmseg's avg_non_ignore=False, the weighted sum over every pixel.
    all_pixels = SegmentationLoss(weights)(logits, target)
    assert all_pixels.item() == pytest.approx(per_pixel.sum().item() / target.numel(), rel=1e-6)
    assert all_pixels.item() == pytest.approx(mmseg_cross_entropy(logits, target, None, weights).item(), rel=1e-6)
    # labelled_pixels: PyTorch's weighted mean, over the sum of the labelled pixels' weights.
    labelled = SegmentationLoss(weights, average="labelled_pixels")(logits, target)
    assert torch.equal(labelled, F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE))
    valid = target != IGNORE
    assert labelled.item() == pytest.approx((per_pixel.sum() / weights[target[valid]].sum()).item(), rel=1e-6)
    # with OHEM the denominator stays the labelled pixels' weights (mmseg's avg_non_ignore=True: their count)
    mask = ohem_pixel_weights(logits, target, 0.5, 5)
    ohem = SegmentationLoss(weights, average="labelled_pixels", ohem_thresh=0.5, ohem_min_kept=5)(logits, target)
    assert ohem.item() == pytest.approx(((per_pixel * mask).sum() / weights[target[valid]].sum()).item(), rel=1e-6)
    unweighted = SegmentationLoss(average="labelled_pixels", ohem_thresh=0.5, ohem_min_kept=5)(logits, target)
    plain = F.cross_entropy(logits, target, reduction="none", ignore_index=IGNORE)
    assert unweighted.item() == pytest.approx(((plain * mask).sum() / valid.sum()).item(), rel=1e-6)


def test_class_weight_follows_the_module_and_stays_out_of_the_state_dict() -> None:
    loss = SegmentationLoss(torch.ones(3))
    assert "class_weight" not in loss.state_dict()
    loss.class_weight = torch.tensor([1.0, 2.0, 3.0])
    assert loss.to(torch.float64).class_weight.dtype == torch.float64  # a buffer: moves with the module


# --- Dice -----------------------------------------------------------------------------------
def test_dice_hand_computed_and_ignore_free() -> None:
    # Two labelled pixels (class 0, class 1) and one ignored; class 2 absent from the labels.
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8]]).T.reshape(1, 3, 1, 3)
    target = torch.tensor([[[0, 1, IGNORE]]])
    # class 0: 2 * 0.7 / (0.7 + 0.3 + 1); class 1: 2 * 0.6 / (0.2 + 0.6 + 1); mean over the two present classes.
    expected = 1 - (1.4 / 2.0 + 1.2 / 1.8) / 2
    assert dice_loss(probs.log(), target).item() == pytest.approx(expected, rel=1e-5)
    other = probs.clone()
    other[0, :, 0, 2] = torch.tensor([0.9, 0.05, 0.05])  # the ignored pixel's prediction does not count
    assert dice_loss(other.log(), target).item() == pytest.approx(expected, rel=1e-5)


def test_dice_perfect_is_zero_and_gradients_are_finite() -> None:
    logits, target = random_batch(1)
    perfect = F.one_hot(target.clamp(max=4), 5).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    logits.requires_grad_(True)
    loss = dice_loss(logits, target)
    loss.backward()
    assert 0 < loss.item() < 1 and torch.isfinite(logits.grad).all()
    assert (logits.grad[0, :, :2] == 0).all()  # ignored pixels get no gradient
    empty = dice_loss(logits, torch.full_like(target, IGNORE))
    assert empty.item() == 0.0 and empty.requires_grad


# --- Lovasz-Softmax ---------------------------------------------------------------------------
def jaccard_loss_of_errors(errors: set[int], foreground: set[int]) -> float:
    """The set function the Lovasz extension extends: Jaccard loss when ``errors`` are mispredicted."""
    return len(errors) / len(foreground | errors) if errors else 0.0


def lovasz_extension(m: list[float], foreground: set[int]) -> float:
    """From the definition, by level sets: ``sum_k (v_k - v_{k+1}) Delta({i : m_i >= v_k})`` (``v`` decreasing)."""
    levels = sorted(set(m), reverse=True) + [0.0]
    return sum(
        (hi - lo) * jaccard_loss_of_errors({i for i, e in enumerate(m) if e >= hi}, foreground)
        for hi, lo in zip(levels, levels[1:])
    )


def brute_force_lovasz_softmax(probs: np.ndarray, labels: np.ndarray) -> float:
    """``probs (P, K)``, ``labels (P,)`` of the labelled pixels: the mean over present classes."""
    values = []
    for c in range(probs.shape[1]):
        foreground = {i for i, y in enumerate(labels) if y == c}
        if foreground:
            m = [abs(float(labels[i] == c) - float(probs[i, c])) for i in range(len(labels))]
            values.append(lovasz_extension(m, foreground))
    return float(np.mean(values))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_matches_the_extension_from_its_definition(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 2, 3, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 2, 3), generator=generator)  # class 3 absent: not averaged
    target[0, 0, 0] = IGNORE
    probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, 4).numpy()
    labels = target.reshape(-1).numpy()
    keep = labels != IGNORE
    expected = brute_force_lovasz_softmax(probs[keep], labels[keep])
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)  # float32


def test_lovasz_at_a_vertex_is_the_jaccard_loss() -> None:
    # Hard predictions: the extension equals the set function, 1 - IoU per present class.
    pred = torch.tensor([[[0, 0, 1, 1, 2]]])
    target = torch.tensor([[[0, 1, 1, 1, 2]]])
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).double() * 100
    expected = ((1 - 1 / 2) + (1 - 2 / 3) + 0.0) / 3
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)  # float32


def test_lovasz_perfect_ignore_and_gradients() -> None:
    logits, target = random_batch(2)
    perfect = F.one_hot(target.clamp(max=4), 5).permute(0, 3, 1, 2).float() * 50
    assert lovasz_softmax_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    value = lovasz_softmax_loss(logits, target)
    changed = logits.clone()
    changed[target.unsqueeze(1).expand_as(logits) == IGNORE] = 9.0  # the ignored pixels' logits do not count
    assert lovasz_softmax_loss(changed, target).item() == pytest.approx(value.item(), rel=1e-6)
    logits.requires_grad_(True)
    lovasz_softmax_loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    empty = lovasz_softmax_loss(logits, torch.full_like(target, IGNORE))
    assert empty.item() == 0.0 and empty.requires_grad


def test_aux_loss_is_added_with_its_weight() -> None:
    logits, target = random_batch(3)
    ce = SegmentationLoss()(logits, target)
    dice = SegmentationLoss(aux="dice", aux_weight=0.5)(logits, target)
    assert dice.item() == pytest.approx((ce + 0.5 * dice_loss(logits, target)).item(), rel=1e-6)
    lovasz = SegmentationLoss(aux="lovasz")(logits, target)
    assert lovasz.item() == pytest.approx((ce + lovasz_softmax_loss(logits, target)).item(), rel=1e-6)


# --- median-frequency balancing ---------------------------------------------------------------
MASKS = [
    np.array([[0, 0, 1, IGNORE]], np.uint8),  # 3 labelled pixels
    np.array([[0, 1, 1, 1]], np.uint8),  # 4
    np.array([[2, 2, 0, 0, 0, 0]], np.uint8),  # 6
]


def test_median_frequency_by_hand() -> None:
    class_pixels, image_pixels, images = class_pixel_counts(MASKS, 4)
    assert class_pixels.tolist() == [7, 4, 2, 0] and image_pixels.tolist() == [13, 7, 6, 0] and images == 3
    # freq = 7/13, 4/7, 2/6; median 7/13; class 3 never occurs.
    expected = [1.0, (7 / 13) / (4 / 7), (7 / 13) / (2 / 6), 0.0]
    np.testing.assert_allclose(median_frequency_weights(class_pixels, image_pixels), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"values \[7\]"):
        class_pixel_counts([np.array([[7]], np.uint8)], 4)


def test_median_frequency_cache(tmp_path: Path) -> None:
    cache = tmp_path / "run" / "class_weights.json"
    key = {"files": [["a.png", 10, 1]]}
    weights, record = cached_median_frequency(cache, key, iter(MASKS), 4)
    assert not record["cached"] and json.loads(cache.read_text())["weights"] == weights

    def never() -> object:
        raise AssertionError("read the masks on a cache hit")
        yield

    again, record = cached_median_frequency(cache, {"files": [("a.png", 10, 1)]}, never(), 4)
    assert record["cached"] and again == weights
    changed, record = cached_median_frequency(cache, {"files": [["a.png", 10, 2]]}, iter(MASKS[:2]), 4)
    assert not record["cached"] and changed != weights  # another mtime: recomputed
    cache.write_text("{not json")
    assert cached_median_frequency(cache, key, iter(MASKS), 4)[0] == weights
    unwritten = tmp_path / "other.json"
    cached_median_frequency(unwritten, key, iter(MASKS), 4, write=False)
    assert not unwritten.exists()
