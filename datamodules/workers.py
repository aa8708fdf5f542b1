"""DataLoader worker start-up: pre-emption signals are for the main process."""

from __future__ import annotations

import os
import signal

from lightning.fabric.utilities.seed import pl_worker_init_function

WORKER_IGNORED_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
"""Signals DataLoader workers ignore: pre-emption signals are for the main process."""


def init_worker(worker_id: int, rank: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: ignore :data:`WORKER_IGNORED_SIGNALS`, then seed as Lightning does.

    Slurm (scancel, the time limit) and ``pkill -f`` send SIGTERM to every process of a job. A
    worker that died of it first ended the run with "DataLoader worker is killed by signal"
    before the main process could save its checkpoint. The main process saves, exits and shuts
    its workers down (they also leave within seconds once it is gone; one hung in I/O stays
    until the job's final SIGKILL, as torch's ``terminate()`` fallback sends SIGTERM).
    ``rank``: the process's global rank, which Lightning also passes.
    """
    for name in WORKER_IGNORED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank)  # what Lightning adds to loaders without an init function
