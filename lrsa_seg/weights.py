"""Weights files of every supported format -> a state dict with lrsa-seg key names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import CheckpointMismatchError
from .io import save_atomic, torch_load
from .models import create_model
from .models.official import convert_official_state_dict, is_official
from .models.weights import load_state_dict_checked


def official_state_dict_of(checkpoint: Any, path: str | os.PathLike[str] = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside an mmseg checkpoint (``{"state_dict": ..., "meta": ...}``) or a bare one."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointMismatchError(f"{path} holds no state dict of tensors")
    return dict(checkpoint)


def read_weights(
    path: str | os.PathLike[str],
    allow_pickle: bool = False,
    opt_in: str = "`--allow-pickle` on the command line, `allow_pickle=True` in Python",
) -> dict[str, torch.Tensor]:
    """Model weights from any supported file, with lrsa-seg key names.

    Accepts: an lrsa-seg weights file (``lrsa-seg convert`` output), a Lightning checkpoint of
    :class:`~lrsa_seg.task.SemanticSegmentationTask` (``model.*`` keys), an official mmseg checkpoint or
    bare state dict (``backbone.*``/``decode_head.*``), and an official backbone-only state dict
    (``patch_embed1.*``, ``block1.0.*``, ...: classifier keys are dropped). Backbone-only files
    give only ``backbone.*`` keys. ``allow_pickle`` and ``opt_in``: as in :func:`torch_load`.
    """
    state_dict = official_state_dict_of(torch_load(path, allow_pickle, opt_in=opt_in), path)
    keys = list(state_dict)
    if keys and all(k.startswith("model.") for k in keys):
        state_dict = {k[len("model.") :]: v for k, v in state_dict.items()}
        keys = list(state_dict)
    if not is_official(keys):
        return dict(state_dict)
    if not any(k.startswith(("backbone.", "decode_head.")) for k in keys):
        # An official ImageNet backbone: its classifier ("head.*", final "norm.*") has no place here.
        state_dict = {
            f"backbone.{k}": v for k, v in state_dict.items() if k.startswith(("patch_embed", "d_convs", "block"))
        }
    return convert_official_state_dict(state_dict)


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], model_name: str, allow_pickle: bool = False
) -> dict[str, Any]:
    """Convert an official checkpoint file to an lrsa-seg weights file, checked by a strict load.

    The output holds ``{"model": name, "model_kwargs": {...}, "state_dict": {...}}`` and loads
    with ``--model.init_args.weights`` or :func:`read_weights`.
    """
    official = official_state_dict_of(torch_load(src, allow_pickle), src)
    state_dict = convert_official_state_dict(official)
    classifier = state_dict.get("decode_head.classifier.weight")
    if classifier is None:
        raise CheckpointMismatchError(f"{src}: no decode_head.conv_seg.weight, not an LRFormer segmentation checkpoint")
    model_kwargs = {"num_classes": int(classifier.shape[0])}
    model = create_model(model_name, **model_kwargs)
    load_state_dict_checked(model, state_dict, source=str(src))
    out = {"model": model_name, "model_kwargs": model_kwargs, "state_dict": model.state_dict()}
    save_atomic(out, dst)
    return out
