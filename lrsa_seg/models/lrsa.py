"""Low-Resolution Self-Attention (LRSA), Wu et al., TPAMI 2025 (arXiv 2310.05026).

The whole idea of the paper fits in :class:`LowResolutionSelfAttention`: queries, keys and
values all live on a FIXED, small pooled grid (16 x 16 for segmentation), so the attention cost
does not depend on the input resolution. Keys/values come from a pyramid of pooled maps; the
attended low-resolution result is bilinearly upsampled back to the input size.

The exact shortcut: where the pooled grid is larger than the map in a dimension (small maps,
large pooled sizes), the final bilinear resize reads at most two grid rows per map row (two
columns per map column). Queries, attention rows and the output projection are independent per
grid cell, so only the cells the resize reads are computed (:class:`ResizePlan`), and the map is
interpolated from them (per axis two gathers and a lerp): the same map and the same gradients as
the full formula, float rounding aside.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .pooling import adaptive_avg_pool2d, is_traced, round_ratio

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


class BilinearReads(NamedTuple):
    """What a 1-D bilinear resize ``size_in -> size_out`` (``align_corners=False``) reads.

    Output ``o`` is ``lerp(cell[low[o]], cell[high[o]], frac[o])`` over the ``kept`` input cells
    (``low`` and ``high`` index into ``kept``).
    """

    kept: tuple[int, ...]
    low: tuple[int, ...]
    high: tuple[int, ...]
    frac: tuple[float, ...]


@functools.lru_cache(maxsize=4096)
def bilinear_reads(size_out: int, size_in: int) -> BilinearReads:
    """The input cells a 1-D bilinear resize ``size_in -> size_out`` reads, and its weights.

    As ``F.interpolate(..., align_corners=False)``: output ``o`` reads the source coordinate
    ``s = max(0, (o + 1/2) size_in / size_out - 1/2)`` from cells ``floor(s)`` and
    ``floor(s) + 1`` (clamped to the last cell), weighted ``1 - frac(s)`` and ``frac(s)``. In
    exact integer arithmetic, so a cell whose weight is exactly 0 is not read at all (with
    ``size_in = 3 size_out`` only every third cell is read). At most two cells per output.
    """
    denominator = 2 * size_out
    reads = []
    for o in range(size_out):
        numerator = max(0, (2 * o + 1) * size_in - size_out)  # s = numerator / denominator
        low, remainder = divmod(numerator, denominator)
        high = min(low + 1, size_in - 1) if remainder else low
        reads.append((low, high, remainder / denominator))
    kept = tuple(sorted({cell for low, high, _ in reads for cell in (low, high)}))
    position = {cell: j for j, cell in enumerate(kept)}
    return BilinearReads(
        kept,
        tuple(position[low] for low, _, _ in reads),
        tuple(position[high] for _, high, _ in reads),
        tuple(frac for _, _, frac in reads),
    )


class AxisResize(NamedTuple):
    """One axis of a :class:`ResizePlan` as tensors: the kept grid cells (``None``: all) and the lerp."""

    kept: torch.Tensor | None
    low: torch.Tensor
    high: torch.Tensor
    frac: torch.Tensor

    @classmethod
    def of(cls, reads: BilinearReads, cut: bool, device: torch.device) -> AxisResize:
        """Tensors on ``device``; ``cut=False`` keeps every cell (then ``kept`` is all of them)."""
        return cls(
            torch.tensor(reads.kept, device=device) if cut else None,
            torch.tensor(reads.low, device=device),
            torch.tensor(reads.high, device=device),
            torch.tensor(reads.frac, dtype=torch.float64, device=device),
        )

    def gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The kept cells of ``x`` along ``dim``."""
        return x if self.kept is None else x.index_select(dim, self.kept)

    def resize(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Bilinear resize of the kept cells along ``dim`` to the map's size."""
        shape = [1] * x.ndim
        shape[dim] = -1
        frac = self.frac.to(x.dtype).view(shape)
        return torch.lerp(x.index_select(dim, self.low), x.index_select(dim, self.high), frac)


@dataclass(frozen=True)
class ResizePlan:
    """The exact shortcut for one map and grid size: the grid cells to compute and the resize from them.

    Bilinear resizing is separable and reads at most two cells per output and axis
    (:func:`bilinear_reads`), so the resize from the kept cells is two gathers and a lerp per
    axis, equal to ``F.interpolate`` of the full grid (float rounding aside). Gathers and lerps,
    not matrix products: FLOP counters see only the (fewer) attention products, as before.

    Attributes:
        size: the map's ``(H, W)``.
        rows: the row axis (``k_h`` kept rows). ``cols``: the column axis (``k_w``).
    """

    size: tuple[int, int]
    rows: AxisResize
    cols: AxisResize

    def gather(self, grid: torch.Tensor) -> torch.Tensor:
        """The kept cells of a pooled grid: ``(B, C, g_h, g_w)`` -> ``(B, C, k_h, k_w)``."""
        return self.cols.gather(self.rows.gather(grid, 2), 3)

    def resize(self, kept: torch.Tensor) -> torch.Tensor:
        """Bilinear resize from the kept cells: ``(B, C, k_h, k_w)`` -> ``(B, C, H, W)``, same memory layout."""
        if kept.is_contiguous() or not kept.is_contiguous(memory_format=torch.channels_last):
            return self.cols.resize(self.rows.resize(kept, 2), 3)
        tokens = kept.permute(0, 2, 3, 1)  # channels-last: resize the contiguous (B, k_h, k_w, C) view
        return self.cols.resize(self.rows.resize(tokens, 1), 2).permute(0, 3, 1, 2)


def resize_plan(height: int, width: int, grid: tuple[int, int], like: torch.Tensor) -> ResizePlan | None:
    """The exact shortcut's :class:`ResizePlan` for a ``height x width`` map and its pooled ``grid``.

    ``None`` (compute every cell, then ``F.interpolate``) where it saves nothing: the grid is not
    larger than the map in either axis, or the resize reads every cell anyway. Also ``None``
    while compiling or exporting: the kept cells are a data-independent but irregular function
    of the sizes (a sorted union of floors) that a symbolic graph cannot express without
    specialising on every input size, so traced graphs (``torch.compile``, ONNX) keep the full
    formula. Index tensors are made on ``like``'s device.
    """
    if is_traced():
        return None
    return _resize_plan(height, width, grid[0], grid[1], like.device)


@functools.lru_cache(maxsize=256)
def _resize_plan(height: int, width: int, rows: int, cols: int, device: torch.device) -> ResizePlan | None:
    row_reads, col_reads = bilinear_reads(height, rows), bilinear_reads(width, cols)
    # Only an axis whose grid is larger than the map can leave cells unread.
    cut_rows, cut_cols = len(row_reads.kept) < rows, len(col_reads.kept) < cols
    if not (cut_rows or cut_cols):
        return None
    # Cached and reused by every later call (no host-to-device copies per call on a GPU), so made
    # as ordinary tensors even when the first call runs under inference mode: index_select keeps
    # its index for backward, which an inference tensor cannot be.
    with torch.inference_mode(False):
        return ResizePlan(
            (height, width), AxisResize.of(row_reads, cut_rows, device), AxisResize.of(col_reads, cut_cols, device)
        )


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
        # The exact shortcut (module doc); False computes every grid cell (the full formula).
        self.exact_shortcut = True

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
        queries = adaptive_avg_pool2d(x, grid)  # (B, C, h, w)
        plan = resize_plan(height, width, grid, x) if self.exact_shortcut else None
        if plan is not None:
            queries = plan.gather(queries)  # only the cells the final resize reads
        kept = queries.shape[-2:]
        queries = queries.flatten(2).transpose(1, 2)  # (B, N, C)
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
        out = out.reshape(batch, *kept, channels).permute(0, 3, 1, 2)  # (B, C, h, w), channels-last memory
        if not x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous()  # the upsampled map takes the input's layout (no full-size copy)
        if plan is not None:
            return plan.resize(out)
        return F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)


def set_fused_attention(model: nn.Module, enabled: bool) -> None:
    """Switch every LRSA in ``model`` between the fused SDPA kernel and the plain path."""
    for module in model.modules():
        if isinstance(module, LowResolutionSelfAttention):
            module.fused_attention = enabled


def set_exact_shortcut(model: nn.Module, enabled: bool) -> None:
    """Switch the exact shortcut (module doc) of every LRSA in ``model``, training or fused copy.

    ``False`` computes every grid cell, the full formula (for comparisons and measurements).
    """
    for module in model.modules():
        if isinstance(getattr(module, "exact_shortcut", None), bool):
            module.exact_shortcut = enabled
