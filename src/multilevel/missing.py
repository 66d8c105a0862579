"""Missing values: refused (default), dropped with a report, or modelled.

``Model(..., missing=...)`` takes one of

* ``"error"`` (default): a ``DataError`` listing each column the model uses with its
  count of missing values, and naming the other two options;
* ``"drop"``: rows with a missing value in any column the model uses are removed; a
  ``MissingDataWarning`` says how many and from which columns, and
  ``model.missing.dropped`` keeps the count;
* ``"model"``: as brms' ``mi()``.

  - A missing *response* is predicted from the posterior (kind "response", its row's
    predictors and group), one value per draw, and stored in the posterior as
    ``mi(<response>)``. The rows are left out of the likelihood: with the predictors
    observed they carry no information about the parameters, so this is the joint
    posterior itself.
  - A missing *numeric predictor* ``x`` gets a model of its own,
    ``x ~ Normal(Intercept[mi(x)] + u[g], sigma[mi(x)])`` with a varying intercept ``u``
    by the model's grouping factor with the most levels (none without groups), fitted to
    the observed values. Its missing values are parameters, sampled by NUTS with
    everything else, and stored as ``mi(x)`` (a value per missing row and draw). The
    sampler is the joint one: the collapsed sampler's sufficient statistics need every
    predictor known.

  Priors of the predictor model are scaled to the observed values (mean m, sd s):
  ``Intercept ~ Normal(m, 2.5 s)``, ``sd ~ Exponential(1 / s)``, ``sigma ~
  Exponential(1 / s)``, as the response model's defaults. A predictor can be imputed
  when it enters the formula as itself (``x`` in the population-level part and/or in a
  group term's covariates); one inside a transformation or interaction (``I(x**2)``,
  ``x:z``, ``center(x)``) is refused with a message naming the design column. Missing
  grouping factors, trials, known standard errors and categorical predictors are
  refused as well (``missing="drop"`` or impute them yourself).

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> model = ml.Model("log_radon ~ uranium + (1 | county)", radon, missing="model")  # doctest: +SKIP
>>> fit = model.fit(seed=1)  # doctest: +SKIP
>>> fit.draws("mi(uranium)").shape  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from multilevel import priors as P
from multilevel.design import Design, build_design, used_columns
from multilevel.errors import DataError, MultilevelError
from multilevel.families import Family
from multilevel.formula import ParsedFormula
from multilevel.spec import ImputedSpec

MODES = ("error", "drop", "model")


class MissingDataWarning(UserWarning):
    """Rows were dropped for missing values (``missing="drop"``)."""


@dataclass(frozen=True)
class MissingData:
    """What ``Model`` did about missing values; ``model.missing``."""

    mode: str
    counts: dict[str, int] = field(default_factory=dict)  # column -> missing values given
    dropped: int = 0  # rows removed (missing="drop")
    # rows whose response is predicted, not fitted (missing="model")
    unobserved: pd.DataFrame | None = field(default=None, repr=False)

    def __str__(self) -> str:
        # stored as fit.info["missing"]; missing_mode reads the mode back from it
        if not self.counts:
            return "no missing values"
        listed = ", ".join(f"{c} ({k})" for c, k in self.counts.items())
        if self.mode == "drop":
            return f"{self.dropped} rows with missing values dropped: {listed}"
        return f"missing values modelled: {listed}"


def missing_mode(spec, info: dict) -> str:
    """The ``missing`` mode a fit was made with, from its spec and ``fit.info["missing"]``
    (``str(MissingData)``), so a loaded fit's rows can be rebuilt as they were fitted."""
    described = info.get("missing", "")
    if spec.imputed or described.startswith("missing values modelled"):
        return "model"
    return "drop" if "rows with missing values dropped" in described else "error"


def prepare(
    parsed: ParsedFormula, data: pd.DataFrame, family: Family, mode: str
) -> tuple[Design, pd.DataFrame, MissingData, tuple[ImputedSpec, ...]]:
    """The design of the rows to fit, those rows, what was done, and the imputed predictors."""
    if mode not in MODES:
        raise MultilevelError(
            f"missing must be one of {', '.join(map(repr, MODES))}, not {mode!r}."
        )
    if not isinstance(data, pd.DataFrame) or len(data) == 0 or mode == "error":
        return build_design(parsed, data, family), data, MissingData("error"), ()
    used = used_columns(parsed, data)
    counts = {c: int(k) for c, k in data[used].isna().sum().items() if k}
    if not counts:
        return build_design(parsed, data, family), data, MissingData(mode), ()
    if mode == "drop":
        return _drop(parsed, data, family, used, counts)
    return _model(parsed, data, family, used, counts)


def _drop(parsed, data, family, used, counts):
    kept = data.dropna(subset=used)
    dropped = len(data) - len(kept)
    if len(kept) == 0:
        raise DataError(f"Every row has a missing value in {', '.join(map(repr, counts))}.")
    listed = ", ".join(f"{c!r} ({k})" for c, k in counts.items())
    warnings.warn(
        f"Dropped {dropped} of {len(data)} rows with missing values: {listed}. "
        "missing='model' keeps them and models the missing values instead.",
        MissingDataWarning,
        stacklevel=4,
    )
    return build_design(parsed, kept, family), kept, MissingData("drop", counts, dropped), ()


def _model(parsed, data, family, used, counts):
    if family.multivariate_response:
        _refuse_missing_counts(parsed, counts)
    _refuse_unmodelled(parsed, data, counts)
    if family.multivariate_response:  # every count observed (refused above otherwise)
        y_missing = np.zeros(len(data), dtype=bool)
    else:
        y_missing = data[parsed.response].isna().to_numpy()
    if y_missing.all():
        raise DataError(f"Every value of the response {parsed.response!r} is missing.")
    fitted = data.loc[~y_missing]
    # a predictor missing anywhere gets a model: rows whose response is missing too
    # are predicted with draws of it
    predictors = [c for c in used if c not in parsed.columns and data[c].isna().any()]
    for column in predictors:
        _require_numeric(fitted, column)
        if fitted[column].notna().sum() < 2:
            raise DataError(
                f"Column {column!r} has fewer than 2 observed values among the rows with "
                "a response: too few to model its missing values. Use missing='drop'."
            )
    fills = {c: float(fitted[c].mean()) for c in predictors}
    filled = fitted.fillna(fills)
    design = build_design(parsed, filled, family)
    imputed = tuple(
        _imputed_spec(parsed, filled, family, design, column, fitted[column])
        for column in predictors
    )
    unobserved = data.loc[y_missing] if y_missing.any() else None
    return design, fitted, MissingData("model", counts, 0, unobserved), imputed


def _refuse_missing_counts(parsed: ParsedFormula, counts: dict) -> None:
    """A multinomial row with a missing count has no total: it cannot be predicted."""
    gaps = [c for c in parsed.response_columns if c in counts]
    if gaps:
        listed = ", ".join(f"{c!r} ({counts[c]} missing)" for c in gaps)
        raise DataError(
            f"missing='model' cannot model missing counts of a multinomial response: {listed} "
            "(a row's total is unknown without every count). Use missing='drop' (the rows "
            "are reported), or complete the counts yourself."
        )


def _refuse_unmodelled(parsed: ParsedFormula, data: pd.DataFrame, counts: dict) -> None:
    """Grouping factors, trials and known standard errors cannot be imputed."""
    structural = [c for c in counts if c in parsed.columns and c != parsed.response]
    if structural:
        listed = ", ".join(f"{c!r} ({counts[c]} missing)" for c in structural)
        raise DataError(
            f"missing='model' models missing responses and numeric predictors, not {listed}: "
            "a grouping factor, number of trials or known standard error has no model of "
            "its own. Use missing='drop' (the rows are reported), or fill them yourself."
        )


def _require_numeric(frame: pd.DataFrame, column: str) -> None:
    values = frame[column]
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        raise DataError(
            f"Column {column!r} has {int(values.isna().sum())} missing values, and "
            f"missing='model' imputes numeric predictors only ({column!r} is "
            f"{values.dtype}). Use missing='drop', or impute it yourself."
        )


def _imputed_spec(parsed, filled, family, design, column, observed) -> ImputedSpec:
    """Where ``column`` enters the design (it must enter as itself) and its model."""
    rows = np.flatnonzero(observed.isna().to_numpy())
    probe = rows if len(rows) else np.array([0])  # missing only where y is: test a row
    moved = filled[column].to_numpy(dtype=float, copy=True)
    moved[probe] += 1.0
    shifted = build_design(parsed, filled.assign(**{column: moved}), family)
    x_columns = _identity_columns(design.X, shifted.X, design.columns, probe, column)
    z_columns = tuple(
        (k, j)
        for k, (a, b) in enumerate(zip(design.blocks, shifted.blocks))
        for j in _identity_columns(
            a.Z, b.Z, a.coefs, probe, column, f" of ({a.term.expr} | {a.group})"
        )
    )
    if design.X_cs is not None and not np.array_equal(design.X_cs, shifted.X_cs):
        raise DataError(
            f"Column {column!r} has missing values and is inside cs(): missing='model' "
            "imputes predictors with one slope (shared by every threshold) only. Use "
            "missing='drop', or impute it yourself."
        )
    if not x_columns and not z_columns:  # e.g. only used in a term formulaic dropped
        raise DataError(f"Column {column!r} has missing values but no design column uses it.")
    block = _widest_block(design)
    mean, sd = float(observed.mean()), float(observed.std(ddof=0)) or 1.0
    names = ImputedSpec.parameter_names(
        column, None if block is None else design.blocks[block].group
    )
    priors = [P.Normal(mean, 2.5 * sd), *([P.Exponential(1.0 / sd)] * (len(names) - 1))]
    return ImputedSpec(
        column=column,
        group=None if block is None else design.blocks[block].group,
        block=block,
        rows=tuple(row_label(i) for i in observed.index[rows]),
        positions=tuple(int(i) for i in rows),
        x_columns=x_columns,
        z_columns=z_columns,
        priors=tuple(zip(names, priors)),
        centered=block is not None and _rich_groups(observed, design.blocks[block].codes),
    )


def _rich_groups(observed: pd.Series, codes: np.ndarray) -> bool:
    """Whether the median group's observed values say more about its mean than the
    spread of group means does (n_j var_between / var_within > 1, by moments): then
    the predictor model's intercepts are centred on the groups' data."""
    frame = pd.DataFrame({"x": observed.to_numpy(), "g": codes}).dropna()
    groups = frame.groupby("g")["x"]
    n, means = groups.size(), groups.mean()
    within = float(groups.var(ddof=1).fillna(0).mul(n - 1).sum() / max(len(frame) - len(n), 1))
    between = float(means.var(ddof=1)) - within * float((1.0 / n).mean()) if len(n) > 1 else 0.0
    return within > 0 and float(n.median()) * max(between, 0.0) / within > 1.0


def _identity_columns(a, b, names, rows, column, where="") -> tuple[int, ...]:
    """Design columns that are ``column`` itself: moving the missing cells by 1 moves
    those columns by exactly 1 on those rows and nothing else. Any other change means
    ``column`` enters through a transformation or interaction, which is refused."""
    changed = np.flatnonzero(~np.isclose(a, b, rtol=0, atol=1e-9).all(axis=0))
    expected = np.zeros(a.shape[0])
    expected[rows] = 1.0
    out = []
    for j in changed:
        if not np.allclose(b[:, j] - a[:, j], expected, rtol=0, atol=1e-9):
            raise DataError(
                f"Column {column!r} has missing values and enters the design column "
                f"{names[j]!r}{where} through a transformation or interaction. "
                "missing='model' imputes predictors that enter the formula as themselves "
                f"(`{column}` or `(1 + {column} | g)`). Compute the derived column in the "
                "data and impute it, or use missing='drop'."
            )
        out.append(int(j))
    return tuple(out)


def _widest_block(design: Design) -> int | None:
    """The design block of the grouping factor with the most levels (its intercept
    varies in the predictor's model), or None without groups."""
    if not design.blocks:
        return None
    return max(range(len(design.blocks)), key=lambda k: len(design.blocks[k].levels))


def row_label(value):
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


# --------------------------------------------------------------------------- after the fit
def predictor_column(design: Design, imp) -> np.ndarray:
    """(n,) the design's values of an imputed predictor (placeholders where missing)."""
    if imp.x_columns:
        return design.X[:, imp.x_columns[0]]
    k, j = imp.z_columns[0]
    return design.blocks[k].Z[:, j]
