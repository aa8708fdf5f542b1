"""Initialisation schemes (issue 22): the official release's by default, the former ``fan_out`` on request.

The expected distribution of every parameter is written here from the schemes' definitions (the
release's ``_init_weights`` / ``init_weights`` in ``mmseg/models/backbones/lrformer.py`` and
``decode_heads/lr_head.py``, mmcv's ``ConvModule.init_weights``, mmseg's ``BaseDecodeHead``
``init_cfg``, PyTorch's ``reset_parameters``), not taken from the model code, and compared on
LRFormer-T's own layer shapes: constants exactly, random draws by their moments pooled per layer
type (standardised mean, standard deviation and kurtosis, which tells a uniform from a normal of
the same spread) and their support.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
from torch import nn

from lrsa_seg.models import create_model
from lrsa_seg.models.layers import LayerScale2d


class Expected(NamedTuple):
    """One parameter's distribution: ``("uniform", bound)``, ``("normal", std)`` or ``("const", value)``."""

    kind: str
    scale: float
    layer_type: str


def pytorch_default_bound(fan_in: int) -> float:
    """``reset_parameters`` of nn.Linear / nn.Conv2d: ``kaiming_uniform_(a=sqrt(5))``; the bias uses the same bound."""
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    return gain * math.sqrt(3.0 / fan_in)  # = 1 / sqrt(fan_in)


def conv_fans(conv: nn.Conv2d) -> tuple[int, int]:
    """PyTorch's ``_calculate_fan_in_and_fan_out`` of a conv weight ``(out, in / groups, kh, kw)``."""
    receptive = conv.kernel_size[0] * conv.kernel_size[1]
    return conv.in_channels // conv.groups * receptive, conv.out_channels * receptive


def official(path: str, module: nn.Module) -> dict[str, Expected]:
    """The release's scheme for one module (``path`` as in ``named_modules``)."""
    if isinstance(module, nn.Linear):
        if path.startswith("decode_head.") and path.endswith("attn.q"):
            # The release's head query is nn.Conv2d(C, C, 1), which keeps PyTorch's default.
            bound = pytorch_default_bound(module.in_features)
            return {
                "weight": Expected("uniform", bound, "head query"),
                "bias": Expected("uniform", bound, "head query bias"),
            }
        return {"weight": Expected("normal", 0.02, "linear"), "bias": Expected("const", 0.0, "linear bias")}
    if isinstance(module, nn.Conv2d):
        fan_in, fan_out = conv_fans(module)
        if path in ("decode_head.squeeze1.conv", "decode_head.squeeze2.conv"):
            # mmcv ConvModule: kaiming_init(mode="fan_out", nonlinearity="relu", distribution="normal").
            return {"weight": Expected("normal", math.sqrt(2.0) / math.sqrt(fan_out), "ConvModule")}
        if path == "decode_head.classifier":  # BaseDecodeHead: Normal(std=0.01) on conv_seg, bias 0
            return {"weight": Expected("normal", 0.01, "conv_seg"), "bias": Expected("const", 0.0, "conv_seg bias")}
        bound = pytorch_default_bound(fan_in)  # the release's conv rule is commented out
        return {"weight": Expected("uniform", bound, "conv"), "bias": Expected("uniform", bound, "conv bias")}
    return norms_and_scales(module)


def fan_out(path: str, module: nn.Module) -> dict[str, Expected]:
    """The former scheme: every conv normal(0, sqrt(2 / fan_out)), fan-out divided by the groups, zero bias."""
    if isinstance(module, nn.Linear):
        return {"weight": Expected("normal", 0.02, "linear"), "bias": Expected("const", 0.0, "linear bias")}
    if isinstance(module, nn.Conv2d):
        if path == "decode_head.classifier":
            return {"weight": Expected("normal", 0.01, "conv_seg"), "bias": Expected("const", 0.0, "conv_seg bias")}
        grouped_fan_out = conv_fans(module)[1] // module.groups
        return {
            "weight": Expected("normal", math.sqrt(2.0 / grouped_fan_out), "conv"),
            "bias": Expected("const", 0.0, "conv bias"),
        }
    return norms_and_scales(module)


def norms_and_scales(module: nn.Module) -> dict[str, Expected]:
    """Both schemes: LayerNorm and BatchNorm 1 / 0; LayerScale 1e-6 (``layer_scale_init_value`` of the release)."""
    if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        return {"weight": Expected("const", 1.0, "norm"), "bias": Expected("const", 0.0, "norm")}
    if isinstance(module, LayerScale2d):
        return {"gamma": Expected("const", 1e-6, "layer scale")}
    return {}


def check_scheme(model: nn.Module, scheme: Callable[[str, nn.Module], dict[str, Expected]]) -> dict[str, int]:
    """Every parameter against ``scheme``; returns the number of values per random layer type."""
    pooled: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
    seen = set()
    for path, module in model.named_modules():
        for name, expected in scheme(path, module).items():
            param = getattr(module, name)
            if param is None:
                continue
            seen.add(id(param))
            values = param.detach().double().flatten()
            where = f"{path}.{name} ({expected.layer_type})"
            if expected.kind == "const":  # exactly the value in the parameter's dtype (float32 1e-6)
                assert torch.all(param.detach() == torch.tensor(expected.scale, dtype=param.dtype)), where
                continue
            if expected.kind == "uniform":
                assert values.abs().max() <= expected.scale, where  # the support of U(-bound, bound)
                std = expected.scale / math.sqrt(3)
            else:  # trunc_normal_(std=0.02) cuts at +-2, i.e. 100 std: a normal in effect
                std = expected.scale
            z = values / std
            if z.numel() >= 1000:  # each layer on its own too, loosely: one layer drawn with another fan stands out
                assert abs(z.std() - 1) <= 0.1, (where, float(z.std()))
            pooled[expected.kind, expected.layer_type].append(z)
    assert {id(p) for p in model.parameters()} <= seen, "a parameter has no expected distribution"
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.running_mean == 0) and torch.all(module.running_var == 1)
    counts = {}
    for (kind, layer_type), parts in pooled.items():
        z = torch.cat(parts)
        n = z.numel()
        counts[layer_type] = n
        # Standardised moments; bounds 6 standard errors: unit-variance uniform kurtosis 1.8
        # (sd of z^4 is 2.4), normal 3 (sd of z^4 is sqrt(96)).
        kurtosis, z4_sd = (1.8, math.sqrt(5.76)) if kind == "uniform" else (3.0, math.sqrt(96.0))
        assert abs(z.mean()) <= 6 / math.sqrt(n), (layer_type, float(z.mean()))
        assert abs(z.std() - 1) <= 6 * math.sqrt(0.5 / n), (layer_type, float(z.std()))
        assert abs((z**4).mean() - kurtosis) <= 6 * z4_sd / math.sqrt(n), (layer_type, float((z**4).mean()))
    return counts


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        scheme: create_model("lrformer_t", num_classes=11, init_scheme=scheme) for scheme in ("official", "fan_out")
    }


def test_official_is_the_default() -> None:
    torch.manual_seed(0)
    default = create_model("lrformer_test", num_classes=3).state_dict()
    torch.manual_seed(0)
    official_ = create_model("lrformer_test", num_classes=3, init_scheme="official").state_dict()
    assert all(torch.equal(default[k], official_[k]) for k in default)


def test_official_scheme_on_lrformer_t(models: dict[str, nn.Module]) -> None:
    counts = check_scheme(models["official"], official)
    assert set(counts) == {"linear", "head query", "head query bias", "conv", "conv bias", "ConvModule", "conv_seg"}


def test_fan_out_scheme_is_the_former_default(models: dict[str, nn.Module]) -> None:
    counts = check_scheme(models["fan_out"], fan_out)
    assert set(counts) == {"linear", "conv", "conv_seg"}


def test_the_check_tells_the_schemes_apart(models: dict[str, nn.Module]) -> None:
    with pytest.raises(AssertionError):
        check_scheme(models["official"], fan_out)
    with pytest.raises(AssertionError):
        check_scheme(models["fan_out"], official)


def test_the_schemes_differ_where_the_issue_measured(models: dict[str, nn.Module]) -> None:
    # The first position-encoding conv (3x3 depth-wise, fan-in 9): official std 1/sqrt(27) = 0.19 with
    # a uniform bias; fan_out std sqrt(2/9) = 0.47 with a zero bias.
    official_cpe = models["official"].backbone.stages[0].blocks[0].cpe
    fan_out_cpe = models["fan_out"].backbone.stages[0].blocks[0].cpe
    assert 0.15 < official_cpe.weight.std() < 0.23 and official_cpe.bias.abs().max() > 0
    assert 0.40 < fan_out_cpe.weight.std() < 0.55 and torch.all(fan_out_cpe.bias == 0)


def test_classifier_and_unknown_scheme() -> None:
    torch.manual_seed(0)
    classifier = create_model("lrformer_test_cls", num_classes=10)
    check_scheme(classifier, official)
    with pytest.raises(ValueError, match=r"init_scheme must be one of \['official', 'fan_out'\]"):
        create_model("lrformer_test", num_classes=3, init_scheme="xavier")
