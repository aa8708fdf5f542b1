"""Official LRFormer checkpoints -> lrsa-seg: pure key/config mapping plus checked loading.

The official release (mmsegmentation) names things ``backbone.patch_embed{n}``,
``backbone.d_convs{n}``, ``backbone.block{n}.{m}`` and ``decode_head.fuse_block{n}``; here
stages are built in a loop. Only this file knows the official names.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

_BLOCK_RENAMES = (
    ("attn.q.0.", "attn.q."),
    ("attn.kv.0.", "attn.kv."),
    ("mlp.conv.", "mlp.dwconv."),
    ("layer_scale_1", "ls1.gamma"),
    ("layer_scale_2", "ls2.gamma"),
)


def _stage(match: re.Match[str]) -> str:
    return str(int(match.group(1)) - 1)


# (official pattern, replacement) applied to the start of a key; the first match wins.
_KEY_RULES: tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...] = (
    (r"backbone\.patch_embed1\.conv1\.", "backbone.stages.0.downsample.convs."),
    (r"backbone\.patch_embed(\d)\.", lambda m: f"backbone.stages.{_stage(m)}.downsample."),
    (r"backbone\.d_convs(\d)\.", lambda m: f"backbone.stages.{_stage(m)}.level_convs."),
    (r"backbone\.block(\d)\.(\d+)\.", lambda m: f"backbone.stages.{_stage(m)}.blocks.{m.group(2)}."),
    (r"decode_head\.fuse_block(\d)\.", r"decode_head.block\1."),
    (r"decode_head\.conv_seg\.", "decode_head.classifier."),
    (r"decode_head\.squeeze(\d)\.", r"decode_head.squeeze\1."),
)


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the model: lists missing/unexpected keys and shape mismatches."""


def official_key_to_ours(key: str) -> str:
    """Map one official ``state_dict`` key to its lrsa-seg name; raise ``KeyError`` if unknown."""
    for pattern, replacement in _KEY_RULES:
        match = re.match(pattern, key)
        if match:
            new = match.expand(replacement) if isinstance(replacement, str) else replacement(match)
            rest = key[match.end() :]
            if ".block" in new:
                for old, ours in _BLOCK_RENAMES:
                    rest = rest.replace(old, ours)
            return new + rest
    raise KeyError(key)


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
        raise CheckpointMismatchError(f"not LRFormer keys (unexpected): {_short(unknown)}")
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


def _short(keys: list[str], limit: int = 12) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def state_dict_mismatches(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable problems (missing keys, unexpected keys, shape mismatches); empty if none."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_short(shapes)}")
    return problems


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> None:
    """``load_state_dict(strict=True)`` that reports every problem at once, naming ``source``."""
    problems = state_dict_mismatches(model, state_dict)
    if problems:
        raise CheckpointMismatchError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))
    model.load_state_dict(state_dict, strict=True)


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable, or refused; the message names the file."""


def local_path(path: str | os.PathLike[str]) -> Path | None:
    """The local file of ``path`` (plain or ``file://``); None for other URLs (``s3://`` ...)."""
    text = os.fspath(path).removeprefix("file://")
    return None if "://" in text else Path(text)


def torch_load(
    path: str | os.PathLike[str],
    allow_pickle: bool = False,
    map_location: Any = "cpu",
    opt_in: str = "`--allow-pickle` on the command line, `allow_pickle=True` in Python",
) -> Any:
    """``torch.load`` with ``weights_only=True`` unless pickle is explicitly allowed.

    Local paths or fsspec URLs (``s3://``, ``file://``, ...). Every error is a
    :class:`CheckpointError` naming the file: missing, truncated/corrupt, or needing arbitrary
    unpickling (then ``opt_in`` says how the caller's interface allows it).
    """
    local = local_path(path)
    if local is not None and not local.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if local is not None:
            return torch.load(local, map_location=map_location, weights_only=not allow_pickle)
        import fsspec  # a torch dependency; only remote URLs need it

        with fsspec.open(os.fspath(path), "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if not allow_pickle and found:
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain containers ({found.group(1)}); loading it "
                "needs arbitrary unpickling, which can run code from the file, so it was refused. If you trust "
                f"the file, allow it explicitly: {opt_in}."
            ) from err
        reason = re.search(r"WeightsUnpickler error: \s*(.+)", str(err))
        detail = reason.group(1).strip() if reason else str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {detail}") from err
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint not found: {path}") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {first_line}") from err


def official_state_dict_of(checkpoint: Any, path: str | os.PathLike[str] = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside an mmseg checkpoint (``{"state_dict": ..., "meta": ...}``) or a bare one."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointMismatchError(f"{path} holds no state dict of tensors")
    return dict(checkpoint)


_OFFICIAL_MARKERS = ("patch_embed1.", "block1.0.", "d_convs1.", "decode_head.fuse_block1.", "decode_head.conv_seg.")


def _is_official(keys: list[str]) -> bool:
    return any(marker in key for key in keys for marker in _OFFICIAL_MARKERS)


def read_weights(
    path: str | os.PathLike[str],
    allow_pickle: bool = False,
    opt_in: str = "`--allow-pickle` on the command line, `allow_pickle=True` in Python",
) -> dict[str, torch.Tensor]:
    """Model weights from any supported file, with lrsa-seg key names.

    Accepts: an lrsa-seg weights file (``lrsa-seg convert`` output), a Lightning checkpoint of
    :class:`~lrsa_seg.task.SegmentationTask` (``model.*`` keys), an official mmseg checkpoint or
    bare state dict (``backbone.*``/``decode_head.*``), and an official backbone-only state dict
    (``patch_embed1.*``, ``block1.0.*``, ...: classifier keys are dropped). Backbone-only files
    give only ``backbone.*`` keys. ``allow_pickle`` and ``opt_in``: as in :func:`torch_load`.
    """
    state_dict = official_state_dict_of(torch_load(path, allow_pickle, opt_in=opt_in), path)
    keys = list(state_dict)
    if keys and all(k.startswith("model.") for k in keys):
        state_dict = {k[len("model.") :]: v for k, v in state_dict.items()}
        keys = list(state_dict)
    if not _is_official(keys):
        return dict(state_dict)
    if not any(k.startswith(("backbone.", "decode_head.")) for k in keys):
        # An official ImageNet backbone: its classifier ("head.*", final "norm.*") has no place here.
        state_dict = {
            f"backbone.{k}": v for k, v in state_dict.items() if k.startswith(("patch_embed", "d_convs", "block"))
        }
    return convert_official_state_dict(state_dict)


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[Any]], Any], binary: bool = True) -> None:
    """Write a file that is never half-written.

    ``write(file)`` fills a temporary file in the same folder, which is ``fsync`` ed and renamed
    over ``path``: readers see the old file or the complete new one, never part of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` that is never half-written (:func:`write_atomic`)."""
    write_atomic(path, lambda f: torch.save(obj, f))


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], model_name: str, allow_pickle: bool = False
) -> dict[str, Any]:
    """Convert an official checkpoint file to an lrsa-seg weights file, checked by a strict load.

    The output holds ``{"model": name, "model_kwargs": {...}, "state_dict": {...}}`` and loads
    with :func:`lrsa_seg.models.load_weights` or ``--model.init_args.weights``.
    """
    from .models import create_model

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


def main(argv: list[str] | None = None) -> int:
    """``lrsa-seg convert OFFICIAL.pth OUT.pt --model lrformer_t``."""
    import argparse

    parser = argparse.ArgumentParser(prog="lrsa-seg convert", description="Convert an official LRFormer checkpoint.")
    parser.add_argument("src", help="official checkpoint (mmseg .pth with state_dict/meta, or a bare state dict)")
    parser.add_argument("dst", help="output file for lrsa-seg")
    parser.add_argument("--model", required=True, help="registered model name, e.g. lrformer_t")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="allow arbitrary unpickling (only for files you trust)"
    )
    args = parser.parse_args(argv)
    try:
        out = convert_checkpoint(args.src, args.dst, args.model, args.allow_pickle)
    except (OSError, RuntimeError, ValueError) as err:
        print(f"error: {err}")
        return 1
    n = sum(
        v.numel()
        for k, v in out["state_dict"].items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    print(f"wrote {args.dst}: {args.model}, {out['model_kwargs']['num_classes']} classes, {n:,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
