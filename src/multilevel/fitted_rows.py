"""The rows a model is fitted to, built once the same way for a new ``Model`` and for a
fit read from a file, and the one answer to "does this fit still have its rows?".

``prepare_rows`` turns a (distributional) formula, a family, a DataFrame and the missing
data policy into the design of the rows in the likelihood: the mean's design and, for
``ml.bf(..., sigma="~ x")``, each family parameter's. ``rebuild_rows`` does it again for
a fit read with ``ml.load`` from the data it was fitted to, checking that they are.
``fit_rows`` is what ``Fit.rows`` answers, with one message per reason there are none.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from multilevel.design import build_dpar_design, used_columns
from multilevel.errors import DataError, MultilevelError
from multilevel.families import category_predictor, get_family
from multilevel.formula import DistributionalFormula, as_distributional, parse_dpar, parse_formula
from multilevel.missing import MissingDataWarning, missing_mode, prepare
from multilevel.response_levels import categorical_codes

LOADED_FIT = (
    "This fit was read from a file: it keeps the posterior draws and the model's spec, but "
    "not the data's covariates, and {what} needs them (the categorical coding, transforms "
    "and group levels of the fitted data). Give the data the fit was made from, e.g. "
    "fit.predict(newdata, data=original) (command line: multilevel predict FIT NEWDATA "
    "--data ORIGINAL); K-fold cross-validation needs the model itself: fit it again."
)
CHUNKED = (
    "{what} needs the data's rows, and this fit's model was built from chunked statistics "
    "(Model.from_chunks): it holds per-group sums, not rows. Load the rows as a pandas "
    "DataFrame (or a random sample of whole groups) and fit ml.Model(formula, data)."
)


def with_default_formulas(formula, family, data=None) -> DistributionalFormula:
    """``formula`` as a ``DistributionalFormula`` with the family's always-predicted
    parameters (``Family.default_formulas``: ``zi ~ 1`` of a zero-inflated family) added
    where the user gave them none; for the categorical and multinomial families, one
    formula per category but the first (``categorical_formula``)."""
    distributional = as_distributional(formula)
    if family.category_logits:
        return categorical_formula(distributional, data, family)
    given = {name for name, _ in distributional.dpars}
    extra = tuple((n, rhs) for n, rhs in family.default_formulas if n not in given)
    if not extra:
        return distributional
    return DistributionalFormula(distributional.formula, distributional.dpars + extra)


def categorical_formula(
    distributional: DistributionalFormula, data, family
) -> DistributionalFormula:
    """brms' categorical and multinomial models as distributional ones: the reference
    category (the first) has log-odds 0, so the formula of the mean is ``y ~ 0``, and
    every other category ``k`` gets the user's right-hand side as the formula of its own
    predictor ``mu<label>`` (``muB``, brms' names; ``mu<k>`` where a label is not a
    name), with coefficients ``muB_Intercept``, ``muB_x``, ``sd(muB_Intercept|g)``. The
    categories are a categorical response's values, a multinomial's count columns
    (``cbind(a, b, c)``: a, b, c). A formula that already has them (a fit read back, an
    SBC worker) is kept."""
    if any(category_predictor(name) for name, _ in distributional.dpars):
        return distributional
    parsed = parse_formula(distributional.formula)
    if family.multivariate_response:
        levels = parsed.response_columns
        if len(levels) < 2:
            return distributional  # the design says what a multinomial response is
    elif not isinstance(data, pd.DataFrame) or parsed.response not in data.columns:
        return distributional  # the design reports what is missing
    else:
        _, levels = categorical_codes(data[parsed.response], parsed.response)
    lhs, rhs = distributional.formula.split("~", 1)
    names = [f"mu{''.join(ch for ch in label if ch.isalnum())}" for label in levels[1:]]
    if len(set(names)) != len(names) or not all(category_predictor(n) for n in names):
        names = [f"mu{k}" for k in range(2, len(levels) + 1)]
    dpars = tuple((name, f"~{rhs}") for name in names)
    return DistributionalFormula(f"{lhs.strip()} ~ 0", dpars + distributional.dpars)


def prepare_rows(formula, family, data, missing: str):
    """(design, fitted rows, ``MissingData``, imputed predictors) of a model.

    ``formula`` is a string or a ``DistributionalFormula``; ``family`` a ``Family``."""
    distributional = with_default_formulas(formula, family, data)
    parsed = parse_formula(distributional.formula)
    dpar_formulas = dpar_formulas_of(distributional, family, parsed)
    if dpar_formulas:
        data = _rows_for_dpars(dpar_formulas, data, missing)
    design, fitted, done, imputed = prepare(parsed, data, family, missing)
    if dpar_formulas:
        dpars = tuple(build_dpar_design(name, p, fitted) for name, (_, p) in dpar_formulas.items())
        design = dataclasses.replace(design, dpars=dpars)
    return design, fitted, done, imputed


def dpar_formulas_of(distributional: DistributionalFormula, family, parsed) -> dict:
    """Parameter -> (right-hand side, parsed) of each family parameter given a formula,
    after checking that the family has such parameters (fixed values too)."""
    out = {}
    for name, value in distributional.dpars:
        if not family.takes_dpar(name):
            has = ", ".join(family.aux) or "none"
            raise DataError(
                f"The {family.name} family has no parameter {name!r} to give a formula or "
                f"value (its parameters besides the mean: {has})."
            )
        if parsed.se is not None and name == "sigma":
            raise DataError(
                f"`| se({parsed.se})` gives every row a known sd: sigma has no formula then."
            )
        if isinstance(value, str):
            if name not in family.predictable and not family.category_logits:
                raise DataError(
                    f"The {family.name} family's {name!r} takes a fixed value, not a formula."
                )
            out[name] = (value, parse_dpar(name, value, parsed.response))
    return out


def _rows_for_dpars(dpar_formulas: dict, data, missing: str):
    """The data, less rows missing a column a parameter's formula uses (``missing=
    "drop"``, with a warning); ``"model"`` is refused for them."""
    if not isinstance(data, pd.DataFrame) or missing == "error":
        return data  # build_dpar_design names a missing value
    used = sorted({c for _, p in dpar_formulas.values() for c in used_columns(p, data)})
    counts = {c: int(k) for c, k in data[used].isna().sum().items() if k}
    if not counts:
        return data
    if missing == "model":
        raise DataError(
            "missing='model' imputes predictors of the mean only; "
            f"{', '.join(map(repr, counts))} used by a family parameter's formula have "
            "missing values. Use missing='drop'."
        )
    kept = data.dropna(subset=list(counts))
    warnings.warn(
        f"Dropped {len(data) - len(kept)} of {len(data)} rows with missing values in the "
        f"family parameters' formulas: {', '.join(f'{c!r} ({k})' for c, k in counts.items())}.",
        MissingDataWarning,
        stacklevel=5,
    )
    return kept


def distributional_formula(spec) -> DistributionalFormula:
    """The formula a spec was built from, with its family parameters' formulas."""
    return DistributionalFormula(
        spec.formula,
        tuple((d.name, d.formula if d.predicted else d.value) for d in spec.dpars),
    )


def rebuild_rows(spec, info: dict, data: pd.DataFrame, observed=None):
    """The design and rows of a fit read from a file, from the data it was made from:
    built as the fit built them (missing values dropped or modelled as they were) and
    checked against the fit (rows, columns, levels, imputed cells, response)."""
    family, _ = get_family(spec.family, spec.link)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)  # reported when it was fitted
        design, data, _, imputed = prepare_rows(
            distributional_formula(spec), family, data, missing_mode(spec, info)
        )
    problems = []
    n_rows = info.get("n_rows")
    if n_rows is not None and design.n != n_rows:
        problems.append(f"it has {design.n} rows, the fit {n_rows}")
    columns = design.columns + tuple(c for d in design.dpars for c in d.names)
    if columns != spec.columns:
        problems.append(f"its design columns are {columns}, the fit's {spec.columns}")
    if design.cs_columns != spec.cs_columns:
        problems.append(f"its cs() columns are {design.cs_columns}, the fit's {spec.cs_columns}")
    for block, term in zip(design.all_blocks, spec.terms):
        if block.levels != term.levels:
            problems.append(f"its levels of {term.group} differ from the fit's")
    for imp in spec.imputed:
        rebuilt = next((i for i in imputed if i.column == imp.column), None)
        if rebuilt is None or rebuilt.positions != imp.positions:
            problems.append(f"its missing values of {imp.column!r} are not the fit's")
    if not problems and observed is not None:
        y = np.asarray(observed)
        if y.shape != design.y.shape or not np.allclose(y, design.y):
            problems.append(f"its response {spec.response!r} differs from the fitted one")
    if problems:
        raise DataError(
            "The data given is not the data this fit was made from: "
            + "; ".join(problems)
            + ". Pass the same data the model was fitted to."
        )
    return design, data


def fit_rows(model, spec, info: dict, idata, data=None, what: str = "This"):
    """``Fit.rows``: the fitted design and DataFrame from the fit's ``model``, or rebuilt
    from ``data`` for a fit read with ``ml.load``; else an error saying why not."""
    if model is not None:
        if not model.in_memory:
            raise MultilevelError(CHUNKED.format(what=what))
        return model.design, model.data
    if data is None:
        raise MultilevelError(LOADED_FIT.format(what=what.lower() if what else "this"))
    observed = getattr(idata, "observed_data", None)
    y = None
    if observed is not None and spec.response in observed:
        y = observed[spec.response].values
    return rebuild_rows(spec, info, data, y)
