"""LRFormer variants by name: the released configurations as data, one factory."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..errors import CheckpointError, CheckpointMismatchError
from ..hub import CONFIG_FILE, WEIGHTS_FILE, resolve_source
from ..io import local_path, read_json, read_safetensors, sha256_of, torch_load
from .checkpoint import (
    OFFICIAL_SEGMENTATION,
    Checkpoint,
    interpret_checkpoint,
    load_state_dict_checked,
    official_name,
    saved_model_checkpoint,
)
from .head import LRHead
from .layers import InitScheme
from .lrformer import LRFormer, LRFormerClassifier
from .official import convert_official_state_dict, official_config_to_kwargs
from .pretrained import inference_metadata, official_metadata
from .segmentor import Segmentor

logger = logging.getLogger("lrsa_seg")

SAFE_EXTRAS: tuple[type, ...] = (argparse.Namespace,)
"""Objects besides tensors and plain containers that weights files may hold and that load safely."""

DEFAULT_OPT_IN = "`--allow-pickle` on the command line, `allow_pickle=True` in Python"

_HEADS = dict(num_heads=(2, 4, 10, 16), mlp_ratios=(8, 8, 4, 4))


# The released configurations (docs/lrsa.md#block-and-stages); `lrformer_test` is a tiny variant for tests and demos.
VARIANTS: dict[str, dict[str, Any]] = {
    "lrformer_t": dict(dims=(48, 96, 240, 384), depths=(2, 2, 6, 3), **_HEADS, head_channels=256, drop_path_rate=0.1),
    "lrformer_s": dict(dims=(64, 128, 320, 512), depths=(3, 3, 12, 3), **_HEADS, head_channels=384, drop_path_rate=0.2),
    "lrformer_b": dict(dims=(80, 160, 400, 512), depths=(4, 4, 15, 8), **_HEADS, head_channels=512, drop_path_rate=0.4),
    "lrformer_l": dict(dims=(96, 192, 480, 640), depths=(4, 6, 18, 8), **_HEADS, head_channels=640, drop_path_rate=0.6),
    "lrformer_test": dict(
        dims=(16, 32, 48, 64), depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), mlp_ratios=(8, 8, 4, 4),
        head_channels=32, head_num_heads=4, head_pooled_size=16, drop_path_rate=0.0,
    ),
}  # fmt: skip


_HEAD_ONLY = ("head_channels", "head_num_heads", "head_mlp_ratio", "head_pooled_size", "dropout")


CLASSIFIER_SUFFIX = "_cls"


def build_segmentor(
    dims: Sequence[int],
    depths: Sequence[int],
    num_heads: Sequence[int],
    mlp_ratios: Sequence[float],
    num_classes: int = 150,
    pooled_sizes: int | Sequence[int] = 16,
    layer_scale_stages: Sequence[int] = (2, 3),
    drop_path_rate: float = 0.0,
    qkv_bias: bool = True,
    head_channels: int = 256,
    head_num_heads: int = 8,
    head_mlp_ratio: float = 4,
    head_pooled_size: int = 32,
    dropout: float = 0.1,
    init_scheme: InitScheme = "official",
) -> Segmentor:
    """LRFormer backbone + LRHead; see :class:`LRFormer` and :class:`LRHead` for the arguments."""
    backbone = LRFormer(
        dims, depths, num_heads, mlp_ratios, pooled_sizes, layer_scale_stages, drop_path_rate, qkv_bias,
        init_scheme=init_scheme,
    )  # fmt: skip
    head = LRHead(
        backbone.out_channels,
        head_channels,
        num_classes,
        head_num_heads,
        head_mlp_ratio,
        head_pooled_size,
        dropout,
        qkv_bias,
        init_scheme=init_scheme,
    )
    return Segmentor(backbone, head)


def build_classifier(
    dims: Sequence[int],
    depths: Sequence[int],
    num_heads: Sequence[int],
    mlp_ratios: Sequence[float],
    num_classes: int = 1000,
    pooled_sizes: int | Sequence[int] = 7,
    layer_scale_stages: Sequence[int] = (2, 3),
    drop_path_rate: float = 0.0,
    qkv_bias: bool = True,
    init_scheme: InitScheme = "official",
) -> LRFormerClassifier:
    """LRFormer backbone + GAP/LN/linear classifier (pooled size 7, as for 224 x 224)."""
    backbone = LRFormer(
        dims, depths, num_heads, mlp_ratios, pooled_sizes, layer_scale_stages, drop_path_rate, qkv_bias,
        init_scheme=init_scheme,
    )  # fmt: skip
    return LRFormerClassifier(backbone, num_classes)


def list_models() -> list[str]:
    """Registered names: segmentors (``lrformer_t`` ...) and classifiers (``lrformer_t_cls`` ...)."""
    return sorted([*VARIANTS, *(name + CLASSIFIER_SUFFIX for name in VARIANTS)])


def _build(name: str, num_classes: int | None, overrides: dict[str, Any]) -> nn.Module:
    """The registered model ``name`` with its default configuration updated by ``overrides`` (random weights)."""
    is_classifier = name.endswith(CLASSIFIER_SUFFIX)
    base = name[: -len(CLASSIFIER_SUFFIX)] if is_classifier else name
    if base not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    kwargs = dict(VARIANTS[base])
    builder: Any = build_segmentor
    if is_classifier:
        kwargs = {k: v for k, v in kwargs.items() if k not in _HEAD_ONLY}
        builder = build_classifier
    allowed = set(inspect.signature(builder).parameters)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for model {name!r}; allowed: {sorted(allowed - {'num_classes'})}"
        )
    kwargs.update(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = builder(**kwargs)
    classes = kwargs.get("num_classes", inspect.signature(builder).parameters["num_classes"].default)
    stated = {k: _plain(v) for k, v in overrides.items()}
    # What save_pretrained writes to config.json: enough to build this model again by name.
    model.config = {
        "model": name,
        "model_kwargs": {"num_classes": classes, **stated},
        "metadata": {} if is_classifier else inference_metadata(classes),
        "provenance": {},
    }
    return model


def _plain(value: Any) -> Any:
    """Tuples as lists (JSON's form), so that a saved config compares equal after a round trip."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def identify_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The registered variant whose weights have these keys and shapes (classes and pooled sizes aside).

    Compares the whole model when the state dict has a head, else the backbone. None if none fits.
    """
    scope = "" if any(k.startswith("decode_head.") for k in state_dict) else "backbone."
    for name, config in VARIANTS.items():
        widths = [state_dict.get(f"backbone.stages.{i}.downsample.norm.weight") for i in range(len(config["dims"]))]
        if [None if w is None else w.shape[0] for w in widths] != list(config["dims"]):
            continue
        with torch.device("meta"):
            expected = build_segmentor(**{**config, "num_classes": 1}).state_dict()
        expected = {k: v.shape for k, v in expected.items() if k.startswith(scope)}
        given = {k: v.shape for k, v in state_dict.items()}
        if expected.keys() == given.keys() and all(
            given[k] == shape for k, shape in expected.items() if not k.startswith("decode_head.classifier.")
        ):
            return name
    return None


def read_checkpoint(
    source: str | os.PathLike[str], allow_pickle: bool = False, opt_in: str = DEFAULT_OPT_IN
) -> Checkpoint:
    """Read a weights file or saved model of any supported format from a path, folder, Hub address or URL.

    Args:
        source: a local file or folder, ``hf://OWNER/REPO[/PATH][@REVISION]``, ``OWNER/REPO``,
            an http(s) URL or an fsspec URL.
        allow_pickle: allow arbitrary unpickling (only for trusted files); without it only
            tensors, plain containers and :data:`SAFE_EXTRAS` load. Saved models
            (safetensors) never unpickle.
        opt_in: how the caller's interface allows pickle, for the refusal message.

    Returns:
        The :class:`Checkpoint`, variant not yet identified. A missing, truncated or corrupt file,
        or one that is neither reachable nor cached, raises ``CheckpointError`` naming it.
    """
    text = os.fspath(source)
    path = resolve_source(source)
    local = local_path(path)
    try:
        if local is not None and local.is_dir():
            config = read_json(local / CONFIG_FILE, f"model description ({CONFIG_FILE})")
            weights = local / WEIGHTS_FILE
            return saved_model_checkpoint(config, read_safetensors(weights), text, sha256_of(weights))
        if local is not None and local.suffix == ".safetensors":
            return interpret_checkpoint(read_safetensors(local), text, sha256_of(local))
        torch.serialization.add_safe_globals(list(SAFE_EXTRAS))
        loaded = torch_load(path, allow_pickle, opt_in=opt_in, what="weights file")
    except CheckpointError as err:
        if os.fspath(path) == text:
            raise
        # Name what the user passed (hf://..., a URL), and where its cached copy is.
        raise CheckpointError(str(err).replace(os.fspath(path), f"{text} ({path})")) from err
    return interpret_checkpoint(loaded, text, sha256_of(local) if local is not None else None)


@dataclass
class Pretrained:
    """A model loaded by :func:`load_pretrained` and the checkpoint it was loaded from."""

    model: nn.Module
    checkpoint: Checkpoint


def load_checkpoint(model: nn.Module, checkpoint: Checkpoint, scope: Literal["auto", "backbone"] = "auto") -> None:
    """Load ``checkpoint`` into a built model strictly; every problem names the file's own keys.

    Args:
        model: a model with ``backbone`` (and ``decode_head``), e.g. from :func:`create_model`.
        checkpoint: from :func:`read_checkpoint`.
        scope: ``"auto"`` loads the whole model, or only the backbone when the file has no head;
            ``"backbone"`` takes only the backbone from any file (a new head for new classes).
    """
    if scope not in ("auto", "backbone"):
        raise ValueError(f"weights_scope must be 'auto' or 'backbone', got {scope!r}")
    if scope == "backbone" or not checkpoint.has_head:
        backbone = {
            k.removeprefix("backbone."): v for k, v in checkpoint.state_dict.items() if k.startswith("backbone.")
        }
        load_state_dict_checked(
            model.backbone,
            backbone,
            source=f"{checkpoint.source} (backbone)",
            key_name=lambda key: checkpoint.file_key(f"backbone.{key}"),
        )
    else:
        load_state_dict_checked(model, checkpoint.state_dict, source=checkpoint.source, key_name=checkpoint.file_key)


def load_pretrained(
    source: str | os.PathLike[str],
    model: str | None = None,
    *,
    num_classes: int | None = None,
    scope: Literal["auto", "backbone"] = "auto",
    allow_pickle: bool = False,
    opt_in: str = DEFAULT_OPT_IN,
    into: nn.Module | None = None,
    **overrides: Any,
) -> Pretrained:
    """From a weights source to a loaded model: the one path every entry point takes.

    Reads the source (:func:`read_checkpoint`), names the variant (``model``, else the one the
    file states, else the one its shapes identify), builds it and loads strictly
    (:func:`load_checkpoint`); its format is logged in one line (logger ``lrsa_seg``).

    Args:
        source: a local file or folder, ``hf://OWNER/REPO[/PATH][@REVISION]``, ``OWNER/REPO`` or an http(s) URL.
        model: registered name (:func:`list_models`); None: from the file.
        num_classes: output classes; None: the file's when its head is loaded, else the default.
        scope: ``"auto"`` loads the whole model, or only the backbone when the file has no head;
            ``"backbone"`` takes only the backbone (a fresh head, e.g. for new classes).
        allow_pickle: allow arbitrary unpickling (only for files you trust).
        opt_in: how the caller's interface allows pickle, for the refusal message.
        into: a model built by :func:`create_model` to load into instead of building one (a training
            task's, which its optimizer may already hold); ``model``, ``num_classes`` and
            ``overrides`` are then its own.
        **overrides: arguments of :func:`build_segmentor` / :func:`build_classifier` (``pooled_sizes`` ...).

    Returns:
        The model (eval mode is the caller's choice) with ``model.config`` describing it
        (name, kwargs, classes and preprocessing, provenance), and the :class:`Checkpoint`.
    """
    checkpoint = read_checkpoint(source, allow_pickle, opt_in)
    name = model or checkpoint.model or identify_variant(checkpoint.state_dict)
    if name is None:
        raise CheckpointMismatchError(
            f"{checkpoint.source}: {checkpoint.format} does not say which variant it holds and its shapes fit "
            f"none; pass the model name (one of {', '.join(VARIANTS)})"
        )
    checkpoint.model = checkpoint.model or name
    if checkpoint.format == OFFICIAL_SEGMENTATION and checkpoint.num_classes is not None:
        checkpoint.metadata = official_metadata(checkpoint.official_meta, checkpoint.num_classes, name)
    logger.info(checkpoint.describe())
    whole = scope == "auto" and checkpoint.has_head
    stated = checkpoint.model_kwargs if whole else {}
    kwargs = {k: v for k, v in stated.items() if k != "num_classes"} | overrides
    if into is None:
        classes = num_classes if num_classes is not None else checkpoint.num_classes if whole else None
        built = _build(name, classes, kwargs)
    else:
        built = into
    load_checkpoint(built, checkpoint, scope)
    if whole:
        built.config["metadata"] = {**built.config["metadata"], **checkpoint.metadata}
    built.config["provenance"] = {**checkpoint.provenance, "weights": checkpoint.record()}
    return Pretrained(built, checkpoint)


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    weights_scope: Literal["auto", "backbone"] = "auto",
    **overrides: Any,
) -> nn.Module:
    """Build a registered model with its default configuration, updated by ``overrides``.

    Args:
        name: one of :func:`list_models`.
        num_classes: output classes; ``None`` gives the classes of ``weights`` when it has a head
            (loaded whole), else 150 (ADE20K) for segmentors and 1000 (ImageNet) for ``*_cls``
            classifiers.
        weights: weights to load strictly (:func:`load_pretrained`), any format
            :func:`read_checkpoint` reads, from a path, folder, ``hf://OWNER/REPO[/PATH][@REVISION]``
            or an http(s) URL.
        weights_scope: ``"auto"`` loads the whole model, or only the backbone when the file has no
            head; ``"backbone"`` takes only the backbone (e.g. an ImageNet backbone under a freshly
            initialised head, the paper's start).
        **overrides: any argument of :func:`build_segmentor` / :func:`build_classifier`, e.g.
            ``pooled_sizes=8`` or ``(8, 16, 16, 16)``, ``head_pooled_size=16``,
            ``drop_path_rate=0.0``.
    """
    if weights is not None:
        return load_pretrained(weights, name, num_classes=num_classes, scope=weights_scope, **overrides).model
    return _build(name, num_classes, overrides)


def from_official(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> Segmentor:
    """Build the model of an official config and load an official ``state_dict`` strictly.

    Args:
        config: ``{"backbone": {...}, "decode_head": {...}}``, the official constructor arguments.
        state_dict: official keys (``backbone.*``, ``decode_head.*``).

    Returns:
        The :class:`Segmentor` in eval mode. Raises ``CheckpointMismatchError`` naming missing
        and unexpected keys and shape mismatches by their official names.
    """
    model = build_segmentor(**official_config_to_kwargs(config))
    load_state_dict_checked(model, convert_official_state_dict(state_dict), "official state dict", official_name)
    return model.eval()
