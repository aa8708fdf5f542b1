"""Same-result resume: the data position and the model's randomness survive any kill.

Lightning restores the loop counters and runs only the remaining batches of a resumed epoch,
but a plain ``DataLoader`` restarts the epoch's order from its first batch (it warns), the
shuffle and the augmentations follow the global RNG, and the global RNG is not in the
checkpoint. :class:`ResumableDataPosition` stores the data position in the checkpoint and hands
it to the datamodule's ``ResumableSampler`` (order and augmentation seeds are functions of seed,
epoch and index), and reseeds torch's RNG before every training batch from
``(seed, epoch, batch, rank)``, so DropPath/Dropout draws do not depend on history.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from datamodules.sampler import ResumableSampler, default_seed, derive_seed

log = logging.getLogger(__name__)

LEGACY_STATE_KEY = "FaultTolerance"
"""Where checkpoints written before the split (lrsa-seg 0.1) keep this callback's state."""

_LIGHTNING_MID_EPOCH_RESUME_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"
"""Start of the warning Lightning gives for any mid-epoch resume; hidden once the sampler resumes."""


def callback_state(checkpoint: dict[str, Any], state_key: str) -> dict[str, Any] | None:
    """A callback's state in ``checkpoint``, or the pre-split ``FaultTolerance`` state that held it."""
    states = checkpoint.get("callbacks", {})
    return states.get(state_key) or states.get(LEGACY_STATE_KEY)


class ResumableDataPosition(Callback):
    """Record where training continues and the run's seed; resume the data order and RNG from them.

    - Data position: each checkpoint records the next batch to train (epoch, batch) and the
      sampler's seed; on resume the datamodule's ``train_sampler`` (a ``ResumableSampler``)
      starts there, so the resumed epoch neither repeats nor skips samples.
    - Model randomness: torch's RNG is reseeded before every training batch from
      ``(seed, epoch, batch index, rank)``, so DropPath/Dropout draw the same masks after a
      resume as in an uninterrupted run. The seed is ``seed_everything``'s (or a random one),
      kept in the checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seed: int | None = None
        self._warned = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Pick the run's seed (a resumed run replaces it with the checkpoint's)."""
        self.seed = default_seed()

    def _sampler(self, trainer: L.Trainer) -> ResumableSampler | None:
        sampler = getattr(trainer.datamodule, "train_sampler", None)
        if isinstance(sampler, ResumableSampler):
            return sampler
        if not self._warned and trainer.is_global_zero:
            log.warning(
                "the training data order cannot be restored on resume (the datamodule has no ResumableSampler "
                "`train_sampler`): a mid-epoch resume may repeat or skip samples"
            )
        self._warned = True
        return None

    @staticmethod
    def next_position(trainer: L.Trainer) -> tuple[int, int]:
        """``(epoch, batch)`` of the next training batch, given the batches trained so far."""
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches >= trainer.num_training_batches:
            return trainer.current_epoch + 1, 0
        return trainer.current_epoch, batches

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Record the seed and where training continues."""
        state: dict[str, Any] = {"seed": self.seed}
        checkpoint.setdefault("callbacks", {})[self.state_key] = state
        if trainer.state.fn != TrainerFn.FITTING:
            return
        sampler = self._sampler(trainer)
        if sampler is not None:
            epoch, batch = self.next_position(trainer)
            state.update(
                epoch=epoch,
                batch=batch,
                batch_size=getattr(trainer.datamodule, "batch_size", None),
                world_size=trainer.world_size,
                sampler_seed=sampler.seed,
            )

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Restore the seed and put the sampler at the next batch (runs before the loader is made)."""
        state = callback_state(checkpoint, self.state_key)
        if not state:
            if trainer.state.fn == TrainerFn.FITTING:
                log.warning("the checkpoint has no data-position state: data order and RNG continue from scratch")
            return
        self.seed = state["seed"]
        if trainer.state.fn != TrainerFn.FITTING or "epoch" not in state:
            return
        sampler = self._sampler(trainer)
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if sampler is None or batch_size is None:
            return
        if (state["batch_size"], state["world_size"]) != (batch_size, trainer.world_size):
            log.warning(
                "resuming with batch size %s x %s processes (checkpoint: %s x %s): the data order differs "
                "from an uninterrupted run",
                batch_size,
                trainer.world_size,
                state["batch_size"],
                state["world_size"],
            )
        sampler.load_state_dict(
            {"seed": state["sampler_seed"], "epoch": state["epoch"], "start": state["batch"] * batch_size}
        )
        # Lightning warns that a mid-epoch resume "can cause unreliable results" unless the
        # DataLoader itself has a state_dict; here the sampler carries the position instead.
        warnings.filterwarnings("ignore", message=_LIGHTNING_MID_EPOCH_RESUME_WARNING, category=PossibleUserWarning)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Reseed torch's RNG from (seed, epoch, batch, rank): model randomness independent of history."""
        assert self.seed is not None
        torch.manual_seed(derive_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank))
