"""brms' addition terms as checked arrays: ``weights(w)``, ``rate(t)``, ``cens(c, y2)``,
``trunc(lb, ub)`` and the values of ``offset(...)``.

Each check names the column, the offending value and its row, and what to do; nothing
is dropped or changed silently. The arrays are data of the design (never constants of a
compiled program), so refits on new data of the same shape reuse the program.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multilevel.errors import DataError
from multilevel.families import Family
from multilevel.formula.parser import bound_value
from multilevel.response_bounds import CENSORING_CODES

_CENSORING_WORDS = ", ".join(f'"{w}"' for w in CENSORING_CODES)


def _numbers(values: np.ndarray, column: str, what: str) -> np.ndarray:
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number):
        raise DataError(
            f"The {what} column `{column}` holds {values.dtype} values; it needs numbers. "
            "Convert it (e.g. pd.to_numeric)."
        )
    return values.astype(float)


def _first_bad(bad: np.ndarray, values: np.ndarray) -> str:
    rows = np.flatnonzero(bad)
    return f"{rows.size} rows (e.g. {values[rows[0]]!r} in row {rows[0]})"


def weights_of(values: np.ndarray, column: str) -> np.ndarray:
    """Likelihood weights: finite, >= 0, not all zero."""
    weights = _numbers(values, column, "weights")
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        raise DataError(
            f"The weights in `{column}` must be finite and >= 0, but {_first_bad(bad, weights)} "
            "are not. A weight multiplies a row's log-likelihood; fix or remove those rows."
        )
    if not (weights > 0).any():
        raise DataError(
            f"Every weight in `{column}` is 0, so no row informs the model. Check the column."
        )
    return weights


def failures_of(values: np.ndarray, column: str) -> np.ndarray:
    """The failures of ``cbind(successes, failures)``: whole numbers >= 0."""
    failures = _numbers(values, column, "failures")
    bad = ~np.isfinite(failures) | (failures < 0) | (failures != np.round(failures))
    if bad.any():
        raise DataError(
            f"The failures in `cbind(..., {column})` must be whole numbers >= 0, but "
            f"{_first_bad(bad, failures)} are not."
        )
    return failures


def rate_offset(values: np.ndarray, column: str) -> np.ndarray:
    """log(t) of an exposure ``rate(t)``: t must be positive and finite."""
    exposure = _numbers(values, column, "exposure (rate)")
    bad = ~np.isfinite(exposure) | (exposure <= 0)
    if bad.any():
        raise DataError(
            f"The exposure in `rate({column})` must be positive, but "
            f"{_first_bad(bad, exposure)} are not: a rate per unit of zero or negative "
            "exposure is undefined. Remove those rows or correct the exposure."
        )
    return np.log(exposure)


def check_offset(values: np.ndarray, expression: str) -> np.ndarray:
    """An offset's values must be finite (``offset(np.log(t))`` of t <= 0 is not)."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"`offset({expression})` is not finite in {_first_bad(bad, values)}: for "
            "`np.log(exposure)`, an exposure of 0 or less. Remove those rows or correct "
            "the exposure."
        )
    return values


def censoring_of(
    values: np.ndarray, column: str, y: np.ndarray, upper: np.ndarray | None, upper_column
) -> tuple[np.ndarray, np.ndarray | None]:
    """(codes, y2) of ``cens(c)`` / ``cens(c, y2)``: ``c`` holds "none", "left", "right",
    "interval" (any case), brms' 0 / -1 / 1 / 2, or True/False (True: right-censored)."""
    if values.dtype == bool:
        codes = values.astype(np.int32)
    elif np.issubdtype(values.dtype, np.number):
        numbers = values.astype(float)
        bad = ~np.isin(numbers, [-1, 0, 1, 2])
        if bad.any():
            raise DataError(
                f"The censoring column `{column}` must hold {_CENSORING_WORDS} or brms' codes "
                f"0, -1, 1, 2, but {_first_bad(bad, numbers)} hold other values."
            )
        codes = numbers.astype(np.int32)
    else:
        words = pd.Series(values).astype(str).str.strip().str.lower()
        bad = ~words.isin(list(CENSORING_CODES)).to_numpy()
        if bad.any():
            raise DataError(
                f"The censoring column `{column}` must hold {_CENSORING_WORDS} (or brms' "
                f"codes 0, -1, 1, 2), but {_first_bad(bad, np.asarray(values, dtype=object))} "
                "hold other values."
            )
        codes = words.map(CENSORING_CODES).to_numpy(dtype=np.int32)
    interval = codes == 2
    if upper is None:
        if interval.any():
            raise DataError(
                f"`{column}` marks {interval.sum()} rows as interval-censored, which needs the "
                f"upper ends: write `cens({column}, y2)` with `y2` the column of upper ends."
            )
        return codes, None
    upper = _numbers(upper, upper_column, "upper end (y2)")
    bad = interval & ~(upper > y)
    if bad.any():
        row = np.flatnonzero(bad)[0]
        raise DataError(
            f"Interval-censored rows need `{upper_column}` > the response, but {bad.sum()} "
            f"rows do not (e.g. row {row}: from {y[row]:g} to {upper[row]:g}). Swap or fix "
            "the ends; a known value is censoring 'none'."
        )
    return codes, np.where(interval, upper, y)


def truncation_of(bound: str, data: pd.DataFrame, y: np.ndarray | None, which: str) -> np.ndarray:
    """One ``trunc()`` bound as an array (a number, or a column), checked to hold the
    response ``y`` (None: rows to predict): the lower bound <= y, the upper bound >= y."""
    number = bound_value(bound)
    if number is not None:
        values = np.full(len(data), number)
        name = f"{'lb' if which == 'lower' else 'ub'} = {bound}"
    else:
        values = _numbers(data[bound].to_numpy(), bound, f"truncation bound ({which})")
        name = f"`{bound}`"
    if y is None:
        return values
    broken = (y < values) if which == "lower" else (y > values)
    if broken.any():
        row = np.flatnonzero(broken)[0]
        side = "below" if which == "lower" else "above"
        raise DataError(
            f"The response is {side} its truncation bound ({name}) in {broken.sum()} rows "
            f"(e.g. row {row}: {y[row]:g} against {values[row]:g}). A truncated "
            "distribution cannot produce such values: correct the bound or the rows."
        )
    return values


def check_bounded_family(family: Family, what: str) -> None:
    """Censoring and truncation need the family's cdf."""
    if not family.has_cdf:
        raise DataError(
            f"{what} needs the cdf of the {family.name} family, which it does not have here. "
            "Censoring and truncation work with gaussian, student_t, lognormal, gamma, beta, "
            "poisson and negative_binomial among others."
        )
