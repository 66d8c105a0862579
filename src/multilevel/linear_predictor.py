"""The linear predictor: one home for ``X @ beta + sum_k sum_j Z_k[:, j] * u_k[codes_k, j]``.

The NumPyro model, the pointwise log-likelihood, prediction and the prior predictive
check all compute it here. It is written with operations that NumPy and JAX arrays share
(``@``, fancy indexing, ``.sum``), so the same function runs inside a traced model on
device arrays and on NumPy draws; leading dimensions of the coefficients (chains, draws)
broadcast through::

    beta (..., p), X (n, p)              -> (..., n)
    effects_k (..., L_k, q_k), Z_k (n, q_k), codes_k (n,) -> (..., n)

Each distributional parameter (``mu``, ``sigma``, ...) has its own design and
coefficients; ``DparSpec`` says which columns and terms are whose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from multilevel.families import inverse_link
from multilevel.formula.distributional import MU
from multilevel.missing import predictor_column


def linear_predictor(X, beta, Z: Sequence = (), codes: Sequence = (), effects: Sequence = ()):
    """``X @ beta`` plus each term's effects at each row's level, times its covariates.

    Parameters
    ----------
    X : array (n, p)
    beta : array (..., p)
    Z, codes, effects : sequences over terms of (n, q_k), (n,) and (..., L_k, q_k) arrays;
        a term whose ``effects`` is None is left out (its effects set to zero).

    Returns
    -------
    array (..., n)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> u = np.array([[0.5], [-0.5]])  # two levels, one covariate (an intercept)
    >>> linear_predictor(X, np.array([1.0, 2.0]), [np.ones((2, 1))], [np.array([0, 1])], [u])
    array([1.5, 2.5])
    """
    if beta.ndim == 1 or not isinstance(beta, np.ndarray):
        # inside the model (one chain's point) and in compiled programs over draws
        return _column_pass(X, beta, Z, codes, effects)
    # NumPy draws: one BLAS product, one fancy index per term
    eta = beta @ X.T  # (..., p) @ (p, n)
    for Z_k, codes_k, effects_k in zip(Z, codes, effects):
        if effects_k is None:
            continue
        # (..., n, q) * (n, q) -> (..., n): each row picks its level's effects
        eta = eta + (effects_k[..., codes_k, :] * Z_k).sum(-1)
    return eta


# Up to this many columns, a compiled pass over the rows is written column by column.
# XLA's CPU compiler turns ``X @ beta`` for a narrow X, and a sum over a small last axis,
# into slow loops: for 20,000 rows, ``(r[g] * Z).sum(-1)`` with q = 2 took 238 us and
# ``r[g, 0] * Z[:, 0] + r[g, 1] * Z[:, 1]`` 27 us; a bernoulli ``(1 + x | g)`` gradient
# fell from 362 to 110 us (one core, float32). Over draws too: the pointwise
# log-likelihood of 4,000 draws x 20,000 rows of that model took 2.5 s, 1.2 s unrolled.
UNROLLED_COLUMNS = 8


def _column_pass(X, beta, Z, codes, effects):
    """(..., n) linear predictor, each column's product added in turn."""
    p = X.shape[1]
    eta = sum_columns(X, beta) if p <= UNROLLED_COLUMNS else _product(X, beta)
    for Z_k, codes_k, effects_k in zip(Z, codes, effects):
        if effects_k is None:
            continue
        if Z_k.shape[1] <= UNROLLED_COLUMNS:
            for j in range(Z_k.shape[1]):
                eta = eta + effects_k[..., j][..., codes_k] * Z_k[:, j]
        else:
            eta = eta + (effects_k[..., codes_k, :] * Z_k).sum(-1)
    return eta


def sum_columns(X, beta):
    """``beta @ X.T`` ((..., n)) for a narrow X, column by column (``UNROLLED_COLUMNS``)."""
    if X.shape[1] == 0:
        return _product(X, beta)
    eta = X[:, 0] * _coefficient(beta, 0)
    for j in range(1, X.shape[1]):
        eta = eta + X[:, j] * _coefficient(beta, j)
    return eta


def _product(X, beta):
    """``X @ beta`` at one point, ``beta @ X.T`` over draws: (..., n)."""
    return X @ beta if beta.ndim == 1 else beta @ X.T


def _coefficient(beta, j: int):
    """Column j's coefficient, shaped to multiply a column of rows: a scalar at one
    point, (..., 1) over draws."""
    return beta[j] if beta.ndim == 1 else beta[..., j, None]


@dataclass(frozen=True)
class Layout:
    """Which population coefficients (indices into the model's one coefficient vector)
    and which group terms (indices into its terms) make each linear predictor: the
    mean's, then each family parameter's with its link. Hashable: a key of compiled
    programs."""

    mu_columns: tuple[int, ...]
    mu_terms: tuple[int, ...]
    dpars: tuple[
        tuple[str, str, tuple[int, ...], tuple[int, ...]], ...
    ] = ()  # name, link, columns, terms
    n_columns: int = 0


def layout_of(spec) -> Layout:
    """The layout of a ``ModelSpec``."""
    index = {c: j for j, c in enumerate(spec.columns)}
    dpars = tuple(
        (d.name, d.link, tuple(index[c] for c in d.columns), spec.terms_of(d.name))
        for d in spec.predicted_dpars
    )
    return Layout(
        tuple(index[c] for c in spec.mu_columns), spec.terms_of(MU), dpars, len(spec.columns)
    )


def _take(beta, columns: tuple[int, ...], n_columns: int):
    """``beta[..., columns]``, without a gather when they are all of them in order."""
    if columns == tuple(range(n_columns)):
        return beta
    return beta[..., np.asarray(columns, dtype=np.intp)]


def linear_predictors(layout: Layout, rows: dict, beta, effects: Sequence) -> dict:
    """Every linear predictor of a model on some rows: ``{"mu": eta, "sigma": eta_sigma,
    ...}``, each (..., n) on its link scale.

    ``rows`` holds ``X`` (the mean's columns), ``X_dpars`` (one matrix per predicted
    parameter, in ``layout.dpars`` order), ``Z`` and ``codes`` (one per term, every
    parameter's terms) and ``offset`` (n,) or None, added to the mean's; ``beta`` (..., p)
    every coefficient; ``effects`` one (..., L, q) array per term, or None for a term
    left out (a typical group)."""

    def one(X, columns, terms):
        return linear_predictor(
            X,
            _take(beta, columns, layout.n_columns),
            [rows["Z"][k] for k in terms],
            [rows["codes"][k] for k in terms],
            [effects[k] for k in terms],
        )

    out = {MU: one(rows["X"], layout.mu_columns, layout.mu_terms)}
    if rows.get("offset") is not None:  # offset() terms and log(rate): the mean's only
        out[MU] = out[MU] + rows["offset"]
    for j, (name, _, columns, terms) in enumerate(layout.dpars):
        out[name] = one(rows["X_dpars"][j], columns, terms)
    return out


def row_thresholds(thresholds, X_cs=None, b_cs=None):
    """An ordinal model's thresholds per row: ``thresholds_k - sum_j X_cs[i, j] b_cs[j, k]``
    with brms' category-specific effects ``cs()``, as brms passes them to the likelihood;
    the shared thresholds with a row axis of 1 without. The one home of the thresholds a
    likelihood reads (the model, the log-likelihood, prediction).

    ``thresholds`` (..., K - 1); ``X_cs`` (n, p_cs) or None; ``b_cs`` (..., p_cs * (K - 1))
    in ``ModelSpec.cs_names`` order (column by column, then threshold). NumPy or JAX:
    ``(n, p) @ (..., p, K - 1)`` broadcasts the leading dims.

    Returns
    -------
    array (..., n, K - 1), or (..., 1, K - 1) without ``cs()``

    Examples
    --------
    >>> import numpy as np
    >>> X_cs = np.array([[0.0], [1.0]])  # one cs column, two rows
    >>> row_thresholds(np.array([-1.0, 1.0]), X_cs, np.array([0.5, 2.0]))
    array([[-1. ,  1. ],
           [-1.5, -1. ]])
    """
    thresholds = thresholds[..., None, :]  # (..., 1, K - 1)
    if b_cs is None:
        return thresholds
    width = thresholds.shape[-1]
    b_cs = b_cs.reshape(*b_cs.shape[:-1], X_cs.shape[-1], width)  # (..., p_cs, K - 1)
    return thresholds - X_cs @ b_cs  # (n, p_cs) @ (..., p_cs, K - 1) -> (..., n, K - 1)


def dpar_values(layout: Layout, etas: dict) -> dict:
    """Each predicted family parameter on its own scale (its inverse link of its eta)."""
    return {name: inverse_link(link, etas[name]) for name, link, _, _ in layout.dpars}


def row_arrays(design, rows=None) -> dict:
    """The design's arrays that the linear predictors and the density read, for ``rows``
    (indices; default all): ``X``, ``X_dpars``, ``Z``, ``codes``, ``y``, ``trials``, ``se``,
    the addition terms ``offset``, ``weights`` and ``bounds``, and ``X_cs`` (``cs()``
    columns) (None or {} without)."""
    rows = np.arange(design.n) if rows is None else np.asarray(rows)
    se = getattr(design, "se", None)  # known standard errors (y | se(s) ~ ...), if any
    offset, weights = getattr(design, "offset", None), getattr(design, "weights", None)
    X_cs = getattr(design, "X_cs", None)
    return {
        "X_cs": None if X_cs is None else X_cs[rows],
        "offset": None if offset is None else offset[rows],
        "weights": None if weights is None else weights[rows],
        "bounds": {k: v[rows] for k, v in getattr(design, "bounds", {}).items()},
        "X": design.X[rows],
        "X_dpars": tuple(d.X[rows] for d in getattr(design, "dpars", ())),
        "y": design.y[rows],
        "trials": None if design.trials is None else design.trials[rows],
        "se": None if se is None else se[rows],
        "Z": tuple(b.Z[rows] for b in design.all_blocks),
        "codes": tuple(b.codes[rows] for b in design.all_blocks),
    }


def named_draws(spec, posterior) -> tuple[np.ndarray, list[np.ndarray], dict]:
    """The draws a linear predictor and a likelihood read, from a named posterior
    (xarray, dims chain and draw first): every coefficient (C, D, p) in ``spec.columns``
    order, each term's effects (C, D, L, q) and the family parameters by name (C, D),
    fixed ones (``ml.bf(..., nu=4)``) included; an ordinal model's ``thresholds`` (C, D,
    K - 1) and category-specific coefficients ``b_cs`` (C, D, p_cs * (K - 1)), which
    ``per_row`` turns into each row's thresholds."""
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]

    def values(name: str) -> np.ndarray:
        return np.asarray(posterior[name].values, dtype=float)

    beta = np.zeros((chains, draws, 0))  # p = 0 for `y ~ 0 + (1 | g)`
    if spec.columns:
        beta = np.stack([values(n) for n in spec.columns], axis=-1)
    effects = [np.stack([values(n) for n in t.effect_names], -1) for t in spec.terms]
    aux = {name: values(name) for name in spec.aux}
    aux.update({n: np.full((chains, draws), v) for n, v in spec.fixed_dpars.items()})
    if spec.threshold_names:  # (C, D, K - 1): an ordinal model's thresholds
        aux["thresholds"] = np.stack([values(n) for n in spec.threshold_names], axis=-1)
    if spec.cs_columns:  # (C, D, p_cs * (K - 1))
        aux["b_cs"] = np.stack([values(n) for n in spec.cs_names], axis=-1)
    return beta, effects, aux


def per_row(aux: dict, X_cs=None) -> dict:
    """Family parameters of ``named_draws`` ready to broadcast against (..., n) rows: a
    row axis of 1 inserted last, and an ordinal model's thresholds (..., 1, K - 1), or
    per row (..., n, K - 1) with category-specific effects of the rows' ``X_cs``
    (``row_thresholds``)."""
    out = {
        name: np.expand_dims(v, -1) for name, v in aux.items() if name not in ("thresholds", "b_cs")
    }
    if "thresholds" in aux:
        out["thresholds"] = row_thresholds(aux["thresholds"], X_cs, aux.get("b_cs"))
    return out


def fitted_eta_shift(spec, design, posterior, rows=None):
    """What to add to a linear predictor computed from the design, whose imputed cells
    hold placeholders, to use each draw's imputed values instead: ``(x_draw -
    placeholder) * slope``, the slope being the sum of the predictor's coefficients in
    that row (it enters linearly: ``missing`` checks that). Only imputed rows change, so
    it is kept sparse: ``(columns, values)``, positions among ``rows`` (default: every
    fitted row; a position may repeat) and their (chain, draw, m) shifts, for
    ``add_shift``. None when nothing among ``rows`` is imputed."""
    rows = np.arange(design.n) if rows is None else np.asarray(rows)
    where = np.full(design.n, -1, dtype=np.intp)
    where[rows] = np.arange(len(rows))  # fitted row -> its position among rows
    columns, values = [], []
    for imp in spec.imputed:
        positions = np.asarray(imp.positions, dtype=np.intp)
        wanted = where[positions] >= 0
        if not wanted.any():
            continue
        positions = positions[wanted]
        x = posterior[imp.values_name].values[..., wanted].astype(float)  # (C, D, m)
        slope = np.zeros_like(x)
        for c in imp.x_columns:
            slope += posterior[spec.columns[c]].values[..., None]
        for k, j in imp.z_columns:
            effects = posterior[spec.terms[k].effect_names[j]].values  # (C, D, levels)
            slope += effects[..., design.blocks[k].codes[positions]]
        columns.append(where[positions])
        values.append((x - predictor_column(design, imp)[positions]) * slope)
    if not columns:
        return None
    return np.concatenate(columns), np.concatenate(values, axis=-1)


def add_shift(eta: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``eta`` (..., rows) plus the sparse shift of ``fitted_eta_shift`` (in place)."""
    np.add.at(eta, (..., columns), values)
    return eta
