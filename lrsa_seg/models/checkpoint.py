"""Weights formats -> lrsa-seg state dicts: recognising what a file holds and mapping its keys (no I/O).

Pure functions over what a file held once read (:func:`~lrsa_seg.io.torch_load`, or a saved
model's ``config.json`` and ``model.safetensors``): :func:`interpret_checkpoint` recognises

- a saved model (``save_pretrained``: ``config.json`` + ``model.safetensors``);
- an lrsa-seg 0.1 weights file (``lrsa-seg convert`` before safetensors):
  ``{"format", "model", "model_kwargs", "state_dict", "metadata"}``;
- a Lightning checkpoint of :class:`~lrsa_seg.task.SemanticSegmentationTask` (``model.*`` keys);
- an official mmseg segmentation checkpoint (``{"state_dict": {"backbone.*", "decode_head.*"}, "meta"}``) or
  its bare state dict;
- an official ImageNet classification checkpoint in every form the official backbone loader
  (``LRFormer.init_weights``) accepts: weights under ``state_dict``, under ``model`` or bare, with
  ``backbone.`` and ``module.`` prefixes; the classifier (``head.*``, final ``norm.*``) is dropped;
- a bare lrsa-seg state dict (a ``.pt`` or ``.safetensors`` file).

Every :class:`Checkpoint` keeps the way back to the file's own key names (:attr:`Checkpoint.file_key`),
so that every mismatch names keys as the file names them. The registry
(:func:`~lrsa_seg.models.load_pretrained`) identifies the variant, builds and loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..constants import IMAGE_MEAN, IMAGE_STD
from ..errors import CheckpointMismatchError
from .official import convert_official_state_dict, is_official, ours_key_to_official
from .pretrained import VALUE_SCALE, inference_metadata

SAVED = "lrsa-seg saved model (config.json + model.safetensors)"
CONVERTED_V01 = "lrsa-seg 0.1 weights file"
LIGHTNING = "Lightning checkpoint"
OFFICIAL_SEGMENTATION = "official mmseg segmentation checkpoint"
OFFICIAL_CLASSIFICATION = "official ImageNet classification checkpoint"
STATE_DICT = "lrsa-seg state dict"

CHECKPOINT_KEY = "lrsa_seg"
"""Where a task checkpoint keeps ``{"model", "model_kwargs", "metadata", "provenance"}``."""

CONFIG_FORMAT = "lrsa-seg"
"""``config.json``'s ``format`` of a saved model."""
CONFIG_VERSION = 1


def _same_name(key: str) -> str:
    return key


@dataclass
class Checkpoint:
    """What a weights file holds, with lrsa-seg key names.

    Attributes:
        source: what the user passed (path, folder, ``hf://`` address or URL).
        format: what the file was (:data:`SAVED`, :data:`LIGHTNING`, :data:`OFFICIAL_SEGMENTATION` ...).
        state_dict: the weights with lrsa-seg key names (backbone-only files: ``backbone.*`` only).
        model: the registered model name the file states (None: identify it from the shapes).
        model_kwargs: :func:`~lrsa_seg.models.create_model` arguments the file states (``num_classes`` ...).
        metadata: :func:`~lrsa_seg.models.pretrained.inference_metadata` (empty for a file that carries none).
        provenance: where the weights come from, as the file records it (e.g. a fine-tune's starting weights).
        sha256: the file's SHA-256 (a saved model: its ``model.safetensors``), where read from a local file.
        file_key: maps an lrsa-seg key to the file's own name for it (for error messages).
        official_meta: an official segmentation checkpoint's ``meta`` (it may name classes and palette).
        metrics: evaluation results the file stores (a Lightning checkpoint: its monitored best scores).
    """

    source: str
    format: str
    state_dict: dict[str, torch.Tensor]
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    file_key: Callable[[str], str] = _same_name
    official_meta: Mapping[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def has_head(self) -> bool:
        """Whether the file holds a decode head (else only a backbone)."""
        return any(k.startswith("decode_head.") for k in self.state_dict)

    @property
    def num_classes(self) -> int | None:
        """The classes of the file's decode head (None: backbone only)."""
        classifier = self.state_dict.get("decode_head.classifier.weight")
        return None if classifier is None else int(classifier.shape[0])

    def describe(self) -> str:
        """One line: the source, what it was, its model and classes, how many tensors."""
        what = [self.model] if self.model else []
        if self.metadata.get("dataset"):
            what.append(str(self.metadata["dataset"]))
        what.append(f"{self.num_classes} classes" if self.has_head else "backbone only")
        return f"{self.source}: {self.format} ({', '.join(what)}), {len(self.state_dict)} tensors"

    def record(self) -> dict[str, Any]:
        """``{"source", "format", "sha256"}``: how a model started from this file records it."""
        return {"source": self.source, "format": self.format, "sha256": self.sha256}


def short_list(keys: list[str], limit: int = 12) -> str:
    """The first ``limit`` keys, comma-separated, and how many more there are."""
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def state_dict_mismatches(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], key_name: Callable[[str], str] = _same_name
) -> list[str]:
    """Human-readable problems (missing keys, unexpected keys, shape mismatches); empty if none.

    ``key_name`` maps a model key to the name the report uses (the one in the source file).
    """
    expected = model.state_dict()
    missing = [key_name(k) for k in expected if k not in state_dict]
    unexpected = [key_name(k) for k in state_dict if k not in expected]
    shapes = [
        f"{key_name(k)}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {short_list(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {short_list(shapes)}")
    return problems


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str = "state dict",
    key_name: Callable[[str], str] = _same_name,
) -> None:
    """``load_state_dict(strict=True)`` that reports every problem at once, naming ``source``; keys as ``key_name``."""
    problems = state_dict_mismatches(model, state_dict, key_name)
    if problems:
        raise CheckpointMismatchError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def official_name(key: str) -> str:
    """The official release's name of an lrsa-seg key; the key itself where the release has none."""
    try:
        return ours_key_to_official(key)
    except KeyError:
        return key


def _tensors(candidate: Any, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(candidate, Mapping) or not candidate:
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors")
    if not all(isinstance(v, torch.Tensor) for v in candidate.values()):
        others = sorted(k for k, v in candidate.items() if not isinstance(v, torch.Tensor))
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors (non-tensor entries: {others[:5]})")
    return dict(candidate)


def _strip(keys_to_values: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """Drop ``prefix`` from every key that has it (the official loader's rule); returns it if any had it."""
    if not any(k.startswith(prefix) for k in keys_to_values):
        return dict(keys_to_values), ""
    return {k.removeprefix(prefix): v for k, v in keys_to_values.items()}, prefix


def record_from_hparams(hparams: Mapping[str, Any], palette: Any = None, dataset: str | None = None) -> dict[str, Any]:
    """``{"model", "model_kwargs", "metadata"}`` from the hyper-parameters of a ``SemanticSegmentationTask``."""
    model_kwargs: dict[str, Any] = {"num_classes": int(hparams["num_classes"])}
    for name in ("pooled_sizes", "head_pooled_size"):
        if hparams.get(name) is not None:
            model_kwargs[name] = hparams[name]
    metadata = inference_metadata(
        hparams["num_classes"],
        hparams.get("class_names"),
        palette,
        dataset,
        base_size=hparams.get("eval_base_size"),
        size_multiple=hparams.get("eval_size_multiple"),
    )
    return {"model": hparams["model"], "model_kwargs": model_kwargs, "metadata": metadata}


def saved_model_checkpoint(
    config: Mapping[str, Any], state_dict: dict[str, torch.Tensor], source: str, sha256: str | None = None
) -> Checkpoint:
    """A saved model (``config.json`` + ``model.safetensors``) as a :class:`Checkpoint`."""
    if config.get("format") != CONFIG_FORMAT or not isinstance(config.get("model"), str):
        raise CheckpointMismatchError(
            f"{source}: config.json is not an lrsa-seg model description (its format is {config.get('format')!r})"
        )
    if int(config.get("format_version", 0)) > CONFIG_VERSION:
        raise CheckpointMismatchError(
            f"{source}: config.json format_version {config['format_version']} is newer than this lrsa-seg reads "
            f"({CONFIG_VERSION}); upgrade lrsa-seg"
        )
    return Checkpoint(
        source,
        SAVED,
        _tensors(state_dict, source),
        config["model"],
        dict(config.get("model_kwargs") or {}),
        dict(config.get("metadata") or {}),
        dict(config.get("provenance") or {}),
        sha256,
    )


def _best_scores(callbacks: Any) -> dict[str, float]:
    """``{monitor: best score}`` of the ModelCheckpoint states in a Lightning checkpoint's ``callbacks``."""
    scores = {}
    for state in (callbacks or {}).values() if isinstance(callbacks, Mapping) else ():
        if isinstance(state, Mapping) and state.get("monitor") and state.get("best_model_score") is not None:
            scores[f"best {state['monitor']}"] = float(state["best_model_score"])
    return scores


def interpret_checkpoint(checkpoint: Any, source: str, sha256: str | None = None) -> Checkpoint:
    """Recognise a loaded ``torch.load`` object's format and bring it to lrsa-seg key names (no I/O).

    Raises ``CheckpointMismatchError`` naming ``source`` when it holds no state dict of tensors or
    keys of no LRFormer.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f"{source} holds no state dict of tensors (a {type(checkpoint).__name__})")
    if isinstance(checkpoint.get("model"), str) and "state_dict" in checkpoint:
        return Checkpoint(
            source,
            CONVERTED_V01,
            _tensors(checkpoint["state_dict"], source),
            checkpoint["model"],
            dict(checkpoint.get("model_kwargs") or {}),
            dict(checkpoint.get("metadata") or {}),
            sha256=sha256,
        )
    if "pytorch-lightning_version" in checkpoint:
        state_dict, _ = _strip(_tensors(checkpoint.get("state_dict"), source), "model.")
        record = checkpoint.get(CHECKPOINT_KEY)
        if record is None and isinstance(checkpoint.get("hyper_parameters"), Mapping):
            record = record_from_hparams(checkpoint["hyper_parameters"])  # written before the record existed
        record = record or {}
        provenance = {
            **(record.get("provenance") or {}),
            "trained": {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")},
        }
        return Checkpoint(
            source,
            LIGHTNING,
            state_dict,
            record.get("model"),
            dict(record.get("model_kwargs") or {}),
            dict(record.get("metadata") or {}),
            provenance,
            sha256,
            lambda key: f"model.{key}",
            metrics=_best_scores(checkpoint.get("callbacks")),
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
        return Checkpoint(
            source, STATE_DICT, state_dict, sha256=sha256, file_key=lambda key: module_prefix + model_prefix + key
        )
    if any(k.startswith("decode_head.") for k in raw):
        state_dict = convert_official_state_dict(raw)
        # The metadata is filled in once the variant is known (its test-time resize may differ).
        return Checkpoint(
            source,
            OFFICIAL_SEGMENTATION,
            state_dict,
            model_kwargs={"num_classes": int(state_dict["decode_head.classifier.weight"].shape[0])},
            sha256=sha256,
            official_meta=checkpoint.get("meta") if isinstance(checkpoint.get("meta"), Mapping) else None,
            file_key=lambda key: module_prefix + official_name(key),
        )
    # An ImageNet backbone; the official loader strips "backbone." if present. Its classifier
    # ("head.*", the final "norm.*") has no place in a segmentation model.
    raw, backbone_prefix = _strip(raw, "backbone.")
    backbone = {f"backbone.{k}": v for k, v in raw.items() if k.startswith(("patch_embed", "d_convs", "block"))}
    return Checkpoint(
        source,
        OFFICIAL_CLASSIFICATION,
        convert_official_state_dict(backbone),
        metadata={"mean": list(IMAGE_MEAN), "std": list(IMAGE_STD), "value_scale": VALUE_SCALE},
        sha256=sha256,
        file_key=lambda key: module_prefix + backbone_prefix + official_name(key).removeprefix("backbone."),
    )
