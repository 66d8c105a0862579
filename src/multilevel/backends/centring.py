"""Whether a discrete model's group effects are sampled centred: chosen from the data.

Non-centred effects (scaled standard normals) suit groups with little data; groups rich
in data make a funnel between each sd and its standardised effects that NUTS crosses
only with small steps. Centred, with the intercept as the groups' mean (hierarchical
centring, ``numpyro_model.centring_columns``), they mix far better: a bernoulli model of
200,000 rows in 1,000 groups gave a min bulk ESS of 462 in 17.8 s non-centred and 2,424
in 7.9 s centred. The Gaussian family decides per term in ``gaussian_collapsed.plan``.

Other families stay non-centred unless the user says otherwise (``centered=True`` or a
flag per term). Extending the moment rule to them row by row on the link scale was tried:
it centred MASS epil's 59 subjects (negative binomial, ratio 6.4) and the intercept's
bulk ESS fell from 1,242 to 23 (4 x 1000 draws, seed 7): most of the spread between
subjects there is their own predictors' (``lbase``, constant within a subject), which
the rule does not subtract, so it overstates how much each group's data say.
"""

from __future__ import annotations

import numpy as np

from multilevel.design import Design
from multilevel.errors import MultilevelError

FAMILIES = ("bernoulli", "binomial", "poisson")
MIN_LEVELS = 50  # fewer groups estimate their sd loosely: the ratio must hold at its low end
# (``_information_ratio``), where the sd cannot approach 0 (the funnel's neck) and centred
# is safe. 20 groups of Poisson counts near 1e5 (ratio ~1e5): non-centred, R-hat 1.15 and
# bulk ESS 22 of 4,000 draws; centred, R-hat 1.00 and ESS 5,296.
MIN_LEVELS_RICH = 10
MIN_CHILDREN = 10  # a parent centred beside its centred nested term: child groups per group


def term_flags(design: Design, family: str, choice) -> tuple[bool, ...]:
    """Per group term: are its effects sampled centred?

    ``choice`` None: decided from the data (``rich_groups`` for a lone term,
    ``rich_term`` for each of several); True/False: every term; a tuple of bools: one per
    term, as given (simulation and SBC rebuild a model with its original choice)."""
    n_terms = len(design.blocks)
    if isinstance(choice, bool | np.bool_):
        return (bool(choice),) * n_terms
    if isinstance(choice, tuple):
        if len(choice) != n_terms or not all(isinstance(c, bool | np.bool_) for c in choice):
            raise MultilevelError(
                f"centered={choice!r}: give True, False, None (chosen from the data) or one "
                f"True/False per group term ({n_terms} here)."
            )
        return tuple(bool(c) for c in choice)
    if choice is not None:
        raise MultilevelError(
            f"centered must be True, False or None (chosen from the data), got {choice!r}."
        )
    if n_terms == 1:
        return (rich_groups(design, family),)
    flags = [rich_term(design, k, family) for k in range(n_terms)]
    for k in range(n_terms):
        parent = nested_parent(design, k) if flags[k] else -1
        if parent >= 0 and flags[parent]:
            flags[parent] = _many_children(design, k, parent)
    return tuple(flags)


def term_weights(design: Design, family: str, flags: tuple[bool, ...], choice):
    """Per group term: its coefficients' ``centring_weights`` where the rule centred it
    (``choice`` None and its flag set), else () (centred fully, or not at all)."""
    if choice is not None:
        return ((),) * len(flags)
    return tuple(
        centring_weights(design, k, family) if flag else () for k, flag in enumerate(flags)
    )


def rich_groups(design: Design, family: str) -> bool:
    """True for a bernoulli, binomial or poisson model with one group term, an intercept
    varying over at least ``MIN_LEVELS`` groups, whose median group says more about its
    mean than the spread of group means does: between / v_j > 1 by moments on the link
    scale, v_j the sampling variance of group j's empirical logit (or log rate)."""
    if len(design.blocks) != 1:
        return False
    return _information_ratio(design, 0, family) > 1.0


def rich_term(design: Design, k: int, family: str) -> bool:
    """One of several crossed or nested terms: centred when its groups are rich by the
    lone-term rule and hold at least two rows at the median.

    An observation-level term (one row per level, as grouseticks' INDEX) is left
    non-centred: each effect is informed by one row, beside the other terms' effects,
    and its moment estimate absorbs their variance (grouseticks' INDEX)."""
    block = design.blocks[k]
    rows = np.bincount(block.codes, minlength=len(block.levels))
    if np.median(rows[rows > 0]) < 2:
        return False
    return _information_ratio(design, k, family) > 1.0


def _many_children(design: Design, child: int, parent: int) -> bool:
    """Whether a parent term's groups hold enough of a centred child's groups to be
    centred too. Its coefficients are then informed through its children's, a handful
    per group where nesting is shallow: grouseticks' 63 locations hold 1.9 broods each,
    and centring them as well left sd(LOCATION) at a bulk ESS of 54 of 4,000 draws,
    against 346 with the locations non-centred (and 6 vs 2 divergent draws)."""
    children = np.bincount(
        parent_levels(design, child, parent), minlength=len(design.blocks[parent].levels)
    )
    return float(np.median(children[children > 0])) >= MIN_CHILDREN


def _coefficient_ratios(design: Design, k: int, family: str) -> list[float]:
    """Per coefficient of term k (``block.coefs``' order): the median over groups of
    between / v_j (all 0 when the rule does not apply; ``_held``). ``between`` is the
    spread of the groups' link-scale estimates left after their group-level predictors
    (``group_predictor_values``): the part their effects must explain."""
    block = design.blocks[k]
    levels = len(block.levels)
    if family not in FAMILIES or "Intercept" not in block.coefs or levels < MIN_LEVELS_RICH:
        return [0.0] * len(block.coefs)
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
    between = float(_residual_variance(link, group_predictor_values(design, k)[seen]))
    between -= float(np.mean(variance))
    ratio = float(np.median(between / variance)) if between > 0 else 0.0
    slopes = iter(_slope_ratios(design, k, family))
    return [_held(ratio if c == "Intercept" else next(slopes), levels) for c in block.coefs]


def centring_weights(design: Design, k: int, family: str) -> tuple[float, ...]:
    """Per coefficient of a term the rule centres (``term_flags``): how far its effects
    are centred, ``ratio / (1 + ratio)`` of its slopes' information ratios.

    Partial centring (Papaspiliopoulos, Roberts & Skold 2007; Gorinova et al. 2020): the
    site is ``c~ ~ N(w mean, sd^w R sd^w)`` and the coefficients ``mean + sd^(1 - w) (c~
    - w mean)``, so w = 1 is centred and w = 0 non-centred. For a normal group mean with
    prior variance sd^2 and sampling variance v the site is independent of ``sd`` at
    ``w = sd^2 / (sd^2 + v)``: ``ratio / (1 + ratio)``. bern20k (100 rows a group, x's
    ratio 1.35), hand-written NumPyro model, 4 x (1,000 + 1,000): bulk ESS of sd(x|g)
    2,132 centred, 5,493 with x at w = 0.57 (the intercept centred); the smallest ESS,
    now the correlation's, 2,132 -> 2,910, at 15 gradients a draw either way.

    Intercepts stay fully centred: they carry the population intercept (hierarchical
    centring), which mixes best so. VerbAgg's subjects at w = 0.87 and items at 0.93
    (their ratios) dropped the intercept's bulk ESS from 3,371 to 2,173 (4 x 1,000 draws).
    A term whose every weight is 1 is centred as before: ()."""
    ratios = _coefficient_ratios(design, k, family)
    coefs = design.blocks[k].coefs
    weights = tuple(1.0 if c == "Intercept" else r / (1.0 + r) for c, r in zip(coefs, ratios))
    return () if all(w == 1.0 for w in weights) else weights


def _information_ratio(design: Design, k: int, family: str) -> float:
    """The smallest of ``_coefficient_ratios``: every coefficient must be informed.

    Slopes must be informed too: a group's data can pin its intercept and leave its
    slope to the prior. mlmRev's Contraception, (1 + urban | district), 60 districts of
    26 women (5.5 urban) at the median: intercept ratio 2.1, urban's 0.73; centred,
    5.1 bulk ESS per 1,000 gradients (sd(urban)), non-centred 21.9 (2 x 500 draws;
    benchmarks/centring_check.py). bern20k's x, 100 rows a group: 1.35, still centred."""
    return min(_coefficient_ratios(design, k, family), default=0.0)


def _held(ratio: float, levels: int) -> float:
    """``ratio``, or 0 where fewer than ``MIN_LEVELS`` groups leave it in doubt.

    Fewer groups estimate ``between`` loosely (relative sd about sqrt(2 / (L - 1))):
    centred only if two such sds below it the groups' data still dominate. VerbAgg's 24
    items (316 rows each, ratio 12 after their btype and situ): item sd's bulk ESS 767
    non-centred, 2,049 centred (2 x 1000 draws)."""
    if levels >= MIN_LEVELS:
        return ratio
    low = ratio * (1.0 - 2.0 * np.sqrt(2.0 / (levels - 1)))
    return ratio if low > 1.0 else 0.0


def _slope_ratios(design: Design, k: int, family: str) -> list[float]:
    """Per slope of term k (its covariates other than the intercept): the median over
    groups of between / v_j, as for the intercept, from each group's one Newton step
    from the pooled mean (a logistic or Poisson fit of the group's rows on the term's
    covariates): v_j the step's variance for the slope, ``between`` the spread of the
    groups' slopes less the mean of v_j. A group whose rows do not vary in a slope's
    covariate tells nothing of it (v_j infinite: ratio 0)."""
    block = design.blocks[k]
    slopes = [j for j, name in enumerate(block.coefs) if name != "Intercept"]
    if not slopes:
        return []
    levels, q = len(block.levels), len(block.coefs)
    trials = design.trials if design.trials is not None else np.ones(design.n)
    mean = float(np.sum(design.y) / np.sum(trials))  # per trial (row, for counts)
    weight = trials * (mean if family == "poisson" else mean * (1.0 - mean))
    residual = design.y - trials * mean
    Z = np.asarray(block.Z, dtype=np.float64)
    information = np.zeros((levels, q, q))
    np.add.at(information, block.codes, weight[:, None, None] * Z[:, :, None] * Z[:, None, :])
    score = np.zeros((levels, q))
    np.add.at(score, block.codes, residual[:, None] * Z)
    # a tiny ridge keeps the solve defined; a direction with no data keeps a variance of
    # about 1e12, which makes its ratio 0
    information += 1e-12 * np.eye(q)
    covariance = np.linalg.inv(information)
    step = np.einsum("lij,lj->li", covariance, score)
    ratios = []
    for j in slopes:
        variance = covariance[:, j, j]
        informed = variance < 1e6
        if informed.sum() < 2:
            ratios.append(0.0)
            continue
        between = float(np.var(step[informed, j], ddof=1) - np.mean(variance[informed]))
        ratios.append(float(np.median(between / variance)) if between > 0 else 0.0)
    return ratios


def _residual_variance(values: np.ndarray, predictors: np.ndarray) -> float:
    """Variance of ``values`` left after a least-squares fit on an intercept and
    ``predictors`` (G, m), with the fit's degrees of freedom taken off."""
    basis = np.column_stack([np.ones(len(values)), predictors])
    if len(values) <= basis.shape[1]:
        return 0.0
    coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
    residual = values - basis @ coef
    rank = np.linalg.matrix_rank(basis)
    return float(residual @ residual / (len(values) - rank))


def group_predictor_values(design: Design, k: int) -> np.ndarray:
    """(L_k, m) each of term k's groups' values of the population columns constant
    within its groups (not the intercept, not the term's own covariates)."""
    if getattr(design, "X", None) is None:
        return np.zeros((len(design.blocks[k].levels), 0))
    return level_values(design, k, group_level_columns(design, k))


def group_level_columns(design: Design, k: int, taken=()) -> tuple[str, ...]:
    """The population columns constant within each of term k's groups (and varying
    between them), other than the intercept, the term's own covariates and ``taken``."""
    block = design.blocks[k]
    return tuple(
        name
        for j, name in enumerate(design.columns)
        if name != "Intercept"
        and name not in block.coefs
        and name not in taken
        and constant_within(design.X[:, j], block.codes, len(block.levels))
    )


def nested_in(design, centred: tuple[bool, ...]) -> tuple[str | None, ...]:
    """Per term, the group of the term its centred coefficients are centred on, or None
    (a chunked summary's terms are never centred, so its rows are never needed here)."""
    parents = [nested_parent(design, k) if c else -1 for k, c in enumerate(centred)]
    return tuple(None if a < 0 else design.blocks[a].group for a in parents)


def nested_parent(design: Design, k: int, among=None) -> int:
    """The term of a coarser grouping factor, with the same covariates, whose groups each
    hold whole groups of term k (grouseticks' LOCATION for BROOD); the one with most
    levels; -1 for none. ``among``: the terms that may be it (default: every term). A
    centred term is centred on such a parent's coefficients, so the parent's effect and
    the mean of its children's do not trade along a ridge that only their priors resolve."""
    blocks = design.blocks
    candidates = [
        a
        for a in (range(len(blocks)) if among is None else among)
        if blocks[a].group != blocks[k].group
        and blocks[a].coefs == blocks[k].coefs
        and len(blocks[a].levels) < len(blocks[k].levels)
        and nests_in(blocks[k].codes, blocks[a].codes)
    ]
    return max(candidates, key=lambda a: len(blocks[a].levels), default=-1)


def nests_in(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether every group of ``inner`` lies inside one group of ``outer``."""
    pairs = np.unique(np.stack([inner, outer]), axis=1)
    return pairs.shape[1] == len(np.unique(inner))


def parent_levels(design: Design, k: int, parent: int) -> np.ndarray:
    """(L_k,) int32: the parent term's level of each of term k's levels."""
    codes = np.zeros(len(design.blocks[k].levels), dtype=np.int32)
    codes[design.blocks[k].codes] = design.blocks[parent].codes
    return codes


def level_predictors(
    design: Design, centred: tuple[bool, ...], nested: tuple[str | None, ...]
) -> tuple[tuple[str, ...], ...]:
    """Per term, the population columns that its varying intercepts are centred on
    besides the intercept: predictors constant within each of its groups (VerbAgg's
    ``Gender`` and ``Anger`` within subjects), for centred terms with an intercept that
    are not centred on a parent term. Centred on zero, such a column's coefficient moves
    with the difference of the groups' mean effects, and NUTS crosses that ridge slowly;
    centred on it, the coefficient is informed through the groups' effects, as the
    intercept is under hierarchical centring (``numpyro_model.centring_columns``).
    VerbAgg, 2 x 1000 draws: ``Gender`` bulk ESS 476 centred on zero, 4,669 centred on
    it (and items on ``btype`` and ``situ``); the smallest ESS 476 -> 1,967.

    The groups' values are centred on their mean (``level_values``), so that the
    groups' mean effect stays near zero beside the intercept: on the raw values,
    ``Anger`` (11 to 39) moved the intercept with the subjects' mean effect (ESS 69
    and 42). The intercept goes to no crossed term: beside a second term, either term's
    mean trades with it (VerbAgg, subjects centred on it: intercept ESS 35-56).
    Each column goes to one term: the centred one with most levels. A design without
    rows (chunked) has none."""
    out: list[tuple[str, ...]] = [()] * len(design.blocks)
    if getattr(design, "X", None) is None or not any(centred):
        return tuple(out)
    taken: set[str] = set()
    chosen = [
        k
        for k, block in enumerate(design.blocks)
        if centred[k] and nested[k] is None and block.coefs[:1] == ("Intercept",)
    ]
    for k in sorted(chosen, key=lambda k: -len(design.blocks[k].levels)):
        out[k] = group_level_columns(design, k, taken)
        taken |= set(out[k])
    return tuple(out)


def constant_within(values: np.ndarray, codes: np.ndarray, levels: int) -> bool:
    """Whether ``values`` (n,) take one value in each group of ``codes`` (and vary
    between groups: a constant column is the intercept's business). NaN is not constant."""
    if np.any(np.isnan(values)):
        return False
    low = np.full(levels, np.inf)
    high = np.full(levels, -np.inf)
    np.minimum.at(low, codes, values)
    np.maximum.at(high, codes, values)
    seen = np.isfinite(low)
    return bool(np.all(low[seen] == high[seen]) and np.ptp(low[seen]) > 0)


def level_values(design: Design, k: int, columns: tuple[str, ...]) -> np.ndarray:
    """(L_k, len(columns)) each of term k's groups' value of each column (constant within
    it, ``level_predictors``) less the mean over its groups; 0 for a level without rows."""
    block = design.blocks[k]
    index = [design.columns.index(c) for c in columns]
    out = np.zeros((len(block.levels), len(index)))
    out[block.codes] = design.X[:, index]
    seen = np.bincount(block.codes, minlength=len(block.levels)) > 0
    out[seen] -= out[seen].mean(axis=0)
    return out
