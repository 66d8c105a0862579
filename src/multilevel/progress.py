"""One progress bar for every long loop: tqdm on a terminal, a silent stand-in otherwise.

A bar is drawn only when asked for *and* stderr is a terminal, so logs, pipes and CI
output stay clean. Every caller gets the same object whatever the outcome, so loops never
test for ``None``::

    with progress_bar(total=len(folds), desc="K-fold", unit="fold", show=progress) as bar:
        for fold in folds:
            ...
            bar.update(1)
"""

from __future__ import annotations

import sys
import threading


class SilentBar:
    """The bar's interface, doing nothing (not on a terminal, or not asked for)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _ThreadSafe:
    """A bar updated from several threads (NUTS chains run in a thread pool)."""

    def __init__(self, bar):
        self._bar = bar
        self._lock = threading.Lock()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        with self._lock:
            self._bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def on_terminal() -> bool:
    """Whether stderr is an interactive terminal (where bars are drawn)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(
    total: int | None,
    desc: str,
    unit: str = "it",
    show: bool = True,
    initial: int = 0,
    leave: bool = False,
    unit_scale: bool = False,
    threads: bool = False,
):
    """A tqdm bar on stderr when ``show`` and stderr is a terminal, else ``SilentBar()``.

    ``threads=True`` serialises updates from several threads."""
    if not show or not on_terminal():
        return SilentBar()
    from tqdm.auto import tqdm  # imported only when a bar is drawn (import time)

    bar = tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        file=sys.stderr,
        leave=leave,
    )
    return _ThreadSafe(bar) if threads else bar
