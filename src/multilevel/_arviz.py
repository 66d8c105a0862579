"""ArviZ, imported on first use and without its refactor announcement on every run of
our CLI.

``az`` stands for the ``arviz`` module (``az.loo(...)``, ``az.InferenceData``) but
imports it only when the first attribute is read: ArviZ brings matplotlib.pyplot,
scipy.stats and xarray (1.4 s after JAX on 2 cores), which importing ``multilevel.Model``
or ``multilevel.Fit`` should not pay before a fit is made. A fit starts that import on a
thread of its own (``import_in_background``) so that it runs while the sampler compiles
and samples, instead of after the draws: 1 s less for a 24 s VerbAgg fit.
"""

from __future__ import annotations

import sys
import threading
import warnings
from functools import cache
from types import ModuleType

__all__ = ["az", "import_in_background"]

# ArviZ 0.23 announces its refactor once a day on import (a FutureWarning). The filter
# is installed once, here on the importing thread, rather than around the import: a
# ``catch_warnings`` block on a second thread would swap the process's filters under the
# main thread's feet.
REFACTOR_ANNOUNCEMENT = r"\s*ArviZ is undergoing a major refactor"
warnings.filterwarnings("ignore", message=REFACTOR_ANNOUNCEMENT, category=FutureWarning)


@cache
def _imported() -> ModuleType:
    import arviz

    return arviz


def import_in_background() -> None:
    """Import ArviZ and build a first (empty) InferenceData on another thread, unless
    that was done: the fit that calls this needs both after its draws. Not a daemon
    thread, so a process that ends early waits for the import (at most the import's
    1.4 s) instead of ending while a module is half imported."""
    if "arviz" in sys.modules:
        return
    threading.Thread(target=_warm, name="multilevel-import-arviz").start()


def _warm() -> None:
    try:
        import numpy as np

        # xarray's first variable imports its optional array modules (dask's, 0.2 s)
        _imported().from_dict(posterior={"warm": np.zeros((1, 1))})
    except Exception:  # the fit's own thread imports it again and reports the error
        return


class _ImportedOnFirstUse:
    """Every attribute is the ``arviz`` module's own, read after importing it once."""

    def __getattr__(self, name: str):
        return getattr(_imported(), name)

    def __repr__(self) -> str:
        return "<arviz, imported on first use>"


az = _ImportedOnFirstUse()
