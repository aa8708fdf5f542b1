"""LRFormer models: variants by name, the official-checkpoint loader, plain PyTorch only."""

from __future__ import annotations

from .fuse import fuse_for_inference
from .head import LRHead
from .lrformer import LRFormer, LRFormerClassifier
from .lrsa import LowResolutionSelfAttention, pooled_grid, pyramid_sizes, set_fused_attention
from .official import from_official
from .registry import CLASSIFIER_SUFFIX, VARIANTS, build_classifier, build_segmentor, create_model, list_models
from .segmentor import Segmentor

__all__ = [
    "CLASSIFIER_SUFFIX",
    "VARIANTS",
    "LRFormer",
    "LRFormerClassifier",
    "LRHead",
    "LowResolutionSelfAttention",
    "Segmentor",
    "build_classifier",
    "build_segmentor",
    "create_model",
    "from_official",
    "fuse_for_inference",
    "list_models",
    "pooled_grid",
    "pyramid_sizes",
    "set_fused_attention",
]
