"""A small network exported to OpenVINO, run in child processes by tests/test_deploy.py.

Importing this module loads torch and the exporter only (not Lightning), so a child starts in
about two seconds; OpenVINO and NNCF stay out of the pytest process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrsa_seg.models.export import export_openvino, max_abs_diff, pooling_matmuls, quantize_openvino
from lrsa_seg.models.runtime import load_exported


class SmallNet(nn.Module):
    """Conv, ReLU, conv and a resize to the input size: a segmentor's interface in a graph exported in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.classifier = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(F.relu(self.stem(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def check_openvino_export(folder: str) -> None:
    """SmallNet to OpenVINO IR: one graph for any size and batch within 1e-4 of PyTorch; its int8 copy close."""
    import openvino as ov

    folder_path = Path(folder)
    torch.manual_seed(0)
    net = SmallNet().eval()
    fp32 = load_exported(export_openvino(net, folder_path / "model.xml", (64, 96)), "openvino")
    assert fp32.num_classes == 5 and fp32.fixed_size is None
    assert max(max_abs_diff(fp32, net, [(64, 96), (77, 150)])) <= 1e-4  # one graph, any size
    batch = torch.randn(2, 3, 40, 56)
    assert torch.allclose(fp32(batch), net(batch).detach(), atol=1e-4)  # and any batch
    assert pooling_matmuls(ov.Core().read_model(str(fp32.path))) == []  # no LRSA here
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, *size)).astype(np.float32) for size in [(64, 96), (48, 80), (64, 96)]]
    int8 = load_exported(quantize_openvino(fp32.path, inputs, lambda x: x, folder_path / "int8.xml"), "openvino")
    assert "FakeQuantize" in (folder_path / "int8.xml").read_text()
    assert 0 < max(max_abs_diff(int8, net, [(64, 96)])) < 0.5  # quantized: close, not equal


def export_small_net(path: str) -> None:
    """SmallNet's OpenVINO IR at ``path`` (run in a child process: OpenVINO stays out of pytest's)."""
    export_openvino(SmallNet().eval(), Path(path), (64, 96))


def check_lrformer_int8_runs(folder: str, name: str, size: tuple[int, int]) -> None:
    """The int8 IR of the fused LRFormer ``name`` exported for ``size`` compiles and runs in OpenVINO.

    LRFormer-T at 512 x 512 with BatchNorm at its initial values (a shift of zeros, which
    OpenVINO drops) did not compile while the head's BatchNorm was a per-channel product right
    before the pooling transpose ("Argument shapes are inconsistent"; lrformer_test compiled).
    """
    from lrsa_seg.models import create_model, fuse_for_inference

    folder_path = Path(folder)
    torch.manual_seed(0)
    model = fuse_for_inference(create_model(name, num_classes=5).eval())
    fp32 = load_exported(export_openvino(model, folder_path / "model.xml", size, fixed_size=True), "openvino")
    assert max(max_abs_diff(fp32, model, [size])) <= 1e-4
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, *size)).astype(np.float32) for _ in range(2)]
    int8 = load_exported(quantize_openvino(fp32.path, inputs, lambda x: x, folder_path / "int8.xml"), "openvino")
    logits = int8(torch.from_numpy(inputs[0]))
    assert tuple(logits.shape) == (1, 5, *size) and bool(torch.isfinite(logits).all())
