"""Property-based shape tests: any size, aspect ratio up to 1:8, pooled size 1-64, batch 1-3, any width.

LRSA is checked against a direct reference written from docs/lrsa.md with plain matrices (pooling
and bilinear upsampling as explicit averaging/interpolation matrices, softmax by hand, one head
at a time), not against the module's own plain path. Examples are derandomized (the same on
every run) and sized to keep the file under about a minute.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lrsa_seg.models import LowResolutionSelfAttention, create_model

pytestmark = pytest.mark.usefixtures("one_thread")

PYRAMID = (11, 8, 6, 4)
SETTINGS = settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
MAX_ASPECT = 8


# --- the reference (docs/lrsa.md) --------------------------------------------------------------------
def spec_grid(height: int, width: int, size: int) -> tuple[int, int]:
    """The pooled-grid rule, literally."""
    if width >= height:
        return size, round(width * size / height + 0.001)
    return round(height * size / width + 0.001), size


def average_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)``: row i averages input cells ``floor(i n_in / n_out)`` to ``ceil((i+1) n_in / n_out)``."""
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)``: linear interpolation with half-pixel centres (``align_corners=False``)."""
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        matrix[o, i0] += 1.0 - (src - i0)
        matrix[o, i1] += src - i0
    return matrix


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def reference_lrsa(attn: LowResolutionSelfAttention, x: torch.Tensor, convs: nn.ModuleList | None) -> torch.Tensor:
    """LRSA of ``x (B, C, H, W)`` computed from the description in docs/lrsa.md, in float64."""
    batch, channels, height, width = x.shape
    heads = attn.num_heads
    head_dim = channels // heads

    def pool(t: torch.Tensor, size: int) -> torch.Tensor:
        rows, cols = spec_grid(height, width, size)
        return torch.einsum("ih,bchw,jw->bcij", average_matrix(height, rows), t, average_matrix(width, cols))

    queries = linear(pool(x, attn.pooled_size).flatten(2).transpose(1, 2), attn.q)  # (B, N, C)
    levels = []
    for i, base in enumerate(PYRAMID):
        level = pool(x, max(1, round(base * attn.pooled_size / 16 + 0.001)))
        if convs is not None:
            level = level + F.conv2d(level, convs[i].weight, convs[i].bias, padding=1, groups=channels)
        levels.append(level.flatten(2).transpose(1, 2))
    tokens = torch.cat(levels, dim=1)  # (B, L, C)
    mean = tokens.mean(-1, keepdim=True)
    variance = ((tokens - mean) ** 2).mean(-1, keepdim=True)
    tokens = (tokens - mean) / torch.sqrt(variance + 1e-5) * attn.norm.weight + attn.norm.bias
    kv = linear(tokens, attn.kv)
    keys, values = kv[..., :channels], kv[..., channels:]
    out = torch.empty_like(queries)
    for head in range(heads):
        part = slice(head * head_dim, (head + 1) * head_dim)
        logits = queries[..., part] @ keys[..., part].transpose(1, 2) * head_dim**-0.5
        weights = torch.exp(logits - logits.amax(-1, keepdim=True))
        out[..., part] = (weights / weights.sum(-1, keepdim=True)) @ values[..., part]
    out = linear(out, attn.proj)
    rows, cols = spec_grid(height, width, attn.pooled_size)
    out = out.transpose(1, 2).reshape(batch, channels, rows, cols)
    return torch.einsum("hi,bcij,wj->bchw", bilinear_matrix(rows, height), out, bilinear_matrix(cols, width))


# --- strategies ---------------------------------------------------------------------------------
def attention_elements(height: int, width: int, pooled: int) -> int:
    """Query x key/value tokens of one head: what the attention matrix costs."""
    queries = math.prod(spec_grid(height, width, pooled))
    keys = sum(math.prod(spec_grid(height, width, max(1, round(s * pooled / 16 + 0.001)))) for s in PYRAMID)
    return queries * keys


@st.composite
def map_sizes(draw: st.DrawFn, max_pixels: int) -> tuple[int, int]:
    """``(H, W)`` in [32, 1024] with aspect ratio up to 1:8 and ``H * W <= max_pixels``."""
    height = draw(st.integers(32, min(1024, max(32, int(math.sqrt(max_pixels * MAX_ASPECT))))))
    low = max(32, -(-height // MAX_ASPECT))
    high = max(low, min(1024, MAX_ASPECT * height, max_pixels // height))
    return height, draw(st.integers(low, high))


@st.composite
def pooled_sizes(draw: st.DrawFn, height: int, width: int, copies: int, budget: float = 2e7) -> int:
    """A pooled size in [1, 64] whose attention (times ``copies`` heads x batch) fits ``budget`` elements."""
    largest = max(p for p in range(1, 65) if p == 1 or attention_elements(height, width, p) * copies <= budget)
    return draw(st.integers(1, largest))


# --- LRSA -----------------------------------------------------------------------------------------
def check_against_reference(
    batch: int, heads: int, head_dim: int, height: int, width: int, pooled: int, with_convs: bool, qkv_bias: bool
) -> None:
    """Both attention paths of LRSA equal :func:`reference_lrsa` in float64, for one configuration."""
    channels = heads * head_dim
    torch.manual_seed(0)
    convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, groups=channels) for _ in PYRAMID)
    convs = convs.double() if with_convs else None
    attn = LowResolutionSelfAttention(channels, heads, pooled, qkv_bias, level_convs=convs).double().eval()
    with torch.no_grad():
        for p in attn.parameters():  # non-trivial norm affine parameters
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(batch, channels, height, width, dtype=torch.float64)
        expected = reference_lrsa(attn, x, convs)
        for fused in (True, False):
            attn.fused_attention = fused
            out = attn(x)
            assert out.shape == (batch, channels, height, width)
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_lrsa_matches_the_spec_reference(data: st.DataObject) -> None:
    batch = data.draw(st.integers(1, 3), label="batch")
    heads = data.draw(st.integers(1, 4), label="heads")
    head_dim = data.draw(st.integers(1, 6), label="head_dim")
    height, width = data.draw(map_sizes(max_pixels=2_000_000 // (batch * heads * head_dim)), label="size")
    pooled = data.draw(pooled_sizes(height, width, copies=batch * heads), label="pooled")
    with_convs = data.draw(st.booleans(), label="level_convs")
    qkv_bias = data.draw(st.booleans(), label="qkv_bias")
    check_against_reference(batch, heads, head_dim, height, width, pooled, with_convs, qkv_bias)


@pytest.mark.parametrize(
    ("batch", "heads", "head_dim", "height", "width", "pooled", "with_convs", "qkv_bias"),
    [
        (1, 1, 2, 32, 256, 8, True, True),  # 1:8, the smallest short side
        (2, 2, 3, 1024, 128, 4, True, False),  # 8:1, the largest side
        (1, 1, 4, 64, 64, 64, False, True),  # the largest pooled size (grid 64 x 64 on a 64 x 64 map)
        (1, 2, 2, 40, 33, 64, True, True),  # map smaller than the grid: pooling repeats pixels
        (3, 4, 1, 125, 1000, 1, True, True),  # pooled size 1 (pyramid clamped to 1), 1:8, batch 3
        (1, 1, 8, 1024, 1024, 16, True, True),  # the largest map
    ],
)
def test_lrsa_matches_the_spec_reference_at_the_extremes(
    batch: int, heads: int, head_dim: int, height: int, width: int, pooled: int, with_convs: bool, qkv_bias: bool
) -> None:
    check_against_reference(batch, heads, head_dim, height, width, pooled, with_convs, qkv_bias)


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_lrsa_float32_shape_and_finiteness(data: st.DataObject) -> None:
    batch = data.draw(st.integers(1, 3), label="batch")
    heads = data.draw(st.integers(1, 4), label="heads")
    channels = heads * data.draw(st.sampled_from([1, 2, 8, 16]), label="head_dim")
    height, width = data.draw(map_sizes(max_pixels=8_000_000 // (batch * channels)), label="size")
    pooled = data.draw(pooled_sizes(height, width, copies=batch * heads), label="pooled")
    attn = LowResolutionSelfAttention(channels, heads, pooled).eval()
    with torch.no_grad():
        out = attn(torch.randn(batch, channels, height, width) * 10)
    assert out.shape == (batch, channels, height, width) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


# --- the tiny model -------------------------------------------------------------------------------
def check_tiny_model(
    batch: int, height: int, width: int, dims: tuple[int, ...], pooled: int, head_pooled: int, num_classes: int
) -> None:
    """``lrformer_test`` with these widths and pooled sizes: stage shapes, logit shape, finite."""
    torch.manual_seed(0)
    model = create_model(
        "lrformer_test", num_classes=num_classes, dims=dims, pooled_sizes=pooled, head_pooled_size=head_pooled
    ).eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(batch, 3, height, width))
        out = model.decode_head(features)
        logits = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
    expected = [(-(-height // s), -(-width // s)) for s in (4, 8, 16, 32)]
    assert [tuple(f.shape[-2:]) for f in features] == expected
    assert [f.shape[1] for f in features] == list(dims)
    assert logits.shape == (batch, num_classes, height, width)
    assert torch.isfinite(logits).all()


@settings(SETTINGS, max_examples=12)
@given(data=st.data())
def test_tiny_model_any_size_pooled_size_and_width(data: st.DataObject) -> None:
    batch = data.draw(st.integers(1, 3), label="batch")
    height, width = data.draw(map_sizes(max_pixels=1_500_000 // batch), label="size")
    dims = (
        data.draw(st.sampled_from([8, 16]), label="dim1"),
        data.draw(st.sampled_from([8, 16, 32]), label="dim2"),
        data.draw(st.sampled_from([8, 16, 48]), label="dim3"),
        data.draw(st.sampled_from([16, 32, 64]), label="dim4"),
    )
    # The stage maps are H/4 ... H/32: their attention is what grows with the pooled size.
    pooled = data.draw(pooled_sizes(max(1, height // 4), max(1, width // 4), copies=4 * batch, budget=1e7))
    head_pooled = data.draw(pooled_sizes(max(1, height // 8), max(1, width // 8), copies=4 * batch, budget=1e7))
    num_classes = data.draw(st.integers(1, 20), label="num_classes")
    check_tiny_model(batch, height, width, dims, pooled, head_pooled, num_classes)


@pytest.mark.parametrize(
    ("batch", "height", "width", "dims", "pooled", "head_pooled"),
    [
        (1, 32, 256, (8, 8, 8, 16), 16, 16),  # 1:8 at the smallest size: stage 4 is 1 x 8
        (2, 1024, 128, (16, 32, 48, 64), 8, 32),  # 8:1 at the largest side
        (1, 256, 256, (8, 16, 16, 32), 64, 64),  # the largest pooled size, maps smaller than the grid
        (3, 33, 97, (8, 8, 8, 16), 1, 1),  # pooled size 1, odd sizes, batch 3
    ],
)
def test_tiny_model_at_the_extremes(
    batch: int, height: int, width: int, dims: tuple[int, ...], pooled: int, head_pooled: int
) -> None:
    check_tiny_model(batch, height, width, dims, pooled, head_pooled, num_classes=5)
