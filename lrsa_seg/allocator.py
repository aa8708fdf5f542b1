"""Keep freed CPU memory for reuse: the allocator setting that ``lrsa-seg`` runs with.

glibc's ``malloc`` serves every block above the mmap threshold (128 KiB, adapting up to 32 MiB)
with a fresh ``mmap`` and gives it back to the kernel on ``free``. A segmentation network's
activations are such blocks (a 48-channel stride-4 map of a 1024² image is 12 MiB, its
8x-wide MLP hidden map 96 MiB), so every forward pass faults in every page of every activation
again: measured on the 2-vCPU benchmark machine, about 380,000 minor page faults per 1024²
pass of the fused LRFormer-T and 1.32 s, against 0 faults and 0.84 s with the setting below
(same process, same outputs). Torch's CPU allocator has no cache of its own.

:func:`retain_freed_memory` tells glibc to serve all blocks from its heap (``M_MMAP_MAX = 0``)
and never to trim it (``M_TRIM_THRESHOLD``), so the second pass reuses the pages of the first
(a 2048² image's 150-class logits alone are 2.4 GiB). The cost: the process keeps its peak
footprint until it exits (and blocks that do not fit a freed hole add to it), which a training
or inference process mostly does anyway. The ``lrsa-seg`` command applies it at start unless
``LRSA_SEG_ALLOCATOR=system``; in Python call it once, early.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["ALLOCATOR_ENV", "apply_allocator_setting", "release_freed_memory", "retain_freed_memory"]

ALLOCATOR_ENV = "LRSA_SEG_ALLOCATOR"
"""``retain`` (default): :func:`retain_freed_memory`; ``system``: leave malloc as it is."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER = -1  # M_TRIM_THRESHOLD is a size_t inside glibc: -1 becomes SIZE_MAX, i.e. never trim


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (musl has a ``mallopt`` that ignores these settings), else None.

    Cached: ``find_library`` runs ``ldconfig`` in a subprocess.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError, TypeError):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


def retain_freed_memory() -> bool:
    """Make glibc ``malloc`` reuse freed memory instead of unmapping it (process-wide).

    Affects allocations made after the call. Returns True when applied, False where the C
    library is not glibc (macOS, musl, Windows: nothing is changed).
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER))


def release_freed_memory() -> bool:
    """Give the free memory of glibc's heap back to the kernel now (``malloc_trim(0)``).

    For a process that goes idle beside others (a benchmark worker between its turns) and
    should not hold its peak footprint meanwhile. Returns False where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def apply_allocator_setting() -> str:
    """Apply ``$LRSA_SEG_ALLOCATOR`` (``retain`` unless set); returns the setting in effect.

    Raises ``ValueError`` naming the variable for any other value.
    """
    setting = os.environ.get(ALLOCATOR_ENV, "retain").strip().lower() or "retain"
    if setting not in ("retain", "system"):
        raise ValueError(f"{ALLOCATOR_ENV}={setting!r}: expected 'retain' or 'system'")
    if setting == "retain" and not retain_freed_memory():
        return "system"
    return setting
