"""LRFormer backbone: four stages of LRSA blocks (strides 4, 8, 16, 32), all in NCHW maps.

Read top-down: :class:`InvertedResidualMlp` -> :class:`Block` -> :class:`Stem` /
:class:`Downsample` -> :class:`Stage` -> :class:`LRFormer` -> :class:`LRFormerClassifier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.utils.checkpoint
from torch import nn

from .layers import (
    DropPath,
    InitScheme,
    LayerNorm2d,
    LayerScale2d,
    check_init_scheme,
    depthwise_conv3x3,
    init_weights,
)
from .lrsa import PYRAMID_BASE_SIZES, LowResolutionSelfAttention


class InvertedResidualMlp(nn.Module):
    """FFN of a block: 1x1 conv -> GELU -> (+ 3x3 depth-wise conv residual) -> 1x1 conv.

    Shapes: ``(B, C, H, W)`` -> ``(B, C, H, W)``, hidden width ``mlp_ratio * C``.
    """

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dwconv = depthwise_conv3x3(hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        x = self.act(self.fc1(x))
        x = x + self.dwconv(x)
        return self.fc2(x)


class Block(nn.Module):
    """LRFormer block on ``(B, C, H, W)`` maps, used by the backbone and the head.

    ``x = x + cpe(x)``; ``x = x + ls1 * LRSA(norm1(x))``; ``x = x + ls2 * mlp(norm2(x))``.

    Args:
        dim: channels.
        num_heads: LRSA heads.
        pooled_size: LRSA pooled size.
        mlp_ratio: FFN expansion.
        norm: ``"layernorm"`` (backbone, eps 1e-6) or ``"batchnorm"`` (head).
        layer_scale: learnable per-channel scales on both residual branches (init 1e-6).
        drop_path: stochastic-depth rate of both residual branches.
        qkv_bias: bias in the LRSA query and key/value projections.
        level_convs: the stage's shared pyramid convs (see :class:`LowResolutionSelfAttention`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        pooled_size: int,
        mlp_ratio: float,
        norm: Literal["layernorm", "batchnorm"] = "layernorm",
        layer_scale: bool = False,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
        level_convs: nn.ModuleList | None = None,
    ) -> None:
        super().__init__()

        def make_norm() -> nn.Module:
            return LayerNorm2d(dim, eps=1e-6) if norm == "layernorm" else nn.BatchNorm2d(dim)

        self.cpe = depthwise_conv3x3(dim)  # conditional position encoding
        self.norm1 = make_norm()
        self.attn = LowResolutionSelfAttention(dim, num_heads, pooled_size, qkv_bias, level_convs)
        self.ls1 = LayerScale2d(dim) if layer_scale else nn.Identity()
        self.norm2 = make_norm()
        self.mlp = InvertedResidualMlp(dim, mlp_ratio)
        self.ls2 = LayerScale2d(dim) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        x = x + self.cpe(x)
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class Stem(nn.Module):
    """Stride-4 stem: four 3x3 convs (strides 2, 1, 2, 1) with BN + GELU between, then LN.

    ``(B, 3, H, W)`` -> ``(B, C, ceil(H / 4), ceil(W / 4))``.
    """

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        mid = dim // 2
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, stride=2, padding=1),
            nn.BatchNorm2d(mid),
            nn.GELU(),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.GELU(),
            nn.Conv2d(mid, dim, 3, stride=2, padding=1),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1),
        )
        self.norm = LayerNorm2d(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, C, ceil(H / 4), ceil(W / 4))``."""
        return self.norm(self.convs(x))


class Downsample(nn.Module):
    """3x3 stride-2 conv + LN: ``(B, C_in, H, W)`` -> ``(B, C, ceil(H / 2), ceil(W / 2))``."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, stride=2, padding=1)
        self.norm = LayerNorm2d(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C, ceil(H / 2), ceil(W / 2))``."""
        return self.norm(self.proj(x))


class Stage(nn.Module):
    """Downsample, then ``depth`` blocks sharing one set of pyramid convs.

    The stage owns the four 3x3 depth-wise convs of the key/value pyramid; every block's LRSA
    uses them (the released checkpoints have one set per stage).
    """

    def __init__(
        self,
        downsample: nn.Module,
        dim: int,
        depth: int,
        num_heads: int,
        pooled_size: int,
        mlp_ratio: float,
        layer_scale: bool,
        drop_paths: Sequence[float],
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.level_convs = nn.ModuleList(depthwise_conv3x3(dim) for _ in PYRAMID_BASE_SIZES)
        self.blocks = nn.Sequential(
            *(
                Block(
                    dim,
                    num_heads,
                    pooled_size,
                    mlp_ratio,
                    norm="layernorm",
                    layer_scale=layer_scale,
                    drop_path=drop_paths[j],
                    qkv_bias=qkv_bias,
                    level_convs=self.level_convs,
                )
                for j in range(depth)
            )
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C, H', W')`` (H' = ceil(H / stride))."""
        x = self.downsample(x)
        if self.grad_checkpointing and self.training:
            for block in self.blocks:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


def _per_stage(value: int | Sequence[int], name: str, num_stages: int) -> tuple[int, ...]:
    values = (value,) * num_stages if isinstance(value, int) else tuple(value)
    if len(values) != num_stages:
        raise ValueError(f"{name} needs {num_stages} values, got {list(values)}")
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must all be >= 1, got {list(values)}")
    return values


class LRFormer(nn.Module):
    """The LRFormer backbone: returns the four stage maps (strides 4, 8, 16, 32).

    Args:
        dims: channels per stage.
        depths: blocks per stage.
        num_heads: LRSA heads per stage.
        mlp_ratios: FFN expansion per stage.
        pooled_sizes: LRSA pooled size, one int for all stages or one per stage.
        layer_scale_stages: stages (0-based) whose blocks have LayerScale (released: 2, 3).
        drop_path_rate: stochastic depth, growing linearly from 0 over all blocks.
        qkv_bias: bias in the LRSA query and key/value projections.
        in_channels: image channels.
        init_scheme: how the weights are drawn, ``"official"`` (the release's) or ``"fan_out"``
            (the former default); see :data:`~lrsa_seg.models.layers.InitScheme`.

    Attributes:
        out_channels: channels of the four outputs. ``strides``: their strides.
    """

    def __init__(
        self,
        dims: Sequence[int] = (48, 96, 240, 384),
        depths: Sequence[int] = (2, 2, 6, 3),
        num_heads: Sequence[int] = (2, 4, 10, 16),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        pooled_sizes: int | Sequence[int] = 16,
        layer_scale_stages: Sequence[int] = (2, 3),
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        in_channels: int = 3,
        init_scheme: InitScheme = "official",
    ) -> None:
        super().__init__()
        check_init_scheme(init_scheme)
        num_stages = len(dims)
        for name, values in (("depths", depths), ("num_heads", num_heads), ("mlp_ratios", mlp_ratios)):
            if len(values) != num_stages:
                raise ValueError(f"{name} needs {num_stages} values (one per stage), got {list(values)}")
        pooled = _per_stage(pooled_sizes, "pooled_sizes", num_stages)
        total = sum(depths)
        rates = [drop_path_rate * j / max(1, total - 1) for j in range(total)]
        stages = []
        for i in range(num_stages):
            first = sum(depths[:i])
            downsample = Stem(in_channels, dims[0]) if i == 0 else Downsample(dims[i - 1], dims[i])
            stages.append(
                Stage(
                    downsample,
                    dims[i],
                    depths[i],
                    num_heads[i],
                    pooled[i],
                    mlp_ratios[i],
                    layer_scale=i in layer_scale_stages,
                    drop_paths=rates[first : first + depths[i]],
                    qkv_bias=qkv_bias,
                )
            )
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(dims)
        self.strides = tuple(4 * 2**i for i in range(num_stages))
        self.apply(lambda m: init_weights(m, init_scheme))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute blocks in backward to save activation memory."""
        for stage in self.stages:
            stage.grad_checkpointing = enabled

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> four maps ``(B, dims[i], ceil(H / 4 * 2**-i), ...)``."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class LRFormerClassifier(nn.Module):
    """ImageNet-style classifier on the LRFormer backbone: GAP -> LayerNorm -> linear.

    ``(B, 3, H, W)`` -> ``(B, num_classes)``. The linear is truncated normal (std 0.02) with a
    zero bias under either init scheme.
    """

    def __init__(self, backbone: LRFormer, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.out_channels[-1]
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        init_weights(self.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> pooled, normalized features ``(B, C)``."""
        return self.norm(self.backbone(x)[-1].mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> logits ``(B, num_classes)``."""
        return self.head(self.forward_features(x))
