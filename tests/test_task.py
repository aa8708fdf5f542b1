"""The task's optimisation recipe and inference modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrsa_seg.models import create_model
from lrsa_seg.models.segmentor import predict_logits, slide_inference
from lrsa_seg.task import SemanticSegmentationTask
from lrsa_seg.training.optim import parameter_groups, warmup_poly_factor


def test_schedule_has_warmup_then_poly_shape() -> None:
    # The official schedule (tests/training/test_official_recipe.py checks every value against mmengine):
    # linear warm-up reaching 1 at its last iteration, then poly decay to 0 at the last iteration
    # (mmengine's schedulers span end - begin - 1 iterations).
    max_steps, warmup = 1000, 100
    factors = [warmup_poly_factor(s, max_steps, warmup, warmup_ratio=1e-6, power=1.0) for s in range(max_steps + 1)]
    assert factors[0] == pytest.approx(1e-6)
    assert all(b > a for a, b in zip(factors[:warmup], factors[1:warmup]))
    assert factors[50] == pytest.approx(1e-6 + (1 - 1e-6) * 50 / 99)
    assert factors[warmup - 1] == pytest.approx(1.0) and factors[warmup] == factors[warmup - 1]
    assert factors[550] == pytest.approx(1 - 450 / 899)
    assert factors[-2] == factors[-1] == 0.0
    assert all(b < a for a, b in zip(factors[warmup:-2], factors[warmup + 1 : -1]))
    assert warmup_poly_factor(500, 1001, 0, power=2.0) == pytest.approx(0.25)
    assert warmup_poly_factor(1000, 1000, 0, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_scheduler_steps_per_iteration() -> None:
    task = SemanticSegmentationTask("lrformer_test", num_classes=3, lr=1e-3, warmup_iters=10, max_iters=100)
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-3 * 1e-6)
    assert max(lrs) == pytest.approx(lrs[10]) and lrs[9] == lrs[10] == pytest.approx(1e-3)
    assert lrs[-1] == 0.0


def test_norm_parameters_get_no_weight_decay_and_head_gets_lr_mult() -> None:
    model = create_model("lrformer_test", num_classes=3)
    groups = parameter_groups(model, lr=1e-4, weight_decay=0.01, head_lr_mult=10)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert len(by_id) == sum(1 for _ in model.parameters())  # every parameter exactly once
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            group = by_id[id(p)]
            # As mmengine resolves the official custom_keys: "head" wins over "norm"; the stem's
            # BatchNorms (official names without "norm") are decayed.
            in_head = name.startswith("decode_head")
            is_stem_bn = name.startswith("backbone.stages.0.downsample.convs")
            is_norm = isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)) and not in_head and not is_stem_bn
            assert group["weight_decay"] == (0.0 if is_norm else 0.01), f"{name}.{pname}"
            assert group["lr"] == pytest.approx(1e-3 if name.startswith("decode_head") else 1e-4), f"{name}.{pname}"
    norm_weight = model.backbone.stages[1].blocks[0].norm1.weight
    assert by_id[id(norm_weight)]["weight_decay"] == 0.0
    assert by_id[id(model.backbone.stages[1].blocks[0].attn.q.weight)]["weight_decay"] == 0.01


def test_bad_task_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="model: unknown model 'lrformer_x'"):
        SemanticSegmentationTask("lrformer_x", num_classes=3)
    with pytest.raises(ValueError, match="pooled_sizes"):
        SemanticSegmentationTask("lrformer_test", num_classes=3, pooled_sizes=0)
    with pytest.raises(ValueError, match="not a segmentation model"):
        SemanticSegmentationTask("lrformer_test_cls", num_classes=3)
    with pytest.raises(ValueError, match="class_names has 2 names for num_classes=3"):
        SemanticSegmentationTask("lrformer_test", num_classes=3, class_names=["a", "b"])


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("lrformer_test", num_classes=4).eval()


@torch.no_grad()
def test_slide_covers_every_pixel_once_per_window(model: nn.Module) -> None:
    counter = lambda x: torch.ones(x.shape[0], 1, *x.shape[-2:])  # noqa: E731
    out = slide_inference(counter, torch.zeros(1, 3, 100, 150), crop_size=(64, 64), stride=(40, 40))
    assert out.shape == (1, 1, 100, 150) and torch.allclose(out, torch.ones_like(out))
    images = torch.randn(2, 3, 96, 128)
    # one window covering the whole image is the whole-image prediction
    assert torch.allclose(slide_inference(model, images, (96, 128), (32, 32)), model(images), atol=1e-6)
    assert slide_inference(model, images, (64, 64), (48, 48)).shape == (2, 4, 96, 128)


@torch.no_grad()
def test_predict_logits_modes(model: nn.Module) -> None:
    images = torch.randn(1, 3, 70, 110)
    whole = predict_logits(model, images)
    assert whole.shape == (1, 4, 70, 110)
    assert torch.allclose(whole.sum(1), torch.ones(1, 70, 110), atol=1e-5)  # probabilities
    assert torch.allclose(whole, model(images).softmax(1), atol=1e-6)
    aligned = predict_logits(model, images, size_multiple=32)  # runs at 64 x 96, back to 70 x 110
    assert aligned.shape == (1, 4, 70, 110) and not torch.allclose(aligned, whole)
    based = predict_logits(model, images, base_size=(220, 140))  # 2x: fits (long 220, short 140)
    assert based.shape == (1, 4, 70, 110)
    flipped = predict_logits(model, images, flip=True, scales=(0.75, 1.0, 1.5))
    assert flipped.shape == (1, 4, 70, 110)
    assert torch.allclose(flipped.sum(1), torch.ones(1, 70, 110), atol=1e-5)
    slide = predict_logits(model, images, mode="slide", crop_size=(64, 64), stride=(32, 32))
    assert slide.shape == (1, 4, 70, 110)
    with pytest.raises(ValueError, match="mode"):
        predict_logits(model, images, mode="tiles")


def test_fused_eval_predicts_like_the_model_and_stays_out_of_checkpoints() -> None:
    torch.manual_seed(0)
    task = SemanticSegmentationTask(model="lrformer_test", num_classes=5, eval_mode="slide", eval_crop_size=(64, 64))
    for module in task.modules():  # non-trivial BatchNorm statistics, so folding them is tested
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    task.eval()
    images = torch.randint(0, 256, (2, 3, 80, 120), dtype=torch.uint8)
    keys = set(task.state_dict())
    with torch.inference_mode():
        eager = task.predict_probs(images)
        task.on_predict_epoch_start()
        assert task._fused and set(task.state_dict()) == keys
        fused = task.predict_probs(images)
        task.on_predict_epoch_end()
    assert not task._fused
    torch.testing.assert_close(fused, eager, rtol=0, atol=1e-4)
    assert not torch.equal(fused, eager)  # it did run the fused copy (float rounding differs)
