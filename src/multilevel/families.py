"""Response families: which links they take, how their response is checked, their likelihood."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import expit, gammaln, ndtr
from scipy import special as np_special

from multilevel import distributions as extra
from multilevel.errors import DataError
from multilevel.ordinal import (
    CATEGORY_SPECIFIC_FAMILIES,
    ORDINAL_FAMILIES,
    ORDINAL_LINKS,
    Ordinal,
    category_log_probs,
)
from multilevel.response_bounds import MAX_REDRAWS, Bounded

#: The natural link of each family parameter when it gets its own formula (brms' defaults):
#: log for the positive ones; ``logm1`` (nu = 1 + exp(eta)) keeps student_t's degrees of
#: freedom above 1, where its mean exists; logit for probabilities; identity for
#: skew_normal's skewness ``alpha``, which takes any sign.
DPAR_LINKS = {
    "sigma": "log",
    "shape": "log",
    "phi": "log",
    "nu": "logm1",
    "alpha": "identity",  # skew_normal's skewness
    "beta": "log",  # exgaussian's mean of the exponential part
    "ndt": "log",  # shifted_lognormal's non-decision time (shift)
    "zi": "logit",  # zero-inflation probability
    "hu": "logit",  # hurdle probability (of a zero)
    "zoi": "logit",  # zero_one_inflated_beta: probability of a 0 or 1
    "coi": "logit",  # ... and of a 1 among those
}


def category_predictor(name: str) -> bool:
    """Whether ``name`` is the linear predictor of one category of a categorical model
    (``mu<label>``, brms' names: ``muB``, ``mu2``)."""
    return name.startswith("mu") and len(name) > 2 and name[2:].replace("_", "").isalnum()


def dpar_link(name: str) -> str:
    """The link of a family parameter with a formula: ``DPAR_LINKS``; a category's linear
    predictor is its log-odds against the reference category (identity)."""
    return DPAR_LINKS.get(name, "identity")


def _cloglog_numpy(eta):
    return -np.expm1(-np.exp(eta))


def _cauchit_numpy(eta):
    return 0.5 + np.arctan(eta) / np.pi


_NUMPY_INVERSE = {
    "identity": lambda eta: eta,
    "log": np.exp,
    "logm1": lambda eta: 1.0 + np.exp(eta),
    "logit": np_special.expit,
    "probit": np_special.ndtr,
    "cloglog": _cloglog_numpy,  # 1 - exp(-exp(eta))
    "cauchit": _cauchit_numpy,  # the Cauchy cdf
    "sqrt": np.square,  # mean = eta^2, eta > 0 (the mean's square root)
    "inverse": np.reciprocal,  # mean = 1 / eta
    "1/mu^2": lambda eta: 1.0 / np.sqrt(eta),  # mean = eta^(-1/2), eta > 0
}
_JAX_INVERSE = {
    "identity": lambda eta: eta,
    "log": jnp.exp,
    "logm1": lambda eta: 1.0 + jnp.exp(eta),
    "logit": expit,
    "probit": ndtr,
    "cloglog": lambda eta: -jnp.expm1(-jnp.exp(eta)),
    "cauchit": lambda eta: 0.5 + jnp.arctan(eta) / jnp.pi,
    "sqrt": jnp.square,
    "inverse": jnp.reciprocal,
    "1/mu^2": jax.lax.rsqrt,
}
#: The links themselves (mean -> eta) and the slopes of their inverses (d mean / d eta),
#: in NumPy: the pooled GLM that starts the sampler (``backends.start``) reads them.
_NUMPY_LINK = {
    "identity": lambda mu: mu,
    "log": np.log,
    "logm1": lambda mu: np.log(mu - 1.0),
    "logit": np_special.logit,
    "probit": np_special.ndtri,
    "cloglog": lambda mu: np.log(-np.log1p(-mu)),
    "cauchit": lambda mu: np.tan(np.pi * (mu - 0.5)),
    "sqrt": np.sqrt,
    "inverse": np.reciprocal,
    "1/mu^2": lambda mu: mu**-2.0,
}
_NUMPY_INVERSE_SLOPE = {
    "identity": np.ones_like,
    "log": np.exp,
    "logm1": np.exp,
    "logit": lambda eta: np_special.expit(eta) * np_special.expit(-eta),
    "probit": lambda eta: np.exp(-0.5 * eta**2) / np.sqrt(2 * np.pi),
    "cloglog": lambda eta: np.exp(eta - np.exp(eta)),
    "cauchit": lambda eta: 1.0 / (np.pi * (1.0 + eta**2)),
    "sqrt": lambda eta: 2.0 * eta,
    "inverse": lambda eta: -1.0 / eta**2,
    "1/mu^2": lambda eta: -0.5 * eta**-1.5,
}
#: Links whose mean leaves (0, inf) where eta <= 0: the families with a positive mean
#: have no density there (``Family.valid_mean``). sqrt follows R's glm (mean eta^2 with
#: eta > 0): brms' square would give every eta a twin -eta of equal likelihood.
POSITIVE_ONLY_LINKS = ("identity", "sqrt", "inverse", "1/mu^2")


def inverse_link(link: str, eta):
    """The mean (or parameter) on its own scale from the linear predictor ``eta``: JAX
    arrays (also inside a traced model) stay JAX, anything else is computed by NumPy."""
    table = _JAX_INVERSE if isinstance(eta, jax.Array) else _NUMPY_INVERSE
    if link not in table:
        raise ValueError(f"no inverse of the {link!r} link")
    return table[link](eta if table is _JAX_INVERSE else np.asarray(eta, dtype=float))


def link_function(link: str, mean) -> np.ndarray:
    """The link itself, mean -> eta (NumPy): ``inverse_link``'s inverse."""
    if link not in _NUMPY_LINK:
        raise ValueError(f"no {link!r} link")
    return _NUMPY_LINK[link](np.asarray(mean, dtype=float))


def inverse_link_slope(link: str, eta) -> np.ndarray:
    """d mean / d eta of ``inverse_link`` (NumPy): the IRLS weights of a pooled GLM."""
    if link not in _NUMPY_INVERSE_SLOPE:
        raise ValueError(f"no {link!r} link")
    return _NUMPY_INVERSE_SLOPE[link](np.asarray(eta, dtype=float))


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
    # a heavier-tailed family to suggest when single rows dominate (LOO's advice)
    robust: str | None = None
    # parameters that always get a linear predictor, with this formula unless the user
    # gives one (probabilities such as zi: an intercept on the logit scale, not a scalar
    # with a prior on (0, 1))
    default_formulas: tuple[tuple[str, str], ...] = ()
    # what the response is: "real" (any number), "positive", "nonnegative" (positive or
    # a structural zero: the continuous hurdles), "counts", "proportion" (in (0, 1) or
    # [0, 1]) or "successes" (0/1 or out of trials): plausible ranges, default priors
    # and which links can leave the support follow from it
    outcome: str = "real"

    @property
    def discrete(self) -> bool:
        """The response takes whole-number values (0/1 for bernoulli)."""
        return self.counts or self.name == "bernoulli" or self.ordinal or self.categorical

    @property
    def categorical(self) -> bool:
        """Unordered categories, one per row (brms' categorical family)."""
        return self.outcome == "categorical"

    @property
    def multivariate_response(self) -> bool:
        """The response of a row is a vector: counts over K unordered categories
        (``cbind(a, b, c) ~ ...``, brms' multinomial family), an (n, K) array whose
        row sums are the trials."""
        return self.outcome == "multinomial"

    @property
    def category_logits(self) -> bool:
        """Unordered categories (categorical, multinomial): one linear predictor per
        category but the first (``mu<label>``, its log-odds against the first), each with
        the whole formula; the mean's formula is ``y ~ 0``."""
        return self.categorical or self.multivariate_response

    def takes_dpar(self, name: str) -> bool:
        """Whether ``name`` is a parameter of this family that a formula can predict or a
        value fix (``ml.bf(..., name=...)``)."""
        return name in self.aux or (self.category_logits and category_predictor(name))

    @property
    def without_inflation(self) -> str | None:
        """The family an inflated or hurdle family extends, without its extra zeros (or
        zeros and ones): ``zero_inflated_poisson`` -> ``poisson``,
        ``zero_one_inflated_beta`` -> ``beta``; None for others."""
        for prefix in ("zero_one_inflated_", "zero_inflated_", "hurdle_"):
            if self.name.startswith(prefix):
                return self.name.removeprefix(prefix)
        return None

    @property
    def ordinal(self) -> bool:
        """Ordered categories (cumulative, sratio, cratio, acat): thresholds in place of
        an intercept (``multilevel.ordinal``)."""
        return self.outcome == "ordinal"

    @property
    def category_specific(self) -> bool:
        """Takes brms' category-specific effects ``cs()`` (sratio, cratio, acat): one
        coefficient per threshold, thresholds that differ by row."""
        return self.name in CATEGORY_SPECIFIC_FAMILIES

    @property
    def binary(self) -> bool:
        """Outcomes are successes (0/1, or out of trials): read on the probability scale
        (bernoulli, binomial, beta_binomial and the zero-inflated binomials)."""
        return self.outcome == "successes"

    @property
    def log_response(self) -> bool:
        """The linear predictor is the mean of log(y) (of log(y - ndt) when shifted; of
        the positive values of a hurdle): lognormal, shifted_lognormal, hurdle_lognormal."""
        return self.name in ("lognormal", "shifted_lognormal", "hurdle_lognormal")

    @property
    def positive_mean(self) -> bool:
        """The inverse link gives a mean that must be positive (counts, positive
        responses; not the log(y) families, whose eta is a mean of log(y)): links in
        ``POSITIVE_ONLY_LINKS`` have no density where eta <= 0."""
        return self.outcome in ("counts", "positive", "nonnegative") and not self.log_response

    def plausible_range(
        self, y: np.ndarray, trials: np.ndarray | None = None
    ) -> tuple[float, float]:
        """The default plausible range of this family's outcome, given the observed one
        (what a prior predictive check calls absurd lies outside it; ``plausible_rule``
        says it in words).

        Any number (gaussian, student_t, skew_normal, exgaussian) ``[min - 2R, max +
        2R]`` (``R`` the observed range); counts ``[0, 10 max + 10]``; positive outcomes
        (lognormal, gamma, exponential, weibull, inverse_gaussian, shifted_lognormal) a
        decade beyond the data either way, ``[min / 10, 10 max]``; hurdle_gamma and
        hurdle_lognormal ``[0, 10 max]`` (their zeros are in range); beta and
        zero_one_inflated_beta ``[0, 1]`` (nothing is absurd by range), as a
        multinomial's category shares of each row's total; successes
        (bernoulli, binomial, beta_binomial, zero-inflated binomials) ``[0.01, 0.99]`` on
        the probability scale, widened to a tenth of the observed success (failure) rate
        when that is below 10%."""
        y = np.asarray(y, dtype=float)
        if self.outcome == "real":
            width = float(y.max() - y.min()) or 1.0
            return float(y.min() - 2 * width), float(y.max() + 2 * width)
        if self.outcome == "counts":
            return 0.0, float(10 * y.max() + 10)
        if self.outcome == "positive":
            return float(y.min() / 10), float(10 * y.max())
        if self.outcome == "nonnegative":
            return 0.0, float(10 * y.max())
        if self.outcome == "proportion":
            return 0.0, 1.0
        if self.ordinal or self.categorical:  # every category is possible
            return 0.0, float(y.max())
        if self.multivariate_response:  # shares of each row's total (prior_check)
            return 0.0, 1.0
        if self.binary:
            rate = success_rate(y, trials)
            return float(min(0.01, rate / 10)), float(max(0.99, 1 - (1 - rate) / 10))
        raise ValueError(f"no plausible range is defined for the {self.name!r} family")

    @property
    def plausible_rule(self) -> str:
        """``plausible_range`` in words, for messages."""
        return {
            "real": "the observed range widened by twice its width on each side",
            "counts": "0 to ten times the largest observed count plus 10",
            "positive": "a tenth of the smallest to ten times the largest observed value",
            "nonnegative": "0 to ten times the largest observed value",
            "proportion": "0 to 1",
            "successes": "the default for success probabilities",
            "multinomial": "0 to 1 (each category's share of its row's total)",
        }[self.outcome]

    @property
    def predictable(self) -> tuple[str, ...]:
        """The family parameters that can get their own formula (``ml.bf(..., sigma=...)``)."""
        return tuple(name for name in self.aux if name in DPAR_LINKS)

    def valid_mean(self, link: str, eta):
        """Where ``eta`` gives a mean inside the family's support (an array like
        ``eta``), or None where every eta does (the link cannot leave it)."""
        if not (self.positive_mean and link in POSITIVE_ONLY_LINKS):
            return None
        return eta > 0

    def check_mean(self, link: str, eta) -> None:
        """Refuse linear predictors whose mean lies outside the family's support (NumPy):
        the model has no density there, so neither a mean nor a draw exists. Within the
        fit this cannot happen (the likelihood is 0 there); it can on new data."""
        eta = np.asarray(eta, dtype=float)
        valid = self.valid_mean(link, eta)
        if valid is None or valid.all():
            return
        bad = np.flatnonzero(~valid.ravel())
        with np.errstate(invalid="ignore", divide="ignore"):  # 1/mu^2: no mean at eta <= 0
            value = float(inverse_link(link, eta.ravel()[bad[0]]))
        mean = f"a mean of {value:g}" if np.isfinite(value) else "no mean"
        raise DataError(
            f"The {link} link of the {self.name} family gives {mean} (linear "
            f"predictor {eta.ravel()[bad[0]]:g} <= 0) in {bad.size} of {eta.size} values "
            f"asked for: {self.name} means must be positive, so nothing can be predicted "
            "there. The fitted rows never do (their likelihood is 0 there); new data "
            "beyond them can. Predict only where the linear predictor stays positive, or "
            "fit with link='log' (the default), whose mean is positive everywhere."
        )

    def mean(self, eta, link: str, params: dict, trials=None) -> np.ndarray:
        """E[y] given the linear predictor ``eta`` (NumPy; ``params`` the family
        parameters broadcastable against ``eta``): the inverse link, except that
        a lognormal's ``eta`` is the mean of log(y) (E[y] = exp(eta + sigma^2 / 2), plus
        ``ndt`` when shifted), zero-inflated and hurdle families scale the mean by the
        chance of no structural zero (hurdle counts: of the zero-truncated count),
        zero_one_inflated_beta mixes in its ones, and a mean of successes out of
        ``trials`` counts them. A mean outside the support is refused (``check_mean``)."""
        eta = np.asarray(eta, dtype=float)
        if self.ordinal or self.categorical:  # the expected category, 0-based
            probabilities = self.category_probabilities(eta, link, params)
            return (probabilities * np.arange(probabilities.shape[-1])).sum(-1)
        if self.multivariate_response:  # (..., K) expected counts of each category
            return self.category_probabilities(eta, link, params) * np.expand_dims(trials, -1)
        self.check_mean(link, eta)
        params = {name: np.asarray(value, dtype=float) for name, value in params.items()}
        if self.name in ("lognormal", "hurdle_lognormal", "shifted_lognormal"):
            mean = np.exp(eta + params["sigma"] ** 2 / 2)
            mean = mean + params["ndt"] if "ndt" in params else mean
        else:
            mean = inverse_link(link, eta)
        if self.name == "zero_one_inflated_beta":
            return params["zoi"] * params["coi"] + (1.0 - params["zoi"]) * mean
        if self.name.startswith("zero_inflated_"):  # a structural zero with probability zi
            mean = (1.0 - params["zi"]) * mean
        if self.name.startswith("hurdle_"):  # P(y > 0) times the mean of positive y
            if self.counts:  # ... a zero-truncated count's
                if "shape" in params:
                    shape = params["shape"]
                    p_zero = (shape / (shape + mean)) ** shape
                else:
                    p_zero = np.exp(-mean)
                mean = mean / -np.expm1(np.log(p_zero))
            mean = (1.0 - params["hu"]) * mean
        return mean * trials if self.needs_trials else mean

    def category_probabilities(self, eta, link: str, params: dict) -> np.ndarray:
        """(..., K) P(y = k) of an ordinal family, for ``eta`` (...) and
        ``params["thresholds"]`` (..., 1, K - 1) or (K - 1,); of a categorical one, the
        softmax of the reference's ``eta`` and each category's predictor in ``params``
        (``mu<label>``, in category order), as of a multinomial one; in float64."""
        if self.category_logits:
            logits = np.stack(np.broadcast_arrays(
                np.asarray(eta, dtype=float),
                *(np.asarray(v, dtype=float) for k, v in params.items() if category_predictor(k)),
            ), axis=-1)  # fmt: skip
            logits = logits - logits.max(axis=-1, keepdims=True)
            return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        with jax.enable_x64(True):
            log_p = category_log_probs(
                self.name,
                link,
                jnp.asarray(eta, dtype=jnp.float64),
                jnp.asarray(params["thresholds"], dtype=jnp.float64),
            )
            return np.exp(np.asarray(log_p))

    def likelihood(
        self,
        eta: jnp.ndarray,
        link: str,
        aux: dict,
        trials: jnp.ndarray | None,
        se: jnp.ndarray | None = None,
        bounds: dict | None = None,
    ) -> dist.Distribution:
        """The observation distribution given the linear predictor ``eta``.

        ``se`` (n,): known standard errors of a gaussian response (meta-analysis,
        ``y | se(s) ~ ...``); they replace ``sigma``, or add to it when the model keeps
        one (``se(s, sigma = TRUE)``: sd ``sqrt(se^2 + sigma^2)``, as brms).
        ``bounds``: censoring and truncation arrays (``cens``, ``y2``, ``lower``,
        ``upper``), which wrap the distribution in ``response_bounds.Bounded``."""
        if se is not None:
            if self.name != "gaussian":
                raise ValueError(f"known standard errors need the gaussian family, not {self.name}")
            scale = se if "sigma" not in aux else jnp.sqrt(se**2 + aux["sigma"] ** 2)
            law = dist.Normal(eta, scale)
        else:
            law = _LIKELIHOODS[(self.name, link)](eta, aux, trials)
        if bounds:
            return Bounded(law, discrete=self.discrete, **bounds)
        return law

    @functools.cached_property
    def has_cdf(self) -> bool:
        """Whether this family's distribution has a cdf, which censoring and truncation
        (``cens()``, ``trunc()``) need; asked of the distribution itself, at one point."""
        if self.ordinal or self.category_logits:  # categories: censoring is meaningless
            return False
        aux = {name: jnp.ones(1) for name in self.aux}
        trials = jnp.ones(1, dtype=jnp.int32) if self.needs_trials else None
        law = self.likelihood(jnp.zeros(1), self.links[0], aux, trials)
        try:
            law.cdf(jnp.ones(1) / 2)
        except (NotImplementedError, ImportError):
            return False
        return True

    def draw(
        self, eta, link: str, aux: dict, trials=None, se=None, seed: int = 0, bounds=None
    ) -> np.ndarray:
        """One draw of the response per element of ``eta`` (NumPy in and out), from one
        compiled program per family, link and shape: sampled op by op instead, the
        zero-truncated and mixture distributions compile dozens of small programs per
        call, each holding memory maps of its own (``program_cache``). ``bounds``
        (``lower``/``upper`` arrays) truncates the draws. A mean outside the support
        is refused (``check_mean``)."""
        self.check_mean(link, eta)
        bounds = {k: v for k, v in (bounds or {}).items() if k in ("lower", "upper")}
        # truncated draws in double precision: the inverse cdf needs the mass beyond a
        # bound, which rounds to 0 in float32 6 sds out (posterior draws of a truncated
        # gaussian reach that where the data leave its mean free)
        with jax.enable_x64(bool(bounds)):
            real = jnp.float64 if bounds else jnp.float32
            params = {name: jnp.asarray(value, dtype=real) for name, value in aux.items()}
            trials = None if trials is None else jnp.asarray(trials, dtype=jnp.int32)
            se = None if se is None else jnp.asarray(se, dtype=real)
            bounds = {k: jnp.asarray(v, dtype=real) for k, v in bounds.items()}
            key = jax.random.PRNGKey(seed)
            eta = jnp.asarray(eta, dtype=real)
            # the parameters' names as a static tuple: jit rebuilds a dict argument with
            # its keys sorted, and categories read their predictors in the given order
            values = _draw(self.name, link, tuple(params), eta, tuple(params.values()),
                           trials, se, bounds, key)  # fmt: skip
            values = np.asarray(values)
        values = values.astype(float)
        if bounds:  # trunc(): rows rejection could not place are NaN
            check_truncated_draws(values)
        return values


def check_truncated_draws(values: np.ndarray) -> None:
    """Truncated draws that rejection sampling could not place inside their bounds are
    NaN (``response_bounds.Bounded``): refuse them rather than return them."""
    if np.isnan(values).any():
        raise DataError(
            f"{int(np.isnan(values).sum())} draws of the truncated response fell outside "
            "their `trunc()` bounds in every one of "
            f"{MAX_REDRAWS} tries: the bounds keep almost none of the distribution there. "
            "Check the bounds against the fitted means, or widen them."
        )


def success_rate(y: np.ndarray, trials: np.ndarray | None = None) -> float:
    """The overall share of successes: out of the trials, or of the rows (bernoulli)."""
    total = float(np.sum(trials)) if trials is not None else float(np.size(y))
    return float(np.sum(y)) / total


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


def _counts_check(family: str):
    def check(y, trials, column):
        _check_counts(_as_numeric(y, column, family), column, family)

    return check


def _successes_check(family: str):
    """Successes out of trials (binomial, beta_binomial, the zero-inflated binomials)."""

    def check(y, trials, column):
        values = _as_numeric(y, column, family)
        _check_counts(values, column, family)
        if trials is None:
            raise DataError(
                f"The {family} family needs the number of trials: write the formula as "
                f"`{column} | trials(n) ~ ...` with `n` the column of totals."
            )
        over = np.flatnonzero(values > trials)
        if over.size:
            raise DataError(
                f"`{column}` exceeds the number of trials in {over.size} rows (e.g. row "
                f"{over[0]}: {values[over[0]]:g} successes out of {trials[over[0]]:g})."
            )

    return check


_check_binomial = _successes_check("binomial")


def _numeric_check(family: str):
    def check(y, trials, column):
        _as_numeric(y, column, family)

    return check


def _positive_check(family: str):
    def check(y, trials, column):
        _check_positive(y, trials, column, family)

    return check


def _nonnegative_check(family: str):
    """A continuous hurdle: exact zeros (the hurdle) or positive values."""

    def check(y, trials, column):
        values = _as_numeric(y, column, family)
        bad = np.flatnonzero(values < 0)
        if bad.size:
            raise DataError(
                f"The {family} family needs a response that is 0 or positive, but "
                f"`{column}` is negative in {bad.size} rows (e.g. {values[bad[0]]:g} in "
                f"row {bad[0]}). Remove or recode those rows, or use a family for any "
                "number ('gaussian', 'student_t', 'skew_normal')."
            )

    return check


def _check_zero_one_inflated_beta(y, trials, column):
    values = _as_numeric(y, column, "zero_one_inflated_beta")
    # exact 0s and 1s are the inflation; values strictly inside must stay inside in
    # float32, where the likelihood is computed (1 - 1e-9 rounds to 1, log(0) there)
    single = values.astype(np.float32)
    inside = (values > 0) & (values < 1)
    bad = np.flatnonzero(((values < 0) | (values > 1)) | (inside & ((single <= 0) | (single >= 1))))
    if bad.size:
        value = values[bad[0]]
        extra = " (it rounds to 0 or 1 in single precision)" if 0 < value < 1 else ""
        hint = " Percentages? Divide by 100." if values.max() > 1 and values.max() <= 100 else ""
        raise DataError(
            f"The zero_one_inflated_beta family needs proportions in [0, 1], but "
            f"`{column}` is outside in {bad.size} rows (e.g. {value:g} in row {bad[0]}"
            f"{extra}).{hint} Round values that are 0 or 1 up to float precision to "
            "exactly 0 or 1."
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


_PROBABILITY_LINKS = ("logit", "probit", "cloglog", "cauchit")
_COUNT_LINKS = ("log", "identity", "sqrt")


def _check_ordinal(y, trials, column):
    values = _as_numeric(y, column, "ordinal")
    bad = np.flatnonzero((values < 0) | (values != np.round(values)))
    if bad.size:
        raise DataError(
            f"An ordinal or categorical response is coded 0..K-1 from its categories, but "
            f"`{column}` holds "
            f"{values[bad[0]]:g} in row {bad[0]}."
        )


FAMILIES: dict[str, Family] = {
    "gaussian": Family(
        "gaussian", ("identity", "log"), ("sigma",), _check_gaussian, robust="student_t"
    ),
    "bernoulli": Family("bernoulli", _PROBABILITY_LINKS, (), _check_bernoulli, outcome="successes"),
    "binomial": Family(
        "binomial",
        _PROBABILITY_LINKS,
        (),
        _check_binomial,
        needs_trials=True,
        counts=True,
        outcome="successes",
    ),  # fmt: skip
    "poisson": Family(
        "poisson",
        _COUNT_LINKS,
        (),
        _check_poisson,
        counts=True,
        robust="negative_binomial",
        outcome="counts",
    ),  # fmt: skip
    "student_t": Family("student_t", ("identity",), ("sigma", "nu"), _check_student_t),
    "negative_binomial": Family(
        "negative_binomial",
        _COUNT_LINKS,
        ("shape",),
        _check_negative_binomial,
        counts=True,
        outcome="counts",
    ),  # fmt: skip
    "gamma": Family(
        "gamma", ("log", "inverse", "identity"), ("shape",), _check_gamma, outcome="positive"
    ),
    "lognormal": Family(
        "lognormal", ("identity",), ("sigma",), _check_lognormal, outcome="positive"
    ),
    "beta": Family("beta", ("logit",), ("phi",), _check_beta, outcome="proportion"),
    "zero_inflated_poisson": Family(
        "zero_inflated_poisson",
        ("log",),
        ("zi",),
        _counts_check("zero_inflated_poisson"),
        counts=True,
        robust="zero_inflated_negative_binomial",
        default_formulas=(("zi", "~ 1"),),
        outcome="counts",
    ),  # fmt: skip
    "zero_inflated_negative_binomial": Family(
        "zero_inflated_negative_binomial",
        ("log",),
        ("shape", "zi"),
        _counts_check("zero_inflated_negative_binomial"),
        counts=True,
        default_formulas=(("zi", "~ 1"),),
        outcome="counts",
    ),  # fmt: skip
    "hurdle_poisson": Family(
        "hurdle_poisson",
        ("log",),
        ("hu",),
        _counts_check("hurdle_poisson"),
        counts=True,
        robust="hurdle_negative_binomial",
        default_formulas=(("hu", "~ 1"),),
        outcome="counts",
    ),  # fmt: skip
    "hurdle_negative_binomial": Family(
        "hurdle_negative_binomial",
        ("log",),
        ("shape", "hu"),
        _counts_check("hurdle_negative_binomial"),
        counts=True,
        default_formulas=(("hu", "~ 1"),),
        outcome="counts",
    ),  # fmt: skip
    "exponential": Family(
        "exponential",
        ("log", "identity", "inverse"),
        (),
        _positive_check("exponential"),
        outcome="positive",
    ),  # fmt: skip
    "weibull": Family(
        "weibull",
        ("log", "identity", "inverse"),
        ("shape",),
        _positive_check("weibull"),
        outcome="positive",
    ),  # fmt: skip
    # brms' default is 1/mu^2 (the canonical link); log is ours: every mean positive
    "inverse_gaussian": Family(
        "inverse_gaussian",
        ("log", "1/mu^2", "inverse", "identity"),
        ("shape",),
        _positive_check("inverse_gaussian"),
        outcome="positive",
    ),  # fmt: skip
    "skew_normal": Family(
        "skew_normal", ("identity",), ("sigma", "alpha"), _numeric_check("skew_normal")
    ),
    "exgaussian": Family(
        "exgaussian", ("identity",), ("sigma", "beta"), _numeric_check("exgaussian")
    ),
    "shifted_lognormal": Family(
        "shifted_lognormal",
        ("identity",),
        ("sigma", "ndt"),
        _positive_check("shifted_lognormal"),
        outcome="positive",
    ),  # fmt: skip
    "beta_binomial": Family(
        "beta_binomial",
        ("logit",),
        ("phi",),
        _successes_check("beta_binomial"),
        needs_trials=True,
        counts=True,
        outcome="successes",
    ),  # fmt: skip
    "zero_inflated_binomial": Family(
        "zero_inflated_binomial",
        ("logit",),
        ("zi",),
        _successes_check("zero_inflated_binomial"),
        needs_trials=True,
        counts=True,
        robust="zero_inflated_beta_binomial",
        default_formulas=(("zi", "~ 1"),),
        outcome="successes",
    ),  # fmt: skip
    "zero_inflated_beta_binomial": Family(
        "zero_inflated_beta_binomial",
        ("logit",),
        ("phi", "zi"),
        _successes_check("zero_inflated_beta_binomial"),
        needs_trials=True,
        counts=True,
        default_formulas=(("zi", "~ 1"),),
        outcome="successes",
    ),  # fmt: skip
    "hurdle_gamma": Family(
        "hurdle_gamma",
        ("log",),
        ("shape", "hu"),
        _nonnegative_check("hurdle_gamma"),
        default_formulas=(("hu", "~ 1"),),
        outcome="nonnegative",
    ),  # fmt: skip
    "hurdle_lognormal": Family(
        "hurdle_lognormal",
        ("identity",),
        ("sigma", "hu"),
        _nonnegative_check("hurdle_lognormal"),
        default_formulas=(("hu", "~ 1"),),
        outcome="nonnegative",
    ),  # fmt: skip
    "zero_one_inflated_beta": Family(
        "zero_one_inflated_beta",
        ("logit",),
        ("phi", "zoi", "coi"),
        _check_zero_one_inflated_beta,
        default_formulas=(("zoi", "~ 1"), ("coi", "~ 1")),
        outcome="proportion",
    ),  # fmt: skip
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
    # Also bernoulli-probit rows aggregated into binomial counts (backends.aggregate).
    ("binomial", "probit"): lambda eta, aux, n: dist.BinomialProbs(
        _probit_probs(eta), total_count=n
    ),
    ("poisson", "log"): lambda eta, aux, n: dist.Poisson(jnp.exp(eta)),
    ("student_t", "identity"): lambda eta, aux, n: dist.StudentT(aux["nu"], eta, aux["sigma"]),
    # mean exp(eta), variance mu + mu^2 / shape (brms' and Stan's neg_binomial_2)
    ("negative_binomial", "log"): lambda eta, aux, n: extra.NegativeBinomial(
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
    # mean of the count part exp(eta); with probability zi a structural zero (brms' zi)
    ("zero_inflated_poisson", "log"): lambda eta, aux, n: dist.ZeroInflatedPoisson(
        gate=aux["zi"], rate=jnp.exp(eta)
    ),
    ("zero_inflated_negative_binomial", "log"): lambda eta, aux, n: dist.ZeroInflatedDistribution(
        extra.NegativeBinomial(jnp.exp(eta), aux["shape"]), gate=aux["zi"]
    ),
    # zero with probability hu, else a zero-truncated count of mean parameter exp(eta)
    ("hurdle_poisson", "log"): lambda eta, aux, n: extra.HurdleCounts(
        extra.Poisson(jnp.exp(eta)), gate=aux["hu"]
    ),
    ("hurdle_negative_binomial", "log"): lambda eta, aux, n: extra.HurdleCounts(
        extra.NegativeBinomial(jnp.exp(eta), aux["shape"]), gate=aux["hu"]
    ),
    # gaussian with a log link: mean exp(eta), sd sigma (brms' gaussian(link = "log"))
    ("gaussian", "log"): lambda eta, aux, n: dist.Normal(jnp.exp(eta), aux["sigma"]),
    # y ~ Exponential(rate 1 / mu), mu = exp(eta)
    ("exponential", "log"): lambda eta, aux, n: dist.Exponential(jnp.exp(-eta)),
    # brms' weibull: mean mu = exp(eta), shape k; scale mu / Gamma(1 + 1/k)
    ("weibull", "log"): lambda eta, aux, n: dist.Weibull(
        jnp.exp(eta - gammaln(1.0 + 1.0 / aux["shape"])), aux["shape"]
    ),
    # mean mu = exp(eta), shape lambda: variance mu^3 / lambda
    ("inverse_gaussian", "log"): lambda eta, aux, n: extra.InverseGaussian(
        jnp.exp(eta), aux["shape"]
    ),
    # by mean eta, sd sigma and skewness alpha (brms' skew_normal)
    ("skew_normal", "identity"): lambda eta, aux, n: extra.SkewNormal(
        eta, aux["sigma"], aux["alpha"]
    ),
    # Normal(eta - beta, sigma) + Exponential(mean beta): mean eta (brms' exgaussian)
    ("exgaussian", "identity"): lambda eta, aux, n: extra.ExGaussian(
        eta, aux["sigma"], aux["beta"]
    ),
    # log(y - ndt) ~ Normal(eta, sigma)
    ("shifted_lognormal", "identity"): lambda eta, aux, n: extra.ShiftedLogNormal(
        eta, aux["sigma"], aux["ndt"]
    ),
    # k ~ Binomial(n, p), p ~ Beta(mu phi, (1 - mu) phi), mu = logistic(eta)
    ("beta_binomial", "logit"): lambda eta, aux, n: extra.BetaBinomial(
        aux["phi"] * expit(eta), aux["phi"] * expit(-eta), total_count=n
    ),
    ("zero_inflated_binomial", "logit"): lambda eta, aux, n: dist.ZeroInflatedDistribution(
        dist.BinomialLogits(eta, total_count=n), gate=aux["zi"]
    ),
    ("zero_inflated_beta_binomial", "logit"): lambda eta, aux, n: dist.ZeroInflatedDistribution(
        extra.BetaBinomial(aux["phi"] * expit(eta), aux["phi"] * expit(-eta), total_count=n),
        gate=aux["zi"],
    ),
    # zero with probability hu, else Gamma(shape, rate shape / mu) or LogNormal(eta, sigma)
    ("hurdle_gamma", "log"): lambda eta, aux, n: dist.HurdleGamma(
        aux["hu"], aux["shape"], aux["shape"] * jnp.exp(-eta)
    ),
    ("hurdle_lognormal", "identity"): lambda eta, aux, n: dist.HurdleLogNormal(
        aux["hu"], eta, aux["sigma"]
    ),
    ("zero_one_inflated_beta", "logit"): lambda eta, aux, n: extra.ZeroOneInflatedBeta(
        expit(eta), aux["phi"], aux["zoi"], aux["coi"], complement=expit(-eta)
    ),
}


def _logits(link: str, eta):
    """log(p / (1 - p)) of a probability link, from log p and log(1 - p) computed
    directly: p itself rounds to 1 in float32 once 1 - p < 6e-8 (cloglog: eta > 2.8)."""
    if link == "cloglog":  # log(1 - p) = -exp(eta)
        rate = jnp.exp(jnp.minimum(eta, 30.0))  # beyond 30, p = 1 to any precision
        return jnp.log(-jnp.expm1(-rate)) + rate
    if link == "cauchit":  # p = 1/2 + atan(eta) / pi; atan2 keeps both tails exact
        return jnp.log(jnp.arctan2(1.0, -eta)) - jnp.log(jnp.arctan2(1.0, eta))
    raise ValueError(f"no logits of the {link!r} link")


def _positive_mean(link: str, eta):
    """(mean, valid) of a family whose mean must be positive: ``valid`` is None where the
    link keeps every mean positive (log); else the mean is computed from a stand-in
    eta = 1 where eta <= 0, so that neither the density nor its gradient is NaN there,
    and ``extra.OutsideMean`` gives those rows log density -inf."""
    if link not in POSITIVE_ONLY_LINKS:
        return _JAX_INVERSE[link](eta), None
    valid = eta > 0
    return _JAX_INVERSE[link](jnp.where(valid, eta, 1.0)), valid


def _guarded(law, valid):
    return law if valid is None else extra.OutsideMean(law, valid)


def _poisson(link):
    def law(eta, aux, n):
        mean, valid = _positive_mean(link, eta)
        return _guarded(dist.Poisson(mean), valid)

    return law


def _negative_binomial(link):
    def law(eta, aux, n):
        mean, valid = _positive_mean(link, eta)
        return _guarded(extra.NegativeBinomial(mean, aux["shape"]), valid)

    return law


def _positive_law(build, link):
    """The likelihood of a positive-mean family under ``link``: ``build(mean, aux)``,
    with log density -inf where eta gives no positive mean (``_positive_mean``)."""

    def law(eta, aux, n):
        mean, valid = _positive_mean(link, eta)
        return _guarded(build(mean, aux), valid)

    return law


def _weibull(mean, aux):
    """brms' weibull: mean ``mean``, shape k; scale mean / Gamma(1 + 1/k)."""
    return dist.Weibull(mean * jnp.exp(-gammaln(1.0 + 1.0 / aux["shape"])), aux["shape"])


def _gamma(link):
    def law(eta, aux, n):
        mean, valid = _positive_mean(link, eta)
        return _guarded(dist.Gamma(aux["shape"], aux["shape"] / mean), valid)

    return law


def _bernoulli(link):
    return lambda eta, aux, n: dist.BernoulliLogits(_logits(link, eta))


def _binomial(link):
    return lambda eta, aux, n: dist.BinomialLogits(_logits(link, eta), total_count=n)


for _link in ("identity", "sqrt"):
    _LIKELIHOODS[("poisson", _link)] = _poisson(_link)
    _LIKELIHOODS[("negative_binomial", _link)] = _negative_binomial(_link)
for _link in ("inverse", "identity"):
    _LIKELIHOODS[("gamma", _link)] = _gamma(_link)
    _LIKELIHOODS[("exponential", _link)] = _positive_law(
        lambda mean, aux: dist.Exponential(1.0 / mean), _link
    )
    _LIKELIHOODS[("weibull", _link)] = _positive_law(_weibull, _link)
for _link in ("1/mu^2", "inverse", "identity"):
    _LIKELIHOODS[("inverse_gaussian", _link)] = _positive_law(
        lambda mean, aux: extra.InverseGaussian(mean, aux["shape"]), _link
    )
for _link in ("cloglog", "cauchit"):
    _LIKELIHOODS[("bernoulli", _link)] = _bernoulli(_link)
    _LIKELIHOODS[("binomial", _link)] = _binomial(_link)


@functools.partial(jax.jit, static_argnames=("name", "link", "names"))
def _draw(name, link, names, eta, values, trials, se, bounds, key):
    # Compiled whole, once per family, link and shape: op by op, sampling zero-inflated
    # and hurdle draws compiled dozens of small programs per call.
    params = dict(zip(names, values))
    return FAMILIES[name].likelihood(eta, link, params, trials, se, bounds).sample(key)


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


for _name in ORDINAL_FAMILIES:
    FAMILIES[_name] = Family(
        _name, ORDINAL_LINKS if _name != "acat" else ("logit", "probit"), (), _check_ordinal,
        outcome="ordinal",
    )  # fmt: skip
    for _link in FAMILIES[_name].links:
        _LIKELIHOODS[(_name, _link)] = functools.partial(
            lambda eta, aux, n, family, link: Ordinal(family, link, eta, aux["thresholds"]),
            family=_name,
            link=_link,
        )


class _CategoryCodes(dist.CategoricalLogits):
    """NumPyro's categorical, reading category codes stored as floats (the response
    array of every family is float)."""

    def log_prob(self, value):
        return super().log_prob(jnp.asarray(value).astype(jnp.int32))


def _categorical_logits(eta, aux, n):
    """Categorical logits: the reference category's (its ``eta``, 0 but for offsets),
    then each category's predictor in the order of the model's parameters."""
    others = [value for name, value in aux.items() if category_predictor(name)]
    return _CategoryCodes(jnp.stack(jnp.broadcast_arrays(eta, *others), axis=-1))


FAMILIES["categorical"] = Family(
    "categorical", ("logit",), (), _check_ordinal, outcome="categorical"
)
_LIKELIHOODS[("categorical", "logit")] = _categorical_logits


class _CountVectors(dist.MultinomialLogits):
    """NumPyro's multinomial (log pmf ``log n! - sum log y_k! + sum y_k log p_k``, which
    reads float counts and a total per row), drawn as K - 1 conditional binomials:
    NumPyro's own draw needs the largest total as a Python number and holds n x that
    many category draws."""

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        probs = jnp.broadcast_to(self.probs, (*shape, self.probs.shape[-1]))
        left = jnp.broadcast_to(self.total_count, shape)
        mass = jnp.ones(shape, dtype=probs.dtype)  # probability not yet given out
        counts = []
        for k, subkey in enumerate(jax.random.split(key, probs.shape[-1] - 1)):
            share = jnp.clip(probs[..., k] / jnp.maximum(mass, 1e-30), 0.0, 1.0)
            drawn = dist.Binomial(left, share).sample(subkey).astype(left.dtype)
            counts.append(drawn)
            left, mass = left - drawn, mass - probs[..., k]
        return jnp.stack([*counts, left], axis=-1)


def _multinomial_logits(eta, aux, n):
    """Counts over K categories out of ``n`` per row: softmax of the reference's
    ``eta`` (0) and each category's predictor (``_categorical_logits``' order)."""
    others = [value for name, value in aux.items() if category_predictor(name)]
    return _CountVectors(jnp.stack(jnp.broadcast_arrays(eta, *others), axis=-1), total_count=n)


def check_count_vectors(y, trials, columns) -> None:
    """A multinomial response: (n, K) whole counts >= 0 (``y`` an array, or its K
    columns), K >= 2, no row without a count, and row sums equal to ``trials`` (the
    ``trials()`` column) where one is given. ``columns``: the K column names, or the
    response's name."""
    cells_of = list(y.T) if isinstance(y, np.ndarray) and y.ndim == 2 else list(y)
    if isinstance(y, np.ndarray) and y.ndim != 2 or len(cells_of) < 2:
        raise DataError(
            "A multinomial response is two or more count columns, one per category, "
            f"written `cbind(a, b, c) ~ ...`; got {columns!r} ({np.ndim(y)}-d values)."
        )
    if isinstance(columns, str):
        names = [f"{columns}[{k + 1}]" for k in range(len(cells_of))]
    else:
        names = list(columns)
    for column, cells in zip(names, cells_of):
        cells = np.asarray(cells)
        if cells.dtype == bool or not np.issubdtype(cells.dtype, np.number):
            raise DataError(
                f"The count column `{column}` of the multinomial response holds {cells.dtype} "
                "values; it needs whole numbers >= 0. Convert it (e.g. pd.to_numeric)."
            )
        _check_counts(cells.astype(float), column, "multinomial")
    totals = np.sum([np.asarray(c, dtype=float) for c in cells_of], axis=0)
    empty = np.flatnonzero(totals == 0)
    if empty.size:
        raise DataError(
            f"{empty.size} rows of the multinomial response ({', '.join(names)}) count 0 in "
            f"every category (e.g. row {empty[0]}): such a row carries no information about "
            "the category probabilities. Drop those rows yourself (e.g. "
            f"data[data[{names!r}].sum(axis=1) > 0])."
        )
    if trials is not None:
        trials = np.asarray(trials, dtype=float)
        bad = np.flatnonzero(trials != totals)
        if bad.size:
            raise DataError(
                f"The trials of a multinomial row are its total count, but in {bad.size} rows "
                f"the trials column differs from the sum of {', '.join(names)} (e.g. row "
                f"{bad[0]}: trials {trials[bad[0]]:g}, counts summing to {totals[bad[0]]:g}; "
                f"rows {', '.join(map(str, bad[:10]))}{' ...' if bad.size > 10 else ''}). "
                "Fix the counts or the trials, or leave `| trials()` out: the row sums are used."
            )


FAMILIES["multinomial"] = Family(
    "multinomial",
    ("logit",),
    (),
    check_count_vectors,
    needs_trials=True,
    counts=True,
    outcome="multinomial",
)  # fmt: skip
_LIKELIHOODS[("multinomial", "logit")] = _multinomial_logits
