"""The official LRFormer release (mmsegmentation) -> lrsa-seg: pure key and config mapping.

The official release names things ``backbone.patch_embed{n}``, ``backbone.d_convs{n}``,
``backbone.block{n}.{m}`` and ``decode_head.fuse_block{n}``; here stages are built in a loop.
Only this module knows the official names (the layout: docs/checkpoints.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import CheckpointMismatchError

# Renames inside a block, (official, lrsa-seg). The head's q/kv are plain convs (no ".0."), so
# only the backbone's change.
_HEAD_BLOCK_RENAMES = (
    ("mlp.conv.", "mlp.dwconv."),
    ("layer_scale_1", "ls1.gamma"),
    ("layer_scale_2", "ls2.gamma"),
)
_BACKBONE_BLOCK_RENAMES = (("attn.q.0.", "attn.q."), ("attn.kv.0.", "attn.kv."), *_HEAD_BLOCK_RENAMES)

# One table read both ways: (official key prefix, lrsa-seg key prefix, renames in the rest of the
# key); the first prefix that matches wins. ``{stage}`` is the official stage number (1-4),
# ``{index}`` ours (0-3); ``{n}`` is kept as it is.
_PREFIXES = (
    ("backbone.patch_embed1.conv1.", "backbone.stages.0.downsample.convs.", ()),
    ("backbone.patch_embed{stage}.", "backbone.stages.{index}.downsample.", ()),
    ("backbone.d_convs{stage}.", "backbone.stages.{index}.level_convs.", ()),
    ("backbone.block{stage}.{n}.", "backbone.stages.{index}.blocks.{n}.", _BACKBONE_BLOCK_RENAMES),
    ("decode_head.fuse_block{n}.", "decode_head.block{n}.", _HEAD_BLOCK_RENAMES),
    ("decode_head.conv_seg.", "decode_head.classifier.", ()),
    ("decode_head.squeeze{n}.", "decode_head.squeeze{n}.", ()),
)


def _prefix_pattern(template: str) -> re.Pattern[str]:
    """``"backbone.block{stage}.{n}."`` -> a pattern matching it at the start of a key, a named group per field."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(part) if i % 2 == 0 else rf"(?P<{part}>\d+)" for i, part in enumerate(parts)))


_PATTERNS = tuple((_prefix_pattern(official), _prefix_pattern(ours)) for official, ours, _ in _PREFIXES)


def _rename(key: str, to_ours: bool) -> str:
    for (official, ours, renames), patterns in zip(_PREFIXES, _PATTERNS):
        match = patterns[0 if to_ours else 1].match(key)
        if match is None:
            continue
        fields = match.groupdict()
        if "stage" in fields:
            fields["index"] = str(int(fields["stage"]) - 1)
        elif "index" in fields:
            fields["stage"] = str(int(fields["index"]) + 1)
        rest = key[match.end() :]
        for official_part, our_part in renames:
            rest = rest.replace(*((official_part, our_part) if to_ours else (our_part, official_part)))
        return (ours if to_ours else official).format(**fields) + rest
    raise KeyError(key)


def official_key_to_ours(key: str) -> str:
    """Map one official ``state_dict`` key to its lrsa-seg name; raise ``KeyError`` if unknown."""
    return _rename(key, to_ours=True)


def ours_key_to_official(key: str) -> str:
    """Map one lrsa-seg ``state_dict`` key to the official release's name (inverse of :func:`official_key_to_ours`).

    Used to name keys in error messages as the official file names them; raises ``KeyError``
    for a key with no official counterpart.
    """
    return _rename(key, to_ours=False)


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official state dict -> lrsa-seg state dict (dict in, dict out, no I/O).

    Raises ``CheckpointMismatchError`` listing every key that is not an LRFormer key.
    """
    out, unknown = {}, []
    for key, value in state_dict.items():
        try:
            new = official_key_to_ours(key)
        except KeyError:
            unknown.append(key)
            continue
        # The head's query projection is a 1x1 conv in the official code, a linear here.
        if new.startswith("decode_head.") and new.endswith("attn.q.weight") and value.ndim == 4:
            value = value.flatten(1)
        out[new] = value
    if unknown:
        more = f" ... and {len(unknown) - 12} more" if len(unknown) > 12 else ""
        raise CheckpointMismatchError(f"not LRFormer keys (unexpected): {', '.join(unknown[:12])}{more}")
    return out


def official_config_to_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """Official ``{"backbone": ..., "decode_head": ...}`` constructor arguments -> ``build_segmentor`` kwargs."""
    try:
        backbone, head = config["backbone"], config["decode_head"]
    except KeyError as err:
        raise ValueError(f"official config needs 'backbone' and 'decode_head', got {sorted(config)}") from err
    if list(head.get("in_index", [1, 2, 3])) != [1, 2, 3]:
        raise ValueError(f"decode_head.in_index must be [1, 2, 3], got {head['in_index']}")
    if head.get("align_corners", False):
        raise ValueError("decode_head.align_corners=True is not used by any LRFormer release; not supported")
    if list(head["in_channels"]) != list(backbone["embed_dims"][1:]):
        raise ValueError(
            f"decode_head.in_channels {head['in_channels']} != backbone.embed_dims[1:] {backbone['embed_dims'][1:]}"
        )
    if backbone["depths"][2] > 20:
        raise ValueError("LRFormer-XL (stage-3 depth > 20, extra pre-norm BatchNorms) is not supported")
    return dict(
        dims=tuple(backbone["embed_dims"]),
        depths=tuple(backbone["depths"]),
        num_heads=tuple(backbone["num_heads"]),
        mlp_ratios=tuple(backbone["mlp_ratios"]),
        pooled_sizes=tuple(backbone["q_pooled_sizes"]),
        layer_scale_stages=(2, 3) if backbone.get("use_ls", True) else (),
        drop_path_rate=backbone.get("drop_path_rate", 0.0),
        qkv_bias=backbone.get("qkv_bias", True),
        num_classes=head["num_classes"],
        head_channels=head["channels"],
        head_num_heads=head["num_heads"],
        head_mlp_ratio=head["mlp_ratio"],
        head_pooled_size=head["q_pooled_size"],
        dropout=head.get("dropout_ratio", 0.1),
    )


_OFFICIAL_MARKERS = ("patch_embed1.", "block1.0.", "d_convs1.", "decode_head.fuse_block1.", "decode_head.conv_seg.")


def is_official(keys: list[str]) -> bool:
    """Whether ``keys`` use the official release's names (``patch_embed1.``, ``block1.0.`` ...)."""
    return any(marker in key for key in keys for marker in _OFFICIAL_MARKERS)
