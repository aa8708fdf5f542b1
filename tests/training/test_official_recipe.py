"""The recipe as the official code computes it, each computed here from its definition and compared.

Written from reading mmsegmentation 1.x (``CrossEntropyLoss`` with ``avg_non_ignore=False``),
mmengine (``LinearLR`` / ``PolyLR``: recursive per-iteration updates, chained) and the official
``AlignResize`` (yuhuan-wu/LRFormer ``mmseg/datasets/transforms/align_resize.py``), and the
padding of mmseg's ``SegDataPreProcessor`` (normalise, then pad).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datamodules.transforms import train_transforms
from lrsa_seg.constants import IMAGE_MEAN, IMAGE_STD
from lrsa_seg.models import fuse_for_inference
from lrsa_seg.models.segmentor import predict_logits, resize_to_multiple
from lrsa_seg.task import SemanticSegmentationTask
from lrsa_seg.training.optim import sync_head_batchnorm, warmup_poly_factor


def mmseg_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """mmseg: per-pixel CE (``reduction='none'``, ignored pixels give 0), then ``weight_reduce_loss(mean)``."""
    per_pixel = F.cross_entropy(logits, target, reduction="none", ignore_index=ignore_index)
    return per_pixel.sum() / per_pixel.numel()  # mean over every element, ignored ones included


def test_loss_divides_by_all_pixels_as_mmseg() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, 9, generator=generator)
    target = torch.randint(0, 5, (2, 7, 9), generator=generator)
    target[0, :3] = 255  # a third of the first image unlabelled
    task = SemanticSegmentationTask("lrformer_test", num_classes=5)
    ours = task.criterion(logits, target).mean()
    assert ours.item() == pytest.approx(mmseg_cross_entropy(logits, target).item(), rel=1e-6)
    labelled = SemanticSegmentationTask("lrformer_test", num_classes=5, loss_average="labelled_pixels")
    assert labelled.criterion(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6
    )
    assert ours < labelled.criterion(logits, target)  # the official mean is smaller when pixels are ignored


def mmengine_lrs(
    base: float, max_iters: int, warmup: int, start_factor: float = 1e-6, power: float = 1.0
) -> list[float]:
    """The lr at every iteration of mmengine's chained LinearLR(0, warmup) + PolyLR(warmup, max_iters, eta_min 0).

    Each scheduler keeps ``last_step`` and updates the group's current lr recursively while
    ``begin <= global_step < end``; the global step is 0 at construction and +1 after each iteration.
    """
    lr = base

    def linear(lr: float, last_step: int) -> float:
        if last_step == 0:
            return lr * start_factor
        total = warmup - 1  # mmengine: total_iters = end - begin - 1
        return lr * (1 + (1 - start_factor) / (total * start_factor + (last_step - 1) * (1 - start_factor)))

    def poly(lr: float, last_step: int) -> float:
        total = max_iters - warmup - 1  # mmengine: total_iters = end - begin - 1
        return lr if last_step == 0 else lr * (1 - 1 / (total - last_step + 1)) ** power

    last = {"linear": -1, "poly": -1}
    out = []
    for global_step in range(max_iters):
        for name, begin, end, update in (("linear", 0, warmup, linear), ("poly", warmup, max_iters, poly)):
            if begin <= global_step < end:
                last[name] += 1
                lr = update(lr, last[name])
        out.append(lr)
    return out


@pytest.mark.parametrize(("max_iters", "warmup"), [(1000, 100), (3000, 30)])
def test_schedule_equals_mmengine_at_every_iteration(max_iters: int, warmup: int) -> None:
    official = mmengine_lrs(6e-5, max_iters, warmup)
    ours = [6e-5 * warmup_poly_factor(step, max_iters, warmup) for step in range(max_iters)]
    assert ours == pytest.approx(official, rel=1e-9, abs=1e-18)


def test_schedule_equals_mmengine_for_the_paper() -> None:
    official = mmengine_lrs(6e-5, 160_000, 1500)
    for step in (0, 1, 750, 1499, 1500, 1501, 80_000, 159_999):
        assert 6e-5 * warmup_poly_factor(step, 160_000, 1500) == pytest.approx(official[step], rel=1e-7)
    # mmengine's total_iters = end - begin - 1: the warm-up reaches the base lr at its last iteration
    # (1499), the poly decay starts there at iteration 1500 and reaches 0 at the last one (159999).
    assert official[1499] == pytest.approx(6e-5) and official[1500] == official[1499]
    assert official[159_999] == 0.0 and warmup_poly_factor(159_999, 160_000, 1500) == 0.0


def official_align_size(height: int, width: int, divisor: int = 32) -> tuple[int, int]:
    """AlignResize._align: each side to ``int(np.ceil(side / divisor)) * divisor``."""
    return math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor


@pytest.mark.parametrize("size", [(512, 683), (683, 512), (33, 65), (64, 96), (511, 1025)])
def test_align_resize_rounds_up_as_the_official_code(size: tuple[int, int]) -> None:
    images = torch.zeros(1, 3, *size)
    assert tuple(resize_to_multiple(images, 32).shape[-2:]) == official_align_size(*size)


def official_test_image(image: np.ndarray, scale: tuple[int, int] = (2048, 512), divisor: int = 32) -> np.ndarray:
    """AlignResize(scale, size_divisor, keep_ratio=True)._resize_img on an ``(H, W, C)`` image.

    ``mmcv.imrescale``: factor ``min(long / max(h, w), short / min(h, w))``, sides
    ``int(side * factor + 0.5)``, cv2 bilinear; then ``_align``: a second cv2 bilinear resize to the
    sides rounded up to the divisor.
    """
    height, width = image.shape[:2]
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    rescaled = cv2.resize(
        image, (int(width * factor + 0.5), int(height * factor + 0.5)), interpolation=cv2.INTER_LINEAR
    )
    align_h, align_w = official_align_size(*rescaled.shape[:2], divisor)
    return cv2.resize(rescaled, (align_w, align_h), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("size", [(512, 683), (375, 500), (1000, 167), (640, 480), (97, 131)])
def test_eval_base_size_path_is_the_official_align_resize(size: tuple[int, int]) -> None:
    image = np.random.default_rng(sum(size)).uniform(0, 255, (*size, 3)).astype(np.float32)
    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x[:, :2]

    images = torch.from_numpy(image).permute(2, 0, 1)[None]
    predict_logits(model, images, base_size=(2048, 512), size_multiple=32)
    official = official_test_image(image)
    (ours,) = seen
    assert tuple(ours.shape[-2:]) == official.shape[:2]  # the size, exactly
    # The values: the same bilinear (half-pixel centres, no antialiasing) up to OpenCV's float
    # rounding (< 0.02 grey levels here); the official resizes the uint8 image, so it also rounds
    # to whole grey levels after each resize, which ours (on the normalised float image) does not.
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), official, atol=0.02, rtol=0)


def mmengine_custom_key(official_name: str, custom_keys: tuple[str, ...] = ("head", "norm")) -> str | None:
    """mmengine DefaultOptimWrapperConstructor: keys by length (longest first), then A-Z; the first contained wins."""
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in official_name:
            return key
    return None


def test_parameter_groups_equal_mmengine_on_every_lrformer_t_parameter() -> None:
    from lrsa_seg.models import create_model
    from lrsa_seg.models.official import ours_key_to_official
    from lrsa_seg.training.optim import parameter_groups

    with torch.device("meta"):
        model = create_model("lrformer_t", num_classes=150)
    groups = parameter_groups(model, lr=6e-5, weight_decay=0.01, head_lr_mult=10.0)
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, param in model.named_parameters():
        key = mmengine_custom_key(ours_key_to_official(name))
        lr_mult, decay_mult = {"head": (10.0, 1.0), "norm": (1.0, 0.0), None: (1.0, 1.0)}[key]
        group = by_id[id(param)]
        assert (group["lr"], group["weight_decay"]) == (pytest.approx(6e-5 * lr_mult), 0.01 * decay_mult), name


def test_padding_is_the_official_normalise_then_pad_zero() -> None:
    # mmseg's SegDataPreProcessor: normalise ((x - mean) / std, RGB), then pad the bottom and right to
    # the crop size with 0 (image) and 255 (mask). Ours pads the uint8 crop, the task normalises.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = rng.integers(0, 11, (40, 50), dtype=np.uint8)
    crop = (64, 72)
    pad = train_transforms(crop, base_size=(50, 40)).transforms[-1]
    out = pad(image=image, mask=mask)
    mean, std = np.array(IMAGE_MEAN), np.array(IMAGE_STD)
    official = np.zeros((*crop, 3))
    official[:40, :50] = (image - mean) / std
    official_mask = np.full(crop, 255)
    official_mask[:40, :50] = mask
    task = SemanticSegmentationTask("lrformer_test", num_classes=11)
    ours = task.normalize(torch.from_numpy(out["image"]).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out["mask"], official_mask)
    np.testing.assert_allclose(ours[:40, :50], official[:40, :50], atol=1e-5)
    # The pad: the mean colour in uint8, within half a grey level of mmseg's 0.
    assert np.abs(ours[40:]).max() < 0.5 / 57.12 and np.abs(ours[:, 50:]).max() < 0.5 / 57.12


def test_sync_batchnorm_in_the_head_only_and_fusable() -> None:
    # The official norm_cfg=SyncBN sits on the decode head; the stem's BatchNorms are plain BN.
    torch.manual_seed(0)
    task = SemanticSegmentationTask("lrformer_test", num_classes=5, head_sync_batchnorm=True)
    model = task.model.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
    head_bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.decode_head.modules())
    assert sync_head_batchnorm(model) == head_bns > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.decode_head.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())  # stem untouched
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.backbone.modules())
    with torch.no_grad():  # same tensors, same eval result; the fused copy folds SyncBatchNorm too
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(fuse_for_inference(model)(x), expected, rtol=1e-4, atol=1e-4)
    names = {n for n, _ in model.named_parameters()}
    assert names == {n for n, _ in task.model.named_parameters()}  # checkpoint keys unchanged


@pytest.mark.parametrize(("device", "world_size", "synced"), [("cuda", 2, True), ("cpu", 2, False), ("cuda", 1, False)])
def test_task_syncs_the_head_only_in_multi_gpu_fit(device: str, world_size: int, synced: bool) -> None:
    task = SemanticSegmentationTask("lrformer_test", num_classes=5, head_sync_batchnorm=True)
    strategy = SimpleNamespace(root_device=torch.device(device))
    task.trainer = SimpleNamespace(world_size=world_size, strategy=strategy)  # type: ignore[assignment]
    if device == "cpu":
        with pytest.warns(UserWarning, match="SyncBatchNorm needs GPUs"):
            task.setup("fit")
    else:
        task.setup("fit")
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in task.model.decode_head.modules()) == synced
