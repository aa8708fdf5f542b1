"""LRFormer models: variants by name, one loading path for every weights format, plain PyTorch only."""

from __future__ import annotations

from .checkpoint import Checkpoint
from .fuse import fuse_for_inference
from .head import LRHead
from .lrformer import LRFormer, LRFormerClassifier
from .lrsa import LowResolutionSelfAttention, pooled_grid, pyramid_sizes, set_fused_attention
from .pretrained import PRETRAINED, PretrainedCfg
from .registry import (
    CLASSIFIER_SUFFIX,
    VARIANTS,
    Pretrained,
    build_classifier,
    build_segmentor,
    create_model,
    from_official,
    identify_variant,
    list_models,
    load_pretrained,
    read_checkpoint,
)
from .segmentor import Segmentor

__all__ = [
    "CLASSIFIER_SUFFIX",
    "PRETRAINED",
    "VARIANTS",
    "Checkpoint",
    "LRFormer",
    "LRFormerClassifier",
    "LRHead",
    "LowResolutionSelfAttention",
    "Pretrained",
    "PretrainedCfg",
    "Segmentor",
    "build_classifier",
    "build_segmentor",
    "create_model",
    "from_official",
    "fuse_for_inference",
    "identify_variant",
    "list_models",
    "load_pretrained",
    "pooled_grid",
    "pyramid_sizes",
    "read_checkpoint",
    "set_fused_attention",
]
