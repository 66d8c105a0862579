"""What a model learns about data it never holds in memory: a stand-in for ``Design``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multilevel.formula import GroupTerm


@dataclass(frozen=True)
class BlockSummary:
    """One varying-effects term: a :class:`~multilevel.design.GroupBlock` without Z and codes."""

    term: GroupTerm
    coefs: tuple[str, ...]  # covariate names, e.g. ("Intercept", "floor")
    levels: tuple[str, ...]  # (L,) level labels, sorted as build_design sorts them
    scales: np.ndarray  # (q,) sd of each covariate (1 for constant columns)

    @property
    def group(self) -> str:
        return self.term.group


@dataclass(frozen=True)
class DataSummary:
    """What a model needs to know about data it never holds in memory."""

    n: int  # rows
    response: str
    columns: tuple[str, ...]  # (p,) population-level design columns, named as build_design
    y_mean: float
    y_sd: float  # population sd (ddof=0), as np.std
    x_mean: np.ndarray  # (p,)
    x_sd: np.ndarray  # (p,) ddof=0
    x_rms: np.ndarray  # (p,) sqrt(mean(x^2))
    blocks: tuple[BlockSummary, ...]

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.columns

    @property
    def group(self) -> str:
        """The one grouping factor, e.g. ``county``."""
        return self.blocks[0].group
