"""Sufficient statistics of a Gaussian model with one grouping factor, from data that
never has to fit in memory.

The collapsed Gaussian sampler (:mod:`multilevel.backends.gaussian_collapsed`) needs
only cross-products per group: X'X, Z_j'Z_j, Z_j'X_j, Z_j'e_j, e'e and a few totals.
Those are sums over rows, so they can be accumulated chunk by chunk from a Parquet file
or directory, a sequence of pandas DataFrames, or a Dask DataFrame (reduced where the
data lives; only per-group arrays travel). Memory grows with the chunk size and the
number of groups, not with the number of rows.

Two passes over the data:

1. the grouping columns and the columns that formulaic encodes as categories: their
   global levels, so that every chunk is encoded with the same columns and its rows get
   the group codes the in-memory design would give;
2. all the columns the formula uses: design matrices per chunk from formulaic model
   specs built once from the global levels, and float64 sums of their cross-products.

The result equals ``sufficient_statistics(build_design(...))`` on the concatenated data,
and a :class:`DataSummary` carries what default priors and the model's structure need.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import formulaic
import numpy as np
import pandas as pd
from formulaic.errors import FormulaicError

from multilevel.backends.gaussian_collapsed import bucket
from multilevel.data_checks import (
    check_text_values,
    predictor_uses,
    time_kind_of_dtype,
    time_predictor_error,
)
from multilevel.design import (
    DesignWarning,
    GroupBlock,
    _check_constant,
    _check_finite,
    _check_unique_names,
    _group_codes,
    _plain,
    _used_columns,
)
from multilevel.errors import DataError, FormulaError, MultilevelError
from multilevel.families import get_family
from multilevel.formula import GroupTerm, ParsedFormula, parse_formula
from multilevel.formula.expressions import evaluation_context, required_columns

CLUSTER_HINT = 'pip install "multilevel[cluster]"'
_IN_MEMORY = "load the data in memory (a pandas DataFrame) and use ml.Model instead"


@dataclass(frozen=True)
class BlockSummary:
    """One varying-effects term: a :class:`~multilevel.design.GroupBlock` without Z and codes."""

    term: GroupTerm
    coefs: tuple[str, ...]  # covariate names, e.g. ("Intercept", "floor")
    levels: tuple[str, ...]  # (L,) level labels, sorted as build_design sorts them
    scales: np.ndarray  # (q,) sd of each covariate (1 for constant columns)

    @property
    def group(self) -> str:
        return self.term.group


@dataclass(frozen=True)
class DataSummary:
    """What a model needs to know about data it never holds in memory."""

    n: int  # rows
    response: str
    columns: tuple[str, ...]  # (p,) population-level design columns, named as build_design
    y_mean: float
    y_sd: float  # population sd (ddof=0), as np.std
    x_mean: np.ndarray  # (p,)
    x_sd: np.ndarray  # (p,) ddof=0
    x_rms: np.ndarray  # (p,) sqrt(mean(x^2))
    blocks: tuple[BlockSummary, ...]

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.columns

    @property
    def group(self) -> str:
        """The one grouping factor, e.g. ``county``."""
        return self.blocks[0].group


def chunked_statistics(
    formula: str,
    source,
    family: str = "gaussian",
    chunk_rows: int = 1_000_000,
    progress: bool = False,
) -> tuple[DataSummary, dict]:
    """Sufficient statistics of a Gaussian model with one grouping factor, chunk by chunk.

    Parameters
    ----------
    formula
        An lme4-style formula whose group terms all share one grouping factor, e.g.
        ``"y ~ x + (1 + x | g)"``.
    source
        A path (str or Path) to a Parquet file or a directory of Parquet files (hive
        partitions such as ``g=a/`` become columns), read ``chunk_rows`` rows at a time
        and only the columns the formula uses; a pandas DataFrame (sliced into
        ``chunk_rows``); a list (or any re-iterable, or a function returning a new
        iterator on each call) of pandas DataFrames; or a Dask DataFrame, reduced
        partition by partition on its scheduler.
    family
        Only ``"gaussian"``: other families have no closed-form marginal likelihood.
    chunk_rows
        Rows per chunk when reading Parquet or slicing a DataFrame. Peak memory grows
        with it (and with the number of groups), not with the number of rows.
    progress
        Show a progress bar (tqdm; Dask's own bar for a Dask DataFrame).

    Returns
    -------
    (DataSummary, dict)
        The summary, and the statistics ``gaussian_collapsed.sufficient_statistics``
        returns for the in-memory design: beta0, ee, Xe, XtX, ZtZ, ZtX, Zte, n (the
        group dimension padded with empty groups to ``bucket(L)`` as it pads it; the
        summary's ``levels`` hold the L true levels).
    """
    if not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
        raise MultilevelError(f"chunk_rows must be a positive whole number, got {chunk_rows!r}.")
    parsed = parse_formula(formula)
    _check_model(parsed, family)
    analysis = _analyse_formula(parsed)
    source_obj = _open_source(source, int(chunk_rows))
    _used_columns(parsed, pd.DataFrame(columns=source_obj.names))  # names missing columns
    used = sorted(analysis.variables | parsed.columns)
    uses = predictor_uses(parsed)  # column -> used only as C(column)
    for var, categorical in uses.items():
        kind = None if categorical else time_kind_of_dtype(source_obj.dtypes.get(var))
        if kind is not None:
            raise time_predictor_error(var, source_obj.dtypes[var], kind)
    level_vars = sorted(
        v for v in analysis.variables if v in analysis.c_vars or _is_text(source_obj.dtypes[v])
    )
    factors = parsed.groups[0].factors
    if isinstance(source_obj, _DaskSource):
        source_obj.response = parsed.response
        first = source_obj.pass_one(factors, level_vars, used, progress)
    else:
        first = _pass_one(source_obj, factors, level_vars, used, progress)
    if first.rows == 0:
        raise DataError("The data has no rows.")
    for var in level_vars:  # the in-memory rule, on the distinct values of the whole data
        if not uses.get(var, True) and _is_plain_text(source_obj.dtypes[var]):
            check_text_values(first.values[var], var)
    plan = _make_plan(parsed, analysis, used, level_vars, first)
    if isinstance(source_obj, _DaskSource):
        total = source_obj.pass_two(plan, progress)
    else:
        total = _pass_two(source_obj, plan, progress)
    return _finish(plan, total)


# ---------------------------------------------------------------------------------------
# The formula: what is allowed, which variables need global levels.


def _check_model(parsed: ParsedFormula, family: str) -> None:
    get_family(family)  # unknown names get the usual message
    groups = sorted({t.group for t in parsed.groups})
    if family != "gaussian" or len(groups) != 1:
        if family != "gaussian":
            why = f"the {family} family has no closed-form marginal likelihood"
        elif groups:
            why = f"this formula has {len(groups)} grouping factors ({', '.join(groups)})"
        else:
            why = "this formula has no group terms"
        raise MultilevelError(
            "Chunked statistics need a gaussian model with exactly one grouping factor "
            f"(all group terms `(... | g)` with the same g); {why}. Otherwise {_IN_MEMORY}."
        )
    if parsed.trials is not None:
        raise FormulaError(
            f"`| trials({parsed.trials})` is only meaningful for family='binomial', not 'gaussian'."
        )


# formulaic transforms whose value depends on the rows they see (a chunk, not the data).
_STATEFUL = frozenset(
    name
    for name, fn in formulaic.transforms.TRANSFORMS.items()
    if getattr(fn, "__is_stateful_transform__", False) and name != "Q"  # Q: look up by name
) | {"lag"}


@dataclass(frozen=True)
class _Analysis:
    variables: frozenset[str]  # columns the formulaic parts use
    c_vars: frozenset[str]  # columns named in C(column): categorical whatever their dtype
    c_factors: frozenset[str]  # factor expressions that are C(...) calls we can encode
    lookups: dict  # factor expression -> column, for plain column look-ups


def _analyse_formula(parsed: ParsedFormula) -> _Analysis:
    variables: set[str] = set()
    c_vars: set[str] = set()
    c_factors: set[str] = set()
    lookups: dict[str, str] = {}
    for expr in [parsed.fixed, *(t.expr for t in parsed.groups)]:
        try:
            spec = formulaic.Formula(expr)
        except FormulaicError as exc:
            raise FormulaError(f"Cannot read `{expr}`: {_plain(exc)}") from None
        variables |= required_columns(expr)
        for term in spec:
            for factor in term.factors:
                method = getattr(factor.eval_method, "value", factor.eval_method)
                if method == "lookup":
                    lookups[factor.expr] = factor.expr
                elif method == "python":
                    c_vars |= _check_calls(factor.expr, str(term), c_factors)
    return _Analysis(frozenset(variables), frozenset(c_vars), frozenset(c_factors), lookups)


def _check_calls(expr: str, term: str, c_factors: set[str]) -> set[str]:
    """Refuse stateful transforms; return the columns that C(column) makes categorical."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return set()  # formulaic parses its own dialect; nothing we can check
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        if name in _STATEFUL:
            raise FormulaError(
                f"`{ast.unparse(node)}` (in the term `{term}`) is computed from the rows it "
                "sees, which chunk by chunk would be each chunk on its own, not the whole "
                "data. Compute the column once on the whole data, add it to the data under "
                f"a new name and use that name in the formula; or {_IN_MEMORY}."
            )
        if name == "C":
            has_levels = any(k.arg == "levels" for k in node.keywords)
            if node.args and isinstance(node.args[0], ast.Name):
                if not has_levels:
                    out.add(node.args[0].id)
                if node is tree.body:
                    c_factors.add(expr)
            elif not has_levels:
                raise FormulaError(
                    f"`{ast.unparse(node)}` (in the term `{term}`) makes categories of an "
                    "expression, whose levels chunk by chunk could differ. Add the "
                    "expression to the data as a column and write `C(column)`, or give the "
                    "levels: `C(..., levels=[...])`."
                )
            elif node is tree.body:
                c_factors.add(expr)
    return out


def _is_text(dtype) -> bool:
    """Does formulaic encode a column of this (pandas or Arrow) dtype as categories?"""
    if isinstance(dtype, pd.CategoricalDtype | pd.StringDtype):
        return True
    if isinstance(dtype, np.dtype | pd.api.extensions.ExtensionDtype):
        return dtype == np.dtype("O")
    import pyarrow as pa

    return (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_dictionary(dtype)
        or getattr(pa.types, "is_string_view", lambda _: False)(dtype)
    )


def _is_plain_text(dtype) -> bool:
    """Text, not categorical on purpose (a pandas Categorical, an Arrow dictionary)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    if isinstance(dtype, np.dtype | pd.api.extensions.ExtensionDtype):
        return _is_text(dtype)
    import pyarrow as pa

    return _is_text(dtype) and not pa.types.is_dictionary(dtype)


# ---------------------------------------------------------------------------------------
# Pass 1: levels.


@dataclass
class _Levels:
    rows: int
    groups: pd.DataFrame  # unique rows of the grouping columns (no missing values)
    values: dict  # level variable -> pd.Series of its unique values
    first_row: pd.DataFrame  # one row of the used columns, for the formulaic model specs


def _unique(frames: list) -> Any:
    return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)


def _pass_one(source, factors, level_vars, used, progress) -> _Levels:
    read = sorted(set(factors) | set(level_vars))
    groups = None
    values: dict[str, Any] = {}
    rows = 0
    with _bar(progress, source.rows, "levels") as bar:
        for chunk in source.chunks(read):
            rows += len(chunk)
            found = chunk[list(factors)].dropna().drop_duplicates()
            groups = found if groups is None else _unique([groups, found])
            for var in level_vars:
                found = chunk[var].dropna().drop_duplicates()
                values[var] = found if var not in values else _unique([values[var], found])
            bar.update(len(chunk))
    first_row = source.first_row(used) if rows else None
    return _Levels(rows, groups, values, first_row)


# ---------------------------------------------------------------------------------------
# The plan: formulaic model specs built once, global group levels.


@dataclass(frozen=True)
class _Plan:
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
        return self.columns.index("Intercept") if "Intercept" in self.columns else None

    @property
    def complete(self) -> bool:
        return self.fixed_spec is not None


def _make_plan(parsed, analysis: _Analysis, used, level_vars, first: _Levels) -> _Plan:
    factors = parsed.groups[0].factors
    empty = first.groups is None or len(first.groups) == 0
    empty = empty or any(len(first.values.get(v, ())) == 0 for v in level_vars)
    if empty:  # a column is missing in every row: pass 2 counts and reports them
        return _Plan(parsed, tuple(used), tuple(level_vars), None, (), (), (), factors, None, ())
    codes, levels = _group_codes(first.groups, factors)
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
    _check_unique_names(blocks)
    if len(levels) == 1:
        warnings.warn(
            f"The grouping factor `{parsed.groups[0].group}` has a single level "
            f"({levels[0]!r}): its standard deviation is informed by the prior alone. Did "
            "you mean another column?",
            DesignWarning,
            stacklevel=3,
        )
    return _Plan(
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


def _prototype(first: _Levels, level_vars) -> pd.DataFrame:
    """A few rows holding every global level of every categorical column.

    formulaic takes the categories of a column from the data it is given; a model spec
    built from these rows encodes every chunk with the columns the whole data gives.
    """
    m = max([len(first.values[v]) for v in level_vars] + [1])
    proto = first.first_row.iloc[np.zeros(m, dtype=int)].reset_index(drop=True)
    for col in proto.columns:
        if col not in level_vars and not _is_text(proto[col].dtype):
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
    try:
        matrix = formulaic.model_matrix(
            expr, proto, context=evaluation_context(), na_action="raise"
        )
    except FormulaicError as exc:
        raise FormulaError(f"Cannot build {where} `{expr}`: {_plain(exc)}") from None
    spec = matrix.model_spec
    for factor, (kind, _state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) == "categorical" and factor not in handled:
            raise FormulaError(
                f"`{factor}` in {where} makes categories of an expression, whose levels "
                "chunk by chunk could differ. Add it to the data as a column and use that "
                f"column in the formula; or {_IN_MEMORY}."
            )
    return spec, tuple(str(c) for c in matrix.columns)


# ---------------------------------------------------------------------------------------
# Pass 2: statistics of one chunk, and how two chunks' statistics combine.


def _shift(chunk: pd.DataFrame, plan: _Plan) -> float:
    """Where y is centred while summing: y'y of y ~ 1e4 + N(0, 1) would lose 8 digits."""
    if plan.intercept is None:  # no column of X can absorb the shift
        return 0.0
    return _mean_y(chunk, plan.parsed.response)


def _mean_y(chunk: pd.DataFrame, response: str) -> float:
    y = pd.to_numeric(chunk[response], errors="coerce").to_numpy(dtype=float)
    y = y[np.isfinite(y)]
    return float(y.mean()) if y.size else 0.0


def _chunk_stats(chunk: pd.DataFrame, plan: _Plan, shift: float, counts_only: bool = False) -> dict:
    """Float64 sums of one chunk; only counts when the chunk has missing values (or
    ``counts_only``: the data is refused anyway, and counts are all the message needs)."""
    n = len(chunk)
    missing = chunk[list(plan.used)].isna()
    counts = missing.sum()
    out = {
        "rows": n,
        "missing": {c: int(k) for c, k in counts.items() if k},
        "missing_rows": int(missing.any(axis=1).sum()),
        "infinite_y": 0,
        "sums": None,
    }
    if out["missing"] or not plan.complete or counts_only:
        return out
    response = plan.parsed.response
    y = chunk[response].to_numpy()
    get_family("gaussian")[0].check(y, None, response)  # numbers, not text
    y = y.astype(float)
    out["infinite_y"] = int((~np.isfinite(y)).sum())
    if out["infinite_y"]:
        return out
    data = chunk.copy(deep=False)
    for var in plan.level_vars:
        data[var] = _as_formulaic(data[var])
    X = _matrix(plan.fixed_spec, data, "the population-level part", plan.parsed.fixed)
    _check_finite(X, plan.columns, "population-level predictor")
    Zs = []
    for term, spec, coefs in zip(plan.parsed.groups, plan.term_specs, plan.coefs):
        Z = _matrix(spec, data, f"the group term `({term.expr} | {term.group})`", term.expr)
        _check_finite(Z, coefs, f"covariate of ({term.expr} | {term.group})")
        Zs.append(Z)
    Z = np.concatenate(Zs, axis=1)
    codes = _codes(chunk, plan)
    L, q, p = len(plan.levels), Z.shape[1], X.shape[1]

    def per_group(weights: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=weights, minlength=L)

    yc = y - shift
    ztz = np.empty((L, q, q))
    for a in range(q):
        for b in range(a, q):
            ztz[:, a, b] = ztz[:, b, a] = per_group(Z[:, a] * Z[:, b])
    ztx = np.empty((L, q, p))
    for a in range(q):
        for c in range(p):
            ztx[:, a, c] = per_group(Z[:, a] * X[:, c])
    zty = np.stack([per_group(Z[:, a] * yc) for a in range(q)], -1).reshape(L, q)
    W = np.column_stack([y, X, Z])  # moments of y, X and Z columns
    mean = W.mean(axis=0)
    out["sums"] = {
        "XtX": X.T @ X,
        "Xty": X.T @ yc,
        "yy": float(yc @ yc),
        "ZtZ": ztz,
        "ZtX": ztx,
        "Zty": zty,
        "mean": mean,
        "m2": ((W - mean) ** 2).sum(axis=0),
        "xmin": X.min(axis=0),
        "xmax": X.max(axis=0),
    }
    return out


def _matrix(spec, data: pd.DataFrame, where: str, expr: str) -> np.ndarray:
    try:
        matrix = spec.get_model_matrix(data, context=evaluation_context())
    except FormulaicError as exc:
        raise FormulaError(f"Cannot build {where} `{expr}`: {_plain(exc)}") from None
    return np.asarray(matrix, dtype=float).reshape(len(data), matrix.shape[1])


def _codes(chunk: pd.DataFrame, plan: _Plan) -> np.ndarray:
    factors = list(plan.factors)
    if len(factors) == 1:
        values = chunk[factors[0]]
        codes = plan.index.get_indexer(values)
        if (codes < 0).any():  # dtypes that differ between chunks: compare the values
            codes = pd.Index(np.asarray(plan.index, dtype=object)).get_indexer(
                np.asarray(values, dtype=object)
            )
    else:
        values = pd.MultiIndex.from_frame(chunk[factors])
        codes = plan.index.get_indexer(values)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        value = ":".join(str(chunk[f].iloc[row]) for f in factors)
        raise DataError(
            f"The level {value!r} of `{plan.parsed.groups[0].group}` was not in the data "
            "when its levels were collected: the source gave different rows on its second "
            "reading. It is read twice (levels, then statistics) and must give the same "
            "rows both times."
        )
    return codes.astype(np.intp)


def _merge(a: dict, b: dict) -> dict:
    """Statistics of two sets of rows together (associative: any reduction tree works)."""
    missing = dict(a["missing"])
    for col, k in b["missing"].items():
        missing[col] = missing.get(col, 0) + k
    out = {
        "rows": a["rows"] + b["rows"],
        "missing": missing,
        "missing_rows": a["missing_rows"] + b["missing_rows"],
        "infinite_y": a["infinite_y"] + b["infinite_y"],
        "sums": None,
    }
    sa, sb = a["sums"], b["sums"]
    if missing or out["infinite_y"]:
        return out  # the data will be refused: counts are all that matter now
    if sa is None or sb is None:  # an empty partition adds nothing
        out["sums"] = sb if a["rows"] == 0 else sa if b["rows"] == 0 else None
        return out
    na, nb = a["rows"], b["rows"]
    n = na + nb
    delta = sb["mean"] - sa["mean"]  # Chan et al.: means and squared deviations combined
    sums = {k: sa[k] + sb[k] for k in ("XtX", "Xty", "yy", "ZtZ", "ZtX", "Zty")}
    sums["mean"] = sa["mean"] + delta * (nb / n)
    sums["m2"] = sa["m2"] + sb["m2"] + delta**2 * (na * nb / n)
    sums["xmin"] = np.minimum(sa["xmin"], sb["xmin"])
    sums["xmax"] = np.maximum(sa["xmax"], sb["xmax"])
    out["sums"] = sums
    return out


def _pass_two(source, plan: _Plan, progress: bool) -> dict:
    total, shift = None, None
    with _bar(progress, source.rows, "statistics") as bar:
        for chunk in source.chunks(list(plan.used)):
            if not len(chunk):
                continue
            if shift is None:
                shift = _shift(chunk, plan)
            refused = total is not None and (total["missing"] or total["infinite_y"])
            part = _chunk_stats(chunk, plan, shift, counts_only=bool(refused))
            total = part if total is None else _merge(total, part)
            bar.update(len(chunk))
    if total is None:
        raise DataError("The data has no rows.")
    total["shift"] = shift
    return total


# ---------------------------------------------------------------------------------------
# From the sums to the statistics and the summary.


def _finish(plan: _Plan, total: dict) -> tuple[DataSummary, dict]:
    if total["missing"]:
        listed = ", ".join(f"{c!r} ({k} missing)" for c, k in sorted(total["missing"].items()))
        raise DataError(
            f"Missing values in columns the model uses: {listed}; {total['missing_rows']} "
            "rows in all. Nothing is dropped silently: remove those rows yourself (e.g. "
            "data.dropna(subset=[...]) before writing the chunks) or impute them, then try "
            "again."
        )
    if total["infinite_y"]:
        raise DataError(
            f"Column {plan.parsed.response!r} has {total['infinite_y']} infinite values; "
            "the model needs finite ones."
        )
    s = total["sums"]
    if s is None:  # cannot happen: sums are only dropped for missing or infinite values
        raise DataError("No statistics were computed from the data.")
    _check_constant(np.vstack([s["xmin"], s["xmax"]]), plan.columns)
    n, c = total["rows"], total["shift"]
    p = len(plan.columns)
    A, b = s["XtX"], s["Xty"]
    if p:
        # Normal equations, equilibrated. In memory beta0 comes from lstsq on X itself;
        # both are the least-squares solution. ee, Xe and Zte below are exact sums for
        # whichever beta0 is reported, so the statistics stay consistent with each other
        # even where the two beta0 differ in their last digits.
        d = np.sqrt(np.diag(A))
        d = np.where(d > 0, d, 1.0)
        beta = np.linalg.lstsq(A / np.outer(d, d), b / d, rcond=None)[0] / d
    else:
        beta = np.zeros(0)
    ee = max(s["yy"] - 2 * beta @ b + beta @ A @ beta, 0.0)
    beta0 = beta.copy()
    if plan.intercept is not None:
        beta0[plan.intercept] += c  # y - c = X beta'  <=>  y = X (beta' + c e_Intercept)
    stats = {
        "beta0": beta0,
        "ee": float(ee),
        "Xe": b - A @ beta,
        "XtX": A,
        # group dimension padded with empty groups as sufficient_statistics pads it
        "ZtZ": _pad_groups(s["ZtZ"]),
        "ZtX": _pad_groups(s["ZtX"]),
        "Zte": _pad_groups(s["Zty"] - s["ZtX"] @ beta),
        "n": float(n),
    }
    mean, var = s["mean"], s["m2"] / n
    sd = np.sqrt(var)
    x = slice(1, 1 + p)
    blocks, start = [], 1 + p
    for term, coefs in zip(plan.parsed.groups, plan.coefs):
        scales = sd[start : start + len(coefs)]
        blocks.append(BlockSummary(term, coefs, plan.levels, np.where(scales > 0, scales, 1.0)))
        start += len(coefs)
    summary = DataSummary(
        n=int(n),
        response=plan.parsed.response,
        columns=plan.columns,
        y_mean=float(mean[0]),
        y_sd=float(sd[0]),
        x_mean=mean[x].copy(),
        x_sd=sd[x].copy(),
        x_rms=np.sqrt(var[x] + mean[x] ** 2),
        blocks=tuple(blocks),
    )
    return summary, stats


def _pad_groups(a: np.ndarray) -> np.ndarray:
    extra = bucket(a.shape[0]) - a.shape[0]
    return np.concatenate([a, np.zeros((extra, *a.shape[1:]))]) if extra else a


# ---------------------------------------------------------------------------------------
# Sources.


def _bar(progress: bool, total: int | None, what: str):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, desc=f"chunked {what}")


class _NoBar(nullcontext):
    def __enter__(self):
        return self

    def update(self, _n: int) -> None:
        pass


def _open_source(source, chunk_rows: int):
    if isinstance(source, str | Path):
        return _ParquetSource(Path(source), chunk_rows)
    if isinstance(source, pd.DataFrame):
        frame = source

        def slices() -> Iterator[pd.DataFrame]:
            for start in range(0, max(len(frame), 1), chunk_rows):
                yield frame.iloc[start : start + chunk_rows]

        return _FramesSource(slices, len(frame))
    if type(source).__module__.split(".")[0] in ("dask", "dask_expr"):
        return _DaskSource(source)
    if callable(source):
        return _FramesSource(source, None)
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | dict):
        if iter(source) is source:
            raise DataError(
                "The source is a one-shot iterator, but chunked statistics read the data "
                "twice (levels first, then statistics). Pass a list of DataFrames, or a "
                "function that returns a new iterator of DataFrames on each call."
            )
        rows = sum(len(f) for f in source) if isinstance(source, list | tuple) else None
        return _FramesSource(lambda: iter(source), rows)
    raise DataError(
        "The source must be a path to a Parquet file or directory, a pandas DataFrame, a "
        f"list of pandas DataFrames or a Dask DataFrame ({CLUSTER_HINT}); got "
        f"{type(source).__name__}."
    )


class _FramesSource:
    """DataFrames from a function that returns a fresh iterator on each call."""

    def __init__(self, make: Callable[[], Iterable], rows: int | None):
        self.make, self.rows = make, rows
        first = None
        for chunk in self._frames():
            first = chunk
            if len(chunk):
                break
        if first is None:
            raise DataError("The source gave no DataFrames: the data has no rows.")
        self.names = [str(c) for c in first.columns]
        self.dtypes = {str(c): first[c].dtype for c in first.columns}

    def _frames(self) -> Iterator[pd.DataFrame]:
        for i, chunk in enumerate(self.make()):
            if not isinstance(chunk, pd.DataFrame):
                raise DataError(
                    f"Chunk {i} of the source is a {type(chunk).__name__}, not a pandas DataFrame."
                )
            yield chunk

    def chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        for chunk in self._frames():
            absent = [c for c in columns if c not in chunk.columns]
            if absent:
                raise DataError(
                    f"Column {absent[0]!r} named in the formula is not in every chunk of "
                    f"the data (a chunk has: {', '.join(map(str, chunk.columns[:20]))})."
                )
            yield chunk[columns]

    def first_row(self, columns: list[str]) -> pd.DataFrame:
        for chunk in self.chunks(columns):
            if len(chunk):
                return chunk.iloc[:1].reset_index(drop=True)
        raise DataError("The data has no rows.")


class _ParquetSource:
    """A Parquet file (read with ParquetFile.iter_batches) or a directory (pyarrow.dataset)."""

    def __init__(self, path: Path, chunk_rows: int):
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        if not path.exists():
            raise DataError(f"No Parquet file or directory at {str(path)!r}.")
        self.path, self.chunk_rows = path, chunk_rows
        try:
            if path.is_dir():
                self.dataset = ds.dataset(path, format="parquet", partitioning="hive")
                schema = self.dataset.schema
                self.rows = self.dataset.count_rows()
            else:
                self.dataset = None
                with pq.ParquetFile(path) as f:
                    schema, self.rows = f.schema_arrow, f.metadata.num_rows
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise DataError(f"Cannot read {str(path)!r} as Parquet: {exc}") from None
        names = [n for n in schema.names if not n.startswith("__index_level_")]
        self.names = names
        self.dtypes = {n: schema.field(n).type for n in names}

    def _batches(self, columns: list[str], batch_size: int):
        import pyarrow.parquet as pq

        if self.dataset is not None:  # readahead of one batch keeps memory ~ chunk_rows
            yield from self.dataset.to_batches(
                columns=columns, batch_size=batch_size, batch_readahead=1, fragment_readahead=1
            )
        else:
            with pq.ParquetFile(self.path) as f:
                yield from f.iter_batches(batch_size=batch_size, columns=columns)

    def chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        for batch in self._batches(columns, self.chunk_rows):
            yield batch.to_pandas()

    def first_row(self, columns: list[str]) -> pd.DataFrame:
        for batch in self._batches(columns, 1):
            if batch.num_rows:
                return batch.slice(0, 1).to_pandas()
        raise DataError("The data has no rows.")


def _import_dask():
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError:
        raise MultilevelError(f"Reading a Dask DataFrame needs dask: {CLUSTER_HINT}") from None
    return dask


class _DaskSource:
    """A Dask DataFrame: levels and sums computed where its partitions live."""

    def __init__(self, ddf):
        self.dask = _import_dask()
        if not hasattr(ddf, "to_delayed") or not hasattr(ddf, "columns"):
            raise DataError(f"A Dask source must be a Dask DataFrame, got {type(ddf).__name__}.")
        self.ddf = ddf
        self.response = ""  # set by chunked_statistics before pass one
        self.y_mean: float | None = None
        self.names = [str(c) for c in ddf.columns]
        self.dtypes = {str(c): t for c, t in ddf.dtypes.items()}
        self.rows = None

    def _compute(self, *objs, progress: bool):
        try:
            from distributed import get_client

            client = get_client()
        except (ImportError, ValueError):
            client = None
        if client is not None:
            futures = client.compute(list(objs))
            if progress:
                from distributed import progress as show

                show(futures)
            return client.gather(futures)
        if progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                return self.dask.compute(*objs)
        return self.dask.compute(*objs)

    def pass_one(self, factors, level_vars, used, progress) -> _Levels:
        ddf = self.ddf
        response = self.response
        # Dask collections only: mixed with Delayed objects, distributed (2026.8) returned
        # the results of one compute call in another order.
        first_part = (
            ddf[[response]]
            .partitions[0]
            .map_partitions(_sized_mean_series, response, meta=pd.Series(dtype=float))
        )
        jobs = [
            ddf.map_partitions(len).sum(),
            ddf[list(factors)].dropna().drop_duplicates(),
            ddf[list(used)].head(1, npartitions=-1, compute=False),
            first_part,
        ]
        jobs += [ddf[v].dropna().drop_duplicates() for v in level_vars]
        rows, groups, first_row, (first_rows, y_mean), *values = self._compute(
            *jobs, progress=progress
        )
        first_row = first_row.reset_index(drop=True)
        values = {v: u.reset_index(drop=True) for v, u in zip(level_vars, values)}
        self.y_mean = y_mean if first_rows else None
        return _Levels(int(rows), groups.reset_index(drop=True), values, first_row)

    def pass_two(self, plan: _Plan, progress: bool) -> dict:
        delayed = self.dask.delayed
        parts = self.ddf[list(plan.used)].to_delayed()
        plan_d = delayed(plan, name=f"chunked-plan-{id(plan)}", traverse=False)
        shift = 0.0 if plan.intercept is None else self.y_mean
        if shift is None:  # partition 0 is empty: the first one with rows
            for part in parts:
                rows, shift = self._compute(
                    delayed(_sized_mean)(part, plan.parsed.response), progress=False
                )[0]
                if rows:
                    break
        partials = [delayed(_partition_stats)(part, plan_d, shift) for part in parts]
        while len(partials) > 1:  # pairwise tree: per-group arrays only, never rows
            pairs = [delayed(_merge)(a, b) for a, b in zip(partials[::2], partials[1::2])]
            partials = pairs + ([partials[-1]] if len(partials) % 2 else [])
        total = self._compute(partials[0], progress=progress)[0]
        if total is None or total["rows"] == 0:
            raise DataError("The data has no rows.")
        total["shift"] = shift
        return total


def _sized_mean(part: pd.DataFrame, response: str) -> tuple[int, float]:
    return len(part), (_mean_y(part, response) if len(part) else 0.0)


def _sized_mean_series(part: pd.DataFrame, response: str) -> pd.Series:
    return pd.Series(_sized_mean(part, response), dtype=float)


_EMPTY = {"rows": 0, "missing": {}, "missing_rows": 0, "infinite_y": 0, "sums": None}


def _partition_stats(part: pd.DataFrame, plan: _Plan, shift: float) -> dict:
    return _chunk_stats(part, plan, shift) if len(part) else dict(_EMPTY)
