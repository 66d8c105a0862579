"""Whether a discrete model's group effects are sampled centred: chosen from the data.

Non-centred effects (scaled standard normals) suit groups with little data; groups rich
in data make a funnel between each sd and its standardised effects that NUTS crosses
only with small steps. Centred, with the intercept as the groups' mean (hierarchical
centring, ``numpyro_model.centring_columns``), they mix far better: a bernoulli model of
200,000 rows in 1,000 groups gave a min bulk ESS of 462 in 17.8 s non-centred and 2,424
in 7.9 s centred. The Gaussian family decides per term in ``gaussian_collapsed.plan``.
"""

from __future__ import annotations

import numpy as np

from multilevel.design import Design

FAMILIES = ("bernoulli", "binomial", "poisson")
MIN_LEVELS = 50  # few groups estimate their sd poorly; stay with the safer default


def rich_groups(design: Design, family: str) -> bool:
    """True for a bernoulli, binomial or poisson model with one group term, an intercept
    varying over at least ``MIN_LEVELS`` groups, whose median group says more about its
    mean than the spread of group means does: between / v_j > 1 by moments on the link
    scale, v_j the sampling variance of group j's empirical logit (or log rate)."""
    if family not in FAMILIES or len(design.blocks) != 1:
        return False
    block = design.blocks[0]
    levels = len(block.levels)
    if "Intercept" not in block.coefs or levels < MIN_LEVELS:
        return False
    trials = design.trials if design.trials is not None else np.ones(design.n)
    n_j = np.bincount(block.codes, weights=trials, minlength=levels)
    s_j = np.bincount(block.codes, weights=design.y, minlength=levels)
    seen = n_j > 0
    n_j, s_j = n_j[seen], s_j[seen]
    if family == "poisson":  # log of the rate per row; var of a log count ~ 1 / count
        link, variance = np.log((s_j + 0.5) / n_j), 1.0 / (s_j + 0.5)
    else:  # empirical logit (Haldane's +0.5 keeps all-0 and all-1 groups finite)
        p = (s_j + 0.5) / (n_j + 1.0)
        link, variance = np.log(p / (1.0 - p)), 1.0 / ((n_j + 1.0) * p * (1.0 - p))
    between = float(np.var(link) - np.mean(variance))
    return between > 0 and float(np.median(between / variance)) > 1.0
