"""Convergence diagnostics after every fit, each problem with advice a person can act on."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# Thresholds from Vehtari et al. (2021), "Rank-normalization, folding, and localization".
RHAT_MAX = 1.01
ESS_PER_CHAIN = 100


class ConvergenceWarning(UserWarning):
    """The sampler reported a problem; the message says what to try."""


@dataclass(frozen=True)
class Diagnostics:
    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    tree_depth_saturated: int
    n_draws: int
    chains: int

    def problems(self, centered: bool) -> list[str]:
        """Plain-words description of each problem with what to try."""
        out = []
        if self.divergences:
            other = (
                "centered=False" if centered else "centered=True (when groups hold a lot of data)"
            )
            out.append(
                f"{self.divergences} of {self.n_draws} draws ended in a divergent transition, "
                "so the posterior may be biased. Try fit(target_accept=0.95); try "
                f"{other}; or give the group sds a lighter-tailed prior, e.g. "
                "priors={'sd': ml.HalfNormal(<about the largest plausible sd>)}."
            )
        if self.max_r_hat > RHAT_MAX:
            out.append(
                f"max R-hat is {self.max_r_hat:.3f} (> {RHAT_MAX}): the chains disagree. Run "
                "longer (warmup=2000, draws=2000) and look at trace plots; if it persists, "
                "the model may be poorly identified (check priors and group sizes)."
            )
        need = ESS_PER_CHAIN * self.chains
        if min(self.min_ess_bulk, self.min_ess_tail) < need:
            out.append(
                f"the smallest effective sample size is {min(self.min_ess_bulk, self.min_ess_tail):.0f} "
                f"(< {need}, i.e. {ESS_PER_CHAIN} per chain): estimates of means and "
                "quantiles are noisy. Draw more (e.g. draws=2000) or reparameterise "
                "(centered=True/False)."
            )
        if self.tree_depth_saturated:
            out.append(
                f"{self.tree_depth_saturated} draws hit the maximum tree depth: sampling is "
                "inefficient. Raise max_tree_depth (e.g. 12) or rescale predictors."
            )
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def compute(summary: pd.DataFrame, stats: dict, max_tree_depth: int) -> Diagnostics:
    """Diagnostics from a summary table and sampler statistics of shape (chains, draws)."""
    diverging = np.asarray(stats["diverging"])
    saturated = np.asarray(stats["n_steps"]) >= 2**max_tree_depth - 1
    return Diagnostics(
        divergences=int(diverging.sum()),
        max_r_hat=float(summary["r_hat"].max()),
        min_ess_bulk=float(summary["ess_bulk"].min()),
        min_ess_tail=float(summary["ess_tail"].min()),
        tree_depth_saturated=int(saturated.sum()),
        n_draws=int(diverging.size),
        chains=int(diverging.shape[0]),
    )


def warn(diagnostics: Diagnostics, centered: bool) -> None:
    for problem in diagnostics.problems(centered):
        warnings.warn(problem, ConvergenceWarning, stacklevel=3)
