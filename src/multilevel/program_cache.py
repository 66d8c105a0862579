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

import gc
import threading
import weakref
from collections import OrderedDict

#: Programs each cache keeps: a K-fold or SBC run reuses one; 16 distinct models in a
#: session stay compiled (about 13,000 maps at most per cache).
MAX_PROGRAMS = 16

_CACHES: weakref.WeakSet = weakref.WeakSet()


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
