"""Bayesian R² (Gelman, Goodrich, Gabry & Vehtari 2019) and its LOO-adjusted version.

``bayes_r2(fit)``: one R² per posterior draw s,

    R²_s = var_i(mu_si) / (var_i(mu_si) + var_i(y_i - mu_si)),

with ``mu_si`` the draw's expected response of fitted row i (``predict(kind="mean")``:
trials x probability for a binomial response) and the variances taken over the rows.
The residual variance is that of the draw's residuals ``y - mu`` for every family, as
brms' ``bayes_R2`` computes it (rstanarm uses the modelled ``sigma²`` of a gaussian
model instead; the residual version needs no family-specific variance and is the one
the paper's appendix gives for any model with an expected value). By construction it
lies in [0, 1].

``groups="fitted"`` (default) conditions on each row's own group effects;
``groups="zero"`` uses the population part alone (every group effect 0; brms'
``re_formula = NA``), so the groups' share of the variance moves to the residuals.

``loo_r2(fit)``: the same ratio with leave-one-out predictions, which does not reward a
model for fitting the noise of its own rows (brms' ``loo_R2``, after Gelman et al.
2019's appendix): PSIS weights from the fit's pointwise log-likelihood
(``az.psislw(-log_lik, r_eff)``, with ArviZ's ``r_eff`` as in ``fit.loo()``, so the
Pareto k are ``fit.loo()``'s) give each row's LOO predictive mean ``E_loo[mu_i]``; then
``R² = 1 - var(y - E_loo[mu]) / var(y)``, its uncertainty from Bayesian bootstrap
(Dirichlet(1, ..., 1)) weights over the rows, one set per posterior draw, clipped to
[-1, 1] as brms does. The weights are those of leaving row i out of this fit's
posterior whatever ``groups`` says: only the function averaged changes.

Not defined for ordinal, categorical or multinomial responses (no scalar expected
value; brms refuses unordered ones and warns for ordinal ones) nor for censored or
truncated responses (a censored row's y is a bound, not a value; the prediction's mean
of a truncated response is the untruncated one): these raise ``MultilevelError``
saying why. Likelihood weights (``weights()``) are not used, as in brms.

Examples
--------
>>> fit.r2()  # doctest: +SKIP
>>> fit.r2(groups="zero").summary()  # doctest: +SKIP
>>> fit.loo_r2().draws.mean()  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from multilevel._arviz import az
from multilevel.errors import MultilevelError
from multilevel.evaluation import PARETO_K_BAD, LooWarning, stacked_log_likelihood
from multilevel.families import FAMILIES
from multilevel.formula import parse_formula
from multilevel.loglik import log_likelihood_idata
from multilevel.options import check_seed
from multilevel.prediction import predict

__all__ = ["GROUPS", "R2", "bayes_r2", "loo_means", "loo_r2", "loo_r2_draws", "r2_draws"]

#: ``groups=`` of ``r2``/``loo_r2`` -> ``predict``'s: each row's own effects, or none.
GROUPS = {"fitted": "sample", "zero": "population"}


class R2:
    """Draws of a (Bayesian or LOO-adjusted) R² and their summary.

    ``draws``: (draws,) chains stacked; ``method``: ``"bayes_r2"`` or ``"loo_r2"``;
    ``groups``: ``"fitted"`` or ``"zero"``; ``loo_means``: a LOO R²'s per-row LOO
    predictive means (None for the Bayesian R²); ``summary(prob=0.9)``: a one-row
    DataFrame of estimate (posterior mean), median, sd and the equal-tailed interval."""

    def __init__(self, method: str, groups: str, draws: np.ndarray, loo_means=None, note=None):
        self.method, self.groups, self.draws = method, groups, draws
        self.loo_means, self.note = loo_means, note

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        if not 0 < prob < 1:
            raise MultilevelError(f"prob must be between 0 and 1 (exclusive), not {prob!r}.")
        low, high = (1 - prob) / 2, (1 + prob) / 2
        d = self.draws
        row = {
            "estimate": d.mean(),
            "median": np.median(d),
            "sd": d.std(ddof=1),
            f"q{_percent(low)}": np.quantile(d, low),
            f"q{_percent(high)}": np.quantile(d, high),
        }
        return pd.DataFrame([row], index=pd.Index([self.method], name="R2"))

    @property
    def estimate(self) -> float:
        return float(self.draws.mean())

    def __repr__(self) -> str:
        title = "Bayesian R²" if self.method == "bayes_r2" else "LOO-adjusted R²"
        how = {"fitted": "each row's own group effects", "zero": "group effects set to 0"}
        lines = [
            f"{title} ({how[self.groups]}; {len(self.draws)} draws; estimate = mean, "
            "90% interval q5 to q95)",
            self.summary().to_string(float_format=lambda x: f"{x:.4f}"),
        ]
        if self.note:
            lines.append(f"Note: {self.note}")
        return "\n".join(lines)


def _percent(p: float) -> str:
    return f"{100 * p:g}"


# --------------------------------------------------------------------------- pure parts
def r2_draws(y: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(S,) R² per draw from ``y`` (n,) and the expected responses ``means`` (S, n):
    var(mu_s) / (var(mu_s) + var(y - mu_s)), variances over the rows."""
    fitted = means.var(axis=1, ddof=1)
    residual = (y[None, :] - means).var(axis=1, ddof=1)
    return fitted / (fitted + residual)


def loo_means(means: np.ndarray, log_lik: np.ndarray, reff: float):
    """(n,) LOO predictive means E_loo[mu_i] and (n,) Pareto k, from ``means`` (S, n)
    and the pointwise log-likelihood ``log_lik`` (n, S) of the same draws in the same
    order: PSIS-smoothed, self-normalised importance weights with ratios 1 / p(y_i | s)."""
    log_weights, k = az.psislw(-log_lik, reff)  # (n, S), normalised over S
    weights = np.exp(np.asarray(log_weights))
    return np.einsum("ns,sn->n", weights, means), np.asarray(k)


def loo_r2_draws(y: np.ndarray, predicted: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
    """(n_draws,) 1 - var_w(y - predicted) / var_w(y) under Bayesian bootstrap weights
    w ~ Dirichlet(1, ..., 1) over the rows (one set per draw), clipped to [-1, 1].
    ``var_w(x) = n / (n - 1) * (sum w x² - (sum w x)²)``: weighted, with the usual
    small-sample factor, so that equal weights give the sample variance."""
    n = len(y)
    rng = np.random.default_rng(seed)
    w = rng.exponential(size=(n_draws, n))
    w /= w.sum(axis=1, keepdims=True)
    error = y - predicted

    def weighted_var(x):
        return n / (n - 1) * (w @ x**2 - (w @ x) ** 2)

    return np.clip(1.0 - weighted_var(error) / weighted_var(y), -1.0, 1.0)


# --------------------------------------------------------------------------- on a fit
def bayes_r2(fit, groups: str = "fitted", data: pd.DataFrame | None = None) -> R2:
    """Bayesian R² of ``fit``'s fitted rows, one per draw; see the module doc. ``data``:
    the fitted data, needed only for a fit read with ``ml.load``."""
    y, means = _response_and_means(fit, groups, data, "fit.r2()")
    return R2("bayes_r2", groups, r2_draws(y, means))


def loo_r2(fit, groups: str = "fitted", seed: int = 0, data: pd.DataFrame | None = None) -> R2:
    """LOO-adjusted R² of ``fit``; see the module doc. ``seed`` fixes the Bayesian
    bootstrap weights. A ``LooWarning`` says how many rows have Pareto k >= 0.7 (their
    LOO means, and so the estimate, may be off)."""
    check_seed(seed)
    y, means = _response_and_means(fit, groups, data, "fit.loo_r2()")
    idata = log_likelihood_idata(fit, "fit.loo_r2() (PSIS-LOO)")
    log_lik = stacked_log_likelihood(idata, fit.spec.response)  # (n, S), chains stacked
    predicted, k = loo_means(means, log_lik, relative_efficiency(fit.idata.posterior))
    note = None
    bad = int((k >= PARETO_K_BAD).sum())
    if bad:
        note = (
            f"{bad} of {len(k)} rows have Pareto k >= {PARETO_K_BAD}: their LOO means are "
            "unreliable, and so may be this R² (fit.loo() names them; ml.kfold refits)."
        )
        warnings.warn(note, LooWarning, stacklevel=3)
    draws = loo_r2_draws(y, predicted, means.shape[0], seed)
    return R2("loo_r2", groups, draws, loo_means=predicted, note=note)


def relative_efficiency(posterior) -> float:
    """ArviZ's ``r_eff`` for PSIS-LOO (as ``az.loo`` computes it, so the Pareto k agree
    with ``fit.loo()``): the mean ESS of the posterior's variables per draw; 1 for one
    chain."""
    if posterior.sizes["chain"] == 1:
        return 1.0
    ess = az.ess(posterior, method="mean")
    values = np.hstack([ess[v].values.ravel() for v in ess.data_vars])
    return float(values.mean() / (posterior.sizes["chain"] * posterior.sizes["draw"]))


def _response_and_means(fit, groups: str, data, what: str):
    """y (n,) and the expected responses (S, n) of the fitted rows, chains stacked."""
    if groups not in GROUPS:
        raise MultilevelError(
            f"groups must be one of {', '.join(map(repr, GROUPS))}, not {groups!r}: "
            "'fitted' uses each row's own group effects, 'zero' none."
        )
    check_defined(fit.spec, what)
    design, _ = fit.rows(data, what=what)
    y = np.asarray(design.y, dtype=float)
    means = predict(fit, kind="mean", groups=GROUPS[groups], data=data).values
    if len(y) < 2:
        raise MultilevelError(f"{what} needs two or more fitted rows, not {len(y)}.")
    return y, means


def check_defined(spec, what: str) -> None:
    """Refuse models whose R² is not defined, saying why."""
    family = FAMILIES[spec.family]
    if family.ordinal or family.category_logits:
        raise MultilevelError(
            f"{what} is not defined for the {spec.family} family: R² compares variances of "
            "a numeric response and its expected value, and an ordered or unordered "
            "category (or a vector of counts) has no such scalar expected value. Compare "
            "models with fit.loo() instead."
        )
    parsed = parse_formula(spec.formula)
    if parsed.cens is not None:
        raise MultilevelError(
            f"{what} is not defined for a censored response (`cens({parsed.cens})`): a "
            "censored row's recorded value is a bound, not the response, so its residual "
            "is unknown. Compare models with fit.loo() instead."
        )
    if any(b is not None for b in parsed.trunc_bounds):
        raise MultilevelError(
            f"{what} is not defined here for a truncated response (`trunc()`): the "
            "predicted mean is that of the untruncated distribution, so y minus it is not "
            "a residual. Compare models with fit.loo() instead."
        )
