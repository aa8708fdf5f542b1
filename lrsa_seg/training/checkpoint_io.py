"""Checkpoint files that are never half-written, and loaded without arbitrary unpickling.

Lightning 2.6's ``TorchCheckpointIO`` serializes to memory and writes through an fsspec
transaction: a temporary file from ``tempfile.mkstemp()`` (the system temp folder, not the
checkpoint folder) moved into place with ``shutil.move``, without ``fsync``. Across file
systems (``/tmp`` local, checkpoints on NFS/Lustre) the move is a copy into the final path, so
a kill mid-copy leaves a half-written ``last.ckpt``; a killed process also leaves its temporary
file behind. On loading ``--ckpt_path`` Lightning passes ``weights_only=None`` to ``torch.load``
(torch's default then decides) and lets pickle and zip errors through as tracebacks.
:class:`AtomicCheckpointIO` fixes both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from ..errors import CheckpointError
from ..io import fsync_dir, local_path, save_atomic, torch_load


def _process_alive(pid: str) -> bool:
    """Whether process ``pid`` (a string, from a temporary file's name) exists on this machine."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


WEIGHTS_ONLY_OPT_IN = "`--weights_only false` on the command line, `weights_only=False` in Python"
"""How the training CLI lets a trusted checkpoint be unpickled (``torch_load``'s ``opt_in``)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint files that are never half-written, loaded safely.

    Saving (local paths): temporary file in the target's folder, ``fsync``, ``os.replace``,
    ``fsync`` of the folder; temporaries left by killed processes are removed on the next save.
    Remote URLs keep Lightning's fsspec path. Loading: ``weights_only=True`` unless the caller
    passes ``False`` (``--weights_only false``); errors name the file (:class:`CheckpointError`).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        local = local_path(path)
        if local is None or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        for stale in local.parent.glob(f".{local.name}.tmp-*"):
            if not _process_alive(stale.name.rpartition("-")[2]):
                stale.unlink(missing_ok=True)  # left by a killed writer
        save_atomic(checkpoint, local)
        fsync_dir(local.parent)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read a Lightning checkpoint; ``weights_only`` defaults to True."""
        checkpoint = torch_load(
            path, allow_pickle=weights_only is False, map_location=map_location, opt_in=WEIGHTS_ONLY_OPT_IN
        )
        if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint or "global_step" not in checkpoint:
            keys = sorted(checkpoint)[:8] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
            raise CheckpointError(
                f"{path} is not a Lightning training checkpoint (found {keys}); to start from model weights "
                f"use --model.init_args.weights {path}"
            )
        return dict(checkpoint)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """``last.ckpt`` in the first ``ModelCheckpoint``'s folder (where ``--ckpt_path last`` looks)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
