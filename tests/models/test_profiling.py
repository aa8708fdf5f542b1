"""The profiler's share of LRSA's bilinear upsampling times exactly that step, once per LRSA block."""

from __future__ import annotations

import torch

from lrsa_seg.models import LowResolutionSelfAttention, create_model, fuse
from lrsa_seg.models.profiling import attention_upsampling_share


def test_upsampling_share_counts_every_lrsa_block_once() -> None:
    torch.manual_seed(0)
    model = create_model("lrformer_test", num_classes=3).eval()
    plain = fuse.upsample_attention
    row = attention_upsampling_share(model, 64, 96, runs=2, warmup=0)
    lrsa_blocks = sum(isinstance(m, LowResolutionSelfAttention) for m in model.modules())
    assert row["calls"] == lrsa_blocks == 7  # 5 backbone blocks + 2 head blocks
    assert 0 < row["upsample_ms"] < row["forward_ms"] and 0 < row["share"] < 1
    assert fuse.upsample_attention is plain  # the label is removed afterwards
