"""The model: parity with the official release, registry, any input size, every pooled size."""

from __future__ import annotations

import json

import pytest
import torch

from lrsa_seg.models import (
    LowResolutionSelfAttention,
    create_model,
    from_official,
    list_models,
    pooled_grid,
    pyramid_sizes,
    set_fused_attention,
)

from ..conftest import DATA

REFERENCES = ["lrformer_tiny_pool16.pt", "lrformer_tiny_pool8_wide.pt"]


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "plain"])
@pytest.mark.parametrize("name", REFERENCES)
def test_parity_with_official_outputs(name: str, fused: bool) -> None:
    ref = torch.load(DATA / name, weights_only=True)
    model = from_official(ref["config"], ref["state_dict"])
    assert not model.training
    set_fused_attention(model, fused)
    with torch.no_grad():
        features = model.backbone(ref["input"])
        logits = model.decode_head(features)
        upsampled = model(ref["input"])
    assert len(features) == 4
    for ours, theirs in zip(features, ref["features"]):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-5
    assert logits.shape == ref["logits"].shape
    assert (logits - ref["logits"]).abs().max() <= 1e-5
    assert (upsampled - ref["logits_upsampled"]).abs().max() <= 1e-5


@pytest.mark.parametrize("variant", ["t", "s", "b", "l"])
def test_released_manifest_params_and_keys(variant: str) -> None:
    manifest = json.loads((DATA / f"manifest_lrformer_{variant}.json").read_text())
    model = create_model(f"lrformer_{variant}", num_classes=150)
    assert sum(p.numel() for p in model.parameters()) == manifest["params_total"]
    assert sum(p.numel() for p in model.backbone.parameters()) == manifest["params_backbone"]
    state_dict = {k: torch.zeros(v["shape"]) for k, v in manifest["keys"].items()}
    loaded = from_official(manifest["config"], state_dict)
    assert sum(p.numel() for p in loaded.parameters()) == manifest["params_total"]


def test_manifest_rejects_missing_and_misshapen_keys() -> None:
    manifest = json.loads((DATA / "manifest_lrformer_t.json").read_text())
    state_dict = {k: torch.zeros(v["shape"]) for k, v in manifest["keys"].items()}
    del state_dict["backbone.block3.2.attn.kv.0.weight"]
    state_dict["decode_head.conv_seg.weight"] = torch.zeros(19, 256, 1, 1)
    # Named as the official file names them (issue 21: every entry point, from_official included).
    with pytest.raises(ValueError, match=r"missing keys \(1\): backbone\.block3\.2\.attn\.kv\.0\.weight;") as err:
        from_official(manifest["config"], state_dict)
    assert "shape mismatches (1): decode_head.conv_seg.weight: checkpoint (19, 256, 1, 1)" in str(err.value)


def test_pooled_grid_and_pyramid_rules() -> None:
    assert pooled_grid(96, 128, 16) == (16, 21)
    assert pooled_grid(224, 64, 8) == (28, 8)
    assert pooled_grid(8, 8, 16) == (16, 16)  # smaller than the grid: adaptive pooling repeats
    assert pyramid_sizes(16) == (11, 8, 6, 4)
    assert pyramid_sizes(8) == (6, 4, 3, 2)
    assert pyramid_sizes(32) == (22, 16, 12, 8)
    assert pyramid_sizes(48) == (33, 24, 18, 12)
    assert pyramid_sizes(1) == (1, 1, 1, 1)  # clamped: the official code fails here


def test_registry() -> None:
    names = list_models()
    for name in ["lrformer_t", "lrformer_s", "lrformer_b", "lrformer_l", "lrformer_t_cls", "lrformer_l_cls"]:
        assert name in names
    with pytest.raises(ValueError, match="unknown model 'lrformer_xxl'"):
        create_model("lrformer_xxl")
    with pytest.raises(ValueError, match="unknown argument.*pool_size"):
        create_model("lrformer_t", pool_size=8)
    with pytest.raises(ValueError, match="pooled_sizes must all be >= 1"):
        create_model("lrformer_test", pooled_sizes=0)
    model = create_model("lrformer_test", num_classes=7, pooled_sizes=(8, 16, 32, 48), head_pooled_size=8)
    assert [s.blocks[0].attn.pooled_size for s in model.backbone.stages] == [8, 16, 32, 48]
    assert model.decode_head.block1.attn.pooled_size == 8
    assert model.num_classes == 7


@pytest.mark.parametrize("size", [(100, 150), (33, 257), (32, 32), (64, 512), (257, 33)])
def test_any_input_size(size: tuple[int, int]) -> None:
    model = create_model("lrformer_test", num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert torch.isfinite(out).all()


def test_multiple_of_32_unchanged_by_odd_size_support() -> None:
    # For sizes that are multiples of 32 every stage map is exactly H / stride.
    model = create_model("lrformer_test", num_classes=3).eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 96, 160))
    assert [f.shape[-2:] for f in features] == [(24, 40), (12, 20), (6, 10), (3, 5)]


@pytest.mark.parametrize("pooled_size", [8, 16, 32, 48])
def test_pooled_sizes_forward_backward_every_param_gets_grad(pooled_size: int) -> None:
    model = create_model("lrformer_test", num_classes=4, pooled_sizes=pooled_size, head_pooled_size=pooled_size)
    model.train()
    out = model(torch.randn(2, 3, 64, 96))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_level_convs_are_shared_by_the_stage_blocks() -> None:
    model = create_model("lrformer_test")
    stage = model.backbone.stages[2]
    assert len(stage.blocks) == 2
    for block in stage.blocks:
        assert block.attn._level_convs[0] is stage.level_convs
    keys = list(model.state_dict())
    assert sum("level_convs.0.weight" in k for k in keys) == 4  # once per stage, not per block


@pytest.mark.parametrize("size", [(64, 64), (48, 200)])
def test_fused_and_plain_attention_agree(size: tuple[int, int]) -> None:
    attn = LowResolutionSelfAttention(32, 4, pooled_size=8).eval()
    x = torch.randn(2, 32, *size)
    with torch.no_grad():
        fused = attn(x)
        attn.fused_attention = False
        plain = attn(x)
    assert (fused - plain).abs().max() < 1e-5


def test_classifier_variant() -> None:
    model = create_model("lrformer_test_cls", num_classes=10).eval()
    assert model.backbone.stages[0].blocks[0].attn.pooled_size == 7
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 10)
    assert create_model("lrformer_t_cls").head.out_features == 1000
