"""Inference-time fusion: a fused, channels-last copy of a :class:`Segmentor`.

:func:`fuse_for_inference` returns a new model with the same outputs (float rounding aside) and
fewer passes over full-resolution memory. The training modules stay as they are; everything
here is eval-only and runs its residual adds in place.

What is folded (each is an identity of the eval-mode network):

- BatchNorm into the convolution before it (stem, head squeeze convs) or after it (the head
  blocks' ``norm2`` into ``mlp.fc1``); the head blocks' ``norm1`` BatchNorm is applied to the
  pooled tokens instead of the full map (pooling commutes with a per-channel affine map).
- LayerScale into the last linear/conv of its branch (``attn.proj``, ``mlp.fc2``).
- The identity of ``x + dwconv(x)`` (``cpe``, the MLP's depth-wise conv, the pyramid convs) into
  the conv's centre tap, so the residual costs nothing.
- The head's ``concat -> 1x1 conv`` into one 1x1 conv per input at the input's own resolution,
  then upsampled: a 1x1 conv and bilinear resizing commute, so stage 3 and 4 are mixed at
  stride 16 and 32 instead of 8 (the 720-channel concatenation is never built).

The map stays channels-last end to end (``(B, C, H, W)`` tensors with NHWC memory): 1x1 convs
are plain GEMMs, LayerNorm over channels needs no copy, depth-wise convs and bilinear resizing
have vectorised channels-last kernels. ``channels_last=False`` keeps NCHW (for comparison).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .head import LRHead
from .layers import ConvBNReLU, LayerNorm2d, LayerScale2d
from .lrformer import Block, Downsample, LRFormer, Stage, Stem
from .lrsa import LowResolutionSelfAttention, ResizePlan, pooled_grid, resize_plan
from .pooling import adaptive_avg_pool2d_multi
from .segmentor import Segmentor

__all__ = ["FusedBackbone", "FusedSegmentor", "fuse_for_inference"]


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as ``scale * x + shift`` (float64)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def _conv(conv: nn.Conv2d, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> nn.Conv2d:
    """A copy of ``conv`` with new (float64-computed) weight and bias."""
    new = copy.deepcopy(conv)
    dtype = conv.weight.dtype
    if weight is not None:
        new.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    if bias is not None:
        new.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return new


def _conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` as one conv."""
    scale, shift = _bn_affine(bn)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    return _conv(conv, conv.weight.double() * scale.view(-1, 1, 1, 1), bias * scale + shift)


def _with_identity(conv: nn.Conv2d) -> nn.Conv2d:
    """``x + dwconv(x)`` as one depth-wise conv: add 1 to the centre tap."""
    weight = conv.weight.double().clone()
    weight[:, 0, weight.shape[-2] // 2, weight.shape[-1] // 2] += 1
    return _conv(conv, weight)


def _scaled(layer: nn.Module, gamma: torch.Tensor | None) -> nn.Module:
    """``gamma * layer(x)`` (per output channel) as one layer; ``layer`` is a Linear or Conv2d."""
    new = copy.deepcopy(layer)
    if gamma is None:
        return new
    g = gamma.double()
    new.weight = nn.Parameter((layer.weight.double() * g.view(-1, *[1] * (layer.weight.ndim - 1))).to(gamma.dtype))
    new.bias = nn.Parameter((layer.bias.double() * g).to(gamma.dtype))
    return new


def _gamma(layer_scale: nn.Module) -> torch.Tensor | None:
    return layer_scale.gamma.detach() if isinstance(layer_scale, LayerScale2d) else None


# oneDNN convolutions with fused post-ops (the kernels torch.compile's CPU backend emits), for
# 1x1 convs (padding, stride, dilation, groups) on channels-last float32 CPU maps in eager mode.
_ONEDNN_CONV = getattr(getattr(torch.ops.mkldnn, "_convolution_pointwise", None), "default", None)
_ONEDNN_CONV_ADD_ = getattr(getattr(torch.ops.mkldnn, "_convolution_pointwise_", None), "binary", None)
_ONEDNN_FUSION = _ONEDNN_CONV is not None and _ONEDNN_CONV_ADD_ is not None and torch.backends.mkldnn.is_available()
_POINTWISE = ([0, 0], [1, 1], [1, 1], 1)


def _onednn_fusion(x: torch.Tensor) -> bool:
    """Whether the fused oneDNN ops serve ``x``: eager, CPU, float32, channels-last, oneDNN built in."""
    return (
        _ONEDNN_FUSION
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample_attention(x: torch.Tensor, size: torch.Size | tuple[int, int] | ResizePlan) -> torch.Tensor:
    """LRSA's last step: the low-resolution result ``(B, C, h, w)`` bilinearly to ``size``.

    ``size`` is the map's ``(H, W)``, or the exact shortcut's :class:`~lrsa_seg.models.lrsa.ResizePlan`
    when ``x`` holds only the grid cells it keeps. Its own name, looked up at call time, so the
    profiler can time exactly this step (:func:`lrsa_seg.models.profiling.attention_upsampling_share`).
    """
    if isinstance(size, ResizePlan):
        return size.resize(x)
    return _resize(x, size)


class FusedAttention(nn.Module):
    """LRSA in eval, folded: ``(B, C, H, W)`` -> the attention map ``(B, C, H, W)``; the caller adds it.

    ``in_scale`` / ``in_shift`` (head blocks, ``(C,)``): the BatchNorm that precedes the
    attention, applied by the pooling (:func:`~lrsa_seg.models.pooling.adaptive_avg_pool2d_multi`;
    pooling averages, so before or after it is the same).
    ``attn.proj`` carries the block's LayerScale.
    """

    def __init__(
        self,
        attn: LowResolutionSelfAttention,
        level_convs: nn.ModuleList | None,
        gamma: torch.Tensor | None,
        norm: nn.BatchNorm2d | None,
    ) -> None:
        super().__init__()
        self.num_heads, self.pooled_size, self.level_sizes = attn.num_heads, attn.pooled_size, attn.level_sizes
        self.exact_shortcut = attn.exact_shortcut
        self._level_convs = (level_convs,) if level_convs is not None else ()
        self.q, self.kv, self.norm = copy.deepcopy(attn.q), copy.deepcopy(attn.kv), copy.deepcopy(attn.norm)
        self.proj = _scaled(attn.proj, gamma)
        self.affine = norm is not None
        if norm is not None:
            scale, shift = _bn_affine(norm)
            self.register_buffer("in_scale", scale.float())
            self.register_buffer("in_shift", shift.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: attended on the pooled grid, upsampled to the map."""
        batch, channels, height, width = x.shape
        heads = self.num_heads
        grid = pooled_grid(height, width, self.pooled_size)
        # The BatchNorm goes into the pooling (on the grids; when traced, on the map in the layout
        # the pooling product reads: where OpenVINO's int8 transformations accept it).
        affine = (self.in_scale, self.in_shift) if self.affine else None
        sizes = [grid, *(pooled_grid(height, width, s) for s in self.level_sizes)]
        pooled = adaptive_avg_pool2d_multi(x, sizes, affine)
        plan = resize_plan(height, width, grid, x) if self.exact_shortcut else None
        queries = plan.gather(pooled[0]) if plan is not None else pooled[0]  # the cells the resize reads
        kept = queries.shape[-2:]
        q = self.q(queries.flatten(2).transpose(1, 2))
        q = q.reshape(batch, -1, heads, channels // heads).transpose(1, 2)
        levels = []
        for i, level in enumerate(pooled[1:]):
            if self._level_convs:
                level = self._level_convs[0][i](level)  # the residual is in the centre tap
            levels.append(level.flatten(2))
        tokens = self.norm(torch.cat(levels, dim=2).transpose(1, 2))
        k, v = self.kv(tokens).reshape(batch, -1, 2, heads, channels // heads).permute(2, 0, 3, 1, 4)
        dtype = q.dtype
        if dtype in (torch.float16, torch.bfloat16):  # as the training module: attention in float32
            with torch.autocast(x.device.type, enabled=False):
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(batch, -1, channels))
        out = out.reshape(batch, *kept, channels).permute(0, 3, 1, 2)  # channels-last memory
        out = out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()
        return upsample_attention(out, plan if plan is not None else (height, width))


class FusedBlock(nn.Module):
    """:class:`Block` in eval, folded; ``(B, C, H, W)`` -> same, residuals added in place."""

    def __init__(self, block: Block, level_convs: nn.ModuleList | None) -> None:
        super().__init__()
        self.cpe = _with_identity(block.cpe)
        head = isinstance(block.norm1, _BatchNorm)  # BatchNorm2d, or SyncBatchNorm in distributed training
        self.norm1 = nn.Identity() if head else copy.deepcopy(block.norm1)
        self.attn = FusedAttention(block.attn, level_convs, _gamma(block.ls1), block.norm1 if head else None)
        mlp = block.mlp
        if head:  # BatchNorm before fc1: fold it into fc1's input channels
            scale, shift = _bn_affine(block.norm2)
            w = mlp.fc1.weight.double()
            self.fc1 = _conv(mlp.fc1, w * scale.view(1, -1, 1, 1), mlp.fc1.bias.double() + w.sum((2, 3)) @ shift)
            self.norm2 = nn.Identity()
        else:
            self.fc1, self.norm2 = copy.deepcopy(mlp.fc1), copy.deepcopy(block.norm2)
        self.dwconv = _with_identity(mlp.dwconv)
        self.fc2 = _scaled(mlp.fc2, _gamma(block.ls2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> same."""
        x = self.cpe(x)  # x + cpe(x)
        x.add_(self.attn(self.norm1(x)))
        normed = self.norm2(x)
        if _onednn_fusion(x):
            # fc1 with GELU and fc2 with the residual add as oneDNN post-ops: the wide hidden
            # map is not read and written again by a separate GELU, fc2 writes into x.
            fc1, fc2 = self.fc1, self.fc2
            hidden = self.dwconv(_ONEDNN_CONV(normed, fc1.weight, fc1.bias, *_POINTWISE, "gelu", [], "none"))
            return _ONEDNN_CONV_ADD_(x, hidden, fc2.weight, fc2.bias, *_POINTWISE, "add", None, None, [], None)
        hidden = self.dwconv(torch.ops.aten.gelu_(self.fc1(normed)))  # + identity, in the centre tap
        return x.add_(self.fc2(hidden))


class FusedStage(nn.Module):
    """Downsample (stem convs with BatchNorm folded) + fused blocks sharing folded pyramid convs."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        down = stage.downsample
        if isinstance(down, Stem):
            c = down.convs
            self.convs = nn.Sequential(
                _conv_bn(c[0], c[1]), nn.GELU(),
                _conv_bn(c[3], c[4]), nn.GELU(),
                _conv_bn(c[6], c[7]), nn.GELU(),
                copy.deepcopy(c[9]),
            )  # fmt: skip
        elif isinstance(down, Downsample):
            self.convs = nn.Sequential(copy.deepcopy(down.proj))
        else:
            raise TypeError(f"unknown downsample {type(down).__name__}")
        self.norm: LayerNorm2d = copy.deepcopy(down.norm)
        self.level_convs = nn.ModuleList(_with_identity(conv) for conv in stage.level_convs)
        self.blocks = nn.Sequential(*(FusedBlock(block, self.level_convs) for block in stage.blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C, H', W')``."""
        return self.blocks(self.norm(self.convs(x)))


class FusedBackbone(nn.Module):
    """:class:`LRFormer` in eval, folded; returns the four stage maps."""

    def __init__(self, backbone: LRFormer, channels_last: bool = True) -> None:
        super().__init__()
        self.stages = nn.ModuleList(FusedStage(stage) for stage in backbone.stages)
        self.out_channels, self.strides = backbone.out_channels, backbone.strides
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> four maps (channels-last memory unless ``channels_last=False``)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = []
        for stage in self.stages:
            x = stage(x)
            # LayerNorm2d hands NCHW inputs back channels-last; keep the NCHW variant NCHW.
            x = x if self.channels_last else x.contiguous()
            features.append(x)
        return features


class FusedHead(nn.Module):
    """:class:`LRHead` in eval, folded: squeeze convs split per input and BatchNorm folded.

    ``in_channels`` are the four backbone widths (the head reads stages 2-4).
    """

    def __init__(self, head: LRHead, in_channels: Sequence[int]) -> None:
        super().__init__()
        channels = head.classifier.in_channels
        self.squeeze1 = nn.ModuleList(self._split(head.squeeze1, list(in_channels[1:])))
        self.block1 = FusedBlock(head.block1, None)
        self.squeeze2 = nn.ModuleList(self._split(head.squeeze2, [channels, in_channels[3]]))
        self.block2 = FusedBlock(head.block2, None)
        self.classifier = copy.deepcopy(head.classifier)

    @staticmethod
    def _split(squeeze: ConvBNReLU, widths: list[int]) -> list[nn.Conv2d]:
        scale, shift = _bn_affine(squeeze.bn)
        weight = squeeze.conv.weight.double() * scale.view(-1, 1, 1, 1)
        convs = []
        for i, part in enumerate(weight.split(widths, dim=1)):
            conv = nn.Conv2d(part.shape[1], part.shape[0], 1, bias=i == 0)
            conv.weight = nn.Parameter(part.to(squeeze.conv.weight.dtype), requires_grad=False)
            if i == 0:
                conv.bias = nn.Parameter(shift.to(squeeze.conv.weight.dtype), requires_grad=False)
            convs.append(conv)
        return convs

    @staticmethod
    def _mix(convs: nn.ModuleList, inputs: list[torch.Tensor]) -> torch.Tensor:
        """``relu(bn(conv(concat(resized inputs))))`` = sum of per-input convs, resized after."""
        out = convs[0](inputs[0])
        for conv, x in zip(convs[1:], inputs[1:]):
            y = conv(x)
            out.add_(y if y.shape[-2:] == out.shape[-2:] else _resize(y, out.shape[-2:]))
        return out.relu_()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Four stage maps -> stride-8 logits."""
        x = self.block1(self._mix(self.squeeze1, features[1:]))
        x = self.block2(self._mix(self.squeeze2, [x, features[3]]))
        return self.classifier(x)


class FusedSegmentor(nn.Module):
    """The fused eval model: ``(B, 3, H, W)`` -> logits ``(B, K, H, W)`` (channels-last memory)."""

    def __init__(self, model: Segmentor, channels_last: bool = True) -> None:
        super().__init__()
        self.backbone = FusedBackbone(model.backbone, channels_last)
        self.decode_head = FusedHead(model.decode_head, model.backbone.out_channels)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.decode_head.classifier.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> logits ``(B, K, H, W)``."""
        return _resize(self.decode_head(self.backbone(x)), x.shape[-2:])


def fuse_for_inference(model: Segmentor | LRFormer, channels_last: bool = True) -> FusedSegmentor | FusedBackbone:
    """A fused eval-only copy of ``model`` (the model itself is not changed).

    Args:
        model: a :class:`Segmentor` or an :class:`LRFormer` backbone (its BatchNorm running
            statistics are used, whatever its train/eval mode).
        channels_last: run in channels-last memory (the fast layout on CPU and GPU).

    Returns:
        :class:`FusedSegmentor` / :class:`FusedBackbone` in eval mode, parameters frozen, on the
        model's device and dtype. Same outputs up to float rounding (tests check 1e-4).
    """
    if isinstance(model, Segmentor):
        fused: nn.Module = FusedSegmentor(model, channels_last)
    elif isinstance(model, LRFormer):
        fused = FusedBackbone(model, channels_last)
    else:
        raise TypeError(f"fuse_for_inference takes a Segmentor or an LRFormer, got {type(model).__name__}")
    fused.eval().requires_grad_(False)
    return fused.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
