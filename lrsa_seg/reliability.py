"""Nothing lost, nothing silent: atomic checkpoints, same-result resume, pre-emption, input checks.

What Lightning 2.6 does by itself, and what this module adds (the CLI installs both pieces
on every trainer, see :func:`harden_trainer`):

- Saving. ``TorchCheckpointIO`` serializes to memory and writes through an fsspec
  transaction: a temporary file from ``tempfile.mkstemp()`` (the system temp folder, not the
  checkpoint folder) moved into place with ``shutil.move``, without ``fsync``. Across file
  systems (``/tmp`` local, checkpoints on NFS/Lustre) the move is a copy into the final path,
  so a kill mid-copy leaves a half-written ``last.ckpt``; a killed process also leaves its
  temporary file behind. :class:`AtomicCheckpointIO` writes a temporary file in the same
  folder, ``fsync`` s it, renames it over the target with ``os.replace`` and ``fsync`` s the
  folder.
- Loading ``--ckpt_path``. Lightning passes ``weights_only=None`` to ``torch.load`` (torch's
  default then decides) and lets pickle and zip errors through as tracebacks.
  :class:`AtomicCheckpointIO` loads with ``weights_only=True`` unless ``--weights_only false``
  is given, and reports a missing, corrupt or refused file by name (:class:`CheckpointError`).
- Resuming mid-epoch. Lightning restores the loop counters and runs only the remaining
  batches, but a plain ``DataLoader`` restarts the epoch's order from its first batch (it
  warns), the shuffle and the augmentations follow the global RNG, and the global RNG is not
  in the checkpoint. :class:`FaultTolerance` stores the data position in the checkpoint and
  hands it to the datamodule's ``ResumableSampler`` (order and augmentation seeds are
  functions of seed, epoch and index), and reseeds torch's RNG before every training batch
  from ``(seed, epoch, batch, rank)``, so DropPath/Dropout draws do not depend on history.
- Signals. Outside SLURM, Lightning turns SIGTERM into ``SIGTERMException`` (a
  ``SystemExit`` with exit status 0) at the next batch boundary, without a checkpoint, and does
  not handle SIGUSR1 at all (the default action kills the process). Under SLURM with
  auto-requeue it saves ``hpc_ckpt_N.ckpt`` and calls ``scontrol requeue`` on SIGUSR1.
  :class:`FaultTolerance` replaces these handlers while training: SIGTERM or SIGUSR1 makes the
  run save ``last.ckpt`` at the end of the current training batch (after the validation, if one
  follows that batch) and exit with status ``128 + signal number`` (143 for SIGTERM, 138 for
  SIGUSR1), the shell's code for "killed by that signal", so a job script never mistakes a
  pre-empted run for a finished one. Resume with ``--ckpt_path last``. Under SLURM this also
  replaces Lightning's auto-requeue: requeueing is left to the job script (``sbatch --requeue``
  and resubmission on exit status 138/143), or leave SIGUSR1 out of ``FaultTolerance.signals``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from datamodules.sampler import ResumableSampler, default_seed, derive_seed

from .convert import CheckpointError, local_path, save_atomic, torch_load

log = logging.getLogger(__name__)

_LIGHTNING_MID_EPOCH_RESUME_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"
"""Start of the warning Lightning gives for any mid-epoch resume; hidden once the sampler resumes."""

PREEMPTED_EXIT_BASE = 128
"""A pre-empted run exits with ``PREEMPTED_EXIT_BASE + signal number``."""


class ConfigError(ValueError):
    """A configuration that cannot work; raised before training starts, naming the argument."""


# --- checkpoint files ------------------------------------------------------------------------
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


# --- same-result resume and pre-emption -------------------------------------------------------
class FaultTolerance(Callback):
    """Same-result resume after any kill, and a checkpoint plus a clear exit on SIGTERM/SIGUSR1.

    - Data position: each checkpoint records the next batch to train (epoch, batch) and the
      sampler's seed; on resume the datamodule's ``train_sampler`` (a ``ResumableSampler``)
      starts there, so the resumed epoch neither repeats nor skips samples.
    - Model randomness: torch's RNG is reseeded before every training batch from
      ``(seed, epoch, batch index, rank)``, so DropPath/Dropout draw the same masks after a
      resume as in an uninterrupted run. The seed is ``seed_everything``'s (or a random one),
      kept in the checkpoint.
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
            (``datamodules.base.WORKER_IGNORED_SIGNALS``), so a signal sent to the whole job
            reaches the save; with other signals the workers may die first.
    """

    def __init__(self, signals: Sequence[str] = ("SIGTERM", "SIGUSR1")) -> None:
        super().__init__()
        self.signals = tuple(signals)
        for name in self.signals:
            if not isinstance(getattr(signal, name, None), signal.Signals):
                raise ConfigError(f"FaultTolerance.signals: unknown signal {name!r}")
        self.seed: int | None = None
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._warned = False
        self._validation_due = False  # a validation follows the batch just trained and has not ended
        self._validate_on_resume = False

    # ---- seed and data position ----
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Pick the run's seed (a resumed run replaces it with the checkpoint's)."""
        self.seed = default_seed()
        self.received = None
        self._validation_due = self._validate_on_resume = False

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

    def next_position(self, trainer: L.Trainer) -> tuple[int, int]:
        """``(epoch, batch)`` of the next training batch, given the batches trained so far."""
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches >= trainer.num_training_batches:
            return trainer.current_epoch + 1, 0
        return trainer.current_epoch, batches

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Record the seed and where training continues."""
        state: dict[str, Any] = {"seed": self.seed}
        checkpoint.setdefault("callbacks", {})[self.state_key] = state  # completed below when fitting
        if trainer.state.fn != TrainerFn.FITTING:
            return
        state["validation_due"] = self._validation_due
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
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if not state:
            if trainer.state.fn == TrainerFn.FITTING:
                log.warning("the checkpoint has no FaultTolerance state: data order and RNG continue from scratch")
            return
        self.seed = state["seed"]
        if trainer.state.fn != TrainerFn.FITTING:
            return
        self._validate_on_resume = bool(state.get("validation_due"))
        if "epoch" not in state:
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
        self._validation_due = False
        torch.manual_seed(derive_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank))

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


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """``last.ckpt`` in the first ``ModelCheckpoint``'s folder (where ``--ckpt_path last`` looks)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def harden_trainer(trainer: L.Trainer) -> L.Trainer:
    """Install :class:`AtomicCheckpointIO` (unless a custom CheckpointIO is set) and :class:`FaultTolerance`."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    if not any(isinstance(c, FaultTolerance) for c in trainer.callbacks):
        trainer.callbacks.insert(0, FaultTolerance())
    return trainer


# --- configuration checks, before any training --------------------------------------------
def _init_args(config: Any, key: str) -> dict[str, Any]:
    section = config.get(key) if config is not None else None
    if section is None:
        return {}
    args = section.get("init_args", section) if hasattr(section, "get") else {}
    return dict(args.items()) if hasattr(args, "items") else {}


def check_linked_arguments(config: Any, datamodule: Any) -> None:
    """The model's ``num_classes``/``class_names`` come from the data; a different value given by hand is an error."""
    model = _init_args(config, "model")
    num_classes = getattr(datamodule, "num_classes", None)
    given = model.get("num_classes")
    if given is not None and num_classes is not None and given != num_classes:
        raise ConfigError(
            f"--model.init_args.num_classes={given} disagrees with the data: {type(datamodule).__name__} has "
            f"{num_classes} classes. The CLI takes num_classes from the data, so leave it out of the command "
            "line and config; a --ckpt_path checkpoint of a model with other classes cannot be used with this "
            "data (to fine-tune on new classes use --model.init_args.weights with weights_scope backbone)."
        )
    names = model.get("class_names")
    classes = getattr(datamodule, "classes", None)
    if names is not None and classes is not None and list(names) != list(classes):
        raise ConfigError(
            f"--model.init_args.class_names {list(names)} disagrees with the data's classes {list(classes)}; "
            "the CLI takes them from the data, leave it out."
        )


_DATA_PATHS = ("root", "train_images", "train_masks", "val_images", "val_masks", "test_images", "test_masks")


def check_data_arguments(config: Any, subcommand: str | None) -> None:
    """Folders that must exist and augmentation settings that cannot work, named by argument."""
    data = _init_args(config, "data")
    if subcommand == "predict" and data.get("predict_path") is not None:
        names: tuple[str, ...] = ("predict_path",)
    else:
        names = _DATA_PATHS
    for name in names:
        value = data.get(name)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"--data.init_args.{name}: {value} does not exist (working directory {Path.cwd()})")
    if subcommand != "fit":
        return
    crop, base, ratios = data.get("crop_size"), data.get("base_size"), data.get("ratio_range")
    if ratios is not None and not 0 < ratios[0] <= ratios[1]:
        raise ConfigError(f"--data.init_args.ratio_range must be 0 < low <= high, got {list(ratios)}")
    if base is not None and min(base) < 1:
        raise ConfigError(f"--data.init_args.base_size must be positive, got {list(base)}")
    cat_max_ratio = data.get("cat_max_ratio")
    if cat_max_ratio is not None and not 0 < cat_max_ratio <= 1:
        raise ConfigError(f"--data.init_args.cat_max_ratio must be in (0, 1] (1 disables it), got {cat_max_ratio}")
    if crop is not None and base is not None and ratios is not None:
        largest_short = min(base) * ratios[1]
        if min(crop) > largest_short:
            raise ConfigError(
                f"--data.init_args.crop_size {list(crop)} can never be filled: training images are rescaled to "
                f"fit base_size {list(base)} x ratio_range {list(ratios)}, so their short side is at most "
                f"{largest_short:g} px and every crop would be mostly padding. Lower crop_size or raise "
                "base_size / ratio_range."
            )


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError)
"""Errors the CLI reports as one line (no traceback): bad input, not a bug."""


def user_error_in(error: BaseException) -> BaseException | None:
    """The :data:`USER_ERRORS` instance in ``error``'s chain of causes (jsonargparse wraps them), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, USER_ERRORS):
            return seen
        seen = seen.__cause__
    return None
