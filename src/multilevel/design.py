"""From a parsed formula and a DataFrame to arrays: X, and per group term a block + codes.

A group term is stored as an (n x q) covariate block, integer level codes (n,) and the
level labels: never as a dense n x levels matrix, so a million rows with ten thousand
groups cost the same memory as a million rows with ten.
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass

import formulaic
import numpy as np
import pandas as pd
from formulaic.errors import FormulaicError

from multilevel.errors import DataError, FormulaError
from multilevel.families import Family, check_trials
from multilevel.formula import GroupTerm, ParsedFormula


class DesignWarning(UserWarning):
    """The data allows a fit, but something about it deserves a look."""


@dataclass(frozen=True)
class GroupBlock:
    """Arrays for one varying-effects term."""

    term: GroupTerm
    coefs: tuple[str, ...]  # covariate names, e.g. ("Intercept", "floor")
    Z: np.ndarray  # (n, q) covariates
    codes: np.ndarray  # (n,) int32 level index
    levels: tuple[str, ...]  # (L,) level labels, sorted as lme4 sorts them
    scales: np.ndarray  # (q,) sd of each covariate (1 for constant columns)

    @property
    def group(self) -> str:
        return self.term.group


@dataclass(frozen=True)
class Design:
    """Everything the model needs from the data, as plain arrays."""

    y: np.ndarray  # (n,)
    trials: np.ndarray | None  # (n,) for binomial
    X: np.ndarray  # (n, p)
    columns: tuple[str, ...]  # (p,) population-level names
    blocks: tuple[GroupBlock, ...]

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.columns


def build_design(parsed: ParsedFormula, data: pd.DataFrame, family: Family) -> Design:
    """Check the data against the formula and family and build the arrays."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("The data has no rows.")
    used = _used_columns(parsed, data)
    _check_missing(data, used)
    y = _column_values(data, parsed.response)
    trials = None
    if family.needs_trials:
        if parsed.trials is not None:
            trials = _column_values(data, parsed.trials)
            check_trials(trials, parsed.trials)
            trials = trials.astype(float)
    elif parsed.trials is not None:
        raise FormulaError(
            f"`| trials({parsed.trials})` is only meaningful for family='binomial', "
            f"not {family.name!r}."
        )
    family.check(y, trials, parsed.response)
    X, columns = _model_matrix(parsed.fixed, data, "the population-level part")
    _check_finite(X, columns, "population-level predictor")
    _check_constant(X, columns)
    blocks = tuple(_group_block(term, data) for term in parsed.groups)
    _check_unique_names(blocks)
    return Design(y.astype(float), trials, X, columns, blocks)


def _used_columns(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    needed = set(parsed.columns)
    needed |= _formulaic_variables(parsed.fixed)
    for term in parsed.groups:
        needed |= _formulaic_variables(term.expr)
    missing = sorted(c for c in needed if c not in data.columns)
    if missing:
        name = missing[0]
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(
            f"Column {name!r} named in the formula is not in the data.{hint} "
            f"The data has: {', '.join(map(str, data.columns[:20]))}"
            + (" ..." if len(data.columns) > 20 else ".")
        )
    return sorted(needed)


def _formulaic_variables(expr: str) -> set[str]:
    try:
        return set(formulaic.Formula(expr).required_variables)
    except FormulaicError as exc:
        raise FormulaError(f"Cannot read `{expr}`: {_plain(exc)}") from None


_HIGHLIGHT = re.compile(r"\x1b\[[0-9;]*m|[⧛⧚]")


def _plain(exc: Exception) -> str:
    """formulaic highlights the offending span with terminal colour codes; drop them."""
    return _HIGHLIGHT.sub("", str(exc))


def _check_missing(data: pd.DataFrame, used: list[str]) -> None:
    counts = {c: int(data[c].isna().sum()) for c in used}
    counts = {c: k for c, k in counts.items() if k}
    if counts:
        listed = ", ".join(f"{c!r} ({k} missing)" for c, k in counts.items())
        rows = int(data[list(counts)].isna().any(axis=1).sum())
        raise DataError(
            f"Missing values in columns the model uses: {listed}; {rows} rows in all. "
            "Nothing is dropped silently: remove those rows yourself "
            "(e.g. data.dropna(subset=[...])) or impute them, then fit again."
        )


def _column_values(data: pd.DataFrame, column: str) -> np.ndarray:
    values = data[column].to_numpy()
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DataError(
            f"Column {column!r} has {bad} infinite values; the model needs finite ones."
        )
    return values


def _model_matrix(expr: str, data: pd.DataFrame, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        matrix = formulaic.model_matrix(expr, data, na_action="raise")
    except FormulaicError as exc:
        raise FormulaError(f"Cannot build {where} `{expr}`: {_plain(exc)}") from None
    columns = tuple(str(c) for c in matrix.columns)
    return np.asarray(matrix, dtype=float).reshape(len(data), len(columns)), columns


def _check_finite(X: np.ndarray, columns: tuple[str, ...], what: str) -> None:
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        names = [c for c, b in zip(columns, bad) if b]
        raise DataError(f"The {what} {', '.join(map(repr, names))} has infinite values.")


def _check_constant(X: np.ndarray, columns: tuple[str, ...]) -> None:
    if "Intercept" not in columns:
        return
    for j, name in enumerate(columns):
        if name != "Intercept" and np.ptp(X[:, j]) == 0:
            raise DataError(
                f"The predictor {name!r} is constant ({X[0, j]:g} in every row), so its "
                "effect cannot be told apart from the intercept. Remove it from the formula."
            )


def _group_block(term: GroupTerm, data: pd.DataFrame) -> GroupBlock:
    Z, coefs = _model_matrix(term.expr, data, f"the group term `({term.expr} | {term.group})`")
    _check_finite(Z, coefs, f"covariate of ({term.expr} | {term.group})")
    codes, levels = _group_codes(data, term.factors)
    if len(levels) == 1:
        warnings.warn(
            f"The grouping factor `{term.group}` has a single level ({levels[0]!r}): its "
            "standard deviation is informed by the prior alone. Did you mean another column?",
            DesignWarning,
            stacklevel=4,
        )
    scales = Z.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    return GroupBlock(term, coefs, Z, codes, levels, scales)


def _group_codes(
    data: pd.DataFrame, factors: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes (0..L-1) and labels of the interaction of ``factors``."""
    if len(factors) == 1:
        codes, uniques = pd.factorize(data[factors[0]], sort=True)
        labels = tuple(str(u) for u in uniques)
    else:
        index = pd.MultiIndex.from_arrays([data[f] for f in factors])
        codes, uniques = pd.factorize(index, sort=True)
        labels = tuple(":".join(str(v) for v in u) for u in uniques)
    return codes.astype(np.int32), labels


def _check_unique_names(blocks: tuple[GroupBlock, ...]) -> None:
    seen: set[str] = set()
    for block in blocks:
        for coef in block.coefs:
            name = f"{coef}|{block.group}"
            if name in seen:
                raise FormulaError(
                    f"`{coef}` varies by `{block.group}` in two terms; list each covariate "
                    "once per grouping factor, e.g. `(1 + x | g)`."
                )
            seen.add(name)
