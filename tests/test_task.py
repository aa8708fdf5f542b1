"""The task's optimisation recipe and inference modes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from datamodules import CamVid, CamVidDataModule
from lrsa_seg.errors import ConfigError
from lrsa_seg.losses import class_pixel_counts, median_frequency_weights
from lrsa_seg.models import create_model
from lrsa_seg.models.segmentor import predict_logits, slide_inference
from lrsa_seg.task import CLASS_WEIGHTS_FILE, CLASS_WEIGHTS_KEY, SemanticSegmentationTask
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


# --- loss options -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"class_weights": [1.0, 2.0]}, r"model\.init_args\.class_weights has 2 entries for num_classes=3"),
        ({"class_weights": [1.0, -1.0, 1.0]}, r"model\.init_args\.class_weights must all be finite and >= 0"),
        ({"class_weights": "inverse"}, r"model\.init_args\.class_weights must be 'median_frequency'"),
        ({"ohem_thresh": 0.0}, r"model\.init_args\.ohem_thresh must be in \(0, 1\)"),
        ({"ohem_thresh": 1.0}, r"model\.init_args\.ohem_thresh must be in \(0, 1\)"),
        ({"ohem_thresh": 0.7, "ohem_min_kept": 0}, r"model\.init_args\.ohem_min_kept must be >= 1"),
        ({"aux_loss": "focal"}, r"model\.init_args\.aux_loss must be one of"),
        ({"aux_loss": "dice", "aux_loss_weight": -0.5}, r"model\.init_args\.aux_loss_weight must be >= 0"),
    ],
    ids=["weights-length", "weights-negative", "weights-name", "thresh-0", "thresh-1", "min-kept", "aux", "aux-w"],
)
def test_bad_loss_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SemanticSegmentationTask("lrformer_test", num_classes=3, **options)


def test_loss_options_reach_the_criterion() -> None:
    task = SemanticSegmentationTask(
        "lrformer_test",
        num_classes=3,
        class_weights=[1.0, 2.0, 0.5],
        ohem_thresh=0.7,
        ohem_min_kept=10,
        aux_loss="lovasz",
        aux_loss_weight=0.3,
    )
    criterion = task.criterion
    assert criterion.class_weight.tolist() == [1.0, 2.0, 0.5]
    assert (criterion.ohem_thresh, criterion.ohem_min_kept) == (0.7, 10)
    assert (criterion.aux, criterion.aux_weight) == ("lovasz", 0.3)
    assert task.hparams.class_weights == [1.0, 2.0, 0.5] and task.hparams.aux_loss == "lovasz"
    task.eval()  # the same logits twice (no drop path)
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    batch = {"image": images, "mask": torch.randint(0, 3, (2, 64, 64))}
    logits = task(batch["image"]).float()
    torch.testing.assert_close(task.training_step(batch, 0), criterion(logits, batch["mask"]))
    default = SemanticSegmentationTask("lrformer_test", num_classes=3).criterion
    assert default.class_weight is None and default.ohem_thresh is None and default.aux is None
    assert set(task.state_dict()) == set(SemanticSegmentationTask("lrformer_test", num_classes=3).state_dict())


def test_median_frequency_at_setup_is_cached_and_checkpointed(camvid_root: Path, tmp_path: Path) -> None:
    data = CamVidDataModule(camvid_root, crop_size=(64, 64), base_size=(96, 64), num_workers=0)
    data.setup("fit")
    run = tmp_path / "run"
    trainer = SimpleNamespace(datamodule=data, default_root_dir=str(run), is_global_zero=True)
    task = SemanticSegmentationTask("lrformer_test", num_classes=11, class_weights="median_frequency")
    assert task.criterion.class_weight is None  # until the training masks are known
    task.trainer = trainer
    task.setup("fit")
    train = CamVid(camvid_root, "train")
    expected = median_frequency_weights(*class_pixel_counts((train.load_mask(i) for i in range(len(train))), 11)[:2])
    torch.testing.assert_close(task.criterion.class_weight, torch.tensor(expected, dtype=torch.float32))
    record = json.loads((run / CLASS_WEIGHTS_FILE).read_text())
    assert record["images"] == 4 and len(record["key"]["files"]) == 4

    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint[CLASS_WEIGHTS_KEY] == task.criterion.class_weight.tolist()
    # A resumed run (or one testing the checkpoint) trains with the saved weights, not a new count.
    resumed = SemanticSegmentationTask("lrformer_test", num_classes=11, class_weights="median_frequency")
    resumed.trainer = trainer
    resumed.setup("fit")
    resumed.criterion.class_weight.fill_(7.0)
    resumed.on_load_checkpoint(checkpoint)
    torch.testing.assert_close(resumed.criterion.class_weight, task.criterion.class_weight)
    # A checkpoint from before the option (no saved weights) keeps the computed ones.
    old = SemanticSegmentationTask("lrformer_test", num_classes=11, class_weights="median_frequency")
    old.on_load_checkpoint({})
    assert old.criterion.class_weight is None
    # Without median_frequency nothing is saved.
    plain, plain_checkpoint = SemanticSegmentationTask("lrformer_test", num_classes=11), {}
    plain.trainer = trainer
    plain.on_save_checkpoint(plain_checkpoint)
    assert CLASS_WEIGHTS_KEY not in plain_checkpoint

    no_masks = SemanticSegmentationTask("lrformer_test", num_classes=11, class_weights="median_frequency")
    no_masks.trainer = SimpleNamespace(datamodule=None, default_root_dir=str(run), is_global_zero=True)
    with pytest.raises(ConfigError, match="model.init_args.class_weights: 'median_frequency' needs a datamodule"):
        no_masks.setup("fit")
