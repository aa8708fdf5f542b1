"""Pre-emption and owed validations: a signal saves ``last.ckpt``; no validation is lost to a kill.

Outside SLURM, Lightning turns SIGTERM into ``SIGTERMException`` (a ``SystemExit`` with exit
status 0) at the next batch boundary, without a checkpoint, and does not handle SIGUSR1 at all
(the default action kills the process). Under SLURM with auto-requeue it saves
``hpc_ckpt_N.ckpt`` and calls ``scontrol requeue`` on SIGUSR1. :class:`Preemption` replaces
these handlers while training: SIGTERM or SIGUSR1 makes the run save ``last.ckpt`` at the end of
the current training batch (after the validation, if one follows that batch) and exit with
status ``128 + signal number`` (143 for SIGTERM, 138 for SIGUSR1), the shell's code for "killed
by that signal", so a job script never mistakes a pre-empted run for a finished one. Resume with
``--ckpt_path last``. Under SLURM this also replaces Lightning's auto-requeue: requeueing is left
to the job script (``sbatch --requeue`` and resubmission on exit status 138/143), or leave
SIGUSR1 out of ``Preemption.signals``.

It uses two pieces of Lightning's loop internals (pinned in pyproject.toml to the minor versions
the tests ran): ``fit_loop.epoch_loop._should_check_val_fx`` (Lightning's own decision whether a
validation follows a batch) and ``val_loop.restarting`` / ``restarted_mid_evaluation``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from ..errors import ConfigError
from .checkpoint_io import last_checkpoint_path
from .resume import callback_state

log = logging.getLogger(__name__)

PREEMPTED_EXIT_BASE = 128
"""A pre-empted run exits with ``PREEMPTED_EXIT_BASE + signal number``."""


class Preemption(Callback):
    """A checkpoint plus a clear exit on SIGTERM/SIGUSR1, and the validation a kill interrupted.

    - Signals: between train start and train end, the listed signals set a flag; at the end of
      the current training batch the run saves ``last.ckpt`` (in the first ``ModelCheckpoint``
      folder, so ``--ckpt_path last`` finds it) and exits with ``128 + signum``. When a
      validation follows that batch, the run validates and stops one batch later (a resume
      from right before a validation would skip it). Under DDP the ranks agree on the step.
    - Validation: a step-interval ``last.ckpt`` is often written at the batch right before a
      validation. Lightning resumes such a checkpoint past that validation, so a run killed
      during it (SIGKILL, out of memory, node failure) would silently lose its metrics and
      best-checkpoint candidate. The checkpoint records that the validation was still due,
      and the resumed run validates first (also when the kill came after that validation had
      ended: the same weights log the same metrics once more).

    Args:
        signals: names of the signals that pre-empt the run. The DataLoader workers of this
            project's datamodules ignore SIGTERM, SIGUSR1 and SIGUSR2
            (``datamodules.workers.WORKER_IGNORED_SIGNALS``), so a signal sent to the whole job
            reaches the save; with other signals the workers may die first.
    """

    def __init__(self, signals: Sequence[str] = ("SIGTERM", "SIGUSR1")) -> None:
        super().__init__()
        self.signals = tuple(signals)
        for name in self.signals:
            if not isinstance(getattr(signal, name, None), signal.Signals):
                raise ConfigError(f"Preemption.signals: unknown signal {name!r}")
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._validation_due = False  # a validation follows the batch just trained and has not ended
        self._validate_on_resume = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Forget the signal and the owed validation of an earlier run of this trainer."""
        self.received = None
        self._validation_due = self._validate_on_resume = False

    # ---- owed validation ----
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Record whether the validation after the batch just trained is still due."""
        if trainer.state.fn == TrainerFn.FITTING:
            checkpoint.setdefault("callbacks", {})[self.state_key] = {"validation_due": self._validation_due}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Remember a validation the checkpoint owes."""
        state = callback_state(checkpoint, self.state_key)
        if state and trainer.state.fn == TrainerFn.FITTING:
            self._validate_on_resume = bool(state.get("validation_due"))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """A new batch: no validation is due yet."""
        self._validation_due = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Take over the signals, if the sanity check did not run; run a validation the checkpoint owed."""
        self._install()
        val_loop = trainer.fit_loop.epoch_loop.val_loop
        # A checkpoint from inside a validation: Lightning finishes that one itself (2.5+ knows it).
        mid_evaluation = getattr(val_loop, "restarted_mid_evaluation", False)
        if self._validate_on_resume and not mid_evaluation:
            self._validate_on_resume = False
            if trainer.is_global_zero:
                log.warning(
                    "the checkpoint was saved right before a validation (step %d) that may not have finished: "
                    "validating now",
                    trainer.global_step,
                )
            self._run_owed_validation(trainer, pl_module)

    @staticmethod
    def _run_owed_validation(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Run the fit's validation as Lightning's training epoch loop does, then its epoch-end saves.

        Runs before the other callbacks' ``on_train_start``. When the checkpoint closed an epoch,
        ``current_epoch`` already counts the next one (the logged step is right, the epoch column
        one higher than in an uninterrupted run).
        """
        val_loop = trainer.fit_loop.epoch_loop.val_loop
        val_loop.restarting = False  # a fresh pass over all batches, not the restored position of the last one
        trainer.validating = True
        val_loop.run()
        trainer.training = True
        # A ModelCheckpoint that saves at the end of the training epoch (best-by-val/mIoU with one
        # validation per epoch) would otherwise never see these metrics: that epoch end has passed.
        for callback in trainer.checkpoint_callbacks:
            callback.on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The validation after the last batch has ended: checkpoints from now on do not owe it."""
        if not trainer.sanity_checking:
            self._validation_due = False

    # ---- signals ----
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def _install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for name in self.signals:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)

    def _uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Take over the signals (Lightning registered its own handlers just before)."""
        self._install()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give the signals back."""
        self._uninstall()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Give the signals back."""
        self._uninstall()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """After a signal: save ``last.ckpt`` and exit with ``128 + signum``.

        Not before a validation: Lightning resumes a checkpoint taken right before one past it,
        so its metrics (and best-checkpoint candidate) would be lost; the run stops at the end of
        the first batch after it instead.
        """
        self._validation_due = self._validation_follows(trainer)
        received = self.received is not None
        if trainer.world_size > 1:
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        if not received or self._validation_due:
            return
        signum = self.received or signal.SIGTERM
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            log.warning(
                "received %s: saved %s at step %d (epoch %d); resume with --ckpt_path last. Exiting with status %d.",
                signal.Signals(signum).name,
                path,
                trainer.global_step,
                trainer.current_epoch,
                PREEMPTED_EXIT_BASE + signum,
            )
        raise SystemExit(PREEMPTED_EXIT_BASE + signum)

    @staticmethod
    def _validation_follows(trainer: L.Trainer) -> bool:
        """Whether Lightning validates right after the training batch that just ended.

        Lightning's own decision (the training epoch loop calls it after this hook), not a copy
        of its rules: epochs between validations, batch or time intervals, the epoch's end.
        """
        return trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)
