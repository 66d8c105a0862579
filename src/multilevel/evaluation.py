"""Model evaluation: PSIS-LOO, WAIC and the comparison of fits by expected log predictive
density (elpd).

They read the log-likelihood of every row under every posterior draw
(``fit.idata.log_likelihood``, see ``multilevel.loglik``) where the fit stores it (small
fits: at most ``MAX_STORED_VALUES`` values; saved fits), and compute it when asked
otherwise; they need no model code. K-fold cross-validation refits
the model, so it is a workflow: ``ml.kfold`` (``multilevel.workflow.kfold``). The
functions here take a fit as it is (duck-typed: ``spec``, ``idata``, ``info``, ``rows``)
and import neither ``Fit`` nor ``Model``.

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> fit = ml.Model("log_radon ~ floor + (1 | county)", radon).fit(seed=1)  # doctest: +SKIP
>>> fit.loo()  # doctest: +SKIP
>>> ml.compare({"partial": fit, "complete": other})  # doctest: +SKIP
"""

from __future__ import annotations

import re
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from multilevel import tables
from multilevel._arviz import az
from multilevel.errors import MultilevelError
from multilevel.families import FAMILIES
from multilevel.figures import check_figure_path, new_figure, save_figure
from multilevel.loglik import MAX_STORED_VALUES, log_likelihood_idata, pointwise_log_likelihood

__all__ = [
    "ELPDResult",
    "LooWarning",
    "MAX_STORED_VALUES",
    "compare",
    "loo",
    "plot_compare",
    "pointwise_log_likelihood",
    "waic",
]

#: Pareto k thresholds (Vehtari et al. 2017, 2024): good below 0.5, ok below 0.7, bad above.
PARETO_K_GOOD = 0.5
PARETO_K_BAD = 0.7
#: WAIC is unreliable for rows whose log predictive density has a posterior variance above this.
WAIC_VAR_MAX = 0.4
_SHOWN = 5  # worst rows named in a warning
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Fit -> {"loo": ..., ...}


class LooWarning(UserWarning):
    """Cross-validation estimates may be unreliable; the message says for which rows and
    what to do instead."""


def nominal_parameters(spec) -> int:
    """Population effects, sds, correlations, family parameters and every group effect."""
    count = len(spec.hyper_names) + sum(len(t.levels) * len(t.coefs) for t in spec.terms)
    for imp in spec.imputed:  # a predictor's model and its missing values (missing="model")
        levels = 0 if imp.block is None else len(spec.terms[imp.block].levels)
        count += len(imp.names) + levels + len(imp.positions)
    return count


# --------------------------------------------------------------------------- LOO and WAIC
@dataclass
class ELPDResult:
    """Expected log pointwise predictive density of a fit, by PSIS-LOO or WAIC.

    Attributes
    ----------
    method : {"loo", "waic"}
    elpd, se : float
        The estimate (higher predicts new rows better) and its standard error.
    p : float
        The effective number of parameters (``p_loo`` or ``p_waic``).
    n_params : int
        The nominal count: population effects, sds, correlations, family parameters and
        every group effect.
    n_obs, n_samples : int
        Rows and posterior draws (chains x draws).
    pareto_k : dict
        PSIS-LOO only: rows with Pareto k ``good`` (< 0.5), ``ok`` (< 0.7), ``bad`` (>= 0.7).
    pointwise : pandas.DataFrame
        One row per observation: the response, its groups, ``elpd_<method>``,
        ``p_<method>`` and (LOO) ``pareto_k``.
    has_groups : bool
        The model has group-level effects.
    warning : str or None
        What a ``LooWarning`` said, if one was issued.
    elpd_data : arviz.ELPDData
        ArviZ's own result (``az.loo``/``az.waic`` with ``pointwise=True``).
    """

    method: str
    elpd: float
    se: float
    p: float
    n_params: int
    n_obs: int
    n_samples: int
    pointwise: pd.DataFrame
    has_groups: bool
    pareto_k: dict = field(default_factory=dict)
    warning: str | None = None
    elpd_data: object = field(default=None, repr=False)

    @property
    def p_loo(self) -> float:
        if self.method != "loo":
            raise AttributeError("p_loo belongs to fit.loo(); this is WAIC (p_waic).")
        return self.p

    @property
    def p_waic(self) -> float:
        if self.method != "waic":
            raise AttributeError("p_waic belongs to fit.waic(); this is PSIS-LOO (p_loo).")
        return self.p

    @property
    def elpd_loo(self) -> float:
        if self.method != "loo":
            raise AttributeError("elpd_loo belongs to fit.loo(); this is WAIC (elpd_waic).")
        return self.elpd

    @property
    def elpd_waic(self) -> float:
        if self.method != "waic":
            raise AttributeError("elpd_waic belongs to fit.waic(); this is PSIS-LOO (elpd_loo).")
        return self.elpd

    def __str__(self) -> str:
        m = self.method
        title = "PSIS-LOO cross-validation" if m == "loo" else "WAIC"
        lines = [
            f"{title}: {self.n_obs} observations, {self.n_samples} posterior draws",
            f"  elpd_{m:<5} {self.elpd:10.1f}   (se {self.se:.1f}; higher predicts new rows better)",
            f"  p_{m:<8} {self.p:10.1f}   (effective parameters; nominal count {self.n_params})",
        ]
        if m == "loo":
            k = self.pareto_k
            lines.append(
                f"  Pareto k: {k['good']} good (< {PARETO_K_GOOD}), {k['ok']} ok "
                f"(< {PARETO_K_BAD}), {k['bad']} bad (>= {PARETO_K_BAD})"
            )
        lines.append(p_note(f"p_{m}", self.p, self.n_params, self.has_groups))
        if self.warning:
            lines.append(f"  Warning: {self.warning}")
        return "\n".join(lines)

    __repr__ = __str__


def p_note(name: str, p: float, nominal: int, has_groups: bool) -> str:
    """One line on why the effective number of parameters is what it is."""
    if p > nominal + 1:
        return (
            f"{name} exceeds the nominal count: a sign of a misspecified model or of highly "
            "influential rows (check the rows with the largest pareto_k)."
        )
    if has_groups:
        return (
            f"{name} is below the nominal count because partial pooling shrinks group "
            "effects toward their population mean: each counts as less than one parameter."
        )
    return f"Without group effects, {name} near the nominal count is expected (weak priors, much data)."


def loo(fit) -> ELPDResult:
    """PSIS-LOO cross-validation of a fit: ``az.loo(..., pointwise=True)`` on its stored
    (or, for large fits, freshly computed) log-likelihood. Issues a ``LooWarning`` naming
    the worst rows when some have Pareto k >= 0.7. Cached per fit."""
    cache = _CACHE.setdefault(fit, {})
    if "loo" in cache:
        return _repeat_warning(cache["loo"])
    idata = log_likelihood_idata(fit, "fit.loo() (PSIS-LOO)")
    with warnings.catch_warnings():  # ArviZ's own warning: ours below names the rows
        warnings.simplefilter("ignore", UserWarning)
        data = az.loo(idata, pointwise=True, var_name=fit.spec.response)
    ll = stacked_log_likelihood(idata, fit.spec.response)
    k = np.asarray(data["pareto_k"]).ravel()
    loo_i = np.asarray(data["loo_i"]).ravel()
    table = pointwise_frame(fit, ll.shape[0])
    table["elpd_loo"] = loo_i
    table["p_loo"] = lppd_i(ll) - loo_i
    table["pareto_k"] = k
    counts = {
        "good": int((k < PARETO_K_GOOD).sum()),
        "ok": int(((k >= PARETO_K_GOOD) & (k < PARETO_K_BAD)).sum()),
        "bad": int((k >= PARETO_K_BAD).sum()),
    }
    message = _loo_warning(fit, table) if counts["bad"] else None
    result = ELPDResult(
        "loo",
        float(data["elpd_loo"]),
        float(data["se"]),
        float(data["p_loo"]),
        nominal_parameters(fit.spec),
        int(data["n_data_points"]),
        int(data["n_samples"]),
        table,
        bool(fit.spec.terms),
        counts,
        message,
        data,
    )
    if message:
        warnings.warn(message, LooWarning, stacklevel=3)
    cache["loo"] = result
    return result


def waic(fit) -> ELPDResult:
    """WAIC of a fit (``az.waic(..., pointwise=True)``); a ``LooWarning`` when it is
    unreliable (rows whose log predictive density varies by more than 0.4). PSIS-LOO
    (``fit.loo()``) is the more robust of the two and says where it fails. Cached per fit."""
    cache = _CACHE.setdefault(fit, {})
    if "waic" in cache:
        return _repeat_warning(cache["waic"])
    idata = log_likelihood_idata(fit, "fit.waic()")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = az.waic(idata, pointwise=True, var_name=fit.spec.response)
    ll = stacked_log_likelihood(idata, fit.spec.response)
    variance = ll.var(axis=1)
    table = pointwise_frame(fit, ll.shape[0])
    table["elpd_waic"] = np.asarray(data["waic_i"]).ravel()
    table["p_waic"] = variance
    bad = np.flatnonzero(variance > WAIC_VAR_MAX)
    message = None
    if bad.size:
        worst = table.iloc[np.argsort(-variance)[: min(_SHOWN, bad.size)]]
        message = (
            f"WAIC may be unreliable: {bad.size} of {len(table)} rows have a posterior "
            f"variance of their log predictive density above {WAIC_VAR_MAX} (largest: "
            + "; ".join(_describe_row(i, r, "p_waic", "var") for i, r in worst.iterrows())
            + "). Use fit.loo(), whose Pareto k says which rows it can estimate."
        )
    result = ELPDResult(
        "waic",
        float(data["elpd_waic"]),
        float(data["se"]),
        float(data["p_waic"]),
        nominal_parameters(fit.spec),
        int(data["n_data_points"]),
        int(data["n_samples"]),
        table,
        bool(fit.spec.terms),
        {},
        message,
        data,
    )
    if message:
        warnings.warn(message, LooWarning, stacklevel=3)
    cache["waic"] = result
    return result


def _repeat_warning(result: ELPDResult) -> ELPDResult:
    """A cached result warns again: each call reports what the estimate is worth, even
    when the first call was made with the warning silenced (``compare_pooling``)."""
    if result.warning:
        warnings.warn(result.warning, LooWarning, stacklevel=3)
    return result


def stacked_log_likelihood(idata, name: str) -> np.ndarray:
    """(rows, samples) log-likelihood."""
    values = np.asarray(idata.log_likelihood[name].values)
    return values.reshape(-1, values.shape[-1]).T


def lppd_i(ll: np.ndarray) -> np.ndarray:
    """log mean_s p(y_i | theta_s) per row of a (rows, samples) array."""
    return logsumexp(ll, axis=1) - np.log(ll.shape[1])


def pointwise_frame(fit, n: int) -> pd.DataFrame:
    """Response, group labels and the other data columns the formula names, per row
    (when the rows are known), indexed by row number."""
    frame = pd.DataFrame(index=pd.RangeIndex(n, name="obs"))
    if fit.model is not None and fit.model.in_memory:
        design, data = fit.model.design, fit.model.data
        _add_response(frame, fit.spec, design.y)
        for block in design.blocks:
            if block.group not in frame:
                frame[block.group] = np.asarray(block.levels, dtype=object)[block.codes]
        for column in data.columns:  # e.g. county in `~ 0 + C(county)`, covariates
            named = re.search(rf"(?<![\w.]){re.escape(str(column))}(?![\w.])", fit.spec.formula)
            if named and column not in frame and len(data) == n:
                frame[column] = data[column].to_numpy()
    elif "observed_data" in fit.idata.groups():
        _add_response(frame, fit.spec, fit.idata.observed_data[fit.spec.response].values)
    return frame


def _add_response(frame: pd.DataFrame, spec, y: np.ndarray) -> None:
    """The response as a column, or a multinomial's counts as one column per category."""
    if np.ndim(y) == 2:
        for k, column in enumerate(spec.response_levels):
            frame[column] = y[:, k]
    else:
        frame[spec.response] = y


_SCORES = {"elpd_loo", "p_loo", "pareto_k", "elpd_waic", "p_waic", "fold", "elpd_kfold"}


def _describe_row(i, row: pd.Series, column: str, label: str) -> str:
    """``row 7 (y=21.3, county=AITKIN): k 1.05``: the row's response and groups."""
    details = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k not in _SCORES
    )
    return f"row {i}" + (f" ({details})" if details else "") + f": {label} {row[column]:.2f}"


def _loo_warning(fit, table: pd.DataFrame) -> str:
    bad = table[table["pareto_k"] >= PARETO_K_BAD].sort_values("pareto_k", ascending=False)
    lines = [
        f"PSIS-LOO is unreliable for {len(bad)} of {len(table)} rows (Pareto k >= "
        f"{PARETO_K_BAD}): leaving each out changes the posterior too much for importance "
        "sampling. Worst: "
        + "; ".join(_describe_row(i, r, "pareto_k", "k") for i, r in bad.head(_SHOWN).iterrows())
        + "."
    ]
    groups = list(dict.fromkeys(t.group for t in fit.spec.terms))
    for group in (g for g in groups if g in bad):
        counts = bad[group].value_counts()
        lines.append(
            f"By {group}: "
            + ", ".join(f"{level} ({n})" for level, n in counts.head(_SHOWN).items())
            + (f" and {len(counts) - _SHOWN} more" if len(counts) > _SHOWN else "")
            + "."
        )
    by = f', by="{groups[0]}"' if groups and groups[0] in table else ""
    alternative = FAMILIES[fit.spec.family].robust
    robust = f'family="{alternative}"' if alternative else "a family with heavier tails"
    lines.append(
        f"Try ml.kfold(fit, 10{by}), which refits without the held-out rows instead of "
        "reweighting draws; if these rows are outliers, check them, or use a more robust "
        f"family ({robust}) so that single rows cannot pull the fit so far."
    )
    return " ".join(lines)


# --------------------------------------------------------------------------- comparison
def compare(fits: dict, ic: str = "loo") -> pd.DataFrame:
    """Rank fits of the same data by expected log predictive density (``az.compare``).

    Parameters
    ----------
    fits : dict
        ``{"name", ...}``: two or more fits of the same rows (the same response).
    ic : {"loo", "waic"}

    Returns
    -------
    pandas.DataFrame
        Best first, indexed by name: ``rank``, ``elpd``, ``se``, ``p`` (effective
        parameters), ``n_params`` (nominal count), ``elpd_diff`` and ``se_diff`` (to the
        best; a difference of a few ``se_diff`` or more is real), ``weight`` (stacking
        weights), ``warning`` (the estimate is unreliable: ``pareto_k_bad`` rows with
        k >= 0.7, or WAIC's variance check). ``table.attrs["ic"]`` names the criterion.
        Printed with every column (wrapped to the terminal's width), a title and a note
        on how to read it.

    Examples
    --------
    >>> ml.compare({"partial": fit_partial, "complete": fit_complete})  # doctest: +SKIP
    """
    if ic not in ("loo", "waic"):
        raise MultilevelError(f"ic must be 'loo' or 'waic', not {ic!r}.")
    if not isinstance(fits, dict) or len(fits) < 2:
        raise MultilevelError('compare needs a dict of two or more fits: {"name": fit, ...}.')
    _check_same_rows(fits)
    results = {}
    for name, fit in fits.items():
        with warnings.catch_warnings():  # said below with the fit's name (also if cached)
            warnings.simplefilter("ignore", LooWarning)
            results[name] = loo(fit) if ic == "loo" else waic(fit)
        if results[name].warning:
            warnings.warn(f"{name}: {results[name].warning}", LooWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare({n: r.elpd_data for n, r in results.items()}, ic=ic)
    out = pd.DataFrame(
        {
            "rank": table["rank"].astype(int),
            "elpd": table[f"elpd_{ic}"].astype(float),
            "se": table["se"].astype(float),
            "p": table[f"p_{ic}"].astype(float),
            "n_params": [results[n].n_params for n in table.index],
            "elpd_diff": table["elpd_diff"].astype(float),
            "se_diff": table["dse"].astype(float),
            "weight": table["weight"].astype(float),
            "warning": [results[n].warning is not None for n in table.index],
        },
        index=table.index,
    )
    if ic == "loo":
        out["pareto_k_bad"] = [results[n].pareto_k["bad"] for n in table.index]
    out.index.name = "model"
    out.attrs["ic"] = ic
    title = "PSIS-LOO" if ic == "loo" else "WAIC"
    return tables.table(
        out,
        precision=dict.fromkeys(["elpd", "se", "p", "elpd_diff", "se_diff", "weight"], 2),
        caption=f"Fits ranked by {title} (elpd_{ic}: higher predicts new rows better), best first:",
        notes=(
            "elpd_diff: how far below the best fit, a real difference when it is a few "
            "se_diff or more.",
            "p: effective parameters (n_params: nominal count). weight: stacking weights. "
            "warning: the estimate is unreliable (see the Warning lines).",
        ),
    )


def _check_same_rows(fits: dict) -> None:
    """The fits must score the same observations."""
    first_name, first = next(iter(fits.items()))
    y0 = _observed(first)
    for name, fit in fits.items():
        if not hasattr(fit, "idata") or not hasattr(fit, "spec"):
            raise MultilevelError(f"compare: {name!r} is a {type(fit).__name__}, not a Fit.")
        y = _observed(fit)
        if y0 is not None and y is not None and (y.shape != y0.shape or not np.allclose(y, y0)):
            raise MultilevelError(
                f"compare needs fits of the same rows: {first_name!r} has {len(y0)} "
                f"observations of {first.spec.response}, {name!r} {len(y)} of "
                f"{fit.spec.response}{' with other values' if len(y) == len(y0) else ''}. "
                "Refit the models on one data set."
            )


def _observed(fit) -> np.ndarray | None:
    if "observed_data" in fit.idata.groups():
        return np.asarray(fit.idata.observed_data[fit.spec.response].values, dtype=float)
    return None


def plot_compare(table: pd.DataFrame, path: str | Path | None = None):
    """Plot a ``compare`` table: each model's elpd with its standard error (filled), and
    its difference to the best model with the standard error of that difference (open,
    drawn from the best model's elpd). Returns a matplotlib Figure; ``path`` saves it
    (``.png``, ``.svg`` or ``.pdf``).

    >>> fig = ml.plot_compare(ml.compare(fits), "compare.png")  # doctest: +SKIP
    """
    needed = {"elpd", "se", "elpd_diff", "se_diff"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise MultilevelError("plot_compare takes the table that ml.compare returns.")
    check_figure_path(path)
    ic = table.attrs.get("ic", "loo")
    n = len(table)
    fig = new_figure(6.4, 1.2 + 0.55 * n)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1].astype(float)
    best = float(table["elpd"].iloc[0])
    ax.errorbar(
        table["elpd"], y, xerr=table["se"], fmt="o", color="black", capsize=3, label="elpd ± se"
    )
    ax.errorbar(
        best - table["elpd_diff"].to_numpy()[1:],  # elpd_diff = best - this model
        y[1:] - 0.25,
        xerr=table["se_diff"].to_numpy()[1:],
        fmt="^",
        mfc="white",
        color="grey",
        capsize=3,
        label="difference to the best ± se",
    )
    ax.axvline(best, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.set_xlabel(f"elpd_{ic} (log score: higher predicts new rows better)")
    ax.set_ylim(-0.8, n - 0.4)
    ax.legend(loc="best", fontsize="small", frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
