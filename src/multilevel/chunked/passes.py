"""The two passes over the data, and from their sums to a ``DataSummary`` and the
collapsed sampler's statistics.

1. the grouping columns and the columns that formulaic encodes as categories: their
   global levels, so that every chunk is encoded with the same columns and its rows get
   the group codes the in-memory design would give;
2. all the columns the formula uses: design matrices per chunk from formulaic model
   specs built once from the global levels (``plan``), and float64 sums of their
   cross-products (``sums``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multilevel.chunked.analysis import analyse_formula, check_model, is_plain_text, is_text
from multilevel.chunked.plan import Plan, make_plan
from multilevel.chunked.sources import LevelRequest, open_source
from multilevel.chunked.summary import BlockSummary, DataSummary
from multilevel.chunked.sums import collapsed_statistics, moments
from multilevel.data_checks import (
    check_text_values,
    predictor_uses,
    time_kind_of_dtype,
    time_predictor_error,
)
from multilevel.design import check_constant, used_columns
from multilevel.errors import DataError
from multilevel.formula import parse_formula
from multilevel.options import check_count


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
        Show a progress bar when stderr is a terminal (tqdm; Dask's own bar for a Dask
        DataFrame).

    Returns
    -------
    (DataSummary, dict)
        The summary, and the statistics ``gaussian_collapsed.sufficient_statistics``
        returns for the in-memory design: beta0, ee, Xe, XtX, ZtZ, ZtX, Zte, n (the
        group dimension padded with empty groups to ``bucket(L)`` as it pads it; the
        summary's ``levels`` hold the L true levels).

    Examples
    --------
    >>> import multilevel as ml
    >>> radon = ml.datasets.load("radon")
    >>> summary, stats = chunked_statistics(
    ...     "log_radon ~ floor + (1 | county)", radon, chunk_rows=300
    ... )
    >>> summary.n == len(radon), summary.group
    (True, 'county')
    """
    check_count("chunk_rows", chunk_rows)
    parsed = parse_formula(formula)
    check_model(parsed, family)
    analysis = analyse_formula(parsed)
    source_obj = open_source(source, int(chunk_rows))
    used_columns(parsed, pd.DataFrame(columns=source_obj.names))  # names missing columns
    used = sorted(analysis.variables | parsed.columns)
    uses = predictor_uses(parsed)  # column -> used only as C(column)
    for var, categorical in uses.items():
        kind = None if categorical else time_kind_of_dtype(source_obj.dtypes.get(var))
        if kind is not None:
            raise time_predictor_error(var, source_obj.dtypes[var], kind)
    level_vars = sorted(
        v for v in analysis.variables if v in analysis.c_vars or is_text(source_obj.dtypes[v])
    )
    request = LevelRequest(
        tuple(parsed.groups[0].factors), tuple(level_vars), tuple(used), parsed.response
    )
    first = source_obj.pass_one(request, progress)
    if first.rows == 0:
        raise DataError("The data has no rows.")
    for var in level_vars:  # the in-memory rule, on the distinct values of the whole data
        if not uses.get(var, True) and is_plain_text(source_obj.dtypes[var]):
            check_text_values(first.values[var], var)
    plan = make_plan(parsed, analysis, used, level_vars, first)
    total = source_obj.pass_two(plan, progress)
    return _finish(plan, total)


def _finish(plan: Plan, total: dict) -> tuple[DataSummary, dict]:
    """Refuse missing or infinite values; else the summary and the statistics."""
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
    check_constant(np.vstack([s["xmin"], s["xmax"]]), plan.columns)
    n = total["rows"]
    stats = collapsed_statistics(s, n, total["shift"], plan.intercept)
    mean, var = moments(s, n)
    sd = np.sqrt(var)
    p = len(plan.columns)
    x = slice(1, 1 + p)  # columns of [y, X, Z]
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
