"""Weights files of every supported format -> lrsa-seg state dicts, and what inference needs to use them.

One loader behind every entry point (``create_model(weights=...)``, the task's ``weights``,
``lrsa-seg convert``, :class:`~lrsa_seg.inference.Segmenter`): :func:`load_weights_file` takes a
local path, ``hf://OWNER/REPO/PATH[@REVISION]`` or an http(s) URL (:mod:`lrsa_seg.hub`),
recognises the format, and says in one line what it found (:meth:`Weights.describe`).

Formats:

- an lrsa-seg weights file (``lrsa-seg convert``): ``{"format", "model", "model_kwargs", "state_dict", "metadata"}``;
- a Lightning checkpoint of :class:`~lrsa_seg.task.SemanticSegmentationTask` (``model.*`` keys);
- an official mmseg segmentation checkpoint (``{"state_dict": {"backbone.*", "decode_head.*"}, "meta"}``) or
  its bare state dict;
- an official ImageNet classification checkpoint in every form the official backbone loader
  (``LRFormer.init_weights``) accepts: weights under ``state_dict``, under ``model`` or bare, with
  ``backbone.`` and ``module.`` prefixes; the classifier (``head.*``, final ``norm.*``) is dropped;
- a bare lrsa-seg state dict.

Files load with ``weights_only=True``; harmless extras saved beside the weights (:data:`SAFE_EXTRAS`,
e.g. the training ``args``) are allowed by name, anything else needs an explicit opt-in.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from .constants import IMAGE_MEAN, IMAGE_STD
from .errors import CheckpointError, CheckpointMismatchError
from .hub import resolve_source
from .io import save_atomic, torch_load
from .models import VARIANTS, create_model
from .models.official import convert_official_state_dict, is_official, ours_key_to_official
from .models.weights import load_state_dict_checked

SAFE_EXTRAS: tuple[type, ...] = (argparse.Namespace,)
"""Objects besides tensors and plain containers that weights files may hold and that load safely."""

DEFAULT_OPT_IN = "`--allow-pickle` on the command line, `allow_pickle=True` in Python"

OURS = "lrsa-seg weights file"
LIGHTNING = "Lightning checkpoint"
OFFICIAL_SEGMENTATION = "official mmseg segmentation checkpoint"
OFFICIAL_CLASSIFICATION = "official ImageNet classification checkpoint"
STATE_DICT = "lrsa-seg state dict"

CHECKPOINT_KEY = "lrsa_seg"
"""Where a task checkpoint keeps ``{"model", "model_kwargs", "metadata"}`` (:func:`task_record`)."""

VALUE_SCALE = 255.0
"""Input pixel values run from 0 to this; ``mean`` and ``std`` are on that scale."""

# The paper configs' test-time resize (configs/lrformer_*_<dataset>.yaml): base size, size multiple.
_TEST_RESIZE: dict[str, tuple[tuple[int, int], int | None]] = {
    "ADE20K": ((2048, 512), 32),
    "COCOStuff": ((2048, 512), 32),
    "Cityscapes": ((2048, 1024), None),
}
_TEST_RESIZE_OVERRIDES = {("lrformer_l", "ADE20K"): ((2560, 640), 32)}  # LRFormer-L tests ADE20K at 640


def inference_metadata(
    num_classes: int,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    dataset: str | None = None,
    base_size: Sequence[int] | None = None,
    size_multiple: int | None = None,
) -> dict[str, Any]:
    """What inference needs besides the weights, as stored in weights files and task checkpoints.

    Args:
        num_classes: output classes.
        class_names: one name per class (None: the indices).
        palette: one RGB colour per class (None: the default palette).
        dataset: the training dataset's name, if known.
        base_size: test-time resize ``(long, short)`` keeping the aspect ratio (None: native size).
        size_multiple: round test-time sizes to multiples of this (None: any size).

    Returns:
        ``{"num_classes", "class_names", "palette", "dataset", "mean", "std", "value_scale",
        "base_size", "size_multiple"}``: plain lists and numbers (``mean``/``std`` per RGB channel
        on the ``0..value_scale`` scale).
    """
    return {
        "num_classes": int(num_classes),
        "class_names": [str(n) for n in class_names] if class_names is not None else None,
        "palette": [[int(c) for c in rgb] for rgb in palette] if palette is not None else None,
        "dataset": dataset,
        "mean": list(IMAGE_MEAN),
        "std": list(IMAGE_STD),
        "value_scale": VALUE_SCALE,
        "base_size": [int(v) for v in base_size] if base_size is not None else None,
        "size_multiple": size_multiple,
    }


def _keep_key(key: str) -> str:
    return key


@dataclass
class Weights:
    """A weights file as read by :func:`load_weights_file`.

    Attributes:
        source: what the user passed (path, ``hf://`` address or URL).
        format: what the file was (:data:`OURS`, :data:`LIGHTNING`, :data:`OFFICIAL_SEGMENTATION`,
            :data:`OFFICIAL_CLASSIFICATION` or :data:`STATE_DICT`).
        state_dict: the weights with lrsa-seg key names (backbone-only files: ``backbone.*`` only).
        model: the registered model name, where the file says or its shapes identify it.
        model_kwargs: :func:`~lrsa_seg.models.create_model` arguments (``num_classes`` ...).
        metadata: :func:`inference_metadata` (empty for a file that carries none).
        file_key: maps an lrsa-seg key to the file's own name for it (for error messages).
    """

    source: str
    format: str
    state_dict: dict[str, torch.Tensor]
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    file_key: Callable[[str], str] = _keep_key

    @property
    def has_head(self) -> bool:
        """Whether the file holds a decode head (else only a backbone)."""
        return any(k.startswith("decode_head.") for k in self.state_dict)

    def describe(self) -> str:
        """One line: the source, what it was, its model and classes, how many tensors."""
        what = [self.model] if self.model else []
        if self.metadata.get("dataset"):
            what.append(str(self.metadata["dataset"]))
        if "num_classes" in self.model_kwargs:
            what.append(f"{self.model_kwargs['num_classes']} classes")
        elif not self.has_head:
            what.append("backbone only")
        details = f" ({', '.join(what)})" if what else ""
        return f"{self.source}: {self.format}{details}, {len(self.state_dict)} tensors"


def _tensors(candidate: Any, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(candidate, Mapping) or not candidate:
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors")
    if not all(isinstance(v, torch.Tensor) for v in candidate.values()):
        others = sorted(k for k, v in candidate.items() if not isinstance(v, torch.Tensor))
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors (non-tensor entries: {others[:5]})")
    return dict(candidate)


def official_state_dict_of(checkpoint: Any, path: str | os.PathLike[str] = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside an mmseg checkpoint (``{"state_dict": ..., "meta": ...}``) or a bare one."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    return _tensors(checkpoint, os.fspath(path))


def task_record(hparams: Mapping[str, Any], palette: Sequence[Sequence[int]] | None = None) -> dict[str, Any]:
    """``{"model", "model_kwargs", "metadata"}`` from the hyper-parameters of a ``SemanticSegmentationTask``."""
    model_kwargs: dict[str, Any] = {"num_classes": int(hparams["num_classes"])}
    for name in ("pooled_sizes", "head_pooled_size"):
        if hparams.get(name) is not None:
            model_kwargs[name] = hparams[name]
    metadata = inference_metadata(
        hparams["num_classes"],
        hparams.get("class_names"),
        palette,
        base_size=hparams.get("eval_base_size"),
        size_multiple=hparams.get("eval_size_multiple"),
    )
    return {"model": hparams["model"], "model_kwargs": model_kwargs, "metadata": metadata}


def infer_model_name(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The registered variant whose weights have these keys and shapes (classes and pooled sizes aside).

    Compares the whole model when the file has a head, else the backbone. None if none fits.
    """
    scope = "" if any(k.startswith("decode_head.") for k in state_dict) else "backbone."
    for name, config in VARIANTS.items():
        widths = [state_dict.get(f"backbone.stages.{i}.downsample.norm.weight") for i in range(len(config["dims"]))]
        if [None if w is None else w.shape[0] for w in widths] != list(config["dims"]):
            continue
        with torch.device("meta"):
            expected = create_model(name, num_classes=1).state_dict()
        expected = {k: v.shape for k, v in expected.items() if k.startswith(scope)}
        given = {k: v.shape for k, v in state_dict.items()}
        if expected.keys() == given.keys() and all(
            given[k] == shape for k, shape in expected.items() if not k.startswith("decode_head.classifier.")
        ):
            return name
    return None


def _official_metadata(meta: Any, num_classes: int, model: str | None) -> dict[str, Any]:
    """Class names, palette and test-time resize of an official checkpoint: from its ``meta``, else its dataset."""
    from datamodules import ADE20K, Cityscapes, COCOStuff  # the released models' datasets

    dataset = {len(c.classes): c for c in (ADE20K, COCOStuff, Cityscapes)}.get(num_classes)
    meta = meta if isinstance(meta, Mapping) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), Mapping) else {}
    names = dataset_meta.get("classes") or meta.get("CLASSES") or (dataset.classes if dataset else None)
    palette = dataset_meta.get("palette") or meta.get("PALETTE") or (dataset.palette if dataset else None)
    names = names if names is not None and len(names) == num_classes else None
    palette = palette if palette is not None and len(palette) >= num_classes else None
    name = dataset.__name__ if dataset else None
    base_size, size_multiple = _TEST_RESIZE_OVERRIDES.get((model, name)) or _TEST_RESIZE.get(name or "", (None, None))
    return inference_metadata(num_classes, names, palette, name, base_size, size_multiple)


def _strip(keys_to_values: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """Drop ``prefix`` from every key that has it (the official loader's rule); returns it if any had it."""
    if not any(k.startswith(prefix) for k in keys_to_values):
        return dict(keys_to_values), ""
    return {k.removeprefix(prefix): v for k, v in keys_to_values.items()}, prefix


def interpret_checkpoint(checkpoint: Any, source: str) -> Weights:
    """Recognise a loaded weights file's format and bring it to lrsa-seg key names (no I/O).

    Raises ``CheckpointMismatchError`` naming ``source`` when it holds no state dict of tensors or
    keys of no LRFormer.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors (a {type(checkpoint).__name__})")
    if isinstance(checkpoint.get("model"), str) and "state_dict" in checkpoint:
        return Weights(
            source,
            OURS,
            _tensors(checkpoint["state_dict"], source),
            checkpoint["model"],
            dict(checkpoint.get("model_kwargs") or {}),
            dict(checkpoint.get("metadata") or {}),
        )
    if "pytorch-lightning_version" in checkpoint:
        state_dict, _ = _strip(_tensors(checkpoint.get("state_dict"), source), "model.")
        record = checkpoint.get(CHECKPOINT_KEY)
        if record is None and isinstance(checkpoint.get("hyper_parameters"), Mapping):
            record = task_record(checkpoint["hyper_parameters"])  # written before the record existed
        record = record or {}
        return Weights(
            source,
            LIGHTNING,
            state_dict,
            record.get("model"),
            dict(record.get("model_kwargs") or {}),
            dict(record.get("metadata") or {}),
            lambda key: f"model.{key}",
        )
    if "state_dict" in checkpoint:
        raw = checkpoint["state_dict"]
    elif isinstance(checkpoint.get("model"), Mapping):
        raw = checkpoint["model"]
    else:
        raw = checkpoint
    raw = _tensors(raw, source)
    raw, module_prefix = _strip(raw, "module.")
    if not is_official(list(raw)):
        state_dict, model_prefix = _strip(raw, "model.")
        model = infer_model_name(state_dict)
        return Weights(source, STATE_DICT, state_dict, model, file_key=lambda key: module_prefix + model_prefix + key)
    if any(k.startswith("decode_head.") for k in raw):
        state_dict = convert_official_state_dict(raw)
        num_classes = int(state_dict["decode_head.classifier.weight"].shape[0])
        model = infer_model_name(state_dict)
        meta = checkpoint.get("meta")
        return Weights(
            source,
            OFFICIAL_SEGMENTATION,
            state_dict,
            model,
            {"num_classes": num_classes},
            _official_metadata(meta, num_classes, model),
            lambda key: module_prefix + _official_name(key),
        )
    # An ImageNet backbone; the official loader strips "backbone." if present. Its classifier
    # ("head.*", the final "norm.*") has no place in a segmentation model.
    raw, backbone_prefix = _strip(raw, "backbone.")
    backbone = {f"backbone.{k}": v for k, v in raw.items() if k.startswith(("patch_embed", "d_convs", "block"))}
    state_dict = convert_official_state_dict(backbone)
    return Weights(
        source,
        OFFICIAL_CLASSIFICATION,
        state_dict,
        infer_model_name(state_dict),
        metadata={"mean": list(IMAGE_MEAN), "std": list(IMAGE_STD), "value_scale": VALUE_SCALE},
        file_key=lambda key: module_prefix + backbone_prefix + _official_name(key).removeprefix("backbone."),
    )


def _official_name(key: str) -> str:
    try:
        return ours_key_to_official(key)
    except KeyError:
        return key


def load_weights_file(
    source: str | os.PathLike[str], allow_pickle: bool = False, opt_in: str = DEFAULT_OPT_IN
) -> Weights:
    """Read a weights file of any supported format from a path, ``hf://`` address or URL.

    Args:
        source: local path, ``hf://OWNER/REPO/PATH[@REVISION]``, http(s) URL or fsspec URL.
        allow_pickle: allow arbitrary unpickling (only for trusted files); without it only
            tensors, plain containers and :data:`SAFE_EXTRAS` load.
        opt_in: how the caller's interface allows pickle, for the refusal message.

    Returns:
        The :class:`Weights`. A missing, truncated or corrupt file, or one that is not reachable
        nor cached, raises ``CheckpointError`` naming it.
    """
    path = resolve_source(source)
    torch.serialization.add_safe_globals(list(SAFE_EXTRAS))
    try:
        checkpoint = torch_load(path, allow_pickle, opt_in=opt_in)
    except CheckpointError as err:
        if os.fspath(path) == os.fspath(source):
            raise
        # Name what the user passed (hf://..., a URL), and where its cached copy is.
        raise CheckpointError(str(err).replace(os.fspath(path), f"{os.fspath(source)} ({path})")) from err
    return interpret_checkpoint(checkpoint, os.fspath(source))


def read_weights(
    path: str | os.PathLike[str], allow_pickle: bool = False, opt_in: str = DEFAULT_OPT_IN
) -> dict[str, torch.Tensor]:
    """Model weights from any supported file, with lrsa-seg key names (:func:`load_weights_file`)."""
    return load_weights_file(path, allow_pickle, opt_in).state_dict


def load_into(model: nn.Module, weights: Weights, scope: Literal["auto", "backbone"] = "auto") -> None:
    """Load ``weights`` into a segmentation model strictly; problems name the file's own keys.

    Args:
        model: a model with ``backbone`` (and ``decode_head``), e.g. from :func:`create_model`.
        weights: from :func:`load_weights_file`.
        scope: ``"auto"`` loads the whole model, or only the backbone when the file has no head;
            ``"backbone"`` takes only the backbone from any file (a new head for new classes).
    """
    if scope not in ("auto", "backbone"):
        raise ValueError(f"weights_scope must be 'auto' or 'backbone', got {scope!r}")
    if scope == "backbone" or not weights.has_head:
        backbone = {k.removeprefix("backbone."): v for k, v in weights.state_dict.items() if k.startswith("backbone.")}
        load_state_dict_checked(
            model.backbone,
            backbone,
            source=f"{weights.source} (backbone)",
            key_name=lambda key: weights.file_key(f"backbone.{key}"),
        )
    else:
        load_state_dict_checked(model, weights.state_dict, source=weights.source, key_name=weights.file_key)


def convert_checkpoint(weights: Weights, dst: str | os.PathLike[str], model_name: str | None = None) -> Weights:
    """Write ``weights`` (any supported format) as an lrsa-seg weights file, checked by a strict load.

    The output holds ``{"format", "model", "model_kwargs", "state_dict", "metadata"}`` (a backbone
    file: ``backbone.*`` weights only) and loads with ``--model.init_args.weights``,
    :func:`load_weights_file` or :class:`~lrsa_seg.inference.Segmenter`.

    Args:
        weights: from :func:`load_weights_file`.
        dst: output file.
        model_name: registered model name; None: the one the file names or its shapes identify.

    Returns:
        The converted :class:`Weights` (its ``source`` is ``dst``).
    """
    name = model_name or weights.model
    if name is None:
        raise CheckpointMismatchError(
            f"{weights.source}: no registered LRFormer variant has these shapes; pass --model"
        )
    model = create_model(name, **weights.model_kwargs)
    load_into(model, weights)
    state_dict = (
        model.state_dict() if weights.has_head else {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    )
    out = {
        "format": OURS,
        "model": name,
        "model_kwargs": weights.model_kwargs,
        "state_dict": state_dict,
        "metadata": weights.metadata,
    }
    save_atomic(out, dst)
    return Weights(os.fspath(dst), OURS, state_dict, name, weights.model_kwargs, weights.metadata)
