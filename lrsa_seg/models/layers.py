"""Small building blocks shared by the backbone and the head (defined once, here)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map.

    With channels-last memory the permutes are free views, so no copy is made; an NCHW input
    comes back channels-last (copying it back to NCHW measurably slowed the training step).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of a residual branch, ``(B, C, H, W)`` -> same."""

    def __init__(self, dim: int, init_value: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x (B, C, H, W)``."""
        return x * self.gamma.view(1, -1, 1, 1)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity at eval; at train time zero whole samples and rescale the rest."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        """Show the drop probability in ``print(model)``."""
        return f"drop_prob={self.drop_prob}"


def depthwise_conv3x3(dim: int) -> nn.Conv2d:
    """3x3 depth-wise convolution with bias, same spatial size."""
    return nn.Conv2d(dim, dim, 3, padding=1, groups=dim)


class ConvBNReLU(nn.Sequential):
    """1x1 conv without bias, BatchNorm, ReLU: ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)


InitScheme = Literal["official", "fan_out"]
"""How a new model's weights are drawn (``init_scheme`` of the model builders).

``"official"``: what the authors' release trains from (yuhuan-wu/LRFormer, mmsegmentation):
linears truncated normal (std 0.02) with zero biases, LayerNorm 1 / 0, and every plain
convolution left at PyTorch's default (kaiming-uniform with ``a = sqrt(5)``, uniform bias): the
release comments its conv rule out. The head's ``ConvModule`` squeezes get mmcv's kaiming
fan-out normal, its classifier normal(0, 0.01). ``"fan_out"``: this project's former default,
every convolution normal(0, sqrt(2 / fan_out)) (fan-out divided by the groups) with zero bias.
"""

INIT_SCHEMES: tuple[str, ...] = get_args(InitScheme)


def check_init_scheme(scheme: str) -> None:
    """Raise ``ValueError`` naming the choices for an unknown scheme."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init_scheme must be one of {list(INIT_SCHEMES)}, got {scheme!r}")


def init_weights(module: nn.Module, scheme: InitScheme = "official") -> None:
    """Initialise ``module`` itself (not its children; use ``model.apply``) by ``scheme``.

    Both schemes: linears truncated normal std 0.02 (cut at +-2, i.e. 100 std: in effect
    normal) with zero bias, as the release's ``_init_weights`` / ``init_weights`` (``mmseg/
    models/backbones/lrformer.py``, ``decode_heads/lr_head.py``); LayerNorm weight 1, bias 0.
    ``"official"`` leaves convolutions as PyTorch made them; ``"fan_out"`` redraws them.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and scheme == "official":
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d) and scheme == "fan_out":
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, std=(2.0 / fan_out) ** 0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_conv_bn_relu(block: ConvBNReLU) -> None:
    """Initialise a conv + BN + ReLU block as mmcv's ``ConvModule.init_weights`` does.

    ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``: std ``sqrt(2 / fan_out)`` with
    PyTorch's fan-out ``out_channels * k * k`` (not divided by the groups); BatchNorm 1 / 0.
    """
    nn.init.kaiming_normal_(block.conv.weight, mode="fan_out", nonlinearity="relu")
    if block.conv.bias is not None:
        nn.init.zeros_(block.conv.bias)
    nn.init.ones_(block.bn.weight)
    nn.init.zeros_(block.bn.bias)
