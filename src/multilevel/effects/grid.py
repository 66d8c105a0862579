"""The rows effects are computed on: ``at=`` as a grid, the fitted rows or given rows,
with every predictor the user leaves out held at a typical value.

Typical values (as ``marginaleffects``' ``datagrid`` and brms' ``conditional_effects``):
a numeric column at its mean over the fitted rows; a categorical, text or True/False
column at its reference level (the first category of a pandas categorical, else the
smallest value, as formulaic codes it). The trials of a binomial response default to
1, also for the fitted rows (``at="data"``), so that its effects are probabilities, the
same whatever ``at`` is (multiply by the trials for expected counts). Grouping columns are needed only for
``groups="fitted"`` (each row's own group); otherwise a placeholder fills them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import pandas as pd

from multilevel.errors import MultilevelError
from multilevel.formula import parse_formula


def typical_value(column: pd.Series):
    """A numeric column's mean; a categorical, text or True/False column's reference
    level (a pandas categorical's first category, else the smallest value)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.categories[0]
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return sorted(column.dropna().unique(), key=str)[0]
    return float(column.mean())


def effect_rows(spec, fitted: pd.DataFrame, at, fill_groups: bool) -> pd.DataFrame:
    """The rows to compute effects on.

    ``at``: None or ``"data"`` (the fitted rows), a DataFrame (its rows) or a mapping of
    column -> value or values (every combination of them). Predictor columns that a
    DataFrame or mapping leaves out take their ``typical_value``; grouping columns, with
    ``fill_groups`` (their effects unused), a placeholder."""
    if at is None or (isinstance(at, str) and at == "data"):
        rows = fitted.reset_index(drop=True)
        trials = parse_formula(spec.formula).trials
        # per trial, as on a grid: a binomial's effects are probabilities, not counts
        return rows if trials is None else rows.assign(**{trials: 1})
    if isinstance(at, pd.DataFrame):
        rows = at.reset_index(drop=True)
    elif isinstance(at, Mapping):
        rows = _grid(at)
    else:
        raise MultilevelError(
            f"at= takes 'data' (the fitted rows), a DataFrame of rows or a dict of column "
            f"-> values such as {{'Days': range(10)}}; got {type(at).__name__}."
        )
    return _completed(spec, fitted, rows, fill_groups)


def _grid(at: Mapping) -> pd.DataFrame:
    """Every combination of the values in ``at`` (a scalar counts as one value)."""
    columns, values = [], []
    for column, given in at.items():
        if isinstance(given, str) or not isinstance(given, Iterable):
            given = [given]
        given = list(given)
        if not given:
            raise MultilevelError(f"at= gives no values for {column!r}.")
        columns.append(column)
        values.append(given)
    return pd.DataFrame(list(itertools.product(*values)), columns=columns)


def _completed(spec, fitted: pd.DataFrame, rows: pd.DataFrame, fill_groups: bool):
    """``rows`` with the model's predictor columns it lacks at typical values."""
    groups = {f for t in spec.terms for f in t.factors}
    parsed = parse_formula(spec.formula)
    out = rows.copy()
    unknown = [c for c in rows.columns if c not in fitted.columns]
    if unknown:
        raise MultilevelError(
            f"at= names {', '.join(map(repr, unknown))}, which the fitted data lack; the "
            f"model reads {', '.join(sorted(spec.predictor_columns))}."
        )
    for column in sorted(spec.predictor_columns - set(rows.columns)):
        if column in groups:
            if not fill_groups:
                raise MultilevelError(
                    f"groups='fitted' uses each row's own group, so at= must give "
                    f"{column!r} (e.g. at={{..., {column!r}: [...]}}); or use "
                    "groups='zero' (a typical group) or 'integrated' (the average over "
                    "groups), which need no group."
                )
            continue  # prediction fills it: the effects are not used
        out[column] = typical_value(fitted[column])
    for column, value in out.items():  # keep the fitted data's categories
        if isinstance(fitted[column].dtype, pd.CategoricalDtype):
            categories = fitted[column].cat.categories
            by_text = {str(c): c for c in categories}  # 1 given for the category "1"
            value = [v if v in categories else by_text.get(str(v), v) for v in value]
            out[column] = pd.Categorical(value, categories=categories)
            if out[column].isna().any() and not pd.isna(value).any():
                absent = sorted({str(v) for v in value if str(v) not in by_text})
                raise MultilevelError(
                    f"at= gives {column!r} the value(s) {', '.join(absent)}, which are not "
                    f"among its categories ({', '.join(map(str, categories))})."
                )
    if parsed.trials is not None and parsed.trials not in out.columns:
        out[parsed.trials] = 1  # the mean of one trial: a probability
    return out


def numeric(column: pd.Series) -> bool:
    """A column that effects treat as a number (not bool, text or categorical)."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def levels_of(column: pd.Series) -> list:
    """The levels of a categorical, text or True/False column, reference first."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.categories)
    return sorted(column.dropna().unique(), key=str)
