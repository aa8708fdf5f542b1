"""The straightforward LRFormer: docs/lrsa.md written out directly, with no optimisation at all.

This is the oracle the optimised model (``lrsa_seg.models`` and its fused inference copy) is
tested against, and the "unoptimised reference" row of ``lrsa-seg benchmark``. It follows the
official code's data flow: backbone blocks run on tokens ``(B, N, C)`` and turn them back into
maps for every convolution; attention is the plain ``softmax(q k^T * scale) v`` with explicit
matmuls; every pooled level is pooled from the full-resolution map separately.

Parameter names and shapes are those of ``lrsa_seg.models`` (``model.state_dict()`` loads with
``strict=True``), so any of our models or converted checkpoints can be checked against it.
Inference only (eval mode; no dropout, no drop path).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PYRAMID = (11, 8, 6, 4)


def grid(height: int, width: int, size: int) -> tuple[int, int]:
    """The pooled-grid rule (docs/lrsa.md#pooled-grid): the short side gets ``size``, the aspect ratio is kept."""
    if width >= height:
        return size, max(1, round(width * size / height + 0.001))
    return max(1, round(height * size / width + 0.001)), size


def to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, H*W, C)`` -> ``(B, C, H, W)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)``."""
    return x.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """LRSA on tokens (backbone) or maps (head, ``on_map=True``)."""

    def __init__(self, dim: int, heads: int, pooled: int) -> None:
        super().__init__()
        self.heads, self.pooled = heads, pooled
        self.levels = [max(1, round(s * pooled / 16 + 0.001)) for s in PYRAMID]
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, level_convs: nn.ModuleList | None) -> torch.Tensor:
        """``x (B, C, H, W)`` -> attended map ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        d = c // self.heads
        qh, qw = grid(h, w, self.pooled)
        q = self.q(to_tokens(F.adaptive_avg_pool2d(x, (qh, qw))))
        pyramid = []
        for i, size in enumerate(self.levels):
            level = F.adaptive_avg_pool2d(x, grid(h, w, size))
            if level_convs is not None:
                level = level + level_convs[i](level)
            pyramid.append(to_tokens(level))
        kv = self.kv(self.norm(torch.cat(pyramid, dim=1)))
        k, v = kv[..., :c], kv[..., c:]
        q = q.reshape(b, -1, self.heads, d).transpose(1, 2)
        k = k.reshape(b, -1, self.heads, d).transpose(1, 2)
        v = v.reshape(b, -1, self.heads, d).transpose(1, 2)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * d**-0.5, dim=-1)
        out = self.proj((attn @ v).transpose(1, 2).reshape(b, -1, c))
        return F.interpolate(to_map(out, qh, qw), size=(h, w), mode="bilinear", align_corners=False)


class Mlp(nn.Module):
    """Inverted residual FFN on maps."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> same."""
        x = F.gelu(self.fc1(x))
        return self.fc2(x + self.dwconv(x))


class Scale(nn.Module):
    """LayerScale parameter holder (``gamma``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))


class Block(nn.Module):
    """Backbone block (token LayerNorms) or head block (BatchNorm on maps, ``head=True``)."""

    def __init__(self, dim: int, heads: int, pooled: int, ratio: float, layer_scale: bool, head: bool) -> None:
        super().__init__()
        self.head = head
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim) if head else nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, pooled)
        self.norm2 = nn.BatchNorm2d(dim) if head else nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, ratio)
        if layer_scale:
            self.ls1, self.ls2 = Scale(dim), Scale(dim)
        self.layer_scale = layer_scale

    def scale(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` times the layer scale ``name`` (identity in stages without one)."""
        return x * getattr(self, name).gamma.view(1, -1, 1, 1) if self.layer_scale else x

    def forward(self, x: torch.Tensor, level_convs: nn.ModuleList | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` -> same."""
        x = x + self.cpe(x)
        if self.head:
            x = x + self.scale("ls1", self.attn(self.norm1(x), None))
            return x + self.scale("ls2", self.mlp(self.norm2(x)))
        h, w = x.shape[-2:]
        t = to_tokens(x)
        t = t + to_tokens(self.scale("ls1", self.attn(to_map(self.norm1(t), h, w), level_convs)))
        t = t + to_tokens(self.scale("ls2", self.mlp(to_map(self.norm2(t), h, w))))
        return to_map(t, h, w)


class Embed(nn.Module):
    """Stem (``convs``) or stride-2 downsample (``proj``), then a token LayerNorm."""

    def __init__(self, cin: int, dim: int, stem: bool) -> None:
        super().__init__()
        if stem:
            mid = dim // 2
            self.convs = nn.Sequential(
                nn.Conv2d(cin, mid, 3, 2, 1), nn.BatchNorm2d(mid), nn.GELU(),
                nn.Conv2d(mid, mid, 3, 1, 1), nn.BatchNorm2d(mid), nn.GELU(),
                nn.Conv2d(mid, dim, 3, 2, 1), nn.BatchNorm2d(dim), nn.GELU(),
                nn.Conv2d(dim, dim, 3, 1, 1),
            )  # fmt: skip
        else:
            self.proj = nn.Conv2d(cin, dim, 3, 2, 1)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C, H', W')``."""
        x = self.convs(x) if hasattr(self, "convs") else self.proj(x)
        return to_map(self.norm(to_tokens(x)), *x.shape[-2:])


class Stage(nn.Module):
    """Embed, then blocks that share the stage's four pyramid convs."""

    def __init__(self, cin: int, dim: int, depth: int, heads: int, pooled: int, ratio: float, ls: bool) -> None:
        super().__init__()
        self.downsample = Embed(cin, dim, stem=cin == 3)
        self.level_convs = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1, groups=dim) for _ in PYRAMID)
        self.blocks = nn.ModuleList(Block(dim, heads, pooled, ratio, ls, head=False) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C, H', W')``."""
        x = self.downsample(x)
        for block in self.blocks:
            x = block(x, self.level_convs)
        return x


class Backbone(nn.Module):
    """Four stages; returns the four maps."""

    def __init__(self, dims: Sequence[int], depths: Sequence[int], heads: Sequence[int], ratios: Sequence[float],
                 pooled: int, ls_stages: Sequence[int]) -> None:  # fmt: skip
        super().__init__()
        cins = [3, *dims[:-1]]
        self.stages = nn.ModuleList(
            Stage(cins[i], dims[i], depths[i], heads[i], pooled, ratios[i], i in ls_stages) for i in range(len(dims))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> four maps."""
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class Squeeze(nn.Module):
    """1x1 conv (no bias), BN, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C, H, W)``."""
        return F.relu(self.bn(self.conv(x)))


class Head(nn.Module):
    """LRHead at stride 8."""

    def __init__(self, dims: Sequence[int], channels: int, classes: int, heads: int, ratio: float, pooled: int) -> None:
        super().__init__()
        self.squeeze1 = Squeeze(sum(dims[1:]), channels)
        self.block1 = Block(channels, heads, pooled, ratio, layer_scale=True, head=True)
        self.squeeze2 = Squeeze(channels + dims[3], channels)
        self.block2 = Block(channels, heads, pooled, ratio, layer_scale=True, head=True)
        self.classifier = nn.Conv2d(channels, classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Four maps -> stride-8 logits."""
        size = features[1].shape[-2:]
        resized = [features[1]] + [F.interpolate(f, size, mode="bilinear", align_corners=False) for f in features[2:]]
        x = self.block1(self.squeeze1(torch.cat(resized, dim=1)))
        x = self.block2(self.squeeze2(torch.cat([x, resized[-1]], dim=1)))
        return self.classifier(x)


class ReferenceSegmentor(nn.Module):
    """Backbone + head; logits bilinearly resized to the input size."""

    def __init__(self, backbone: Backbone, decode_head: Head) -> None:
        super().__init__()
        self.backbone, self.decode_head = backbone, decode_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, K, H, W)``."""
        logits = self.decode_head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def reference_like(model: nn.Module) -> ReferenceSegmentor:
    """The reference twin of an ``lrsa_seg`` :class:`Segmentor`, with its weights, in eval mode.

    The architecture is read from the model's own modules (widths, depths, heads, pooled sizes),
    so any registered variant (and any ``create_model`` override of pooled size) is covered.
    """
    stages = model.backbone.stages
    dims = [s.blocks[0].attn.q.in_features for s in stages]
    pooled = {s.blocks[0].attn.pooled_size for s in stages}
    if len(pooled) != 1:
        raise ValueError(f"the reference takes one backbone pooled size, got {sorted(pooled)}")
    head = model.decode_head
    ref = ReferenceSegmentor(
        Backbone(
            dims,
            [len(s.blocks) for s in stages],
            [s.blocks[0].attn.num_heads for s in stages],
            [s.blocks[0].mlp.fc1.out_channels / d for s, d in zip(stages, dims)],
            pooled.pop(),
            [i for i, s in enumerate(stages) if hasattr(s.blocks[0].ls1, "gamma")],
        ),
        Head(
            dims,
            head.classifier.in_channels,
            head.classifier.out_channels,
            head.block1.attn.num_heads,
            head.block1.mlp.fc1.out_channels / head.classifier.in_channels,
            head.block1.attn.pooled_size,
        ),
    )
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref.eval()
