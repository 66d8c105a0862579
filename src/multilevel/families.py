"""Response families: which links they take, how their response is checked, their likelihood."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import expit, ndtr

from multilevel.errors import DataError


@dataclass(frozen=True)
class Family:
    """A response distribution with its links and auxiliary parameters.

    ``aux`` names the family's own parameters besides the linear predictor (``sigma``
    for gaussian, ``nu`` for student_t, ``shape`` for negative_binomial and gamma,
    ``phi`` for beta); they get priors of class ``aux[i]`` and appear under that name.
    A gaussian model with known standard errors (``y | se(s) ~ ...``) has none.
    """

    name: str
    links: tuple[str, ...]
    aux: tuple[str, ...]
    check: Callable[[np.ndarray, np.ndarray | None, str], None]
    needs_trials: bool = False
    # the response counts events (poisson, negative_binomial, binomial): with counts in
    # the thousands its log-likelihood is sharp and large (float32 rounding, stalls)
    counts: bool = False

    def likelihood(
        self,
        eta: jnp.ndarray,
        link: str,
        aux: dict,
        trials: jnp.ndarray | None,
        se: jnp.ndarray | None = None,
    ) -> dist.Distribution:
        """The observation distribution given the linear predictor ``eta``.

        ``se`` (n,): known standard errors of a gaussian response (meta-analysis,
        ``y | se(s) ~ ...``); they replace ``sigma``."""
        if se is not None:
            if self.name != "gaussian":
                raise ValueError(f"known standard errors need the gaussian family, not {self.name}")
            return dist.Normal(eta, se)
        return _LIKELIHOODS[(self.name, link)](eta, aux, trials)


def _as_numeric(y: np.ndarray, column: str, family: str) -> np.ndarray:
    if y.dtype == bool:
        return y.astype(float)
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(
            f"The response `{column}` holds {y.dtype} values, but the {family} family "
            "needs numbers. Convert the column (e.g. pd.to_numeric) or pick another family."
        )
    return y.astype(float)


def _integer_rows(y: np.ndarray) -> np.ndarray:
    return np.flatnonzero(y != np.round(y))


def _check_gaussian(y, trials, column):
    _as_numeric(y, column, "gaussian")


def _check_student_t(y, trials, column):
    _as_numeric(y, column, "student_t")


def _check_positive(y, trials, column, family):
    values = _as_numeric(y, column, family)
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise DataError(
            f"The {family} family needs a positive response, but `{column}` is zero or "
            f"negative in {bad.size} rows (e.g. {values[bad[0]]:g} in row {bad[0]}). A "
            f"{family} distribution cannot produce such values: for counts use "
            "family='poisson' or 'negative_binomial'; for a response that may be zero "
            "or negative use 'gaussian' or 'student_t'; otherwise remove or recode those "
            "rows yourself."
        )


def _check_gamma(y, trials, column):
    _check_positive(y, trials, column, "gamma")


def _check_lognormal(y, trials, column):
    _check_positive(y, trials, column, "lognormal")


def _check_beta(y, trials, column):
    values = _as_numeric(y, column, "beta")
    # The likelihood computes in float32: 1 - 1e-9 would round to 1 there (log(0)).
    single = values.astype(np.float32)
    bad = np.flatnonzero((single <= 0) | (single >= 1))
    if bad.size:
        value = values[bad[0]]
        extra = " (it rounds to 0 or 1 in single precision)" if 0 < value < 1 else ""
        hint = " Percentages? Divide by 100." if values.max() > 1 and values.max() <= 100 else ""
        raise DataError(
            f"The beta family needs proportions strictly between 0 and 1, but `{column}` "
            f"is outside (0, 1) in {bad.size} rows (e.g. {value:g} in row {bad[0]}"
            f"{extra}).{hint} For successes out of a known number of trials use "
            "family='binomial' (`k | trials(n) ~ ...`); to keep exact 0s and 1s, squeeze "
            "them yourself, e.g. (y * (n - 1) + 0.5) / n (Smithson & Verkuilen 2006)."
        )


def _check_bernoulli(y, trials, column):
    values = _as_numeric(y, column, "bernoulli")
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise DataError(
            f"The bernoulli family needs `{column}` to be 0/1 (or True/False), but "
            f"{bad.size} rows hold other values (e.g. {values[bad[0]]:g} in row {bad[0]}). "
            "For counts out of a total use `successes | trials(n) ~ ...` with "
            "family='binomial'."
        )


def _check_counts(values, column, family):
    negative = np.flatnonzero(values < 0)
    fractional = _integer_rows(values)
    if negative.size or fractional.size:
        rows = negative if negative.size else fractional
        kind = "negative" if negative.size else "non-integer"
        raise DataError(
            f"The {family} family needs non-negative whole-number counts in `{column}`, but "
            f"{rows.size} rows are {kind} (e.g. {values[rows[0]]:g} in row {rows[0]})."
        )


def _check_poisson(y, trials, column):
    _check_counts(_as_numeric(y, column, "poisson"), column, "poisson")


def _check_negative_binomial(y, trials, column):
    _check_counts(_as_numeric(y, column, "negative_binomial"), column, "negative_binomial")


def _check_binomial(y, trials, column):
    values = _as_numeric(y, column, "binomial")
    _check_counts(values, column, "binomial")
    if trials is None:
        raise DataError(
            "The binomial family needs the number of trials: write the formula as "
            f"`{column} | trials(n) ~ ...` with `n` the column of totals."
        )
    over = np.flatnonzero(values > trials)
    if over.size:
        raise DataError(
            f"`{column}` exceeds the number of trials in {over.size} rows (e.g. row "
            f"{over[0]}: {values[over[0]]:g} successes out of {trials[over[0]]:g})."
        )


def check_trials(trials: np.ndarray, column: str) -> None:
    """Trials must be positive whole numbers."""
    values = _as_numeric(trials, column, "binomial")
    _check_counts(values, column, "binomial")
    if (values == 0).any():
        raise DataError(
            f"The trials column `{column}` is 0 in {(values == 0).sum()} rows; "
            "such rows carry no information. Remove them explicitly."
        )


def check_se(se: np.ndarray, column: str) -> np.ndarray:
    """Known standard errors must be positive finite numbers; returned as floats."""
    if se.dtype == bool or not np.issubdtype(se.dtype, np.number):
        raise DataError(
            f"The standard-error column `{column}` holds {se.dtype} values; it needs "
            "positive numbers. Convert it (e.g. pd.to_numeric)."
        )
    values = se.astype(float)
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        raise DataError(
            f"The standard errors in `{column}` must be positive and finite, but "
            f"{bad.size} rows are not (e.g. {values[bad[0]]:g} in row {bad[0]}). A study "
            "without a usable standard error cannot enter `y | se(s) ~ ...`: remove it or "
            "supply its standard error."
        )
    return values


FAMILIES: dict[str, Family] = {
    "gaussian": Family("gaussian", ("identity",), ("sigma",), _check_gaussian),
    "bernoulli": Family("bernoulli", ("logit", "probit"), (), _check_bernoulli),
    "binomial": Family("binomial", ("logit",), (), _check_binomial, needs_trials=True, counts=True),
    "poisson": Family("poisson", ("log",), (), _check_poisson, counts=True),
    "student_t": Family("student_t", ("identity",), ("sigma", "nu"), _check_student_t),
    "negative_binomial": Family(
        "negative_binomial", ("log",), ("shape",), _check_negative_binomial, counts=True
    ),
    "gamma": Family("gamma", ("log",), ("shape",), _check_gamma),
    "lognormal": Family("lognormal", ("identity",), ("sigma",), _check_lognormal),
    "beta": Family("beta", ("logit",), ("phi",), _check_beta),
}


def _probit_probs(eta):
    # Keep probabilities strictly inside (0, 1) so the log-likelihood stays finite in float32.
    eps = jnp.finfo(eta.dtype).eps
    return jnp.clip(ndtr(eta), eps, 1 - eps)


_LIKELIHOODS = {
    ("gaussian", "identity"): lambda eta, aux, n: dist.Normal(eta, aux["sigma"]),
    ("bernoulli", "logit"): lambda eta, aux, n: dist.BernoulliLogits(eta),
    ("bernoulli", "probit"): lambda eta, aux, n: dist.BernoulliProbs(_probit_probs(eta)),
    ("binomial", "logit"): lambda eta, aux, n: dist.BinomialLogits(eta, total_count=n),
    # Internal: bernoulli-probit rows aggregated into binomial counts (backends.aggregate).
    # Not among FAMILIES["binomial"].links, so users cannot ask for it.
    ("binomial", "probit"): lambda eta, aux, n: dist.BinomialProbs(
        _probit_probs(eta), total_count=n
    ),
    ("poisson", "log"): lambda eta, aux, n: dist.Poisson(jnp.exp(eta)),
    ("student_t", "identity"): lambda eta, aux, n: dist.StudentT(aux["nu"], eta, aux["sigma"]),
    # mean exp(eta), variance mu + mu^2 / shape (brms' and Stan's neg_binomial_2)
    ("negative_binomial", "log"): lambda eta, aux, n: dist.NegativeBinomial2(
        jnp.exp(eta), aux["shape"]
    ),
    # mean exp(eta), shape alpha: rate alpha / mean (brms' gamma family)
    ("gamma", "log"): lambda eta, aux, n: dist.Gamma(aux["shape"], aux["shape"] * jnp.exp(-eta)),
    # log(y) ~ Normal(eta, sigma): eta is the mean of log(y), exp(eta) the median of y
    ("lognormal", "identity"): lambda eta, aux, n: dist.LogNormal(eta, aux["sigma"]),
    # mean mu = logistic(eta), precision phi: Beta(mu phi, (1 - mu) phi), which is
    # NumPyro's BetaProportion(mu, phi). Written with logistic(-eta) for 1 - mu so that
    # neither shape rounds to 0 in float32 when eta is large.
    ("beta", "logit"): lambda eta, aux, n: dist.Beta(
        aux["phi"] * expit(eta), aux["phi"] * expit(-eta)
    ),
}


def get_family(name: str, link: str | None = None) -> tuple[Family, str]:
    """Look up a family and resolve its link (the first listed is the default)."""
    if name not in FAMILIES:
        raise DataError(f"Unknown family {name!r}. Available: {', '.join(FAMILIES)}.")
    family = FAMILIES[name]
    link = link or family.links[0]
    if link not in family.links:
        raise DataError(
            f"The {name} family takes the link(s) {', '.join(family.links)}, not {link!r}."
        )
    return family, link
