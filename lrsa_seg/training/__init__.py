"""Training machinery around Lightning: checkpoint files, same-result resume, pre-emption, the optimiser."""

from __future__ import annotations

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .checkpoint_io import WEIGHTS_ONLY_OPT_IN, AtomicCheckpointIO, last_checkpoint_path
from .optim import parameter_groups, warmup_poly_factor
from .preemption import PREEMPTED_EXIT_BASE, Preemption
from .resume import ResumableDataPosition

__all__ = [
    "PREEMPTED_EXIT_BASE",
    "WEIGHTS_ONLY_OPT_IN",
    "AtomicCheckpointIO",
    "Preemption",
    "ResumableDataPosition",
    "harden_trainer",
    "last_checkpoint_path",
    "parameter_groups",
    "warmup_poly_factor",
]


def harden_trainer(trainer: L.Trainer) -> L.Trainer:
    """Install the checkpoint IO and the two fault-tolerance callbacks on ``trainer``.

    :class:`AtomicCheckpointIO` unless a custom CheckpointIO is set; :class:`ResumableDataPosition`
    and :class:`Preemption` first among the callbacks, so they see every batch before the others.
    """
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    for position, kind in enumerate((ResumableDataPosition, Preemption)):
        if not any(isinstance(c, kind) for c in trainer.callbacks):
            trainer.callbacks.insert(position, kind())
    return trainer
