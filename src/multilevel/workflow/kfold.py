"""K-fold cross-validation: refit the model k times, each without one fold, and score
the held-out rows (``ml.kfold(fit, k, by=...)``).

A held-out row gets a likelihood weight of 0 (``Model.with_weights``) instead of being
dropped: every fold has the shapes of the full data, so the refits reuse the compiled
sampler. A workflow: it fits again through the public ``Model`` and ``Fit`` methods.

Examples
--------
>>> import multilevel as ml
>>> fit = ml.Model("log_radon ~ floor + (1 | county)", radon).fit(seed=1)  # doctest: +SKIP
>>> ml.kfold(fit, 10, by="county")  # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilevel.diagnostics import ConvergenceWarning
from multilevel.errors import MultilevelError
from multilevel.evaluation import (
    lppd_i,
    nominal_parameters,
    p_note,
    pointwise_frame,
    stacked_log_likelihood,
)
from multilevel.inference import nuts
from multilevel.loglik import log_likelihood_idata, log_likelihood_values
from multilevel.options import check_count, check_seed
from multilevel.progress import progress_bar


@dataclass
class KFoldResult:
    """K-fold cross-validation of a fit (see :func:`kfold`).

    Attributes
    ----------
    elpd, se : float
        ``elpd_kfold``: the sum over rows of log mean_s p(y_i | theta_s), with theta_s the
        draws of the fit that left row i's fold out, and its standard error.
    p : float
        ``p_kfold = lppd - elpd_kfold``, with lppd the full fit's log pointwise predictive
        density on the same rows.
    k : int
    by : str or None
        The column whose groups were held out whole (None: rows at random).
    n_params : int
        The nominal parameter count.
    pointwise : pandas.DataFrame
        Per row: the response, groups, ``fold`` and ``elpd_kfold``.
    folds : pandas.DataFrame
        Per fold: rows and groups held out, divergences, max R-hat, seconds and
        ``retraced`` (sampler programs traced anew for that fold: 0 after the first).
    """

    elpd: float
    se: float
    p: float
    k: int
    by: str | None
    n_params: int
    has_groups: bool
    pointwise: pd.DataFrame
    folds: pd.DataFrame

    @property
    def elpd_kfold(self) -> float:
        return self.elpd

    @property
    def p_kfold(self) -> float:
        return self.p

    def __str__(self) -> str:
        how = f"by {self.by} (whole groups held out)" if self.by else "by rows at random"
        n, f = len(self.pointwise), self.folds
        lines = [
            f"{self.k}-fold cross-validation {how}: {n} observations",
            f"  elpd_kfold {self.elpd:10.1f}   (se {self.se:.1f}; higher predicts new rows better)",
            f"  p_kfold    {self.p:10.1f}   (lppd of the full fit - elpd_kfold; nominal count {self.n_params})",
            f"  {self.k} refits in {f['seconds'].sum():.1f} s ({int(f['retraced'].sum())} "
            f"sampler programs compiled), {int(f['divergences'].sum())} divergences",
        ]
        if self.by is None:
            lines.append(p_note("p_kfold", self.p, self.n_params, self.has_groups))
        else:
            lines.append(
                "Whole groups held out: elpd_kfold scores predictions for new groups (a "
                "grouped model predicts them from its population distribution alone), "
                "harder than new rows of known groups (elpd_loo); p_kfold also counts that gap."
            )
        return "\n".join(lines)

    __repr__ = __str__


def kfold(
    fit, k: int = 10, by: str | None = None, seed: int = 0, progress: bool = True, **fit_kwargs
) -> KFoldResult:
    """K-fold cross-validation by refitting the model k times, each without one fold.

    ``by`` names a column of the data (or a grouping factor such as ``"state:city"``):
    its groups are assigned to folds at random and held out whole (``k`` equal to the
    number of groups is leave-one-group-out). ``by=None`` assigns rows at random. A
    held-out row gets a likelihood weight of 0 instead of being dropped, so every refit
    has the shapes of the full data and reuses the compiled sampler (the joint sampler
    compiles once, for the first fold; the collapsed Gaussian sampler not at all).

    Discrete rows that the full fit pooled into covariate patterns are refitted row by
    row (a weight per row). The refits use the fit's sampler settings and seed;
    ``fit_kwargs`` (``chains``, ``warmup``, ``draws``, ``target_accept``,
    ``max_tree_depth``, ``method``) override them. ``seed`` picks the folds. Returns a
    :class:`KFoldResult`; a ``ConvergenceWarning`` names folds whose refits had problems.

    Examples
    --------
    >>> ml.kfold(fit, 10, by="county")  # doctest: +SKIP
    >>> ml.kfold(fit, 85, by="county")  # leave one county out  # doctest: +SKIP
    """
    design, data = fit.rows(what="K-fold cross-validation")
    model = fit.model
    if model is None:
        raise MultilevelError(
            "K-fold cross-validation refits the model, and a fit read with ml.load keeps "
            "no Model. Build it again, ml.Model(formula, data), fit it and pass that fit."
        )
    n = design.n
    k = check_count("k", k, minimum=2)
    rng = np.random.default_rng(check_seed(seed))
    labels = None
    if by is None:
        if k > n:
            raise MultilevelError(f"k = {k} folds, but the data has only {n} rows.")
        fold_of_row = np.empty(n, dtype=int)
        fold_of_row[rng.permutation(n)] = np.arange(n) % k
    else:
        labels = _group_labels(design, data, by)
        levels, codes = np.unique(labels, return_inverse=True)
        if k > len(levels):
            raise MultilevelError(
                f"k = {k} folds, but {by!r} has only {len(levels)} groups; k = "
                f"{len(levels)} leaves one group out at a time."
            )
        fold_of_level = np.empty(len(levels), dtype=int)
        fold_of_level[rng.permutation(len(levels))] = np.arange(len(levels)) % k
        fold_of_row = fold_of_level[codes]

    info = fit.info
    settings = {**info["settings"], "seed": info["seed"]}
    settings["method"] = (
        "laplace" if "laplace" in info else "auto" if "integrated out" in info["method"] else "nuts"
    )
    unknown = set(fit_kwargs) - {*settings, "method"}
    if unknown:
        raise MultilevelError(f"kfold does not take {', '.join(sorted(unknown))}.")
    settings.update(fit_kwargs)

    elpd_i = np.empty(n)
    rows_out = []
    bar = progress_bar(k, "K-fold", unit="fold", show=progress)
    for f in range(k):
        held = np.flatnonzero(fold_of_row == f)
        traces = sum(nuts.TRACE_COUNTS.values())
        t0 = time.perf_counter()
        refit = model.with_weights((fold_of_row != f).astype(float)).fit(
            **settings, progress=False, warn=False, log_likelihood=False
        )
        ll = log_likelihood_values(fit.spec, design, refit.idata.posterior, rows=held)
        elpd_i[held] = lppd_i(ll.reshape(-1, len(held)).T)
        d = refit.diagnostics
        rows_out.append(
            {
                "fold": f,
                "rows": len(held),
                "groups": None if labels is None else len(np.unique(labels[held])),
                "divergences": d.divergences,
                "max_r_hat": d.max_r_hat,
                "seconds": time.perf_counter() - t0,
                "retraced": sum(nuts.TRACE_COUNTS.values()) - traces,
            }
        )
        bar.set_postfix_str(f"fold {f + 1}/{k}, {len(held)} rows held out")
        bar.update(1)
    bar.close()
    folds = pd.DataFrame(rows_out).set_index("fold")
    lppd = float(
        lppd_i(
            stacked_log_likelihood(
                log_likelihood_idata(fit, "K-fold cross-validation"), fit.spec.response
            )
        ).sum()
    )
    elpd = float(elpd_i.sum())
    pointwise = pointwise_frame(fit, n)
    pointwise["fold"] = fold_of_row
    pointwise["elpd_kfold"] = elpd_i
    problems = folds[(folds["divergences"] > 0) | (folds["max_r_hat"] > 1.01)]
    if len(problems):
        warnings.warn(
            f"K-fold: the refits of fold(s) {', '.join(str(i) for i in problems.index)} had "
            "convergence problems (divergences or R-hat > 1.01; see result.folds), so their "
            "elpd may be off. Refit with more warmup/draws or a higher target_accept: "
            "ml.kfold(fit, ..., warmup=2000, target_accept=0.95).",
            ConvergenceWarning,
            stacklevel=3,
        )
    return KFoldResult(
        elpd=elpd,
        se=float(np.sqrt(n * np.var(elpd_i))),
        p=lppd - elpd,
        k=int(k),
        by=by,
        n_params=nominal_parameters(fit.spec),
        has_groups=bool(fit.spec.terms),
        pointwise=pointwise,
        folds=folds,
    )


def _group_labels(design, data, by: str) -> np.ndarray:
    """Group label of every row: a data column, or a grouping factor of the formula."""
    for block in design.all_blocks:
        if block.group == by:
            return block.codes
    if by in data.columns:
        return data[by].astype(str).to_numpy()
    factors = sorted({b.group for b in design.all_blocks})
    raise MultilevelError(
        f"kfold(by={by!r}): no such column in the data"
        + (f" or grouping factor ({', '.join(factors)})" if factors else "")
        + "."
    )
