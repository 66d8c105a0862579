"""Discrete models on big data: one likelihood term per covariate pattern, not per row.

Rows with the same population-level row X_i, the same level code in every group term
and the same group covariates Z_k,i share one linear predictor eta_i whatever the
parameters are. Their outcomes can therefore be pooled without changing the posterior:

  * bernoulli:  prod_i p^y_i (1-p)^(1-y_i) = p^Y (1-p)^(c-Y), a Binomial(Y | c, p) up to
    the constant binomial coefficient (c rows, Y = sum of y);
  * binomial:   successes and trials are summed: Binomial(sum y | sum n, p), again up to
    a constant;
  * poisson:    prod_i Poisson(y_i | mu) = Poisson(Y | c mu) up to a constant, i.e. the
    pooled count with an offset log(c) on the linear predictor.

The log density differs from the row-wise one by a constant only, so NUTS sees the same
posterior, at a cost per gradient proportional to the number of patterns.

Patterns are found by hashing (``pandas.factorize``), one column at a time: each column's
codes are combined with the codes so far and re-factorized, which keeps the combined code
below the number of rows (no overflow, no sort) and stops as soon as the patterns are too
many for aggregation to pay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from multilevel.backends.numpyro_model import Structure, data_arrays
from multilevel.design import Design

# (family, link) the user fits -> family of the aggregated model (same link).
_AGGREGATED = {
    ("bernoulli", "logit"): "binomial",
    ("bernoulli", "probit"): "binomial",  # uses the internal ("binomial", "probit") likelihood
    ("binomial", "logit"): "binomial",
    ("binomial", "probit"): "binomial",
    ("poisson", "log"): "poisson",
}

# The likelihood computes in float32: pooled counts and trials must stay exact whole
# numbers there.
_FLOAT32_EXACT = 2**24


@dataclass(frozen=True, eq=False)
class Aggregated:
    """A design pooled into covariate patterns, as arguments of ``make_model``."""

    data: dict  # X, y, trials, Z, codes, offset: like ``data_arrays``, one row per pattern
    family: str  # the family the model must use ("binomial" for bernoulli rows)
    link: str
    rows: int  # rows of the original design
    patterns: int  # rows of the aggregated one
    row_pattern: np.ndarray = field(repr=False)  # (rows,) the pattern of each original row

    @property
    def note(self) -> str:
        return f"{self.rows:,} rows aggregated into {self.patterns:,} covariate patterns"


def aggregate(
    design: Design, family: str, link: str, max_ratio: float = 0.5, patterns=None, st=None
) -> Aggregated | None:
    """Pool the rows of a bernoulli, binomial or poisson design by covariate pattern.

    None when it would not pay (more than ``max_ratio`` patterns per row), when the
    family has nothing to pool (gaussian: the collapsed sampler's business), or when the
    pooled counts would not be exact in the model's float32 arrays. ``patterns``, a
    callable returning ``covariate_patterns(design, limit)``, lets a caller reuse them:
    they depend on the covariates and groups only, not on the response. ``st``, the
    model's Structure, adds what its nested centring needs (``data_arrays``)."""
    target = _AGGREGATED.get((family, link))
    if target is None:
        return None
    n = design.n
    find = patterns or covariate_patterns
    found = find(design, limit=int(max_ratio * n))
    if found is None:
        return None
    row_pattern, k = found
    y = np.bincount(row_pattern, weights=design.y, minlength=k)
    count = np.bincount(row_pattern, minlength=k)
    if family == "bernoulli":
        trials = count.astype(float)
    elif family == "binomial":
        trials = np.bincount(row_pattern, weights=design.trials, minlength=k)
    else:
        trials = None
    if max(y.max(), 0 if trials is None else trials.max()) >= _FLOAT32_EXACT:
        return None
    member = np.empty(k, dtype=np.intp)
    member[row_pattern] = np.arange(n)  # one row per pattern: any stands for all of it
    pooled = Design(
        y=y,
        trials=trials,
        X=design.X[member],
        columns=design.columns,
        blocks=tuple(
            dataclasses.replace(b, Z=b.Z[member], codes=b.codes[member]) for b in design.blocks
        ),
    )
    offset = np.log(count) if target == "poisson" else None
    data = data_arrays(pooled, offset=offset, st=st)
    return Aggregated(data, target, link, n, k, row_pattern)


def covariate_patterns(design: Design, limit: int | None = None) -> tuple[np.ndarray, int] | None:
    """(pattern of each row (n,) int64, number of patterns): rows share a pattern when
    their X rows, group codes and group covariates are all equal. None as soon as the
    patterns exceed ``limit``."""
    n = design.n
    columns = [design.X[:, j] for j in range(design.X.shape[1])]
    for block in design.blocks:
        columns.append(block.codes)
        columns.extend(block.Z[:, j] for j in range(block.Z.shape[1]))
    code, k = np.zeros(n, dtype=np.int64), 1
    for column in columns:
        values, uniques = pd.factorize(column, use_na_sentinel=False)
        if len(uniques) == 1:
            continue
        # code < k <= n and values < len(uniques) <= n: the product fits in int64
        code, combined = pd.factorize(code * len(uniques) + values)
        k = len(combined)
        if limit is not None and k > limit:
            return None
    if limit is not None and k > limit:  # e.g. a single row
        return None
    return code.astype(np.int64, copy=False), k


def aggregated_model_inputs(
    structure: Structure, design: Design, family: str, link: str, patterns=None
) -> tuple[Structure, dict, str] | None:
    """(structure to compile, data arguments of its model, a one-line note) for sampling
    the aggregated model, or None when the rows are best left as they are.

    Usage: ``st, data, note = agg``; ``nuts.sample(st, make_model(st), (data, prior), ...)``
    with the model's usual prior arrays (aggregation changes no parameter)."""
    if structure.family != family or structure.link != link:
        raise ValueError(f"structure is {structure.family}/{structure.link}, not {family}/{link}")
    if structure.aux_names:  # every pooled family is free of auxiliary parameters
        return None
    agg = aggregate(design, family, link, patterns=patterns, st=structure)
    if agg is None:
        return None
    st = dataclasses.replace(
        structure, family=agg.family, link=agg.link, has_trials=agg.data["trials"] is not None
    )
    return st, agg.data, agg.note
