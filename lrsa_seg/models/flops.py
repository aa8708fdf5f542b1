"""Exact parameter and multiply-accumulate counts with ``torch.utils.flop_counter``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .lrsa import LowResolutionSelfAttention, set_fused_attention


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def _flop_counts(model: nn.Module, height: int, width: int, batch: int = 1) -> tuple[int, dict[str, dict[Any, int]]]:
    """FLOPs of one eval forward (plain attention path): total, and per module path and operator."""
    was_training = model.training
    fused = {m: m.fused_attention for m in model.modules() if isinstance(m, LowResolutionSelfAttention)}
    model.eval()
    set_fused_attention(model, False)
    try:
        counter = FlopCounterMode(display=False, depth=None)
        with torch.no_grad(), counter:
            device = next(model.parameters()).device
            model(torch.zeros(batch, 3, height, width, device=device))
    finally:
        for module, enabled in fused.items():
            module.fused_attention = enabled
        model.train(was_training)
    # The counter names modules "<RootClass>.<path>"; keep the path ("" is the whole model).
    per_module = {
        name.partition(".")[2]: dict(ops) for name, ops in counter.get_flop_counts().items() if name != "Global"
    }
    return counter.get_total_flops(), per_module


def count_macs(model: nn.Module, height: int, width: int, batch: int = 1) -> tuple[int, dict[str, int]]:
    """Multiply-accumulates of one eval forward at ``height x width``, total and per module.

    Counted by :class:`FlopCounterMode` (FLOPs / 2) over matmuls and convolutions, the
    operators the paper counts. The input is made on the model's device: a model built under
    ``torch.device("meta")`` is counted without computing anything. The plain attention path
    is used while counting, because the counter has no formula for the fused SDPA kernel on
    CPU and would report 0 for it.
    """
    total, counts = _flop_counts(model, height, width, batch)
    return total // 2, {name: sum(ops.values()) // 2 for name, ops in counts.items()}


def flops_report(model: nn.Module, height: int, width: int, depth: int = 2) -> dict[str, Any]:
    """``{"params", "macs", "gmacs", "size", "per_module"}``; modules down to ``depth`` dots."""
    macs, per_module = count_macs(model, height, width)
    table = {name: n for name, n in per_module.items() if name and name.count(".") < depth}
    return {
        "params": count_params(model),
        "macs": macs,
        "gmacs": macs / 1e9,
        "size": [height, width],
        "per_module": table,
    }


# ---------------------------------------------------------------- attention-only counts (issue #15)

AttentionConvention = Literal["full", "core"]

ATTENTION_CONVENTIONS: dict[str, str] = {
    "full": (
        "MACs (FLOPs / 2) of every matrix product and convolution inside the attention modules: "
        "q, kv and output projections, QK^T and AV, and the key/value reduction (SegFormer's sr conv; "
        "LRSA's pyramid 3x3 depth-wise convs); pooling, LayerNorm, softmax, scaling and upsampling not counted"
    ),
    "core": "MACs of the two attention products only, QK^T and AV (no projections, no key/value reduction)",
}
"""What :func:`attention_macs` and :func:`segformer_attention_macs` count, by convention name."""

# The two attention products run as batched matmuls; linears are mm/addmm, convs convolution.
_CORE_OPS = ("bmm", "baddbmm")

SEGFORMER_VARIANTS: dict[str, dict[str, tuple[int, ...]]] = {
    "segformer_b0": dict(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "segformer_b1": dict(dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "segformer_b2": dict(dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    "segformer_b3": dict(dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    "segformer_b4": dict(dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    "segformer_b5": dict(dims=(64, 128, 320, 512), depths=(3, 6, 40, 3)),
}
"""SegFormer (MiT-B0..B5) encoders; all share heads (1, 2, 5, 8) and sr ratios (8, 4, 2, 1)."""

SEGFORMER_SR_RATIOS = (8, 4, 2, 1)


def _check_convention(convention: str) -> None:
    if convention not in ATTENTION_CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {sorted(ATTENTION_CONVENTIONS)}")


def _stage_of(path: str) -> str:
    """``backbone.stages.2.blocks.0.attn`` -> ``stage3``; ``head.block1.attn`` -> ``head``."""
    match = re.search(r"(?:^|\.)stages\.(\d+)\.", path)
    if match:
        return f"stage{int(match.group(1)) + 1}"
    return path.split(".", 1)[0] if "." in path else path


def _attention_result(per_stage: dict[str, int], convention: str) -> dict[str, Any]:
    total = sum(per_stage.values())
    return {
        "attention_macs": total,
        "attention_gmacs": total / 1e9,
        "per_stage": {name: macs / 1e9 for name, macs in per_stage.items()},
        "convention": ATTENTION_CONVENTIONS[convention],
    }


def attention_macs(
    model: nn.Module, height: int, width: int, convention: AttentionConvention = "full"
) -> dict[str, Any]:
    """Attention-only multiply-accumulates of one forward of ``model`` at ``height x width``.

    Counted by :class:`FlopCounterMode` (FLOPs / 2, as :func:`count_macs`) over the operators
    that run inside :class:`LowResolutionSelfAttention` modules only. With ``convention="full"``
    that is the q / kv / output linears, ``QK^T`` and ``AV`` and the shared 3x3 depth-wise convs
    of the key/value pyramid (they run inside the LRSA); adaptive pooling, LayerNorm, softmax
    and the bilinear upsampling are not counted (the counter has no formula for them, and they
    are not multiply-accumulates of a matrix product). ``"core"`` keeps only ``QK^T`` and ``AV``.
    Build the model under ``torch.device("meta")`` to count without computing.

    Returns ``{"attention_gmacs", "attention_macs", "per_stage", "convention"}``; ``per_stage``
    maps ``stage1``..``stage4`` (and ``head`` for a segmentor) to GMACs.
    """
    _check_convention(convention)
    paths = [name for name, m in model.named_modules() if isinstance(m, LowResolutionSelfAttention)]
    _, counts = _flop_counts(model, height, width)
    per_stage: dict[str, int] = {}
    for path in paths:
        ops = counts.get(path, {})
        flops = sum(n for op, n in ops.items() if convention == "full" or _op_name(op) in _CORE_OPS)
        stage = _stage_of(path)
        per_stage[stage] = per_stage.get(stage, 0) + flops // 2
    return _attention_result(per_stage, convention)


def _op_name(op: Any) -> str:
    """``aten.bmm.default`` (an OpOverloadPacket or overload) -> ``bmm``."""
    return str(op).split(".")[1] if str(op).startswith("aten.") else str(op)


def segformer_attention_macs(
    variant: str,
    height: int,
    width: int,
    convention: AttentionConvention = "full",
) -> dict[str, Any]:
    """Attention-only multiply-accumulates of a SegFormer (MiT) encoder, computed from its shapes.

    Same conventions as :func:`attention_macs`. For each efficient self-attention of a stage with
    ``C`` channels, ``N = h * w`` query tokens and ``M = (h // sr) * (w // sr)`` key/value tokens:
    ``QK^T + AV = 2 N M C``; ``"full"`` adds ``q`` and output projections ``2 N C^2``, the ``kv``
    projection ``2 M C^2`` and, for ``sr > 1``, the reduction conv (kernel = stride = ``sr``)
    ``M C^2 sr^2``. ``h, w`` follow MiT's overlapping patch embeddings: ``ceil(H / 4)`` (kernel 7,
    stride 4, padding 3), then ``ceil(h / 2)`` per stage (kernel 3, stride 2, padding 1). The
    decode head has no attention. Needs no ``transformers``.
    """
    _check_convention(convention)
    if variant not in SEGFORMER_VARIANTS:
        raise ValueError(f"unknown SegFormer variant {variant!r}; available: {', '.join(SEGFORMER_VARIANTS)}")
    config = SEGFORMER_VARIANTS[variant]
    h, w = -(-height // 4), -(-width // 4)
    per_stage: dict[str, int] = {}
    for i, (dim, depth, sr) in enumerate(zip(config["dims"], config["depths"], SEGFORMER_SR_RATIOS, strict=True)):
        if i:
            h, w = -(-h // 2), -(-w // 2)
        queries, keys = h * w, (h // sr) * (w // sr)
        macs = 2 * queries * keys * dim
        if convention == "full":
            macs += 2 * queries * dim * dim + 2 * keys * dim * dim
            if sr > 1:
                macs += keys * dim * dim * sr * sr
        per_stage[f"stage{i + 1}"] = depth * macs
    return _attention_result(per_stage, convention)


def attention_report(
    names: Iterable[str],
    sizes: Iterable[tuple[int, int]],
    convention: AttentionConvention = "full",
    **overrides: Any,
) -> list[dict[str, Any]]:
    """:func:`attention_macs` / :func:`segformer_attention_macs` for each model name and size.

    Names are registered LRFormer models (built on the meta device, ``overrides`` passed to
    :func:`~lrsa_seg.models.create_model`) or ``segformer_b0`` .. ``segformer_b5``. Each row is
    ``{"model", "size": [H, W], "attention_gmacs", "attention_macs", "per_stage", "convention"}``.
    """
    from .registry import create_model  # the registry builds models; this module only counts them

    sizes = list(sizes)
    rows = []
    for name in names:
        model = None
        if name not in SEGFORMER_VARIANTS:
            with torch.device("meta"):
                model = create_model(name, **overrides)
        for height, width in sizes:
            if model is None:
                result = segformer_attention_macs(name, height, width, convention)
            else:
                result = attention_macs(model, height, width, convention)
            rows.append({"model": name, "size": [height, width], **result})
    return rows
