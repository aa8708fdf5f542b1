"""lrsa-seg: Low-Resolution Self-Attention (LRSA) and LRFormer for semantic segmentation."""

__version__ = "0.1.0"
