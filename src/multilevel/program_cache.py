"""Bounded caches of compiled programs, and one call that frees them all.

Every XLA program compiled on the CPU keeps its machine code in memory maps of its own;
a fit compiles a few programs and holds about 800 maps (measured: three radon fits of
different formulas took a process from 759 to 3,228 maps). Linux allows 65,530 maps per
process (``vm.max_map_count``); past it, XLA's next compile segfaults. The test suite hit
that at 64,278 maps, and so would a long session fitting a hundred different models.
So each cache of compiled programs here keeps the ``MAX_PROGRAMS`` used most recently
(a program evicted is compiled again, or read from the persistent compilation cache, if
it is needed again), and ``clear_compiled()`` drops every one of them and JAX's own
caches (3,228 -> 1,508 maps in the measurement above).
"""

from __future__ import annotations

import ctypes
import gc
import threading
import weakref
from collections import OrderedDict

#: Programs a cache keeps unless it says otherwise: a K-fold or SBC run reuses one; 16
#: distinct models in a session stay compiled (about 13,000 maps at most per cache). The
#: sampler keeps fewer, as its programs are the largest (``nuts.MAX_SAMPLERS``).
MAX_PROGRAMS = 16

_CACHES: weakref.WeakSet = weakref.WeakSet()
_evicted = threading.Event()  # some cache forgot a program since JAX's caches were cleared


class ProgramCache(OrderedDict):
    """A dict of compiled programs that keeps the ``maxsize`` used most recently (reading
    and setting an entry count as use). Safe to share between threads (the chains')."""

    def __init__(self, maxsize: int = MAX_PROGRAMS):
        super().__init__()
        self.maxsize = maxsize
        self._lock = threading.RLock()
        _CACHES.add(self)

    def __getitem__(self, key):
        with self._lock:
            value = super().__getitem__(key)
            self.move_to_end(key)
            return value

    def get(self, key, default=None):
        with self._lock:
            return self[key] if key in self else default

    def __setitem__(self, key, value):
        with self._lock:
            super().__setitem__(key, value)
            self.move_to_end(key)
            while len(self) > self.maxsize:
                self.popitem(last=False)
                _evicted.set()

    def __hash__(self):  # held in a WeakSet: by identity
        return id(self)

    def __eq__(self, other):
        return self is other


def clear_compiled() -> None:
    """Drop every compiled program this package and JAX hold in memory (the persistent
    compilation cache on disk stays): for long sessions, and between test modules."""
    import jax

    for cache in list(_CACHES):
        cache.clear()
    jax.clear_caches()
    gc.collect()
    return_freed_memory()


def release_evicted() -> None:
    """Clear JAX's own caches once any cache here has forgotten a program.

    Forgetting a compiled program is not enough to free its memory: JAX keeps what it
    traced and compiled for every shape of the functions the program called (NumPyro's,
    its own jitted helpers, the log-likelihood's), for as long as they live. A process
    fitting 40 data sizes grew by about 35 MB a size with the sampler's own cache bounded
    (``benchmarks/soak.py``: 535 MB after the first fit, 1,663 MB after the 40th).
    Called where no program is being compiled (``nuts.sample``, before it compiles);
    the programs this package holds stay compiled, and others are traced again (and read
    from the persistent compilation cache) when next needed."""
    if not _evicted.is_set():
        return
    import jax

    _evicted.clear()
    jax.clear_caches()
    gc.collect()
    return_freed_memory()


def return_freed_memory() -> None:
    """Give the memory the C heap holds free back to the system (glibc's
    ``malloc_trim``; nothing elsewhere). Compiling and freeing programs leaves the heap
    fragmented, and freed pages stay with the process: after dropping every compiled
    program of 12 fits the resident memory stayed at 1,204 MB, and fell to 489 MB once
    trimmed (``benchmarks/soak.py``'s model)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return
    trim(0)
