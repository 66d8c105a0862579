"""The plan for pass two: formulaic model specs built once from the global levels, and
what one chunk contributes under them.

formulaic takes the categories of a column from the data it is given; specs built from a
few rows that hold every level of the whole data (``_prototype``) encode every chunk
with the same columns, and the global group index gives every chunk's rows the group
codes the in-memory design would.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.chunked.analysis import IN_MEMORY, Analysis, is_text
from multilevel.chunked.sources import Levels
from multilevel.chunked.sums import matrix_sums
from multilevel.design import (
    DesignWarning,
    GroupBlock,
    check_finite,
    check_unique_names,
    group_codes,
    plain_error,
)
from multilevel.errors import DataError, FormulaError
from multilevel.families import get_family
from multilevel.formula import ParsedFormula
from multilevel.formula.expressions import evaluation_context


@dataclass(frozen=True)
class Plan:
    """How every chunk is encoded; a ``sources.Reduction`` (``partial_sums``)."""

    parsed: ParsedFormula
    used: tuple[str, ...]  # columns pass 2 reads
    level_vars: tuple[str, ...]
    fixed_spec: Any  # formulaic ModelSpec (None when some column is all missing)
    columns: tuple[str, ...]
    term_specs: tuple  # per group term: ModelSpec
    coefs: tuple[tuple[str, ...], ...]
    factors: tuple[str, ...]
    index: pd.Index | None  # global levels in code order
    levels: tuple[str, ...]

    @property
    def intercept(self) -> int | None:
        """The position of the ``Intercept`` column, None without one."""
        return self.columns.index("Intercept") if "Intercept" in self.columns else None

    @property
    def complete(self) -> bool:
        """False when some column is missing in every row (pass two only counts)."""
        return self.fixed_spec is not None

    @property
    def centre_on(self) -> str | None:
        """y is centred while summing (y'y of y ~ 1e4 + N(0, 1) would lose 8 digits),
        on its mean in the first chunk; without an intercept no column of X can absorb
        the shift."""
        return None if self.intercept is None else self.parsed.response

    def partial_sums(self, chunk: pd.DataFrame, shift: float, counts_only: bool = False) -> dict:
        """Float64 sums of one chunk; only counts when the chunk has missing values (or
        ``counts_only``: the data is refused anyway, and counts are all the message needs).

        Raises
        ------
        DataError
            For a non-numeric response, non-finite predictors, or a group level pass one
            did not see.
        """
        n = len(chunk)
        missing = chunk[list(self.used)].isna()
        counts = missing.sum()
        out = {
            "rows": n,
            "missing": {c: int(k) for c, k in counts.items() if k},
            "missing_rows": int(missing.any(axis=1).sum()),
            "infinite_y": 0,
            "sums": None,
        }
        if out["missing"] or not self.complete or counts_only:
            return out
        response = self.parsed.response
        y = chunk[response].to_numpy()
        get_family("gaussian")[0].check(y, None, response)  # numbers, not text
        y = y.astype(float)
        out["infinite_y"] = int((~np.isfinite(y)).sum())
        if out["infinite_y"]:
            return out
        data = chunk.copy(deep=False)
        for var in self.level_vars:
            data[var] = _as_formulaic(data[var])
        X = _matrix(self.fixed_spec, data, "the population-level part", self.parsed.fixed)
        check_finite(X, self.columns, "population-level predictor")
        Zs = []
        for term, spec, coefs in zip(self.parsed.groups, self.term_specs, self.coefs):
            Z = _matrix(spec, data, f"the group term `({term.expr} | {term.group})`", term.expr)
            check_finite(Z, coefs, f"covariate of ({term.expr} | {term.group})")
            Zs.append(Z)
        Z = np.concatenate(Zs, axis=1)
        out["sums"] = matrix_sums(y, X, Z, self.codes(chunk), len(self.levels), shift)
        return out

    def codes(self, chunk: pd.DataFrame) -> np.ndarray:
        """(n,) each row's group code in the global levels.

        Raises
        ------
        DataError
            For a level pass one did not see (the source changed between readings).
        """
        factors = list(self.factors)
        if len(factors) == 1:
            values = chunk[factors[0]]
            codes = self.index.get_indexer(values)
            if (codes < 0).any():  # dtypes that differ between chunks: compare the values
                codes = pd.Index(np.asarray(self.index, dtype=object)).get_indexer(
                    np.asarray(values, dtype=object)
                )
        else:
            values = pd.MultiIndex.from_frame(chunk[factors])
            codes = self.index.get_indexer(values)
        if (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            value = ":".join(str(chunk[f].iloc[row]) for f in factors)
            raise DataError(
                f"The level {value!r} of `{self.parsed.groups[0].group}` was not in the data "
                "when its levels were collected: the source gave different rows on its second "
                "reading. It is read twice (levels, then statistics) and must give the same "
                "rows both times."
            )
        return codes.astype(np.intp)


def make_plan(parsed: ParsedFormula, analysis: Analysis, used, level_vars, first: Levels) -> Plan:
    """The plan from pass one's findings; an incomplete plan when a column the formula
    uses is missing in every row (pass two then counts the missing values to report).

    Raises
    ------
    FormulaError
        When a part of the formula cannot be built, or makes categories of an expression.

    Warns
    -----
    DesignWarning
        When the grouping factor has a single level.
    """
    factors = parsed.groups[0].factors
    empty = first.groups is None or len(first.groups) == 0
    empty = empty or any(len(first.values.get(v, ())) == 0 for v in level_vars)
    if empty:  # a column is missing in every row: pass 2 counts and reports them
        return Plan(parsed, tuple(used), tuple(level_vars), None, (), (), (), factors, None, ())
    codes, levels = group_codes(first.groups, factors)
    ordered = first.groups.iloc[np.argsort(codes, kind="stable")]
    if len(factors) == 1:
        index = pd.Index(ordered[factors[0]].array)
    else:
        index = pd.MultiIndex.from_frame(ordered.reset_index(drop=True))
    proto = _prototype(first, level_vars)
    handled = set(analysis.c_factors) | {e for e, v in analysis.lookups.items() if v in level_vars}
    fixed_spec, columns = _spec(parsed.fixed, proto, "the population-level part", handled)
    term_specs, coefs = [], []
    for term in parsed.groups:
        spec, names = _spec(
            term.expr, proto, f"the group term `({term.expr} | {term.group})`", handled
        )
        term_specs.append(spec)
        coefs.append(names)
    blocks = tuple(
        GroupBlock(t, c, np.empty((0, len(c))), np.empty(0, np.int32), levels, np.ones(len(c)))
        for t, c in zip(parsed.groups, coefs)
    )
    check_unique_names(blocks)
    if len(levels) == 1:
        warnings.warn(
            f"The grouping factor `{parsed.groups[0].group}` has a single level "
            f"({levels[0]!r}): its standard deviation is informed by the prior alone. Did "
            "you mean another column?",
            DesignWarning,
            stacklevel=3,  # the caller of chunked_statistics
        )
    return Plan(
        parsed,
        tuple(used),
        tuple(level_vars),
        fixed_spec,
        columns,
        tuple(term_specs),
        tuple(coefs),
        factors,
        index,
        levels,
    )


def _prototype(first: Levels, level_vars) -> pd.DataFrame:
    """A few rows holding every global level of every categorical column.

    formulaic takes the categories of a column from the data it is given; a model spec
    built from these rows encodes every chunk with the columns the whole data gives.
    """
    m = max([len(first.values[v]) for v in level_vars] + [1])
    proto = first.first_row.iloc[np.zeros(m, dtype=int)].reset_index(drop=True)
    for col in proto.columns:
        if col not in level_vars and not is_text(proto[col].dtype):
            if proto[col].isna().any():  # the sample row's gaps: any finite value will do
                proto[col] = proto[col].astype(float).fillna(1.0)
    for var in level_vars:
        values = first.values[var]
        proto[var] = _as_formulaic(values.iloc[np.arange(m) % len(values)].reset_index(drop=True))
    return proto


def _as_formulaic(values: pd.Series) -> pd.Series:
    """formulaic encodes object, 'str' and categorical columns; Dask's 'string' it would not."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype != "str":
        return values.astype(object)
    return values


def _spec(expr: str, proto: pd.DataFrame, where: str, handled: set) -> tuple[Any, tuple]:
    import formulaic  # 45 ms: imported with the first chunked fit, not with multilevel.Model
    from formulaic.errors import FormulaicError

    try:
        matrix = formulaic.model_matrix(
            expr, proto, context=evaluation_context(), na_action="raise"
        )
    except FormulaicError as exc:
        raise FormulaError(f"Cannot build {where} `{expr}`: {plain_error(exc)}") from None
    spec = matrix.model_spec
    for factor, (kind, _state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) == "categorical" and factor not in handled:
            raise FormulaError(
                f"`{factor}` in {where} makes categories of an expression, whose levels "
                "chunk by chunk could differ. Add it to the data as a column and use that "
                f"column in the formula; or {IN_MEMORY}."
            )
    return spec, tuple(str(c) for c in matrix.columns)


def _matrix(spec, data: pd.DataFrame, where: str, expr: str) -> np.ndarray:
    from formulaic.errors import FormulaicError

    try:
        matrix = spec.get_model_matrix(data, context=evaluation_context())
    except FormulaicError as exc:
        raise FormulaError(f"Cannot build {where} `{expr}`: {plain_error(exc)}") from None
    return np.asarray(matrix, dtype=float).reshape(len(data), matrix.shape[1])
