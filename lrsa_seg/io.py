"""Safe file I/O: checkpoints loaded without arbitrary unpickling, files never half-written."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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
