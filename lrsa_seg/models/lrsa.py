"""Low-Resolution Self-Attention (LRSA), Wu et al., TPAMI 2025 (arXiv 2310.05026).

The whole idea of the paper fits in :class:`LowResolutionSelfAttention`: queries, keys and
values all live on a FIXED, small pooled grid (16 x 16 for segmentation), so the attention cost
does not depend on the input resolution. Keys/values come from a pyramid of pooled maps; the
attended low-resolution result is bilinearly upsampled back to the input size.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .pooling import adaptive_avg_pool2d, round_ratio

# Key/value pyramid of the paper for pooled size 16; other pooled sizes scale it.
PYRAMID_BASE_SIZES = (11, 8, 6, 4)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager[None]:
    """Context that turns autocast off on ``device_type`` (a no-op where autocast does not exist, e.g. meta)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def pooled_grid(height: int, width: int, size: int) -> tuple[int, int]:
    """Grid ``(rows, cols)`` of a map of ``height x width`` pooled to ``size``.

    The short side gets ``size`` and the aspect ratio is kept (the official rounding rule,
    ``round(long * size / short + 0.001)``). Computed in exact integer arithmetic without a
    branch on the orientation, so sizes may be symbolic (compiled or exported graphs stay
    valid for every input size): the short side's own ratio rounds to at most ``size``.
    """
    return (
        torch.sym_max(size, round_ratio(height * size, width)),
        torch.sym_max(size, round_ratio(width * size, height)),
    )


def pyramid_sizes(pooled_size: int) -> tuple[int, ...]:
    """Key/value pyramid sizes for a pooled size: 16 -> (11, 8, 6, 4), 8 -> (6, 4, 3, 2).

    A level that would round to 0 (pooled size 1) is clamped to 1; this changes nothing for
    pooled sizes >= 2 (the official code fails for pooled size 1).
    """
    return tuple(max(1, round(s * pooled_size / 16 + 0.001)) for s in PYRAMID_BASE_SIZES)


class LowResolutionSelfAttention(nn.Module):
    """LRSA: attention computed entirely on a fixed-size pooled grid.

    Args:
        dim: channels ``C`` of the input map.
        num_heads: attention heads; ``dim`` must divide evenly.
        pooled_size: short side of the pooled query grid (16 for segmentation, 7 for 224 x 224
            classification); the long side keeps the aspect ratio.
        qkv_bias: bias in the query and key/value projections.
        level_convs: 3x3 depth-wise convs added as residuals to the pyramid levels, one per
            level. In the backbone they belong to the stage and are shared by all of its blocks,
            so they are held here by reference, not registered (the stage registers them).
            ``None`` for the decode head, whose LRSA has none.

    Shapes: input ``(B, C, H, W)`` (already normalized), output ``(B, C, H, W)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        pooled_size: int,
        qkv_bias: bool = True,
        level_convs: nn.ModuleList | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if pooled_size < 1:
            raise ValueError(f"pooled_size must be >= 1, got {pooled_size}")
        self.num_heads = num_heads
        self.pooled_size = pooled_size
        self.level_sizes = pyramid_sizes(pooled_size)
        if level_convs is not None and len(level_convs) != len(self.level_sizes):
            raise ValueError(f"level_convs has {len(level_convs)} convs, the pyramid {len(self.level_sizes)}")
        # A plain tuple keeps the shared convs out of this module's state_dict.
        self._level_convs = (level_convs,) if level_convs is not None else ()
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)
        # The plain matmul-softmax path is the readable reference (and what FLOP counters see).
        self.fused_attention = True

    def key_value_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled key/value pyramid of ``x (B, C, H, W)`` as tokens ``(B, L, C)``, normalized."""
        height, width = x.shape[-2:]
        convs = self._level_convs[0] if self._level_convs else None
        levels = []
        for i, size in enumerate(self.level_sizes):
            level = adaptive_avg_pool2d(x, pooled_grid(height, width, size))
            if convs is not None:
                level = level + convs[i](level)
            levels.append(level.flatten(2))
        return self.norm(torch.cat(levels, dim=2).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        batch, channels, height, width = x.shape
        heads, head_dim = self.num_heads, channels // self.num_heads
        grid = pooled_grid(height, width, self.pooled_size)
        queries = adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)  # (B, N, C)
        q = self.q(queries).reshape(batch, -1, heads, head_dim).transpose(1, 2)
        kv = self.kv(self.key_value_tokens(x))  # (B, L, 2C): K then V, heads contiguous
        k, v = kv.reshape(batch, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        # The attention runs in float32 with autocast off, on purpose (as timm's LiteMLA): under
        # fp16 the logits q.k overflow above 65504 and under bf16 they keep only 8 bits, while
        # the pooled grid makes this part tiny (N x L is about 256 x 237). No-op in float32.
        dtype, wide = q.dtype, torch.promote_types(q.dtype, torch.float32)  # fp16/bf16 -> fp32; fp64 stays
        with autocast_off(x.device.type):
            q, k, v = q.to(wide), k.to(wide), v.to(wide)
            if self.fused_attention:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                attn = (q * head_dim**-0.5) @ k.transpose(-2, -1)
                out = attn.softmax(dim=-1) @ v
        out = self.proj(out.to(dtype).transpose(1, 2).reshape(batch, -1, channels))  # (B, N, C)
        out = out.reshape(batch, *grid, channels).permute(0, 3, 1, 2)  # (B, C, h, w), channels-last memory
        if not x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous()  # the upsampled map takes the input's layout (no full-size copy)
        return F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)


def set_fused_attention(model: nn.Module, enabled: bool) -> None:
    """Switch every LRSA in ``model`` between the fused SDPA kernel and the plain path."""
    for module in model.modules():
        if isinstance(module, LowResolutionSelfAttention):
            module.fused_attention = enabled
