"""LRFormer variants by name: the released configurations as data, one factory."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

from torch import nn

from .head import LRHead
from .lrformer import LRFormer, LRFormerClassifier
from .segmentor import Segmentor

logger = logging.getLogger("lrsa_seg")

_HEADS = dict(num_heads=(2, 4, 10, 16), mlp_ratios=(8, 8, 4, 4))


# The released configurations (docs/lrsa.md#block-and-stages); `lrformer_test` is a tiny variant for tests and demos.
VARIANTS: dict[str, dict[str, Any]] = {
    "lrformer_t": dict(dims=(48, 96, 240, 384), depths=(2, 2, 6, 3), **_HEADS, head_channels=256, drop_path_rate=0.1),
    "lrformer_s": dict(dims=(64, 128, 320, 512), depths=(3, 3, 12, 3), **_HEADS, head_channels=384, drop_path_rate=0.2),
    "lrformer_b": dict(dims=(80, 160, 400, 512), depths=(4, 4, 15, 8), **_HEADS, head_channels=512, drop_path_rate=0.4),
    "lrformer_l": dict(dims=(96, 192, 480, 640), depths=(4, 6, 18, 8), **_HEADS, head_channels=640, drop_path_rate=0.6),
    "lrformer_test": dict(
        dims=(16, 32, 48, 64), depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), mlp_ratios=(8, 8, 4, 4),
        head_channels=32, head_num_heads=4, head_pooled_size=16, drop_path_rate=0.0,
    ),
}  # fmt: skip


_HEAD_ONLY = ("head_channels", "head_num_heads", "head_mlp_ratio", "head_pooled_size", "dropout")


CLASSIFIER_SUFFIX = "_cls"


def build_segmentor(
    dims: Sequence[int],
    depths: Sequence[int],
    num_heads: Sequence[int],
    mlp_ratios: Sequence[float],
    num_classes: int = 150,
    pooled_sizes: int | Sequence[int] = 16,
    layer_scale_stages: Sequence[int] = (2, 3),
    drop_path_rate: float = 0.0,
    qkv_bias: bool = True,
    head_channels: int = 256,
    head_num_heads: int = 8,
    head_mlp_ratio: float = 4,
    head_pooled_size: int = 32,
    dropout: float = 0.1,
) -> Segmentor:
    """LRFormer backbone + LRHead; see :class:`LRFormer` and :class:`LRHead` for the arguments."""
    backbone = LRFormer(dims, depths, num_heads, mlp_ratios, pooled_sizes, layer_scale_stages, drop_path_rate, qkv_bias)
    head = LRHead(
        backbone.out_channels,
        head_channels,
        num_classes,
        head_num_heads,
        head_mlp_ratio,
        head_pooled_size,
        dropout,
        qkv_bias,
    )
    return Segmentor(backbone, head)


def build_classifier(
    dims: Sequence[int],
    depths: Sequence[int],
    num_heads: Sequence[int],
    mlp_ratios: Sequence[float],
    num_classes: int = 1000,
    pooled_sizes: int | Sequence[int] = 7,
    layer_scale_stages: Sequence[int] = (2, 3),
    drop_path_rate: float = 0.0,
    qkv_bias: bool = True,
) -> LRFormerClassifier:
    """LRFormer backbone + GAP/LN/linear classifier (pooled size 7, as for 224 x 224)."""
    backbone = LRFormer(dims, depths, num_heads, mlp_ratios, pooled_sizes, layer_scale_stages, drop_path_rate, qkv_bias)
    return LRFormerClassifier(backbone, num_classes)


def list_models() -> list[str]:
    """Registered names: segmentors (``lrformer_t`` ...) and classifiers (``lrformer_t_cls`` ...)."""
    return sorted([*VARIANTS, *(name + CLASSIFIER_SUFFIX for name in VARIANTS)])


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    weights_scope: Literal["auto", "backbone"] = "auto",
    **overrides: Any,
) -> nn.Module:
    """Build a registered model with its default configuration, updated by ``overrides``.

    Args:
        name: one of :func:`list_models`.
        num_classes: output classes; ``None`` gives the classes of ``weights`` when it has a head
            (loaded whole), else 150 (ADE20K) for segmentors and 1000 (ImageNet) for ``*_cls``
            classifiers.
        weights: weights to load strictly, any format :func:`lrsa_seg.weights.load_weights_file`
            reads, from a path, ``hf://OWNER/REPO/PATH[@REVISION]`` or an http(s) URL; its format
            is logged in one line (logger ``lrsa_seg``).
        weights_scope: ``"auto"`` loads the whole model, or only the backbone when the file has no
            head; ``"backbone"`` takes only the backbone (e.g. an ImageNet backbone under a freshly
            initialised head, the paper's start).
        **overrides: any argument of :func:`build_segmentor` / :func:`build_classifier`, e.g.
            ``pooled_sizes=8`` or ``(8, 16, 16, 16)``, ``head_pooled_size=16``,
            ``drop_path_rate=0.0``.
    """
    is_classifier = name.endswith(CLASSIFIER_SUFFIX)
    base = name[: -len(CLASSIFIER_SUFFIX)] if is_classifier else name
    if base not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    kwargs = dict(VARIANTS[base])
    builder: Any = build_segmentor
    if is_classifier:
        kwargs = {k: v for k, v in kwargs.items() if k not in _HEAD_ONLY}
        builder = build_classifier
    allowed = set(inspect.signature(builder).parameters)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for model {name!r}; allowed: {sorted(allowed - {'num_classes'})}"
        )
    kwargs.update(overrides)
    loaded = None
    if weights is not None:
        from ..weights import load_weights_file  # lazily: lrsa_seg.weights builds models with this module

        loaded = load_weights_file(weights)
        logger.info(loaded.describe())
        if num_classes is None and weights_scope == "auto" and loaded.has_head:
            num_classes = loaded.model_kwargs.get("num_classes")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = builder(**kwargs)
    if loaded is not None:
        from ..weights import load_into

        load_into(model, loaded, weights_scope)
    return model
