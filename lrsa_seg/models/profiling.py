"""Where inference time goes: the share of LRSA's bilinear upsampling, measured with ``torch.profiler``.

The paper reports that upsampling the low-resolution attention result back to the feature
map's size costs 0.8% of the network's latency. This times exactly that step: the fused
inference copy calls :func:`~lrsa_seg.models.fuse.upsample_attention` once per LRSA block
(backbone and head), and the profiler is given a labelled range around each call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from . import fuse

UPSAMPLE_LABEL = "lrsa.upsample"
FORWARD_LABEL = "lrsa.forward"


@contextmanager
def _labelled_upsampling() -> Iterator[None]:
    plain = fuse.upsample_attention

    def labelled(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        with record_function(UPSAMPLE_LABEL):
            return plain(x, size)

    fuse.upsample_attention = labelled
    try:
        yield
    finally:
        fuse.upsample_attention = plain


def attention_upsampling_share(
    model: nn.Module, height: int, width: int, runs: int = 3, warmup: int = 1
) -> dict[str, Any]:
    """Time ``runs`` forward passes of the fused copy of ``model`` at ``height x width`` under the profiler.

    Args:
        model: a :class:`~lrsa_seg.models.Segmentor` (fused here, as inference runs it).
        height: input height.
        width: input width.
        runs: profiled forward passes (batch 1).
        warmup: unprofiled passes first.

    Returns:
        ``{"forward_ms", "upsample_ms", "share", "calls", "device"}``: milliseconds per pass
        (profiler time of the labelled ranges: the CPU time on CPU, the device kernels' time on
        CUDA), LRSA upsampling calls per pass and ``share = upsample_ms / forward_ms``.
    """
    device = next(model.parameters()).device
    fused = fuse.fuse_for_inference(model)
    x = torch.randn(1, 3, height, width, device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), _labelled_upsampling():
        for _ in range(warmup):
            fused(x)
        with profile(activities=activities) as prof:
            for _ in range(runs):
                with record_function(FORWARD_LABEL):
                    fused(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
    events = {e.key: e for e in prof.key_averages()}
    use_device = device.type == "cuda"

    def total_ms(label: str) -> float:
        event = events[label]
        return (event.device_time_total if use_device else event.cpu_time_total) / 1e3

    forward, upsample = total_ms(FORWARD_LABEL) / runs, total_ms(UPSAMPLE_LABEL) / runs
    return {
        "forward_ms": forward,
        "upsample_ms": upsample,
        "share": upsample / forward,
        "calls": events[UPSAMPLE_LABEL].count // runs,
        "device": str(device),
    }
