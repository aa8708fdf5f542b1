"""Attention-only multiply-accumulates (issue #15): LRSA counted on the meta device, SegFormer analytically."""

from __future__ import annotations

import json

import pytest
import torch

from lrsa_seg.cli import main
from lrsa_seg.models import create_model
from lrsa_seg.models.flops import attention_macs, segformer_attention_macs
from lrsa_seg.models.lrsa import set_exact_shortcut

# lrformer_test: dims (16, 32, 48, 64), depths (1, 1, 2, 1), head 32 channels, 2 head blocks, all pooled 16.
TEST_LRSA_DIMS = [16, 32, 48, 48, 64, 32, 32]
QUERIES = 16 * 16  # pooled grid of a square input
KEYS = 11 * 11 + 8 * 8 + 6 * 6 + 4 * 4  # the key/value pyramid


@pytest.fixture(scope="module")
def lrformer_test() -> torch.nn.Module:
    with torch.device("meta"):
        return create_model("lrformer_test", num_classes=3)


def segformer_by_hand(depths, dims, side, core):
    total = 0
    for stride, sr, dim, depth in zip((4, 8, 16, 32), (8, 4, 2, 1), dims, depths, strict=True):
        n = (side // stride) ** 2
        m = n // sr**2
        per_block = 2 * n * m * dim
        if not core:
            per_block += 2 * n * dim**2 + 2 * m * dim**2 + (m * dim**2 * sr**2 if sr > 1 else 0)
        total += depth * per_block
    return total


@pytest.mark.parametrize("core", [True, False])
def test_segformer_count_equals_hand_formula(core: bool) -> None:
    result = segformer_attention_macs("segformer_b2", 1024, 1024, "core" if core else "full")
    assert result["attention_macs"] == segformer_by_hand((3, 4, 6, 3), (64, 128, 320, 512), 1024, core)
    assert sum(result["per_stage"].values()) == pytest.approx(result["attention_gmacs"])
    assert list(result["per_stage"]) == ["stage1", "stage2", "stage3", "stage4"]


def test_segformer_attention_is_quadratic_in_tokens() -> None:
    small, large = (segformer_attention_macs("segformer_b0", s, s, "core")["attention_macs"] for s in (512, 1024))
    assert large == 16 * small  # twice the side: 4x queries and 4x keys


def test_segformer_odd_size_follows_patch_embedding_rounding() -> None:
    # 1000 -> ceil: 250, 125, 63, 32 tokens per side; sr floors: 31, 31, 31, 32.
    result = segformer_attention_macs("segformer_b0", 1000, 1000, "core")
    stage1 = 2 * 2 * 250**2 * 31**2 * 32
    assert result["per_stage"]["stage1"] * 1e9 == pytest.approx(stage1)


def test_lrsa_core_count_equals_hand_formula(lrformer_test: torch.nn.Module) -> None:
    result = attention_macs(lrformer_test, 256, 256, "core")
    assert result["attention_macs"] == sum(2 * QUERIES * KEYS * dim for dim in TEST_LRSA_DIMS)
    assert list(result["per_stage"]) == ["stage1", "stage2", "stage3", "stage4", "decode_head"]


def test_lrsa_full_count_equals_hand_formula(lrformer_test: torch.nn.Module) -> None:
    def per_lrsa(dim: int, pyramid_convs: bool) -> int:
        macs = 2 * QUERIES * KEYS * dim + 2 * QUERIES * dim**2 + 2 * KEYS * dim**2
        return macs + (9 * KEYS * dim if pyramid_convs else 0)  # 3x3 depth-wise conv per pyramid level

    expected = sum(per_lrsa(dim, i < 5) for i, dim in enumerate(TEST_LRSA_DIMS))  # the head's LRSA has no convs
    assert attention_macs(lrformer_test, 256, 256)["attention_macs"] == expected


def test_lrsa_count_does_not_depend_on_resolution(lrformer_test: torch.nn.Module) -> None:
    # From 512 on every map is at least as large as its pooled grid (stage 4: 16 x 16).
    small, large = (attention_macs(lrformer_test, s, s)["attention_macs"] for s in (512, 1024))
    assert small == large > 0
    # A 1:2 input keeps the aspect ratio in the pooled grid (16 x 32, pyramid 11 x 22 ...): 2x queries, 2x keys.
    wide = attention_macs(lrformer_test, 512, 1024, "core")["attention_macs"]
    assert wide == 4 * sum(2 * QUERIES * KEYS * dim for dim in TEST_LRSA_DIMS)


def test_attention_cli_json(capsys: pytest.CaptureFixture) -> None:
    argv = ["flops", "--attention", "--model", "lrformer_test", "segformer_b0", "--sizes", "256", "256", "512", "512"]
    assert main([*argv, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["model"], r["size"]) for r in rows] == [
        ("lrformer_test", [256, 256]),
        ("lrformer_test", [512, 512]),
        ("segformer_b0", [256, 256]),
        ("segformer_b0", [512, 512]),
    ]
    assert all(r["attention_gmacs"] > 0 and r["convention"] for r in rows)
    assert rows[0]["attention_gmacs"] == rows[1]["attention_gmacs"]
    assert rows[2]["attention_gmacs"] < rows[3]["attention_gmacs"]
    assert main(["flops", "--attention", "--model", "segformer_b0", "--convention", "core"]) == 0
    assert "segformer_b0" in capsys.readouterr().out


def test_segformer_needs_attention_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["flops", "--model", "segformer_b0"])
    assert exit_info.value.code == 2
    assert "--attention" in capsys.readouterr().err


def test_lrsa_count_below_the_grid_counts_only_the_cells_the_resize_reads(lrformer_test: torch.nn.Module) -> None:
    # At 128 stage 4 is 4 x 4 under a 16 x 16 grid; the bilinear resize back reads grid rows and
    # columns 4o + 1 and 4o + 2 only, so the exact shortcut attends 8 x 8 queries instead of 256.
    # (Stage 3's 8 x 8 map reads every cell of its 16 x 16 grid, the head's map is 16 x 16.)
    large = attention_macs(lrformer_test, 1024, 1024, "core")["attention_macs"]
    small = attention_macs(lrformer_test, 128, 128, "core")
    assert small["attention_macs"] == large - 2 * (QUERIES - 8 * 8) * KEYS * 64
    set_exact_shortcut(lrformer_test, False)
    try:
        assert attention_macs(lrformer_test, 128, 128, "core")["attention_macs"] == large
    finally:
        set_exact_shortcut(lrformer_test, True)
