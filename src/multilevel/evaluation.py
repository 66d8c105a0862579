"""Model evaluation: pointwise log-likelihood, PSIS-LOO, WAIC, K-fold cross-validation and
the comparison of fits by expected log predictive density (elpd).

Every fit stores the log-likelihood of every row under every posterior draw
(``fit.idata.log_likelihood``, computed from the named posterior in float64 with the
family's own likelihood), so ``fit.loo()``, ``fit.waic()`` and ``ml.compare`` need no
model code. Fits too large to store it (more than ``MAX_STORED_VALUES`` values) compute it
when asked. ``fit.kfold`` refits the model with held-out rows given a likelihood weight of
0: every fold has the shapes of the full data, so the refits reuse the compiled sampler.

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> fit = ml.Model("log_radon ~ floor + (1 | county)", radon).fit(seed=1)  # doctest: +SKIP
>>> fit.loo()  # doctest: +SKIP
>>> fit.kfold(10, by="county")  # doctest: +SKIP
>>> ml.compare({"partial": fit, "complete": other})  # doctest: +SKIP
"""

from __future__ import annotations

import re
import sys
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from multilevel._arviz import az
from multilevel.errors import MultilevelError
from multilevel.families import get_family
from multilevel.inference import nuts
from multilevel.missing import add_shift, fitted_eta_shift
from multilevel.options import check_seed

if TYPE_CHECKING:
    from multilevel.design import Design
    from multilevel.fit import Fit
    from multilevel.model import Model
    from multilevel.spec import ModelSpec

__all__ = [
    "ELPDResult",
    "KFoldResult",
    "LooWarning",
    "MAX_STORED_VALUES",
    "compare",
    "kfold",
    "loo",
    "plot_compare",
    "pointwise_log_likelihood",
    "waic",
]

#: A fit stores its pointwise log-likelihood when chains x draws x rows is at most this.
MAX_STORED_VALUES = 2e8
#: Pareto k thresholds (Vehtari et al. 2017, 2024): good below 0.5, ok below 0.7, bad above.
PARETO_K_GOOD = 0.5
PARETO_K_BAD = 0.7
#: WAIC is unreliable for rows whose log predictive density has a posterior variance above this.
WAIC_VAR_MAX = 0.4
_BATCH_VALUES = 2**23  # draws x rows per batch of the log-likelihood computation
_SHOWN = 5  # worst rows named in a warning
_ROBUST = {  # a heavier-tailed family to suggest when single rows dominate
    "gaussian": 'family="student_t"',
    "poisson": 'family="negative_binomial"',
}
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Fit -> {"loo": ..., ...}


class LooWarning(UserWarning):
    """Cross-validation estimates may be unreliable; the message says for which rows and
    what to do instead."""


# --------------------------------------------------------------------------- log-likelihood
def log_likelihood_plan(model: Model, samples: int, wanted: bool | None) -> tuple[bool, str]:
    """Whether ``Model.fit`` stores the pointwise log-likelihood, and the note for
    ``fit.info["log_likelihood"]``. ``samples`` is chains x draws; ``wanted`` is the
    ``log_likelihood`` argument (None: store unless it exceeds ``MAX_STORED_VALUES``)."""
    if wanted not in (None, True, False):
        raise MultilevelError(f"log_likelihood must be True, False or None, not {wanted!r}.")
    if not model.in_memory:
        if wanted:
            raise MultilevelError(
                "log_likelihood=True needs the data's rows, and this model was built from "
                "chunked statistics (Model.from_chunks): it holds per-group sums only."
            )
        return False, "not available: the model was built from chunked statistics (no rows)"
    values = samples * model.design.n
    if wanted is False:
        return False, "not stored (log_likelihood=False): fit.loo() computes it when asked"
    if wanted is None and values > MAX_STORED_VALUES:
        return False, (
            f"not stored: {samples:,} draws x {model.design.n:,} rows = {values:.2g} values "
            f"(> {MAX_STORED_VALUES:.0e}); fit.loo() and fit.waic() compute it when asked, "
            "fit(log_likelihood=True) stores it"
        )
    return True, "stored"


def add_log_likelihood(idata, spec: ModelSpec, design: Design) -> None:
    """Add the ``log_likelihood`` group (the response's name, dims chain, draw, obs)."""
    values = log_likelihood_values(spec, design, idata.posterior)
    idata.add_groups(
        log_likelihood={spec.response: values},
        coords={"obs": np.arange(design.n)},
        dims={spec.response: ["obs"]},
    )


def pointwise_log_likelihood(fit: Fit) -> np.ndarray:
    """Log-likelihood of every observation under every posterior draw.

    The values stored in ``fit.idata.log_likelihood`` when the fit has them; otherwise
    computed from the named posterior and the design: the linear predictor is
    ``X @ beta + sum_k sum_j Z_k[:, j] * effects_k[codes_k, j]``, then the family's log
    density (the model's own ``Family.likelihood``) in float64. (Probit probabilities are
    clipped at float64 precision here and at float32 precision in the sampler, which
    differ only for |eta| > 5.)

    Parameters
    ----------
    fit : Fit
        A fit with a stored log-likelihood, or one made by ``Model.fit`` in this session
        (it needs ``fit.model``'s rows).

    Returns
    -------
    numpy.ndarray
        Shape (chains, draws, rows).

    Examples
    --------
    >>> fit = ml.Model("log_radon ~ floor", radon).fit(seed=1)  # doctest: +SKIP
    >>> pointwise_log_likelihood(fit).shape  # doctest: +SKIP
    (4, 1000, 919)
    """
    if "log_likelihood" in fit.idata.groups():
        return np.asarray(fit.idata.log_likelihood[fit.spec.response].values)
    model = _rows_of(fit, "pointwise_log_likelihood")
    return log_likelihood_values(fit.spec, model.design, fit.idata.posterior)


def log_likelihood_values(spec: ModelSpec, design: Design, posterior, rows=None) -> np.ndarray:
    """(chains, draws, rows) log p(y_i | draw) from a named posterior, in float64 and in
    batches of draws (bounded memory). ``rows`` (indices) restricts it to some rows.

    The linear predictor is ``X @ beta + sum_k sum_j Z_k[:, j] * effects_k[codes_k, j]``;
    it and the family's log density run as one compiled float64 program per family,
    link and batch shape (op by op, each operation would be a pass over memory)."""
    if design.X.shape[1] != len(spec.columns):
        raise MultilevelError("The fit and its model's design disagree; refit the model.")
    rows = np.arange(design.n) if rows is None else np.asarray(rows)
    se = getattr(design, "se", None)  # known standard errors (y | se(s) ~ ...), if any
    fixed = {
        "X": design.X[rows],
        "y": design.y[rows],
        "trials": None if design.trials is None else design.trials[rows],
        "se": None if se is None else se[rows],
        "Z": tuple(b.Z[rows] for b in design.blocks),
        "codes": tuple(b.codes[rows] for b in design.blocks),
    }

    def values(name: str) -> np.ndarray:
        return np.asarray(posterior[name].values, dtype=float)

    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    beta = np.zeros((chains, draws, 0))  # (C, D, p); p = 0 for `y ~ 0 + (1 | g)`
    if spec.columns:
        beta = np.stack([values(n) for n in spec.columns], axis=-1)
    effects = [np.stack([values(n) for n in t.effect_names], -1) for t in spec.terms]
    aux = {name: values(name) for name in spec.aux}  # (C, D)
    shift = fitted_eta_shift(spec, design, posterior, rows)  # imputed predictors' draws
    out = np.empty((chains, draws, len(rows)))
    step = max(1, _BATCH_VALUES // max(len(rows), 1))
    program = _program(spec.family, spec.link)
    with jax.enable_x64(True):
        fixed = jax.tree.map(lambda v: jnp.asarray(v, dtype=_dtype(v)), fixed)
        for c in range(chains):
            for start in range(0, draws, step):
                d = slice(start, start + step)
                draw = {
                    "beta": beta[c, d],
                    "effects": tuple(e[c, d] for e in effects),
                    "aux": {k: v[c, d][:, None] for k, v in aux.items()},  # (D, 1)
                }
                if shift is not None:  # dense per batch: (D, n), bounded like the rest
                    columns, values = shift
                    dense = np.zeros((values[c, d].shape[0], len(rows)))
                    draw["shift"] = add_shift(dense, columns, values[c, d])
                out[c, d] = np.asarray(program(jax.tree.map(jnp.asarray, draw), fixed))
    return out


def _dtype(v: np.ndarray):
    return jnp.int32 if np.issubdtype(np.asarray(v).dtype, np.integer) else jnp.float64


def _density(family: str, link: str):
    """log p(y | eta) elementwise: the model's own likelihood (``Family.likelihood``)."""
    family_obj, link = get_family(family, link)

    def density(y, eta, aux, trials, se):
        known = {} if se is None else {"se": se}  # known sds of a gaussian response
        return family_obj.likelihood(eta, link, aux, trials, **known).log_prob(y)

    return density


def _program(family: str, link: str):
    """Compiled (draws, data) -> (D, n) log-likelihood, one per family and link."""
    if (family, link) not in _PROGRAMS:
        density = _density(family, link)

        def run(draw, data):
            eta = draw["beta"] @ data["X"].T  # (D, p) @ (p, n) -> (D, n)
            for eff, Z, codes in zip(draw["effects"], data["Z"], data["codes"]):
                # (D, n, q) * (n, q) -> (D, n): each row picks its level's effects
                eta = eta + jnp.sum(eff[:, codes, :] * Z, axis=-1)
            if "shift" in draw:  # imputed predictor values, per draw (missing="model")
                eta = eta + draw["shift"]
            return density(data["y"], eta, draw["aux"], data["trials"], data["se"])

        _PROGRAMS[(family, link)] = nuts.jit(run)  # with the package's XLA options
    return _PROGRAMS[(family, link)]


_PROGRAMS: dict = {}  # (family, link) -> jitted log-likelihood of a batch of draws


def _log_density(family: str, link: str, y, eta, aux: dict, trials=None, se=None) -> np.ndarray:
    """log p(y | eta) elementwise, broadcasting ``y`` (n,) against ``eta`` (..., n), in
    float64. ``se`` (n,): known standard errors of a gaussian response."""
    with jax.enable_x64(True):

        def f64(v):
            return None if v is None else jnp.asarray(v, dtype=jnp.float64)

        law = _density(family, link)
        aux = {k: f64(v) for k, v in aux.items()}
        return np.asarray(law(f64(y), f64(eta), aux, f64(trials), f64(se)))


def _rows_of(fit: Fit, what: str) -> Model:
    """The in-memory Model behind a fit, or an error saying why there is none."""
    model = fit.model
    if model is None:
        raise MultilevelError(
            f"{what} needs the log-likelihood of every row under every draw. This fit does "
            "not store it and, read with ml.load, does not keep its Model (formula and "
            "data) to compute it. Fit the model again in this session, e.g. "
            "fit = ml.Model(formula, data).fit()."
        )
    if not model.in_memory:
        raise MultilevelError(
            f"{what} needs the log-likelihood of every row under every draw, and this fit's "
            "model was built from chunked statistics (Model.from_chunks): it holds per-group "
            "sums, not rows, so no row can be left out or scored. To cross-validate, fit "
            "ml.Model(formula, data) on the rows (or a random sample of whole groups)."
        )
    return model


def _log_likelihood_idata(fit: Fit, what: str):
    """InferenceData with posterior and log_likelihood: the fit's own, or one made now."""
    if "log_likelihood" in fit.idata.groups():
        return fit.idata
    model = _rows_of(fit, what)
    values = log_likelihood_values(fit.spec, model.design, fit.idata.posterior)
    ll = az.convert_to_dataset(
        {fit.spec.response: values},
        coords={"obs": np.arange(model.design.n)},
        dims={fit.spec.response: ["obs"]},
    )
    return az.InferenceData(posterior=fit.idata.posterior, log_likelihood=ll)


def nominal_parameters(spec: ModelSpec) -> int:
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
        lines.append(_p_note(f"p_{m}", self.p, self.n_params, self.has_groups))
        if self.warning:
            lines.append(f"  Warning: {self.warning}")
        return "\n".join(lines)

    __repr__ = __str__


def _p_note(name: str, p: float, nominal: int, has_groups: bool) -> str:
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


def loo(fit: Fit) -> ELPDResult:
    """PSIS-LOO cross-validation of a fit: ``az.loo(..., pointwise=True)`` on its stored
    (or, for large fits, freshly computed) log-likelihood. Issues a ``LooWarning`` naming
    the worst rows when some have Pareto k >= 0.7. Cached per fit."""
    cache = _CACHE.setdefault(fit, {})
    if "loo" in cache:
        return cache["loo"]
    idata = _log_likelihood_idata(fit, "fit.loo() (PSIS-LOO)")
    with warnings.catch_warnings():  # ArviZ's own warning: ours below names the rows
        warnings.simplefilter("ignore", UserWarning)
        data = az.loo(idata, pointwise=True, var_name=fit.spec.response)
    ll = _stacked(idata, fit.spec.response)
    k = np.asarray(data["pareto_k"]).ravel()
    loo_i = np.asarray(data["loo_i"]).ravel()
    table = _pointwise_frame(fit, ll.shape[0])
    table["elpd_loo"] = loo_i
    table["p_loo"] = _lppd_i(ll) - loo_i
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


def waic(fit: Fit) -> ELPDResult:
    """WAIC of a fit (``az.waic(..., pointwise=True)``); a ``LooWarning`` when it is
    unreliable (rows whose log predictive density varies by more than 0.4). PSIS-LOO
    (``fit.loo()``) is the more robust of the two and says where it fails. Cached per fit."""
    cache = _CACHE.setdefault(fit, {})
    if "waic" in cache:
        return cache["waic"]
    idata = _log_likelihood_idata(fit, "fit.waic()")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = az.waic(idata, pointwise=True, var_name=fit.spec.response)
    ll = _stacked(idata, fit.spec.response)
    variance = ll.var(axis=1)
    table = _pointwise_frame(fit, ll.shape[0])
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


def _stacked(idata, name: str) -> np.ndarray:
    """(rows, samples) log-likelihood."""
    values = np.asarray(idata.log_likelihood[name].values)
    return values.reshape(-1, values.shape[-1]).T


def _lppd_i(ll: np.ndarray) -> np.ndarray:
    """log mean_s p(y_i | theta_s) per row of a (rows, samples) array."""
    return logsumexp(ll, axis=1) - np.log(ll.shape[1])


def _pointwise_frame(fit: Fit, n: int) -> pd.DataFrame:
    """Response, group labels and the other data columns the formula names, per row
    (when the rows are known), indexed by row number."""
    frame = pd.DataFrame(index=pd.RangeIndex(n, name="obs"))
    if fit.model is not None and fit.model.in_memory:
        design, data = fit.model.design, fit.model.data
        frame[fit.spec.response] = design.y
        for block in design.blocks:
            if block.group not in frame:
                frame[block.group] = np.asarray(block.levels, dtype=object)[block.codes]
        for column in data.columns:  # e.g. county in `~ 0 + C(county)`, covariates
            named = re.search(rf"(?<![\w.]){re.escape(str(column))}(?![\w.])", fit.spec.formula)
            if named and column not in frame and len(data) == n:
                frame[column] = data[column].to_numpy()
    elif "observed_data" in fit.idata.groups():
        frame[fit.spec.response] = fit.idata.observed_data[fit.spec.response].values
    return frame


_SCORES = {"elpd_loo", "p_loo", "pareto_k", "elpd_waic", "p_waic", "fold", "elpd_kfold"}


def _describe_row(i, row: pd.Series, column: str, label: str) -> str:
    """``row 7 (y=21.3, county=AITKIN): k 1.05``: the row's response and groups."""
    details = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k not in _SCORES
    )
    return f"row {i}" + (f" ({details})" if details else "") + f": {label} {row[column]:.2f}"


def _loo_warning(fit: Fit, table: pd.DataFrame) -> str:
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
    robust = _ROBUST.get(fit.spec.family, "a family with heavier tails")
    lines.append(
        f"Try fit.kfold(10{by}), which refits without the held-out rows instead of "
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
        ``{"name": Fit, ...}``: two or more fits of the same rows (the same response).
    ic : {"loo", "waic"}

    Returns
    -------
    pandas.DataFrame
        Best first, indexed by name: ``rank``, ``elpd``, ``se``, ``p`` (effective
        parameters), ``n_params`` (nominal count), ``elpd_diff`` and ``se_diff`` (to the
        best; a difference of a few ``se_diff`` or more is real), ``weight`` (stacking
        weights), ``warning`` (the estimate is unreliable: ``pareto_k_bad`` rows with
        k >= 0.7, or WAIC's variance check). ``table.attrs["ic"]`` names the criterion.

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
    return out


def _check_same_rows(fits: dict) -> None:
    """The fits must score the same observations."""
    first_name, first = next(iter(fits.items()))
    y0 = _observed(first)
    for name, fit in fits.items():
        if not hasattr(fit, "idata") or not hasattr(fit, "spec"):
            raise MultilevelError(f"compare: {name!r} is a {type(fit).__name__}, not a Fit.")
        y = _observed(fit)
        if y0 is not None and y is not None and (len(y) != len(y0) or not np.allclose(y, y0)):
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    needed = {"elpd", "se", "elpd_diff", "se_diff"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise MultilevelError("plot_compare takes the table that ml.compare returns.")
    if path is not None and Path(path).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise MultilevelError(
            f"Cannot tell the image format from {str(path)!r}: use .png, .svg or .pdf."
        )
    ic = table.attrs.get("ic", "loo")
    n = len(table)
    fig = Figure(figsize=(6.4, 1.2 + 0.55 * n))
    FigureCanvasAgg(fig)
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
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


# --------------------------------------------------------------------------- K-fold
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
            lines.append(_p_note("p_kfold", self.p, self.n_params, self.has_groups))
        else:
            lines.append(
                "Whole groups held out: elpd_kfold scores predictions for new groups (a "
                "grouped model predicts them from its population distribution alone), "
                "harder than new rows of known groups (elpd_loo); p_kfold also counts that gap."
            )
        return "\n".join(lines)

    __repr__ = __str__


def kfold(
    fit: Fit, k: int = 10, by: str | None = None, seed: int = 0, progress: bool = True, **fit_kwargs
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
    >>> fit.kfold(10, by="county")  # doctest: +SKIP
    >>> fit.kfold(85, by="county")  # leave one county out  # doctest: +SKIP
    """
    model = _rows_of(fit, "fit.kfold()")
    design = model.design
    n = design.n
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise MultilevelError(f"k must be a whole number of folds >= 2, got {k!r}.")
    rng = np.random.default_rng(check_seed(seed))
    labels = None
    if by is None:
        if k > n:
            raise MultilevelError(f"k = {k} folds, but the data has only {n} rows.")
        fold_of_row = np.empty(n, dtype=int)
        fold_of_row[rng.permutation(n)] = np.arange(n) % k
    else:
        labels = _group_labels(model, by)
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
    settings["method"] = "auto" if "integrated out" in info["method"] else "nuts"
    unknown = set(fit_kwargs) - {*settings, "method"}
    if unknown:
        raise MultilevelError(f"kfold does not take {', '.join(sorted(unknown))}.")
    settings.update(fit_kwargs)

    from multilevel.inference import nuts

    elpd_i = np.empty(n)
    rows_out = []
    bar = _progress_bar(k, progress)
    for f in range(k):
        held = np.flatnonzero(fold_of_row == f)
        traces = sum(nuts.TRACE_COUNTS.values())
        t0 = time.perf_counter()
        refit = model._weighted((fold_of_row != f).astype(float)).fit(
            **settings, progress=False, warn=False, log_likelihood=False
        )
        ll = log_likelihood_values(fit.spec, design, refit.idata.posterior, rows=held)
        elpd_i[held] = _lppd_i(ll.reshape(-1, len(held)).T)
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
        if bar is not None:
            bar.set_postfix_str(f"fold {f + 1}/{k}, {len(held)} rows held out")
            bar.update(1)
    if bar is not None:
        bar.close()
    folds = pd.DataFrame(rows_out).set_index("fold")
    lppd = float(
        _lppd_i(_stacked(_log_likelihood_idata(fit, "fit.kfold()"), fit.spec.response)).sum()
    )
    elpd = float(elpd_i.sum())
    pointwise = _pointwise_frame(fit, n)
    pointwise["fold"] = fold_of_row
    pointwise["elpd_kfold"] = elpd_i
    problems = folds[(folds["divergences"] > 0) | (folds["max_r_hat"] > 1.01)]
    if len(problems):
        from multilevel.diagnostics import ConvergenceWarning

        warnings.warn(
            f"K-fold: the refits of fold(s) {', '.join(str(i) for i in problems.index)} had "
            "convergence problems (divergences or R-hat > 1.01; see result.folds), so their "
            "elpd may be off. Refit with more warmup/draws or a higher target_accept: "
            "fit.kfold(..., warmup=2000, target_accept=0.95).",
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


def _group_labels(model: Model, by: str) -> np.ndarray:
    """Group label of every row: a data column, or a grouping factor of the formula."""
    for block in model.design.blocks:
        if block.group == by:
            return block.codes
    if by in model.data.columns:
        return model.data[by].astype(str).to_numpy()
    factors = sorted({b.group for b in model.design.blocks})
    raise MultilevelError(
        f"kfold(by={by!r}): no such column in the data"
        + (f" or grouping factor ({', '.join(factors)})" if factors else "")
        + "."
    )


def _progress_bar(total: int, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="K-fold", unit="fold", file=sys.stderr, leave=False)
