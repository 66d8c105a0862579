"""Ctrl-C that is never lost: the CLI records it, and the sampler checks the record.

Python turns SIGINT into a KeyboardInterrupt in the main thread at the next bytecode it
runs. When that happens inside code whose exceptions are discarded, the interrupt is
gone: a Ctrl-C right as XLA's first compile began was lost in 3 of 9 tries (the fit then
ran to its end), while at 0.1-2 s into the compile it always stopped the run. The CLI
therefore runs its commands under ``recorded()``, whose handler notes the request before
raising, and the sampler calls ``check()`` at its checkpoints (after compiling, between
chunks), which raises it again if it was swallowed. Library users keep Python's own
handler: nothing is installed unless ``recorded()`` is used.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()


@contextmanager
def recorded() -> Iterator[None]:
    """Run the block with a SIGINT handler that records Ctrl-C as well as raising it.
    Only in the main thread (the only one that can set a handler); the previous handler
    is restored and the record cleared afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _record_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was recorded (even if its first raise was lost)."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _record_and_raise(signum, frame) -> None:
    _requested.set()
    raise KeyboardInterrupt
