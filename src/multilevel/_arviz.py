"""ArviZ, imported on first use and without its refactor announcement on every run of
our CLI.

``az`` stands for the ``arviz`` module (``az.loo(...)``, ``az.InferenceData``) but
imports it only when the first attribute is read: ArviZ brings matplotlib.pyplot,
scipy.stats and xarray, 0.8 s in all (``python -X importtime``, 2 cores), which importing
``multilevel.Model`` or ``multilevel.Fit`` should not pay before a fit is made.
"""

from __future__ import annotations

import warnings
from functools import cache
from types import ModuleType

__all__ = ["az"]


@cache
def _imported() -> ModuleType:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


class _ImportedOnFirstUse:
    """Every attribute is the ``arviz`` module's own, read after importing it once."""

    def __getattr__(self, name: str):
        return getattr(_imported(), name)

    def __repr__(self) -> str:
        return "<arviz, imported on first use>"


az = _ImportedOnFirstUse()
