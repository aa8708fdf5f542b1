"""Safe file I/O: checkpoints loaded without arbitrary unpickling, files never half-written."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import safetensors
import safetensors.torch
import torch

from .errors import CheckpointError


def local_path(path: str | os.PathLike[str]) -> Path | None:
    """The local file of ``path`` (plain or ``file://``); None for other URLs (``s3://`` ...)."""
    text = os.fspath(path).removeprefix("file://")
    return None if "://" in text else Path(text)


def torch_load(
    path: str | os.PathLike[str],
    allow_pickle: bool = False,
    map_location: Any = "cpu",
    opt_in: str = "`--allow-pickle` on the command line, `allow_pickle=True` in Python",
    what: str = "checkpoint",
) -> Any:
    """``torch.load`` with ``weights_only=True`` unless pickle is explicitly allowed.

    Local paths or fsspec URLs (``s3://``, ``file://``, ...). Every error is a
    :class:`CheckpointError` naming the file: missing, truncated/corrupt, or needing arbitrary
    unpickling (then ``opt_in`` says how the caller's interface allows it). ``what`` names the
    kind of file in the messages (``"checkpoint"``, ``"weights file"``).
    """
    local = local_path(path)
    if local is not None and not local.is_file():
        raise CheckpointError(f"{what} not found: {path}")
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
        raise CheckpointError(f"{path} is not a readable {what} (truncated or corrupt?): {detail}") from err
    except FileNotFoundError as err:
        raise CheckpointError(f"{what} not found: {path}") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable {what} (truncated or corrupt?): {first_line}") from err


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (no code runs on load); errors name the file."""
    local = Path(path)
    if not local.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return safetensors.torch.load_file(local, device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {first_line}"
        ) from err


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> dict[str, Any]:
    """A JSON object from ``path``; a missing file or invalid JSON is a :class:`CheckpointError` naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{what} not found: {path}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable {what} ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a readable {what} (a JSON {type(data).__name__}, not an object)")
    return data


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a local file, hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def save_safetensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` as ``.safetensors``, never half-written (contiguous copies: no shared storage)."""
    data = safetensors.torch.save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, metadata)
    write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so that readers see the old file or the complete new one, never part."""
    write_atomic(path, lambda f: json.dump(data, f, indent=2), binary=False)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
