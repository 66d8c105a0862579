"""From a parsed formula and a DataFrame to arrays: X, and per group term a block + codes.

A group term is stored as an (n x q) covariate block, integer level codes (n,) and the
level labels: never as a dense n x levels matrix, so a million rows with ten thousand
groups cost the same memory as a million rows with ten.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from multilevel.addition_terms import (
    censoring_of,
    check_bounded_family,
    check_offset,
    failures_of,
    rate_offset,
    truncation_of,
    weights_of,
)
from multilevel.data_checks import check_columns
from multilevel.errors import DataError, FormulaError
from multilevel.families import Family, category_predictor, check_se, check_trials
from multilevel.formula import GroupTerm, ParsedFormula
from multilevel.formula.expressions import evaluation_context, required_columns
from multilevel.formula.parser import CS_CALL, bound_value
from multilevel.ordinal import CATEGORY_SPECIFIC_FAMILIES
from multilevel.response_levels import (
    categorical_codes,
    encode_two_levels,
    is_two_level_text,
    ordinal_codes,
    two_levels,
)


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
    # formulaic ModelSpec of the covariate block: encodes new data as it encoded these rows
    spec: object = field(default=None, compare=False, repr=False)

    @property
    def group(self) -> str:
        return self.term.group


@dataclass(frozen=True)
class DparDesign:
    """The design of a family parameter's own formula (``ml.bf(..., sigma="~ x")``) on
    the same rows as the mean's. ``columns`` are formulaic's names (``Intercept``,
    ``x``): ``names`` prefix them with the parameter as brms does (``sigma_x``), and so
    do the blocks' ``coefs``. Shaped like a ``Design`` where ``encode_new`` reads it."""

    name: str
    X: np.ndarray  # (n, p_d)
    columns: tuple[str, ...]
    blocks: tuple[GroupBlock, ...]
    fixed_spec: object = field(default=None, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}_{c}" for c in self.columns)

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.columns


@dataclass(frozen=True)
class Design:
    """Everything the model needs from the data, as plain arrays."""

    y: np.ndarray  # (n,); (n, K) counts of a multinomial response
    trials: np.ndarray | None  # (n,) for binomial; a multinomial's row totals
    X: np.ndarray  # (n, p)
    columns: tuple[str, ...]  # (p,) population-level names
    blocks: tuple[GroupBlock, ...]
    # formulaic ModelSpec of X: encodes new data as it encoded these rows (encode_new)
    fixed_spec: object = field(default=None, compare=False, repr=False)
    se: np.ndarray | None = None  # (n,) known standard errors: `y | se(s) ~ ...`
    dpars: tuple[DparDesign, ...] = ()  # designs of family parameters' own formulas
    # (failure, success) of a bernoulli response stored as two-level text (response_levels)
    response_levels: tuple[str, str] | None = None
    # addition terms (addition_terms.py): the sum of the offset() terms and log(rate),
    # added to the mean's linear predictor; likelihood weights; censoring and truncation
    # arrays (``cens``, ``y2``, ``lower``, ``upper``: response_bounds.Bounded's)
    offset: np.ndarray | None = None  # (n,)
    weights: np.ndarray | None = None  # (n,)
    bounds: dict = field(default_factory=dict)
    # brms' category-specific effects `cs(z)` of an ordinal model: (n, p_cs) columns, each
    # with one coefficient per threshold (data beside X, never in the compiled program)
    X_cs: np.ndarray | None = None
    cs_columns: tuple[str, ...] = ()
    cs_spec: object = field(default=None, compare=False, repr=False)

    @property
    def has_additions(self) -> bool:
        """Offsets, weights, censoring or truncation: rows that cannot be pooled into
        covariate patterns or per-group statistics."""
        return self.offset is not None or self.weights is not None or bool(self.bounds)

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def all_blocks(self) -> tuple[GroupBlock, ...]:
        """The mean's group terms, then each parameter's: ``ModelSpec.terms``' order."""
        return self.blocks + tuple(b for d in self.dpars for b in d.blocks)

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.columns


def build_design(parsed: ParsedFormula, data: pd.DataFrame, family: Family) -> Design:
    """Check the data against the formula and family and build the arrays."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("The data has no rows.")
    check_category_specific(parsed, family)
    check_response_kind(parsed, family)
    used = used_columns(parsed, data)
    check_columns(parsed, data, family.name)  # duplicates, dates, text in numbers
    check_missing(data, used)
    if family.multivariate_response:
        return _count_vectors_design(parsed, data, family)
    y = _column_values(data, parsed.response)
    levels = None
    if family.name == "bernoulli" and is_two_level_text(data[parsed.response]):
        levels = two_levels(data[parsed.response])
        y = encode_two_levels(data[parsed.response], parsed.response, levels)
    elif family.ordinal:  # categories coded 0..K-1, their labels kept
        y, levels = ordinal_codes(data[parsed.response], parsed.response)
    elif family.categorical:  # categories coded 0..K-1, the first the reference
        y, levels = categorical_codes(data[parsed.response], parsed.response)
    trials = None
    if family.needs_trials:
        if parsed.trials is not None:
            trials = _column_values(data, parsed.trials)
            check_trials(trials, parsed.trials)
            trials = trials.astype(float)
        elif parsed.failures is not None:  # cbind(k, f): k successes out of k + f
            failures = failures_of(_column_values(data, parsed.failures), parsed.failures)
            trials = failures + _column_values(data, parsed.response)
            check_trials(trials, f"{parsed.response} + {parsed.failures}")
    elif parsed.trials is not None or parsed.failures is not None:
        written = f"| trials({parsed.trials})" if parsed.trials else "cbind(k, failures)"
        raise FormulaError(
            f"`{written}` (a number of trials) is only meaningful for a binomial family, "
            f"not {family.name!r}."
        )
    se = None
    if parsed.se is not None:
        if family.name != "gaussian":
            raise FormulaError(
                f"`| se({parsed.se})` (known standard errors) needs family='gaussian', "
                f"not {family.name!r}."
            )
        se = check_se(_column_values(data, parsed.se), parsed.se)
    family.check(y, trials, parsed.response)
    return _with_predictors(parsed, data, family, y.astype(float), trials, se, levels)


def _with_predictors(parsed, data, family, y, trials, se, levels) -> Design:
    """The design of the response ``y`` and the formula's predictors and additions."""
    X, columns, fixed_spec = _model_matrix(parsed.fixed, data, "the population-level part")
    check_finite(X, columns, "population-level predictor")
    check_constant(X, columns)
    check_full_rank(X, columns)
    if family.ordinal:  # the thresholds take the intercept's place (brms)
        X, columns = _without_intercept(X, columns)
    X_cs, cs_columns, cs_spec = _category_specific_design(parsed, data, X, columns)
    blocks = tuple(_group_block(term, data) for term in parsed.groups)
    check_unique_names(blocks)
    _warn_thin_response(y, family, blocks, levels, parsed.response)
    weights = None
    if parsed.weights is not None:
        weights = weights_of(_column_values(data, parsed.weights), parsed.weights)
    return Design(
        y, trials, X, columns, blocks, fixed_spec, se=se, offset=offset_of(parsed, data),
        weights=weights, bounds=_bounds(parsed, data, y, family), response_levels=levels,
        X_cs=X_cs, cs_columns=cs_columns, cs_spec=cs_spec,
    )  # fmt: skip


def check_category_specific(parsed: ParsedFormula, family: Family) -> None:
    """Refuse ``cs()`` where it has no meaning: outside the ordinal families that take
    it, and formulaic's spline ``cs(x, df=4)`` in an ordinal formula (where ``cs`` is
    brms' category-specific effect)."""
    terms = ", ".join(f"`cs({e})`" for e in parsed.category_specific)
    if terms and family.name == "cumulative":
        raise FormulaError(
            f"{terms}: category-specific effects cannot be fitted with the cumulative "
            "family. Its thresholds must stay ordered in every row, and slopes that differ "
            "by threshold cross each other for some predictor values (brms refuses them "
            "too, brms issues #269 and #1060). Use family='sratio', 'cratio' or 'acat', "
            "whose thresholds need no order, or drop `cs()` (one slope for every threshold)."
        )
    if terms and not family.category_specific:
        raise FormulaError(
            f"{terms}: brms' category-specific effects apply only to the ordinal families "
            f"{', '.join(CATEGORY_SPECIFIC_FAMILIES)} (one coefficient per threshold), not "
            f"to {family.name!r}. Write the predictor without cs(); for formulaic's cubic "
            "spline basis give its degrees of freedom, `cs(x, df=4)`."
        )
    if family.ordinal and CS_CALL.search(" ".join(parsed.expressions)):
        raise FormulaError(
            "In an ordinal formula `cs()` is brms' category-specific effect, one expression "
            "in a term of its own (`cs(z)`, `cs(z1 + z2)`); formulaic's cubic spline "
            "`cs(x, df=...)` is not available there: write `cr(x, df=4)` for a spline basis."
        )


def _category_specific_design(parsed: ParsedFormula, data: pd.DataFrame, X, columns):
    """(X_cs, its column names, its formulaic encoding) of the ``cs()`` terms, or
    (None, (), None) without. Coded as beside an intercept (the thresholds), so a
    factor keeps its reference level; a column also in the population part, or any
    combination of them repeating one of its columns, would not be identified."""
    if not parsed.category_specific:
        return None, (), None
    where = "the category-specific part " + " + ".join(f"cs({e})" for e in parsed.category_specific)
    expr = " + ".join(["1", *(f"({e})" for e in parsed.category_specific)])
    X_cs, cs_columns, cs_spec = _model_matrix(expr, data, where)
    check_finite(X_cs, cs_columns, "category-specific predictor")
    check_constant(X_cs, cs_columns)
    check_full_rank(X_cs, cs_columns)
    X_cs, cs_columns = _without_intercept(X_cs, cs_columns)
    if not cs_columns:
        raise FormulaError(
            f"{where} has no columns: category-specific thresholds are the model's own "
            "(Intercept[k]); put predictors inside cs(), e.g. cs(z)."
        )
    both = [c for c in cs_columns if c in columns]
    if both:
        raise FormulaError(
            f"{', '.join(map(repr, both))} is both a population-level term and inside cs(): "
            "its shared slope and its slopes per threshold would not be identified (only "
            "their sums are). Keep it in one place: `cs(x)` for a slope per threshold, `x` "
            "for one slope."
        )
    stacked = np.column_stack([np.ones(len(X_cs)), X, X_cs])
    check_full_rank(stacked, ("Intercept", *columns, *(f"cs({c})" for c in cs_columns)))
    return X_cs, cs_columns, cs_spec


def check_response_kind(parsed: ParsedFormula, family: Family) -> None:
    """A multinomial response is a ``cbind()`` of count columns, and a ``cbind()`` of
    more than two columns is a multinomial response."""
    k = len(parsed.response_columns)
    if k > 2 and not family.multivariate_response:
        raise FormulaError(
            f"`{parsed.response}` binds {k} count columns: a multinomial response (counts "
            f"over {k} categories). Fit it with family='multinomial'; a binomial response "
            "is `cbind(successes, failures)`."
        )
    if family.multivariate_response and k < 2:
        raise FormulaError(
            f"The multinomial family needs the counts of each category, one column per "
            f"category: `cbind(a, b, c) ~ ...` (the first column is the reference category; "
            f"at least two columns), not `{parsed.response}`."
        )
    named = (parsed.se, parsed.cens, parsed.rate, *parsed.trunc_bounds, *parsed.offsets)
    if family.multivariate_response and any(named):
        raise FormulaError(
            "A multinomial response takes `| trials(n)` (checked to be each row's total "
            "count) and `weights(w)`; not `se()`, `cens()`, `trunc()`, `rate()` or "
            "`offset()` (an offset of which category's log-odds?)."
        )


def _count_vectors_design(parsed: ParsedFormula, data: pd.DataFrame, family: Family) -> Design:
    """The design of a multinomial response: (n, K) counts, one column per category in
    the formula's order (the first the reference), the row sums as trials."""
    columns = parsed.response_columns
    counts = [_column_values(data, c) for c in columns]
    trials = None if parsed.trials is None else _column_values(data, parsed.trials)
    family.check(counts, trials, columns)  # column by column: a bool column is refused
    y = np.stack(counts, axis=1).astype(float)
    return _with_predictors(parsed, data, family, y, y.sum(axis=1), None, tuple(columns))


def _without_intercept(X: np.ndarray, columns: tuple[str, ...]):
    """``X`` and its column names less an ``Intercept`` column, if it has one."""
    keep = [j for j, c in enumerate(columns) if c != "Intercept"]
    return X[:, keep], tuple(columns[j] for j in keep)


def offset_of(parsed: ParsedFormula, data: pd.DataFrame) -> np.ndarray | None:
    """(n,) the sum of the formula's ``offset(...)`` terms and ``log(t)`` of ``rate(t)``,
    or None without either. Evaluated like the population part (the same transforms), on
    the fitted rows or on new data."""
    needed = {parsed.rate} if parsed.rate is not None else set()
    for expression in parsed.offsets:
        needed |= _formulaic_variables(expression)
    _require_columns(
        needed, data, "named in an offset() or rate() (set it to 1 for a rate per unit)"
    )
    total = None
    for expression in parsed.offsets:
        values, _, _ = _model_matrix(f"0 + I({expression})", data, "the offset")
        values = check_offset(values.sum(axis=1), expression)
        total = values if total is None else total + values
    if parsed.rate is not None:
        log_rate = rate_offset(_column_values(data, parsed.rate), parsed.rate)
        total = log_rate if total is None else total + log_rate
    return total


def truncation_bounds(parsed: ParsedFormula, data: pd.DataFrame) -> dict:
    """``lower``/``upper`` arrays of ``trunc()`` on rows to predict (numbers, or columns
    that ``data`` must hold); {} without truncation."""
    out = {}
    for which, bound in zip(("lower", "upper"), parsed.trunc_bounds):
        if bound is None:
            continue
        if bound_value(bound) is None:
            why = f"named in trunc() (the {which} bound of each row's draws)"
            _require_columns({bound}, data, why, "newdata")
            check_missing(data, [bound], then="predict again")
        out[which] = truncation_of(bound, data, None, which)
    return out


def _bounds(parsed: ParsedFormula, data: pd.DataFrame, y: np.ndarray, family: Family) -> dict:
    """Censoring and truncation arrays of ``cens()`` and ``trunc()``."""
    out = {}
    if parsed.cens is not None:
        check_bounded_family(family, f"`cens({parsed.cens})`")
        upper = None if parsed.cens_upper is None else _column_values(data, parsed.cens_upper)
        codes, y2 = censoring_of(
            _column_values(data, parsed.cens), parsed.cens, y, upper, parsed.cens_upper
        )
        out["cens"] = codes
        if y2 is not None:
            out["y2"] = y2
    for which, bound in zip(("lower", "upper"), parsed.trunc_bounds):
        if bound is not None:
            check_bounded_family(family, "`trunc()`")
            out[which] = truncation_of(bound, data, y, which)
    return out


def build_dpar_design(name: str, parsed: ParsedFormula, data: pd.DataFrame) -> DparDesign:
    """The design of parameter ``name``'s formula (parsed with a placeholder response)
    on the rows ``data`` (those of the mean's design)."""
    where = f"the formula of {name}"
    if parsed.category_specific:
        raise FormulaError(
            f"{', '.join(f'`cs({e})`' for e in parsed.category_specific)} in {where}: "
            "category-specific effects shift an ordinal model's thresholds, so they belong "
            "in the main formula of an sratio, cratio or acat model, not in a family "
            "parameter's formula."
        )
    if parsed.offsets:  # read nowhere below: refused rather than dropped
        category = category_predictor(name)
        raise FormulaError(
            f"{', '.join(f'`offset({e})`' for e in parsed.offsets)} in "
            + ("a categorical or multinomial model's formula: an offset shifts one linear "
               "predictor, and here each category but the first has its own (the log-odds "
               "of which category?)" if category else
               f"{where}: offsets shift the mean's linear predictor only")
            + ". Remove it, or enter the variable as a predictor."
        )  # fmt: skip
    needed = _formulaic_variables(parsed.fixed)
    for term in parsed.groups:
        needed |= _formulaic_variables(term.expr) | set(term.factors)
    used = _require_columns(needed, data, f"named in {where}")
    check_missing(data, used)
    X, columns, fixed_spec = _model_matrix(parsed.fixed, data, where)
    check_finite(X, columns, f"predictor of {name}")
    check_constant(X, columns)
    check_full_rank(X, columns)
    blocks = tuple(
        dataclasses.replace(b, coefs=tuple(f"{name}_{c}" for c in b.coefs))
        for b in (_group_block(term, data) for term in parsed.groups)
    )
    check_unique_names(blocks)
    return DparDesign(name, X, columns, blocks, fixed_spec)


def encode_new(
    design: Design, parsed: ParsedFormula, newdata: pd.DataFrame
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Encode ``newdata`` exactly as ``design``'s rows were encoded (for prediction).

    Returns ``X`` (m, p) and, per group term, ``(Z, codes, labels)``: the (m, q) covariate
    block, each row's level index into the block's ``levels`` (-1 for a level not seen in
    the fitted data) and each row's level label (as ``build_design`` writes labels, e.g.
    ``"MN:AITKIN"`` for ``state:county``). Categorical encodings and stateful transforms
    (``center(x)``) are those of the fitted data. Neither the response nor the trials
    column is needed. A missing column, a missing value or a category of a
    population-level predictor that the fitted data never had raises ``DataError``
    naming the column.
    """
    if design.fixed_spec is None or any(b.spec is None for b in design.blocks):
        raise DataError(
            "This design does not keep the encodings of its data (it was not built by "
            "build_design from rows), so new data cannot be encoded like it."
        )
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}.")
    if len(newdata) == 0:
        raise DataError("newdata has no rows.")
    needed = set()
    for expression in (parsed.fixed, *parsed.category_specific):
        needed |= _formulaic_variables(expression)
    for term in parsed.groups:
        needed |= _formulaic_variables(term.expr) | set(term.factors)
    used = _require_columns(needed, newdata, "named in the formula", "newdata")
    check_missing(newdata, used, then="predict again")
    X, columns = _encode(design.fixed_spec, newdata, "the population-level part")
    if "Intercept" not in design.columns:  # ordinal: thresholds in its place
        X, columns = _without_intercept(X, columns)
    if columns != design.columns:  # formulaic reuses the encoding, so this is a bug
        raise DataError(f"newdata encodes to columns {columns}, the fit has {design.columns}.")
    check_finite(X, columns, "population-level predictor")
    out = []
    for block in design.blocks:
        term = block.term
        Z, _ = _encode(block.spec, newdata, f"the group term `({term.expr} | {term.group})`")
        check_finite(Z, block.coefs, f"covariate of ({term.expr} | {term.group})")
        row_codes, row_levels = group_codes(newdata, term.factors)
        labels = np.asarray(row_levels, dtype=object)[row_codes]
        index = {label: i for i, label in enumerate(block.levels)}
        codes = np.array([index.get(label, -1) for label in labels], dtype=np.int32)
        out.append((Z, codes, labels))
    return X, out


def encode_category_specific(design: Design, newdata: pd.DataFrame) -> np.ndarray | None:
    """(m, p_cs) the ``cs()`` columns of ``newdata`` (checked by ``encode_new`` first),
    encoded as the fitted rows were; None for a model without ``cs()``."""
    if design.X_cs is None:
        return None
    X_cs, columns = _encode(design.cs_spec, newdata, "the category-specific part cs()")
    X_cs, columns = _without_intercept(X_cs, columns)
    if columns != design.cs_columns:  # formulaic reuses the encoding, so this is a bug
        raise DataError(
            f"newdata encodes to cs() columns {columns}, the fit has {design.cs_columns}."
        )
    check_finite(X_cs, columns, "category-specific predictor")
    return X_cs


def _encode(spec, data: pd.DataFrame, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """``spec.get_model_matrix(data)``, refusing categories the fitted data lacked.

    Encodes with a copy of ``spec``: formulaic updates an encoding's state in place while
    it encodes (a text cell in a numeric column records the column as categorical), and
    the record stayed after the error, so every later prediction of valid rows failed
    ("a category the model never saw: 5"). The copy costs 1-2 ms."""
    from formulaic.errors import DataMismatchWarning, FormulaicError  # 45 ms, so not at import

    spec = copy.deepcopy(spec)
    data = _align_categories(spec, data)
    with warnings.catch_warnings():
        # formulaic turns an unseen category into NaN with a warning and goes on
        warnings.simplefilter("error", DataMismatchWarning)
        try:
            matrix = spec.get_model_matrix(data, context=evaluation_context(), na_action="raise")
        except DataMismatchWarning as exc:
            raise DataError(
                f"newdata has a category that {where} did not see in the fitted data: "
                f"{plain_error(exc).split(':', 1)[-1].split('.')[0].strip()}. A population-level "
                "effect of a category the model never saw cannot be predicted."
            ) from None
        except (FormulaicError, ValueError, TypeError) as exc:
            raise DataError(f"Cannot encode newdata for {where}: {plain_error(exc)}") from None
    columns = tuple(str(c) for c in matrix.columns)
    return np.asarray(matrix, dtype=float).reshape(len(data), len(columns)), columns


_PLAIN_FACTOR = re.compile(r"^\s*(?:C\(\s*)?([A-Za-z_.][A-Za-z0-9_.]*)\s*(?:[,)].*)?$")


def _align_categories(spec, data: pd.DataFrame) -> pd.DataFrame:
    """A categorical factor that is a column (``g``, ``C(g)``) must hold only its
    fitted categories; say which column and which value. Values that match a category
    as text (``1`` read from a CSV for the category ``"1"``) are converted to it."""
    for factor, (kind, state) in spec.encoder_state.items():
        categories = state.get("categories") if isinstance(state, dict) else None
        match = _PLAIN_FACTOR.match(factor)
        if getattr(kind, "value", kind) != "categorical" or categories is None or not match:
            continue
        column = match.group(1)
        if column not in data.columns:
            continue
        values = data[column]
        unseen = pd.unique(values[~values.isin(categories)])
        if len(unseen):
            shown = ", ".join(repr(_scalar(v)) for v in unseen[:5])
            more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
            as_text = {str(c): c for c in categories}
            if len(as_text) == len(categories) and all(str(v) in as_text for v in unseen):
                converted = values.map(lambda v, m=as_text: m.get(str(v), v))
                data = data.assign(**{column: converted.astype(object)})
                continue
            raise DataError(
                f"Column {column!r} in newdata has a category the model never saw: "
                f"{shown}{more} (fitted categories: "
                f"{', '.join(repr(_scalar(c)) for c in categories[:10])}"
                f"{' ...' if len(categories) > 10 else ''}). A population-level effect of "
                "an unseen category cannot be predicted; only group levels may be new."
            )
    return data


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def used_columns(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    needed = set(parsed.columns)
    for expression in (parsed.fixed, *parsed.category_specific):
        needed |= _formulaic_variables(expression)
    for expression in parsed.offsets:
        needed |= _formulaic_variables(expression)
    for term in parsed.groups:
        needed |= _formulaic_variables(term.expr)
    return _require_columns(needed, data)


def _require_columns(
    needed: set[str], data: pd.DataFrame, why: str = "named in the formula", where: str = "the data"
) -> list[str]:
    missing = sorted(c for c in needed if c not in data.columns)
    if missing:
        name = missing[0]
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(
            f"Column {name!r} {why} is not in {where}.{hint} "
            f"{where[0].upper() + where[1:]} has: {', '.join(map(str, data.columns[:20]))}"
            + (" ..." if len(data.columns) > 20 else ".")
        )
    return sorted(needed)


def _formulaic_variables(expr: str) -> set[str]:
    return required_columns(expr)


_HIGHLIGHT = re.compile(r"\x1b\[[0-9;]*m|[⧛⧚]")


def plain_error(exc: Exception) -> str:
    """formulaic highlights the offending span with terminal colour codes; drop them."""
    return _HIGHLIGHT.sub("", str(exc))


def check_missing(data: pd.DataFrame, used: list[str], then: str = "fit again") -> None:
    counts = {c: int(data[c].isna().sum()) for c in used}
    counts = {c: k for c, k in counts.items() if k}
    if counts:
        listed = ", ".join(f"{c!r} ({k} missing)" for c, k in counts.items())
        rows = int(data[list(counts)].isna().any(axis=1).sum())
        options = (
            "pass missing='drop' to drop those rows (with a report), or missing='model' to "
            "model them (missing responses predicted, numeric predictors imputed inside the "
            "sampler); or "
            if then == "fit again"
            else ""
        )
        raise DataError(
            f"Missing values in columns the model uses: {listed}; {rows} rows in all. "
            f"Nothing is dropped silently: {options}remove those rows yourself "
            f"(e.g. data.dropna(subset=[...])) or impute them, then {then}."
        )


def _column_values(data: pd.DataFrame, column: str) -> np.ndarray:
    values = data[column].to_numpy()
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DataError(
            f"Column {column!r} has {bad} infinite values; the model needs finite ones."
        )
    return values


def _model_matrix(
    expr: str, data: pd.DataFrame, where: str
) -> tuple[np.ndarray, tuple[str, ...], object]:
    """The design matrix, its column names and its formulaic ModelSpec (the encoding)."""
    import formulaic  # 45 ms: imported with the first design, not with multilevel.Model
    from formulaic.errors import FormulaicError

    try:
        # a context of our own: formulaic would otherwise see this module's names
        matrix = formulaic.model_matrix(expr, data, context=evaluation_context(), na_action="raise")
    except FormulaicError as exc:
        raise FormulaError(f"Cannot build {where} `{expr}`: {plain_error(exc)}") from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        # the expression passed the check but its values did not work out on these data
        # (scale() of a single row, log of text, a category mix-up)
        raise DataError(
            f"Cannot compute {where} `{expr}` on these data: {plain_error(exc)} Check the types "
            "and values of the columns it uses (e.g. log of non-positive numbers, scale() "
            "of a constant column, arithmetic on text)."
        ) from None
    columns = tuple(str(c) for c in matrix.columns)
    values = np.asarray(matrix, dtype=float).reshape(len(data), len(columns))
    return values, columns, matrix.model_spec


def check_finite(X: np.ndarray, columns: tuple[str, ...], what: str) -> None:
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        names = [c for c, b in zip(columns, bad) if b]
        raise DataError(f"The {what} {', '.join(map(repr, names))} has infinite values.")


def check_constant(X: np.ndarray, columns: tuple[str, ...]) -> None:
    if "Intercept" not in columns:
        return
    for j, name in enumerate(columns):
        if name != "Intercept" and np.ptp(X[:, j]) == 0:
            raise DataError(
                f"The predictor {name!r} is constant ({X[0, j]:g} in every row), so its "
                "effect cannot be told apart from the intercept. Remove it from the formula."
            )


def check_full_rank(X: np.ndarray, columns: tuple[str, ...]) -> None:
    """Refuse population-level columns that are linearly dependent, naming them.

    A spline basis that sums to one beside the intercept (``cr(x, df=8)``), or a
    predictor that is the sum of two others, leaves a direction the data cannot inform:
    the coefficients along it are the prior's alone (every sd about 109 in the case that
    prompted this). lme4 drops a column with a message; we do not change the model
    behind the user's back, so this says which columns and what to do.
    """
    p = X.shape[1]
    if p < 2:
        return
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    gram = (X.T @ X) / np.outer(np.where(norms > 0, norms, 1.0), np.where(norms > 0, norms, 1.0))
    values, vectors = np.linalg.eigh(gram)
    # unit-norm columns: an exact dependence leaves an eigenvalue at rounding level
    # (1e-16 x p); the most collinear real designs we tried (year and year^2 over
    # 1990-2020) stay above 1e-9
    null = values < 1e-11 * max(values[-1], 1.0)
    if not null.any():
        return
    involved = np.abs(vectors[:, null]).max(axis=1) > 1e-4
    names = [c for c, used in zip(columns, involved) if used]
    rank = p - int(null.sum())
    advice = (
        " A spline basis whose columns sum to one (`cr`, `cs`, `cc`) beside the intercept is "
        "the usual cause: centre it (`cr(x, df=4, constraints='center')`), use `bs(x, df=4)` "
        "(no constant column), or drop the intercept (`0 + ...`)."
        if "Intercept" in names
        else ""
    )
    raise DataError(
        f"The population-level columns {', '.join(map(repr, names))} are linearly "
        f"dependent (rank {rank} of {p} columns): some combination of them is the same "
        f"in every row, so the data cannot tell their coefficients apart. Remove one of "
        f"them from the formula.{advice}"
    )


def _group_block(term: GroupTerm, data: pd.DataFrame) -> GroupBlock:
    Z, coefs, spec = _model_matrix(
        term.expr, data, f"the group term `({term.expr} | {term.group})`"
    )
    check_finite(Z, coefs, f"covariate of ({term.expr} | {term.group})")
    codes, levels = group_codes(data, term.factors)
    if len(levels) == 1:
        warnings.warn(
            f"The grouping factor `{term.group}` has a single level ({levels[0]!r}): its "
            "standard deviation is informed by the prior alone. Did you mean another column?",
            DesignWarning,
            stacklevel=4,
        )
    scales = Z.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    return GroupBlock(term, coefs, Z, codes, levels, scales, spec)


def _warn_thin_response(y, family: Family, blocks, levels, column: str) -> None:
    """Warn where the response leaves part of the model to its prior: an inflated or
    hurdle family without a zero (or, for zero_one_inflated_beta, without a 0 or 1),
    and an ordinal category that a single group of a grouping factor holds."""
    y = np.asarray(y, dtype=float)
    plain = family.without_inflation
    if plain is not None:
        ends = (0.0, 1.0) if family.name == "zero_one_inflated_beta" else (0.0,)
        if not np.isin(y, ends).any():
            what = "0s or 1s" if len(ends) == 2 else "zeros"
            warnings.warn(
                f"The response `{column}` has no {what}, so the {family.name} family's "
                f"probability of an extra {'0 or 1' if len(ends) == 2 else 'zero'} can only "
                f"be estimated near 0, by how close its prior lets it. Without {what}, "
                f"family={plain!r} is the same model without it.",
                DesignWarning,
                stacklevel=4,
            )
    if not family.ordinal:
        return
    for block in blocks:
        if len(block.levels) < 2:
            continue
        for k, label in enumerate(levels):
            holders = np.unique(block.codes[y == k])
            if len(holders) == 1:
                warnings.warn(
                    f"Category {label!r} of `{column}` occurs only in the group "
                    f"{block.levels[holders[0]]!r} of `{block.group}` ({_rows(np.sum(y == k))}"
                    "): the thresholds beside it are learned from that group alone and "
                    "trade off with its effect. Merge it with a neighbouring category if "
                    "that is not what the data mean.",
                    DesignWarning,
                    stacklevel=4,
                )


def _rows(n) -> str:
    return f"{int(n)} row" + ("" if n == 1 else "s")


def group_codes(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes (0..L-1) and labels of the interaction of ``factors``."""
    if len(factors) == 1:
        codes, uniques = pd.factorize(data[factors[0]], sort=True)
        labels = tuple(str(u) for u in uniques)
    else:
        index = pd.MultiIndex.from_arrays([data[f] for f in factors])
        codes, uniques = pd.factorize(index, sort=True)
        labels = tuple(":".join(str(v) for v in u) for u in uniques)
    return codes.astype(np.int32), labels


def check_unique_names(blocks: tuple[GroupBlock, ...]) -> None:
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
