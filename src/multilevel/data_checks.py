"""Checks on the data's columns before a design is built: what would otherwise be
silently read as something else, or fail with a raw exception.

* **Duplicate names.** Two columns named ``x``: which one does the formula mean?
* **Dates and times.** A ``datetime64`` (or ``timedelta64``, ``Period``) column used as a
  predictor has no numeric scale formulaic can use, and a column of date strings (as a
  CSV gives) would become a factor with one coefficient per date.
* **Numbers but for a few cells.** One text cell (``oops``, ``.``, ``n/a``) in a column of
  numbers makes the whole column text, and a predictor of text becomes a factor with one
  coefficient per distinct value.
* **Text where numbers are needed**: the response, the trials of ``| trials(n)`` and the
  standard errors of ``| se(s)``.

The rule for a text column (object or string dtype) used as a predictor, applied to its
*distinct* non-missing values so that it reads the same chunk by chunk
(:mod:`multilevel.chunked`) as in memory:

* if at least 80% of them read as numbers (``pd.to_numeric``) and some do not, the
  column is refused, naming the cells that are not numbers;
* if at least 80% of them look like dates or times (``2020-01-31``, ``2020-01-31 12:00``,
  ``31/01/2020``, ``2020/01/31``), it is refused as a date column;
* otherwise it is a categorical predictor, as formulaic encodes it.

A column the formula uses only as ``C(column)`` is categorical by the user's explicit
choice and is never refused (``C(date)`` is a factor of dates); nor is a pandas
``Categorical`` column. Grouping factors take any values as labels and are not checked.
"""

from __future__ import annotations

import ast
import datetime
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from multilevel.errors import DataError
from multilevel.families import FAMILIES
from multilevel.formula import ParsedFormula
from multilevel.response_levels import is_two_level_text

# Share of a text column's distinct values that must read as numbers (dates) before the
# rest are taken for mistakes rather than categories. 80%: a column of codes "1".."4"
# plus one word is refused, "1", "2", "other" (67%) is a factor.
MOSTLY = 0.8
SHOWN = 5  # offending cells (row and value) listed in a message
RESPONSE = "The response"

_DATE = re.compile(
    r"^\s*(?:"
    r"\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{4}/\d{1,2}/\d{1,2}(?: \d{1,2}:\d{2}(?::\d{2})?)?"
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}(?: \d{1,2}:\d{2}(?::\d{2})?)?"
    r")\s*$"
)
_TIME_TYPES = (datetime.date, datetime.time, np.datetime64)
_BACKTICKED = re.compile(r"`([^`]*)`")


def check_columns(parsed: ParsedFormula, data: pd.DataFrame, family: str) -> None:
    """Refuse columns the formula uses that would mean something else than they look.

    ``data`` must hold every column the formula names (checked before). Raises
    ``DataError`` naming the column, the cells and what to do.

    Examples
    --------
    >>> from multilevel.formula import parse_formula
    >>> frame = pd.DataFrame({"y": [1.0, 2.0, 3.0], "x": [0.5, 1.5, 2.5]})
    >>> check_columns(parse_formula("y ~ x"), frame, "gaussian")  # nothing to say
    """
    uses = predictor_uses(parsed)
    check_unique_names(data, [parsed.response, *parsed.columns, *uses])
    # a bernoulli response may be a two-level factor or text, an ordinal or categorical
    # one categories of any kind: response_levels codes them
    facts = FAMILIES[family]
    two_level = family == "bernoulli" and is_two_level_text(data[parsed.response])
    categories = facts.ordinal or facts.categorical
    needs_numbers = [] if two_level or categories else [(parsed.response, RESPONSE)]
    if facts.multivariate_response:  # cbind(a, b, c): counts in each column
        needs_numbers = [(c, "The count column") for c in parsed.response_columns]
    if parsed.trials:
        needs_numbers.append((parsed.trials, "The trials column"))
    if parsed.se:
        needs_numbers.append((parsed.se, "The standard-error column"))
    for column, role in needs_numbers:
        check_numeric(data[column], column, role, family)
    for column, categorical in uses.items():
        if not categorical and column in data.columns:
            check_predictor(data[column], column)


def predictor_uses(parsed: ParsedFormula) -> dict[str, bool]:
    """The columns of the formulaic parts (population terms and group covariates), each
    True when the formula uses it only as ``C(column, ...)`` (categorical on purpose)."""
    import formulaic  # 45 ms: imported with the first model, not with multilevel.Model
    from formulaic.errors import FormulaicError

    required: set[str] = set()
    other: set[str] = set()
    categorical: set[str] = set()
    for expr in parsed.expressions:
        try:
            formula = formulaic.Formula(expr)
        except FormulaicError:
            continue  # the design reports unreadable formulas itself
        names = set(formula.required_variables)
        required |= names
        for term in formula:
            for factor in term.factors:
                method = getattr(factor.eval_method, "value", factor.eval_method)
                if method == "lookup":
                    other.add(factor.expr)
                elif method == "python":
                    found = _python_uses(factor.expr, names)
                    if found is None:  # cannot tell: check every column of the expression
                        other |= names
                    else:
                        other |= found[0]
                        categorical |= found[1]
    return {name: name in categorical and name not in other for name in sorted(required)}


def _python_uses(code: str, names: set[str]) -> tuple[set[str], set[str]] | None:
    """(columns used as values, columns used as ``C(column)``) in a Python factor."""
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        key = f"_quoted_{len(quoted)}"
        quoted[key] = match.group(1)
        return key

    try:
        tree = ast.parse(_BACKTICKED.sub(placeholder, code), mode="eval")
    except SyntaxError:
        return None

    def column(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return quoted.get(node.id, node.id)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Q"
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
        ):
            return str(node.args[0].value)
        return None

    body = tree.body
    if (
        isinstance(body, ast.Call)
        and isinstance(body.func, ast.Name)
        and body.func.id == "C"
        and body.args
        and column(body.args[0]) in names
    ):
        return set(), {column(body.args[0])}
    used = {c for node in ast.walk(tree) if (c := column(node)) in names}
    return used, set()


def check_unique_names(data: pd.DataFrame, used: Iterable[str]) -> None:
    """Refuse a column name the formula uses that the data holds more than once."""
    counts = pd.Index(data.columns).value_counts()
    twice = sorted({str(c) for c in used if counts.get(c, 0) > 1})
    if twice:
        listed = ", ".join(f"{c!r} ({int(counts[c])} columns)" for c in twice)
        raise DataError(
            f"The data has more than one column named {listed}, so the formula's "
            f"{'name is' if len(twice) == 1 else 'names are'} ambiguous. Rename or drop the "
            "copies (e.g. data.loc[:, ~data.columns.duplicated()] keeps the first of each)."
        )


def check_numeric(values: pd.Series, column: str, role: str, family: str) -> None:
    """A column the ``family`` needs numbers in (``role``: "The response", "The trials
    column", ...) must not hold text or dates; say which cells are the trouble."""
    subject = f"{role} `{column}`"
    needs = f"the {family} family needs numbers there"
    if _time_kind(values) is not None:
        raise DataError(
            f"{subject} holds dates or times ({values.dtype}); {needs}. Convert it, e.g. to "
            f"days since a date: (data[{column!r}] - data[{column!r}].min()).dt.days."
        )
    if not (_is_text(values) or _is_text_categories(values)):
        return
    distinct = _distinct(values)
    bad = _not_numbers(distinct)
    if len(bad) == 0:
        raise DataError(
            f"{subject} holds numbers stored as text ({values.dtype}); {needs}. Convert "
            f"it: data[{column!r}] = pd.to_numeric(data[{column!r}])."
        )
    if len(bad) < len(distinct):  # some cells are numbers: name the others
        raise DataError(
            f"{subject} holds numbers, but {_cells(values, bad)}, so the whole column was "
            f"read as text; {needs}. {_FIX_CELLS}"
        )
    recode = (
        " Recode it as numbers, e.g. (data[column] == 'yes').astype(int) with "
        "family='bernoulli' for two categories, or check that the formula names the "
        "column you meant."
        if role == RESPONSE
        else " Convert it to numbers, or check that the formula names the column you meant."
    )
    raise DataError(f"{subject} holds text ({_examples(distinct)}); {needs}.{recode}")


def check_predictor(values: pd.Series, column: str) -> None:
    """A predictor must not be a date column, nor a column of numbers but for a few text
    cells (see the module's rule)."""
    kind = _time_kind(values)
    if kind is not None:
        raise time_predictor_error(column, values.dtype, kind)
    if not _is_text(values):
        return
    check_text_values(_distinct(values), column, rows=values)


def time_predictor_error(column: str, dtype: object, kind: str) -> DataError:
    """The refusal of a predictor of ``kind`` "date" (dates, times) or "duration"."""
    advice = _duration_advice(column) if kind == "duration" else _date_advice(column)
    what = "durations" if kind == "duration" else "dates or times"
    return DataError(
        f"Column {column!r} holds {what} ({dtype}), which have no scale a model can use as "
        f"a predictor. {advice}"
    )


def time_kind_of_dtype(dtype: object) -> str | None:
    """ "date" for a (pandas, NumPy or Arrow) dtype of dates or times, "duration" for one
    of durations, None otherwise."""
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "duration"
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "date"
    if isinstance(dtype, np.dtype | pd.api.extensions.ExtensionDtype):
        return None
    import pyarrow as pa  # a Parquet file's schema

    if isinstance(dtype, pa.DataType):
        if pa.types.is_duration(dtype):
            return "duration"
        if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_time(dtype):
            return "date"
    return None


def check_text_values(distinct: pd.Series, column: str, rows: pd.Series | None = None) -> None:
    """The rule for a text predictor, on its distinct non-missing values; ``rows`` (the
    whole column) lets the message name the rows of the cells that are not numbers."""
    if len(distinct) == 0:
        return
    bad = _not_numbers(distinct)
    if len(bad) and len(distinct) - len(bad) >= MOSTLY * len(distinct):
        if rows is not None:
            cells = _cells(rows, bad)
        elif len(bad) == 1:
            cells = f"the value {_examples(bad)} is not a number"
        else:
            cells = f"the values {_examples(bad)} are not numbers"
        raise DataError(
            f"Column {column!r} holds numbers, but {cells}, so the whole column "
            f"was read as text: as a predictor it would become a factor with "
            f"{len(distinct)} levels, one coefficient per distinct value. {_FIX_CELLS} If "
            f"{column!r} really holds categories, write C({column}) in the formula."
        )
    text = distinct.astype(str)
    dates = text.str.match(_DATE).to_numpy(dtype=bool)
    if dates.mean() >= MOSTLY:
        odd = distinct[~dates]
        others = ""
        if len(odd):
            verb = "is not a date" if len(odd) == 1 else "are not dates"
            others = f"; also {_examples(odd)}, which {verb}"
        raise DataError(
            f"Column {column!r} holds dates as text ({_examples(distinct[dates])}{others}): "
            f"as a predictor it would become a factor with {len(distinct)} levels, one "
            f"coefficient per date. {_date_advice(column)}"
        )


_FIX_CELLS = (
    "Fix or remove those cells, or make them missing (e.g. pd.to_numeric(data[column], "
    "errors='coerce'), or empty cells in a CSV) and choose missing='drop' or "
    "missing='model' (--missing in the command line)."
)


def _date_advice(column: str) -> str:
    return (
        "Use a number instead, e.g. days since the first date: "
        f"(pd.to_datetime(data[{column!r}]) - pd.to_datetime(data[{column!r}]).min()).dt.days "
        "(or the year, the month, ... as you mean it), added to the data as a new column; "
        f"or, for one coefficient per date, write C({column}) in the formula."
    )


def _duration_advice(column: str) -> str:
    return (
        "Use a number instead, e.g. the duration in days: "
        f"data[{column!r}].dt.total_seconds() / 86400, added to the data as a new column."
    )


def _time_kind(values: pd.Series) -> str | None:
    kind = time_kind_of_dtype(values.dtype)
    if kind is None and values.dtype == np.dtype("O"):  # Python date or timedelta objects
        present = values.dropna()
        first = present.iloc[0] if len(present) else None
        if isinstance(first, datetime.timedelta | np.timedelta64):
            kind = "duration"
        elif isinstance(first, _TIME_TYPES):
            kind = "date"
    return kind


def _is_text(values: pd.Series) -> bool:
    """Object or string dtype: what formulaic would encode as categories.
    (A pandas Categorical is categorical on purpose and not checked.)"""
    return values.dtype == np.dtype("O") or isinstance(values.dtype, pd.StringDtype)


def _is_text_categories(values: pd.Series) -> bool:
    dtype = values.dtype
    return isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_numeric_dtype(
        dtype.categories.dtype
    )


def _distinct(values: pd.Series) -> pd.Series:
    return pd.Series(pd.unique(values.dropna().astype(object)), dtype=object)


def _not_numbers(distinct: pd.Series) -> pd.Series:
    as_numbers = pd.to_numeric(distinct, errors="coerce")
    return distinct[as_numbers.isna().to_numpy(dtype=bool)]


def _cells(rows: pd.Series, bad: pd.Series) -> str:
    """``2 of 60 cells (row 7: 'oops', row 12: '.') are not numbers``: rows by the data's
    index labels."""
    where = rows.isin(list(bad)).to_numpy(dtype=bool)
    labels, values = rows.index[where], rows.to_numpy()[where]
    shown = ", ".join(
        f"row {_plain(r)}: {_plain(v)!r}" for r, v in zip(labels[:SHOWN], values[:SHOWN])
    )
    if len(labels) > SHOWN:
        shown += f", ... {len(labels) - SHOWN} more"
    verb = "is not a number" if len(labels) == 1 else "are not numbers"
    return f"{len(labels)} of {int(rows.notna().sum())} cells ({shown}) {verb}"


def _examples(values: Sequence) -> str:
    values = list(values)
    shown = ", ".join(repr(_plain(v)) for v in values[:SHOWN])
    return shown + (f", ... {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
