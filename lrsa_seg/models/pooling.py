"""Shape arithmetic and pooling that also hold under ``torch.compile(dynamic=True)`` and export.

LRSA's pooled grid depends on the input's height and width through ``round()``. Written with
Python floats, a compiler has to specialise on every input size and an exporter bakes the example
size in. Here the same numbers come from exact integer arithmetic on (possibly symbolic) sizes,
and the adaptive pooling has a form built from tensor ops for exporters, so one graph serves
every input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def round_ratio(numerator: int, denominator: int) -> int:
    """``round(numerator / denominator + 0.001)`` exactly as Python computes it, in integers.

    Python rounds the float64 value half to even; ``z = (1000 n + d) / (1000 d)`` is rounded
    half to even here in integer arithmetic (the same for every size up to 4096 x 4096 and the
    pooled sizes in use: ``tests/test_performance.py`` checks it exhaustively). Works on
    ``SymInt`` s (and integer arrays), so a compiled or exported graph keeps it symbolic instead of specialising.
    """
    twice = 2 * (1000 * numerator + denominator) + 1000 * denominator
    period = 2000 * denominator
    quotient = twice // period
    tie = 1 - (twice % period + period - 1) // period  # 1 when z is exactly k + 1/2, else 0
    return quotient - tie * (quotient % 2)


def pool_matrix(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """``(size_out, size_in)`` averaging weights of 1-D adaptive average pooling.

    Bin ``i`` covers ``[floor(i * n / m), ceil((i + 1) * n / m))``, PyTorch's rule, so
    ``M_h @ x @ M_w^T`` equals ``F.adaptive_avg_pool2d`` up to float rounding.
    """
    i = torch.arange(size_out, device=like.device)
    start = (i * size_in) // size_out
    end = ((i + 1) * size_in + size_out - 1) // size_out
    j = torch.arange(size_in, device=like.device)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def is_traced() -> bool:
    """Whether the code runs under ``torch.compile`` or an exporter (sizes may be symbolic)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def pool_by_matmul(
    x: torch.Tensor, sizes: list[tuple[int, int]], affine: tuple[torch.Tensor, torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Adaptive average pooling of ``x (B, C, H, W)`` to several grids with matrix products.

    The rows of all grids are pooled in ONE product that reads ``x`` once; the columns per grid
    on the small result. Channels-last ``x`` is read as ``(B, H, W * C)`` without a copy.
    ``affine``: per-channel ``(scale, shift)`` (``(C,)`` each) applied to ``x`` first, in the
    layout the product reads (see :func:`adaptive_avg_pool2d_multi`).
    """
    batch, channels, height, width = x.shape
    rows = torch.cat([pool_matrix(height, h, x) for h, _ in sizes])  # (sum h, H)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        x_last = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        if affine is not None:
            x_last = x_last * affine[0] + affine[1]
        pooled_rows = torch.matmul(rows, x_last.reshape(batch, height, width * channels))
        pooled_rows = pooled_rows.view(batch, -1, width, channels)  # (B, sum h, W, C)
        out, start = [], 0
        for h, w in sizes:
            part = pooled_rows[:, start : start + h]
            out.append(torch.matmul(pool_matrix(width, w, x), part).permute(0, 3, 1, 2))  # (B, C, h, w)
            start += h
        return out
    if affine is not None:
        x = x * affine[0].view(-1, 1, 1) + affine[1].view(-1, 1, 1)
    pooled_rows = torch.matmul(rows, x)  # (B, C, sum h, W)
    out, start = [], 0
    for h, w in sizes:
        out.append(torch.matmul(pooled_rows[:, :, start : start + h], pool_matrix(width, w, x).transpose(0, 1)))
        start += h
    return out


def adaptive_avg_pool2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``, or matrix products while compiling or exporting.

    Exporters decompose ``adaptive_avg_pool2d`` into index gathers fixed for the example
    input, which are silently wrong (or fail) at other sizes, and Inductor cannot lower it with
    symbolic output sizes; the matrix form is built from the sizes at run time. ``x`` is
    ``(B, C, H, W)``.
    """
    if not is_traced():
        return F.adaptive_avg_pool2d(x, size)
    return pool_by_matmul(x, [size])[0]


def adaptive_avg_pool2d_multi(
    x: torch.Tensor, sizes: list[tuple[int, int]], affine: tuple[torch.Tensor, torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """:func:`adaptive_avg_pool2d` of ``x (B, C, H, W)`` to several grids (one read of ``x`` when traced).

    ``affine``: per-channel ``(scale, shift)``, each ``(C,)``, of ``x`` before pooling (a
    BatchNorm in eval). Pooling averages, so in eager mode it is applied to the small grids. When
    traced it is applied to the map, after the map's transpose to channels-last: a per-channel
    product right before that transpose was merged by OpenVINO 2026.4's int8 transformations
    with the preceding convolution's dequantization into a constant of the wrong layout, and the
    int8 IR of a model whose shift was all zeros (BatchNorm at its initial values) did not compile.
    """
    if not is_traced():
        pooled = [F.adaptive_avg_pool2d(x, size) for size in sizes]
        if affine is None:
            return pooled
        scale, shift = affine[0].view(-1, 1, 1), affine[1].view(-1, 1, 1)
        return [grid * scale + shift for grid in pooled]
    return pool_by_matmul(x, sizes, affine)
