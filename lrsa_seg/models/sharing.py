"""Sharing a model as the field does: ``model.safetensors`` + ``config.json`` + a model card, locally or on the Hub.

:func:`save_pretrained` writes a folder that :func:`~lrsa_seg.models.load_pretrained` (and so
``create_model(weights=...)``, :class:`~lrsa_seg.Segmenter`, the task's ``weights``) reads back
from disk or, once pushed (:func:`push_to_hub`), as ``hf://OWNER/REPO`` or ``OWNER/REPO``. The
weights are safetensors (no code runs on load); ``config.json`` names the registered model and
its arguments, the classes, palette and preprocessing, and where the weights came from.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from torch import nn

from ..errors import ConfigError
from ..hub import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, push_folder
from ..io import save_safetensors_atomic, write_atomic, write_json_atomic
from .checkpoint import CONFIG_FORMAT, CONFIG_VERSION
from .pretrained import find_pretrained

LIBRARY = "lrsa-seg"


def library_version() -> str:
    """The installed lrsa-seg's version (``unknown`` when run from a source tree that is not installed)."""
    try:
        return importlib.metadata.version(LIBRARY)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def model_config(
    model: nn.Module, metadata: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``config.json`` of ``model``: its ``model.config`` (from the registry), updated by the arguments."""
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or "model" not in config:
        raise ConfigError(
            "save_pretrained needs a model built by lrsa_seg.models.create_model or load_pretrained "
            "(they record its name and arguments in model.config)"
        )
    return {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "lrsa_seg_version": library_version(),
        "model": config["model"],
        "model_kwargs": dict(config.get("model_kwargs") or {}),
        "metadata": {**(config.get("metadata") or {}), **(metadata or {})},
        "provenance": {**(config.get("provenance") or {}), **(provenance or {})},
    }


def model_card(config: Mapping[str, Any], metrics: Mapping[str, float] | None = None) -> str:
    """A Hub model card (YAML metadata + text): variant, dataset, metrics, preprocessing, licences."""
    meta = config["metadata"]
    dataset = meta.get("dataset")
    classes = meta.get("class_names") or []
    released = find_pretrained(config["model"], int(meta.get("num_classes") or 0))
    data_license = config["provenance"].get("data_license")
    card_data = ModelCardData(
        library_name=LIBRARY,
        tags=["semantic-segmentation", "lrformer", "low-resolution-self-attention", "pytorch", "safetensors"],
        pipeline_tag="image-segmentation",
        datasets=[dataset] if dataset else None,
        license="other",
    )
    lines = [
        f"# {config['model']}" + (f" on {dataset}" if dataset else ""),
        "",
        "LRFormer with Low-Resolution Self-Attention (Wu et al., TPAMI 2025, arXiv 2310.05026), "
        f"saved by lrsa-seg {config.get('lrsa_seg_version', library_version())}.",
        "",
        f"- Model: `{config['model']}`, arguments `{config['model_kwargs']}`",
        f"- Classes ({meta['num_classes']}): {', '.join(classes) if classes else 'indices'}"
        if meta.get("num_classes")
        else '- Backbone only: load it under a new head (`weights_scope="backbone"`)',
        f"- Preprocessing: RGB, values 0-{meta.get('value_scale', 255.0):g}, mean {meta.get('mean')}, "
        f"std {meta.get('std')}",
        "- Test-time resize: "
        + (
            f"fit within {meta['base_size'][0]} x {meta['base_size'][1]} keeping the aspect ratio"
            + (f", sides rounded up to a multiple of {meta['size_multiple']}" if meta.get("size_multiple") else "")
            if meta.get("base_size")
            else "none (native size)"
        ),
    ]
    if metrics:
        lines.append("- Metrics stored with the weights: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if released is not None:
        lines.append(f"- The authors' stated mIoU of the released {released.name}: {released.miou}%")
    weights = config["provenance"].get("weights")
    if weights:
        lines.append(
            f"- Loaded from: {weights.get('source')} ({weights.get('format')}, sha256 {weights.get('sha256')})"
        )
    start = config["provenance"].get("starting_weights")
    if start:
        lines.append(f"- Fine-tuned from: {start.get('source')} ({start.get('format')}, sha256 {start.get('sha256')})")
    lines += [
        f"- Licence of the training data: {data_license or 'see the dataset'}; licence of released LRFormer "
        "weights: not stated by the authors",
        "",
        "```python",
        *(
            [
                "from lrsa_seg import Segmenter",
                'seg = Segmenter.from_pretrained("OWNER/REPO")  # or this folder\'s path',
                'labels = seg("image.jpg")  # (H, W) class indices',
            ]
            if meta.get("num_classes")
            else [
                "from lrsa_seg.models import create_model",
                f'model = create_model("{config["model"]}", num_classes=K, weights="OWNER/REPO", '
                'weights_scope="backbone")',
            ]
        ),
        "```",
    ]
    return ModelCard.from_template(
        card_data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n"
    ).content


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    backbone_only: bool = False,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (model card) into ``folder``.

    Args:
        model: a model from :func:`~lrsa_seg.models.create_model` / :func:`~lrsa_seg.models.load_pretrained`.
        folder: created if absent; files in it are replaced atomically.
        metadata: inference metadata replacing the model's (classes, palette, preprocessing ...).
        provenance: added to the model's record of where its weights come from.
        metrics: evaluation results to state in the model card and ``config.json``.
        backbone_only: save only ``backbone.*`` (a backbone to fine-tune from; loads under a fresh head).

    Returns:
        The folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: save_pretrained writes a folder, and this is a file")
    config = model_config(model, metadata, provenance)
    if metrics:
        config["metrics"] = {k: float(v) for k, v in metrics.items()}
    state_dict = model.state_dict()
    if backbone_only:
        state_dict = {k: v for k, v in state_dict.items() if k.startswith("backbone.")}
        config["model_kwargs"].pop("num_classes", None)
        config["metadata"] = {
            k: config["metadata"][k] for k in ("mean", "std", "value_scale") if k in config["metadata"]
        }
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic(state_dict, folder / WEIGHTS_FILE, {"format": "pt"})
    write_json_atomic(folder / CONFIG_FILE, config)
    card = model_card(config, metrics)
    write_atomic(folder / CARD_FILE, lambda f: f.write(card), binary=False)
    return folder


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    metadata: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    private: bool = False,
) -> str:
    """:func:`save_pretrained` into a temporary folder, then upload it to the Hub repository ``repo_id``.

    Returns the commit's address. Needs the network and a Hub token.
    """
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metadata, provenance, metrics)
        return push_folder(tmp, repo_id, private=private)
