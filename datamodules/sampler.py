"""A training sampler whose order and augmentation seeds are functions of (seed, epoch): resumable mid-epoch.

A run killed in the middle of an epoch and resumed from its checkpoint must see the same
samples, in the same order and with the same augmentation, as a run that was never
interrupted. Torch's ``RandomSampler`` draws its permutation from the global RNG when the
loader's iterator is made, and the augmentations followed the global RNG too, so neither
could be replayed. Here both are pure functions of ``(seed, epoch, index)``, and the sampler
can start an epoch after the samples a checkpoint says were already used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

SeededIndex = tuple[int, int]
"""``(sample index, augmentation seed)``, what :class:`ResumableSampler` yields."""


def default_seed() -> int:
    """The run's seed: ``PL_GLOBAL_SEED`` (set by ``seed_everything``), else a fresh random one."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that is a pure function of ``keys`` (numpy ``SeedSequence``), e.g. ``(seed, epoch, index)``."""
    return int(np.random.SeedSequence([k % 2**64 for k in keys]).generate_state(1)[0])


class ResumableSampler(DistributedSampler):
    """Shuffled training order that is a function of ``(seed, epoch)``, with per-sample augmentation seeds.

    Yields ``(index, augmentation seed)`` pairs (:data:`SeededIndex`); the dataset seeds its
    transforms with the second value, which is ``derive_seed(seed, epoch, index)``. Under
    ``torch.distributed`` each process takes every ``num_replicas``-th sample of the same
    permutation (padded to a multiple, as ``DistributedSampler``); it is a
    ``DistributedSampler``, so Lightning does not wrap or replace it.

    ``load_state_dict({"seed", "epoch", "start"})`` makes the iteration of epoch ``epoch``
    begin after its first ``start`` samples of this process (what a mid-epoch checkpoint had
    consumed); other epochs are complete. ``len()`` stays the full epoch, as Lightning expects.

    Args:
        dataset: the training dataset (only its length is used).
        seed: base seed (default: :func:`default_seed`).
        shuffle: shuffle (else dataset order).
        num_replicas: processes (default: the ``torch.distributed`` world size, or 1).
        rank: this process (default: the ``torch.distributed`` rank, or 0).
    """

    def __init__(
        self,
        dataset: Dataset,
        seed: int | None = None,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=default_seed() if seed is None else seed,
        )
        self._resume: tuple[int, int] | None = None  # (epoch, samples of this process already used)

    def order(self, epoch: int) -> list[int]:
        """All sample indices of ``epoch`` for this process, ``(num_samples,)``."""
        size = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            indices = torch.randperm(size, generator=generator).tolist()
        else:
            indices = list(range(size))
        indices += (indices * (self.total_size // max(1, size) + 1))[: self.total_size - size]
        return indices[self.rank : self.total_size : self.num_replicas]

    def sample_seed(self, epoch: int, index: int) -> int:
        """Augmentation seed of sample ``index`` in ``epoch``."""
        return derive_seed(self.seed, epoch, index)

    def __iter__(self) -> Iterator[SeededIndex]:  # type: ignore[override]
        epoch = self.epoch
        start = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        return iter([(index, self.sample_seed(epoch, index)) for index in self.order(epoch)[start:]])

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch; a pending resume position of another epoch is dropped."""
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None
        super().set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch"}``; a checkpoint adds ``"start"``, the samples of the epoch already used."""
        return {"seed": int(self.seed), "epoch": int(self.epoch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (see :meth:`state_dict`): same seed, epoch, and skip ``start`` samples."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        start = int(state.get("start", 0))
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"resume position {start} is outside the epoch's {self.num_samples} samples")
        self._resume = (self.epoch, start)
