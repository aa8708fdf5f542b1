"""LRHead: the LRFormer decode head (stride-8 logits from stages 2-4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNReLU, InitScheme, check_init_scheme, init_conv_bn_relu, init_weights
from .lrformer import Block


class LRHead(nn.Module):
    """Fuse stages 2-4 at stride 8 with two LRSA blocks, then classify.

    concat(stage 2, 3, 4 resized to stride 8) -> squeeze1 -> block -> concat(stage 4) ->
    squeeze2 -> block -> dropout -> 1x1 classifier.

    Args:
        in_channels: channels of the four backbone outputs (the first, stride 4, is unused).
        channels: width of the head.
        num_classes: output classes.
        num_heads: LRSA heads of the head's blocks.
        mlp_ratio: FFN expansion of the head's blocks.
        pooled_size: LRSA pooled size of the head (32 in the released models).
        dropout: Dropout2d before the classifier.
        qkv_bias: bias in the LRSA query and key/value projections.
        init_scheme: how the weights are drawn, ``"official"`` (the release's) or ``"fan_out"``
            (the former default); see :data:`~lrsa_seg.models.layers.InitScheme`.

    Shapes: four maps ``(B, C_i, H_i, W_i)`` -> logits ``(B, num_classes, H_1, W_1)`` (stride 8).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 256,
        num_classes: int = 150,
        num_heads: int = 8,
        mlp_ratio: float = 4,
        pooled_size: int = 32,
        dropout: float = 0.1,
        qkv_bias: bool = True,
        init_scheme: InitScheme = "official",
    ) -> None:
        super().__init__()
        check_init_scheme(init_scheme)
        if len(in_channels) != 4:
            raise ValueError(f"LRHead needs the 4 stage widths, got {list(in_channels)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")

        def block() -> Block:
            return Block(
                channels, num_heads, pooled_size, mlp_ratio, norm="batchnorm", layer_scale=True, qkv_bias=qkv_bias
            )

        self.squeeze1 = ConvBNReLU(sum(in_channels[1:]), channels)
        self.block1 = block()
        self.squeeze2 = ConvBNReLU(channels + in_channels[3], channels)
        self.block2 = block()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.apply(lambda m: init_weights(m, init_scheme))
        if init_scheme == "official":
            # The release's squeezes are mmcv ConvModules, which draw their own conv (kaiming
            # fan-out) and set their BN; its LRSA query is a 1x1 conv, left at PyTorch's default,
            # which draws the same distribution as nn.Linear's default (kaiming-uniform a=sqrt(5)).
            init_conv_bn_relu(self.squeeze1)
            init_conv_bn_relu(self.squeeze2)
            self.block1.attn.q.reset_parameters()
            self.block2.attn.q.reset_parameters()
        # Small logits at the start (mmseg's decode heads, normal std 0.01, zero bias on conv_seg):
        # the loss starts near log(num_classes).
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Four stage maps -> stride-8 logits ``(B, num_classes, H_1, W_1)``."""
        size = features[1].shape[-2:]
        resized = [features[1]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[2:]
        ]
        x = self.block1(self.squeeze1(torch.cat(resized, dim=1)))
        x = self.block2(self.squeeze2(torch.cat([x, resized[-1]], dim=1)))
        return self.classifier(self.dropout(x))
