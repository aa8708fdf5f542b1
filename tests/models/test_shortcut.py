"""The exact shortcut of LRSA (issue 22): only the grid cells the final resize reads are computed.

Where the pooled grid is larger than the map, the bilinear resize back to the map reads at most
two grid rows per map row and two columns per map column; the shortcut computes queries,
attention and the output projection for those cells only. Checked here in float64 against the
full formula (the same module with ``exact_shortcut = False``): outputs and gradients (input and
every parameter), both attention paths, both memory layouts, random shapes and pooled sizes
1-64. The full formula itself is checked against the spec reference in ``test_properties.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lrsa_seg.models import LowResolutionSelfAttention, create_model, pooled_grid
from lrsa_seg.models.fuse import fuse_for_inference
from lrsa_seg.models.lrsa import bilinear_reads, resize_plan, set_exact_shortcut

from .test_properties import MAX_ASPECT, PYRAMID, SETTINGS, pooled_sizes

pytestmark = pytest.mark.usefixtures("one_thread")


def interpolation_matrix(size_out: int, size_in: int) -> torch.Tensor:
    """``(size_out, size_in)``: what ``F.interpolate`` (linear, ``align_corners=False``) computes, from itself."""
    basis = torch.eye(size_in, dtype=torch.float64).view(size_in, 1, size_in)
    return F.interpolate(basis, size=size_out, mode="linear", align_corners=False)[:, 0].T


def test_bilinear_reads_are_the_interpolation_weights_for_every_size_pair() -> None:
    for size_in in range(1, 65):
        for size_out in range(1, 65):
            expected = interpolation_matrix(size_out, size_in)
            reads = bilinear_reads(size_out, size_in)
            ours = torch.zeros_like(expected)
            for o in range(size_out):
                ours[o, reads.kept[reads.low[o]]] += 1 - reads.frac[o]
                ours[o, reads.kept[reads.high[o]]] += reads.frac[o]
            torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
            # Kept: exactly the cells with a non-zero weight (F.interpolate's float rounding aside).
            read = set((expected.abs() > 1e-12).any(0).nonzero().flatten().tolist())
            assert set(reads.kept) == read, (size_out, size_in)
            assert list(reads.kept) == sorted(reads.kept)
            assert len(reads.kept) <= min(size_in, 2 * size_out)


@pytest.mark.parametrize(
    ("height", "width", "pooled", "kept"),
    [
        (6, 7, 48, (12, 14)),  # stage 4 of the quickstart crop at pooled 48: 168 of 2,688 queries
        (11, 14, 48, (22, 28)),  # stage 3 of the quickstart crop: 616 of 2,928
        (4, 4, 12, (4, 4)),  # grid = 3 x map: every source coordinate is a cell centre, one read each
        (8, 8, 16, None),  # grid = 2 x map: every cell is read, nothing to save
        (16, 16, 16, None),  # grid = map
        (40, 50, 16, None),  # grid smaller than the map: today's path
    ],
)
def test_resize_plan_keeps_only_the_cells_read(
    height: int, width: int, pooled: int, kept: tuple[int, int] | None
) -> None:
    grid = pooled_grid(height, width, pooled)
    plan = resize_plan(height, width, grid, torch.empty(0))
    if kept is None:
        assert plan is None
        return
    assert plan is not None
    assert tuple(plan.gather(torch.zeros(1, 1, *grid)).shape[-2:]) == kept


def check_shortcut_equals_full_formula(
    batch: int,
    heads: int,
    head_dim: int,
    height: int,
    width: int,
    pooled: int,
    with_convs: bool,
    qkv_bias: bool,
    channels_last: bool,
) -> None:
    """Output, input gradient and parameter gradients: shortcut == full formula, both attention paths."""
    channels = heads * head_dim
    torch.manual_seed(0)
    convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, groups=channels) for _ in PYRAMID)
    convs = convs.double() if with_convs else None
    attn = LowResolutionSelfAttention(channels, heads, pooled, qkv_bias, level_convs=convs).double()
    with torch.no_grad():
        for p in attn.parameters():  # non-trivial norm affine parameters
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weights = torch.randn(batch, channels, height, width, dtype=torch.float64)  # a loss reading every output
    params = list(attn.parameters()) + (list(convs.parameters()) if convs is not None else [])
    results, layouts = {}, {}
    for shortcut in (True, False):
        for fused in (True, False):
            attn.exact_shortcut, attn.fused_attention = shortcut, fused
            inputs = x.clone().requires_grad_(True)
            out = attn(inputs)
            grads = torch.autograd.grad((out * weights).sum(), [inputs, *params])
            assert out.shape == x.shape
            layouts[shortcut, fused] = (out.is_contiguous(), out.is_contiguous(memory_format=torch.channels_last))
            results[shortcut, fused] = (out.detach(), *grads)
    expected = results[False, False]  # the full formula, plain attention
    assert len(set(layouts.values())) == 1  # the same memory layout as the full formula's output
    for key, got in results.items():
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, key=key: f"{key}: {m}")


@st.composite
def small_map_sizes(draw: st.DrawFn) -> tuple[int, int]:
    """``(H, W)`` in [1, 48], aspect ratio up to 1:8: the maps that are smaller than a pooled grid."""
    height = draw(st.integers(1, 48))
    width = draw(st.integers(max(1, -(-height // MAX_ASPECT)), min(48, MAX_ASPECT * height)))
    return height, width


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_shortcut_equals_full_formula(data: st.DataObject) -> None:
    batch = data.draw(st.integers(1, 3), label="batch")
    heads = data.draw(st.integers(1, 4), label="heads")
    head_dim = data.draw(st.integers(1, 6), label="head_dim")
    height, width = data.draw(small_map_sizes(), label="size")
    pooled = data.draw(pooled_sizes(height, width, copies=batch * heads, budget=5e6), label="pooled")
    with_convs = data.draw(st.booleans(), label="level_convs")
    qkv_bias = data.draw(st.booleans(), label="qkv_bias")
    channels_last = data.draw(st.booleans(), label="channels_last")
    check_shortcut_equals_full_formula(
        batch, heads, head_dim, height, width, pooled, with_convs, qkv_bias, channels_last
    )


@pytest.mark.parametrize(
    ("batch", "heads", "head_dim", "height", "width", "pooled", "channels_last"),
    [
        (1, 1, 3, 6, 7, 48, True),  # stage 4 of the quickstart crop at pooled 48
        (2, 2, 2, 1, 8, 16, False),  # 1:8, one row under a 16 x 128 grid
        (1, 2, 2, 3, 1, 16, True),  # 3:1, one column under a 48 x 16 grid
        (1, 1, 2, 5, 5, 15, False),  # grid = 3 x map: only cell centres are read
        (3, 1, 2, 20, 9, 16, True),  # rows below the grid by less than 2x, columns not
        (1, 1, 2, 7, 9, 1, False),  # pooled size 1: the grid is smaller than the map
        (1, 1, 2, 20, 25, 32, True),  # below the grid by less than 2x in both axes
    ],
)
def test_shortcut_equals_full_formula_at_the_extremes(
    batch: int, heads: int, head_dim: int, height: int, width: int, pooled: int, channels_last: bool
) -> None:
    check_shortcut_equals_full_formula(batch, heads, head_dim, height, width, pooled, True, True, channels_last)


def test_model_training_step_gradients_equal_the_full_formula() -> None:
    # At 64 x 64 stages 3 and 4 (4 x 4, 2 x 2) lie under 32 x 32 grids: the shortcut keeps 8 x 8 and
    # 4 x 4 cells. Stages 1 and 2 and the head (16 x 16, 8 x 8 under 16 x 16) keep every cell.
    torch.manual_seed(0)
    model = create_model("lrformer_test", num_classes=5, pooled_sizes=(16, 16, 32, 32)).double().train()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    target = torch.randint(0, 5, (2, 64, 64))
    results = []
    for shortcut in (True, False):
        set_exact_shortcut(model, shortcut)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks
        logits = model(x)
        F.cross_entropy(logits, target).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (logits, grads), (full_logits, full_grads) = results
    torch.testing.assert_close(logits, full_logits, rtol=1e-10, atol=1e-12)
    assert grads.keys() == full_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_fused_copy_uses_the_shortcut_with_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("lrformer_test", num_classes=5, pooled_sizes=48, head_pooled_size=32).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        plain = model(x)
        fused = fuse_for_inference(model)
        assert all(m.exact_shortcut for m in fused.modules() if hasattr(m, "exact_shortcut"))
        short = fused(x)
        set_exact_shortcut(fused, False)
        full = fused(x)
    scale = plain.abs().max()
    assert (short - full).abs().max() <= 1e-5 * scale
    assert (short - plain).abs().max() <= 1e-4 * scale
