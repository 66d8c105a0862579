"""Fake data from a model: a response simulated from known parameter values.

``simulate`` is what ``Model.simulate`` calls. It works through the public model API
(``Model.draw`` with fixed parameters, which conditions the model's one NumPyro function on
them) and returns a DataFrame shaped like the model's data, with the values used in
``df.attrs["truth"]``. ``resample_groups`` builds a new design with a chosen number of
groups and rows per group, keeping the priors of the original model.

The helpers ``check_params`` and ``draw_response`` are shared with ``workflow.recover``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from multilevel.errors import MultilevelError
from multilevel.families import FAMILIES
from multilevel.fitted_rows import distributional_formula
from multilevel.formula import parse_formula
from multilevel.options import check_count
from multilevel.population_average import correlation_matrix

__all__ = ["check_params", "design_columns", "draw_response", "resample_groups", "simulate"]


# --------------------------------------------------------------------------- public


def simulate(
    model,
    params: Mapping | None = None,
    seed: int = 0,
    n_groups: int | None = None,
    rows_per_group: int | None = None,
) -> pd.DataFrame:
    """Simulate a data set from a model: its design, a response drawn from known values.

    This is :meth:`multilevel.Model.simulate`; see there for the full description.

    Parameters
    ----------
    model : multilevel.Model
    params : dict, optional
        Parameter values by user-facing name (``"Intercept"``, ``"sd(Intercept|g)"``,
        ``"cor(Intercept,x|g)"``, ``"sigma"``, ...). Every hyper-parameter is required;
        group effects (``"Intercept|g"``, a Series indexed by level or an array over the
        model's levels) are optional and drawn from their population distribution when
        left out. ``None`` draws every parameter once from the priors.
    seed : int
        Seed of the simulation (and of the resampling of a new design).
    n_groups, rows_per_group : int, optional
        Build a new design first (see :func:`resample_groups`).

    Returns
    -------
    pandas.DataFrame
        The columns the formula uses, the response replaced by the simulated one;
        ``df.attrs["truth"]`` holds the values used.

    Examples
    --------
    >>> import multilevel as ml
    >>> cafe = ml.datasets.load("cafe")
    >>> model = ml.Model("wait ~ afternoon + (1 + afternoon | cafe)", cafe)
    >>> df = simulate(model, cafe.attrs["truth"], seed=1)
    >>> df.shape
    (200, 3)
    """
    if n_groups is not None or rows_per_group is not None:
        model = resample_groups(model, n_groups, rows_per_group, seed=seed)
        if params is not None:
            # Group effects given belong to the original groups; the new ones are drawn.
            effects = {n for t in model.spec.terms for n in t.effect_names}
            params = {k: v for k, v in params.items() if k not in effects}
    clean = None if params is None else check_params(model, params)
    y, truth = draw_response(model, clean, seed)
    spec = model.spec
    frame = model.data[design_columns(model)].copy()
    if y.ndim == 2:  # a multinomial's counts: one column per category
        for k, column in enumerate(spec.response_levels):
            frame[column] = _response_values(y[:, k], model.data[column], spec.family)
    else:
        frame[spec.response] = _response_values(
            y, model.data[spec.response], spec.family, spec.response_levels
        )
    frame.attrs = {"truth": truth}
    return frame


def resample_groups(
    model, n_groups: int | None = None, rows_per_group: int | None = None, seed: int = 0
):
    """A new model with the same formula, family and priors on a resampled design.

    Each new group (labelled ``g001``, ``g002``, ...) takes its covariates from one of the
    original groups, chosen at random ("donor"): ``rows_per_group`` of the donor's rows,
    drawn without replacement (every row once per full pass when more rows are asked for
    than the donor has), kept in the donor's row order. Group-level covariates and the
    within-group pattern of covariates (e.g. days 0..9 of a subject) thus stay realistic.

    Parameters
    ----------
    model : multilevel.Model
        A model with a single grouping factor (one or more terms ``(... | g)``).
    n_groups : int, optional
        Number of new groups; default: as many as the original data has.
    rows_per_group : int, optional
        Rows of each new group; default: all rows of its donor.
    seed : int
        Seed of ``numpy.random.default_rng`` for the choice of donors and rows.

    Returns
    -------
    multilevel.Model
        Built on the new data (the response column holds the donors' responses, a
        placeholder until a simulated response replaces it) with the original model's
        priors, stated by name: default priors are not re-scaled to the new data.

    Raises
    ------
    MultilevelError
        If the model has no or several grouping factors (e.g. nested or crossed), a count
        is not a positive whole number, or the resampled design loses a parameter (a
        categorical level or a predictor that no longer varies).

    Examples
    --------
    >>> import multilevel as ml
    >>> sleep = ml.datasets.load("sleepstudy")
    >>> model = ml.Model("Reaction ~ Days + (Days | Subject)", sleep)
    >>> bigger = resample_groups(model, n_groups=40, seed=1)
    >>> bigger.data.shape, len(bigger.spec.terms[0].levels)
    ((400, 3), 40)
    """
    Model = type(model)  # a model of the same kind (this module sits below model.py)
    spec = model.spec
    factors = {t.factors for t in spec.terms}
    if len(factors) != 1 or len(next(iter(factors))) != 1:
        found = ", ".join(dict.fromkeys(t.group for t in spec.terms)) or "none"
        raise MultilevelError(
            "n_groups and rows_per_group need a model with a single grouping factor, "
            f"e.g. `(1 + x | g)`; this model's grouping factors are: {found}."
        )
    factor = next(iter(factors))[0]
    data = model.data
    codes, _ = pd.factorize(data[factor], sort=True)
    donor_rows = [np.flatnonzero(codes == j) for j in range(codes.max() + 1)]
    n_groups = len(donor_rows) if n_groups is None else check_count("n_groups", n_groups)
    if rows_per_group is not None:
        rows_per_group = check_count("rows_per_group", rows_per_group)

    rng = np.random.default_rng(seed)
    donors = rng.integers(0, len(donor_rows), size=n_groups)
    width = max(3, len(str(n_groups)))
    labels = [f"g{i:0{width}d}" for i in range(1, n_groups + 1)]
    positions, group_labels = [], []
    for label, donor in zip(labels, donors):
        rows = donor_rows[donor]
        if rows_per_group is not None:
            full, rest = divmod(rows_per_group, len(rows))
            picked = np.concatenate(
                [np.tile(np.arange(len(rows)), full), rng.choice(len(rows), rest, replace=False)]
            )
            rows = rows[np.sort(picked)]
        positions.append(rows)
        group_labels += [label] * len(rows)
    new = data.iloc[np.concatenate(positions)][design_columns(model)].reset_index(drop=True)
    new[factor] = pd.array(group_labels, dtype="str")

    where = (
        f"The resampled design (n_groups={n_groups}, rows_per_group={rows_per_group}, seed={seed})"
    )
    kw = dict(family=spec.family, link=spec.link, centered=spec.centered)
    try:
        probe = Model(distributional_formula(spec), new, **kw)
    except MultilevelError as exc:
        raise MultilevelError(
            f"{where} cannot be modelled: {exc} Try more groups or rows, or another seed."
        ) from None
    lost = [n for n in spec.prior_of if n not in probe.spec.prior_of]
    if lost:
        raise MultilevelError(
            f"{where} lacks parameter(s) {', '.join(lost)} of the original model (a "
            "categorical level that no resampled row has?). Try more groups or rows, or "
            "another seed."
        )
    return Model(distributional_formula(spec), new, priors=spec.prior_of, **kw)


# --------------------------------------------------------------------------- shared


def design_columns(model) -> list[str]:
    """The columns of ``model.data`` the formula uses, in the data's column order.

    Examples
    --------
    >>> import multilevel as ml
    >>> cbpp = ml.datasets.load("cbpp")
    >>> model = ml.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial")
    >>> design_columns(model)
    ['herd', 'incidence', 'size', 'period']
    """
    needed = parse_formula(model.spec.formula).columns | model.spec.predictor_columns
    return [c for c in model.data.columns if c in needed]


def check_params(model, params: Mapping) -> dict:
    """Check parameter values against a model and return them as plain numbers.

    Every hyper-parameter (``model.spec.hyper_names``) must be given; group effects are
    optional, but a term's effects come all together or not at all. Series of group
    effects are matched to the model's levels by label.

    Returns
    -------
    dict
        Hyper-parameters as floats, group effects as float arrays over the model's levels.

    Raises
    ------
    MultilevelError
        Naming unknown, missing or invalid values and listing the names expected.

    Examples
    --------
    >>> import multilevel as ml
    >>> cafe = ml.datasets.load("cafe")
    >>> model = ml.Model("wait ~ afternoon + (1 | cafe)", cafe)
    >>> check_params(model, {"Intercept": 3, "afternoon": -1, "sd(Intercept|cafe)": 1,
    ...                      "sigma": 0.5})["Intercept"]
    3.0
    """
    spec = model.spec
    if not isinstance(params, Mapping):
        raise MultilevelError(
            f"Parameter values must be a dict by name, got {type(params).__name__}."
        )
    hyper = list(spec.hyper_names)
    effects = [n for t in spec.terms for n in t.effect_names]
    expected = (
        f"Expected: {', '.join(hyper)}"
        + (f"; optional group effects: {', '.join(effects)}" if effects else "")
        + "."
    )
    unknown = [k for k in params if k not in hyper and k not in effects]
    if unknown:
        close = {k: difflib.get_close_matches(str(k), hyper + effects, n=1) for k in unknown}
        hints = [f"{k!r} (did you mean {c[0]!r}?)" if c else repr(k) for k, c in close.items()]
        raise MultilevelError(f"Unknown parameter name(s) {', '.join(hints)}. {expected}")
    missing = [n for n in hyper if n not in params]
    if missing:
        raise MultilevelError(f"Values are needed for {', '.join(missing)}. {expected}")

    out: dict = {}
    for name in hyper:
        try:
            value = float(params[name])
        except (TypeError, ValueError):
            raise MultilevelError(
                f"The value of {name!r} must be a number, got {params[name]!r}."
            ) from None
        if not np.isfinite(value):
            raise MultilevelError(f"The value of {name!r} must be finite, got {value}.")
        out[name] = value
    for name in (*spec.sd_names, *spec.aux):
        if out[name] <= 0:
            raise MultilevelError(f"{name!r} is a scale and must be positive, got {out[name]}.")
    for owner in (*spec.terms, *spec.linked_terms):  # whatever has an LKJ matrix
        _check_correlations(owner, out)
    for term in spec.terms:
        given = [n for n in term.effect_names if n in params]
        if given and len(given) < len(term.effect_names):
            absent = [n for n in term.effect_names if n not in params]
            raise MultilevelError(
                f"Give all group effects of ({' + '.join(term.coefs)} | {term.group}) or "
                f"none: {', '.join(absent)} is missing (left out, all are drawn)."
            )
        for name in given:
            out[name] = _effect_values(name, params[name], term.levels)
    for each in spec.linked_terms:  # drawn jointly: all of a linked set's effects or none
        names = each.effect_names
        absent = [n for n in names if n not in params]
        if 0 < len(absent) < len(names):
            raise MultilevelError(
                f"The effects of the terms of {each.group!r} with the ID |{each.id}| are drawn "
                f"together: give all of them or none ({', '.join(absent)} is missing)."
            )
    return out


def draw_response(model, params: dict | None, seed: int) -> tuple[np.ndarray, dict]:
    """One simulated response vector and the parameter values behind it.

    ``params`` is the output of :func:`check_params` or None (a draw from the priors).
    Returns ``(y, truth)``: ``y`` of shape (rows,) ((rows, K) counts of a multinomial), ``truth`` with hyper-parameters as
    floats (the given values exactly) and every group effect used as a Series indexed by
    level."""
    drawn = model.draw(1, seed=seed, params=params)
    spec = model.spec
    truth: dict = {}
    for name in spec.hyper_names:
        truth[name] = params[name] if params is not None else float(drawn[name][0])
    for term in spec.terms:
        index = pd.Index(list(term.levels), name=term.group, dtype="str")
        for name in term.effect_names:
            values = params[name] if params is not None and name in params else drawn[name][0]
            truth[name] = pd.Series(np.asarray(values, dtype=float), index=index, name=name)
    return np.asarray(drawn["y"][0]), truth


# --------------------------------------------------------------------------- helpers


def _check_correlations(term, values: dict) -> None:
    """The correlations of a term or of a set of linked terms form a valid matrix."""
    if not term.cor_names:
        return
    for name in term.cor_names:
        if not -1 < values[name] < 1:
            raise MultilevelError(
                f"{name!r} is a correlation and must lie strictly between -1 and 1, "
                f"got {values[name]}."
            )
    if np.linalg.eigvalsh(correlation_matrix(term, values.__getitem__)).min() <= 1e-8:
        raise MultilevelError(
            f"The correlations {', '.join(term.cor_names)} do not form a valid "
            "(positive definite) correlation matrix."
        )


def _effect_values(name: str, value, levels: tuple[str, ...]) -> np.ndarray:
    if isinstance(value, pd.Series):
        by_label = pd.Series(value.to_numpy(), index=value.index.map(str))
        absent = [lv for lv in levels if lv not in by_label.index]
        if absent:
            raise MultilevelError(
                f"The group effects {name!r} lack level(s) {', '.join(absent[:5])}"
                + (" ..." if len(absent) > 5 else "")
                + f" of the model ({len(levels)} levels)."
            )
        value = by_label.loc[list(levels)].to_numpy()
    array = np.asarray(value, dtype=float)
    if array.shape != (len(levels),):
        raise MultilevelError(
            f"The group effects {name!r} need one value per level ({len(levels)}), "
            f"got shape {array.shape}."
        )
    if not np.isfinite(array).all():
        raise MultilevelError(f"The group effects {name!r} must be finite.")
    return array


def _response_values(y: np.ndarray, original: pd.Series, family: str, levels=None) -> pd.Series:
    """The simulated response as a column like the data's: counts and 0/1 outcomes as
    whole numbers in the column's own dtype (bool stays bool), gaussian ones as floats,
    a two-level text response as its two levels (``levels``: failure, success)."""
    if levels is not None:  # two-level text (bernoulli) or ordinal categories: labels
        labels = np.asarray(levels, dtype=object)[np.rint(y).astype(int)]
        values = pd.Series(labels, index=original.index)
        if isinstance(original.dtype, pd.CategoricalDtype):
            return values.astype(original.dtype)
        if pd.api.types.is_numeric_dtype(original.dtype):  # whole-number categories
            return pd.to_numeric(values).astype(original.dtype)
        return values
    if not FAMILIES[family].discrete:
        return pd.Series(y.astype(float), index=original.index)
    whole = pd.Series(np.rint(y), index=original.index)
    if pd.api.types.is_bool_dtype(original.dtype) or pd.api.types.is_numeric_dtype(original.dtype):
        return whole.astype(original.dtype)
    return whole.astype("int64")
