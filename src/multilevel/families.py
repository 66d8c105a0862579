"""Response families: which links they take, how their response is checked, their likelihood."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import expit, ndtr
from scipy import special as np_special

from multilevel.errors import DataError

#: The natural link of each family parameter when it gets its own formula (brms' defaults):
#: log for the positive ones; ``logm1`` (nu = 1 + exp(eta)) keeps student_t's degrees of
#: freedom above 1, where its mean exists.
DPAR_LINKS = {
    "sigma": "log",
    "shape": "log",
    "phi": "log",
    "nu": "logm1",
    "zi": "logit",  # zero-inflation probability
    "hu": "logit",  # hurdle probability (of a zero)
}

_NUMPY_INVERSE = {
    "identity": lambda eta: eta,
    "log": np.exp,
    "logm1": lambda eta: 1.0 + np.exp(eta),
    "logit": np_special.expit,
    "probit": np_special.ndtr,
}
_JAX_INVERSE = {
    "identity": lambda eta: eta,
    "log": jnp.exp,
    "logm1": lambda eta: 1.0 + jnp.exp(eta),
    "logit": expit,
    "probit": ndtr,
}


def inverse_link(link: str, eta):
    """The mean (or parameter) on its own scale from the linear predictor ``eta``: JAX
    arrays (also inside a traced model) stay JAX, anything else is computed by NumPy."""
    table = _JAX_INVERSE if isinstance(eta, jax.Array) else _NUMPY_INVERSE
    if link not in table:
        raise ValueError(f"no inverse of the {link!r} link")
    return table[link](eta if table is _JAX_INVERSE else np.asarray(eta, dtype=float))


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

    @property
    def discrete(self) -> bool:
        """The response takes whole-number values (0/1 for bernoulli)."""
        return self.counts or self.name == "bernoulli"

    @property
    def binary(self) -> bool:
        """Outcomes are successes (0/1, or out of trials): read on the probability scale."""
        return self.name in ("bernoulli", "binomial")

    def plausible_range(
        self, y: np.ndarray, trials: np.ndarray | None = None
    ) -> tuple[float, float]:
        """The default plausible range of this family's outcome, given the observed one
        (what a prior predictive check calls absurd lies outside it).

        gaussian, student_t ``[min - 2R, max + 2R]`` (``R`` the observed range); counts
        ``[0, 10 max + 10]``; lognormal, gamma a decade beyond the data either way; beta
        ``[0, 1]`` (nothing is absurd by range); bernoulli and binomial ``[0.01, 0.99]``
        on the probability scale, widened to a tenth of the observed success (failure)
        rate when that is below 10%."""
        y = np.asarray(y, dtype=float)
        if self.name in ("gaussian", "student_t"):
            width = float(y.max() - y.min()) or 1.0
            return float(y.min() - 2 * width), float(y.max() + 2 * width)
        if self.counts and not self.binary:
            return 0.0, float(10 * y.max() + 10)
        if self.name in ("lognormal", "gamma"):
            return float(y.min() / 10), float(10 * y.max())
        if self.name == "beta":
            return 0.0, 1.0
        if self.binary:
            rate = success_rate(y, trials)
            return float(min(0.01, rate / 10)), float(max(0.99, 1 - (1 - rate) / 10))
        raise ValueError(f"no plausible range is defined for the {self.name!r} family")

    @property
    def predictable(self) -> tuple[str, ...]:
        """The family parameters that can get their own formula (``ml.bf(..., sigma=...)``)."""
        return tuple(name for name in self.aux if name in DPAR_LINKS)

    def mean(self, eta, link: str, params: dict, trials=None) -> np.ndarray:
        """E[y] given the linear predictor ``eta`` (NumPy; ``params`` the family
        parameters broadcastable against ``eta``): the inverse link, except that
        a lognormal's ``eta`` is the mean of log(y) (E[y] = exp(eta + sigma^2 / 2)) and a
        binomial mean counts successes out of ``trials``."""
        if self.name == "lognormal":
            return np.exp(np.asarray(eta, dtype=float) + np.asarray(params["sigma"]) ** 2 / 2)
        mean = inverse_link(link, np.asarray(eta, dtype=float))
        if self.name.startswith("zero_inflated_"):  # a structural zero with probability zi
            return (1.0 - np.asarray(params["zi"])) * mean
        if self.name.startswith("hurdle_"):  # P(y > 0) times the zero-truncated mean
            if "shape" in params:
                shape = np.asarray(params["shape"])
                p_zero = (shape / (shape + mean)) ** shape
            else:
                p_zero = np.exp(-mean)
            return (1.0 - np.asarray(params["hu"])) * mean / -np.expm1(np.log(p_zero))
        return mean * trials if self.name == "binomial" else mean

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

    def draw(self, eta, link: str, aux: dict, trials=None, se=None, seed: int = 0) -> np.ndarray:
        """One draw of the response per element of ``eta`` (NumPy in and out), from one
        compiled program per family, link and shape: sampled op by op instead, the
        zero-truncated and mixture distributions compile dozens of small programs per
        call, and a suite that did so crashed inside XLA (see ``_draw``)."""
        params = {name: jnp.asarray(value) for name, value in aux.items()}
        trials = None if trials is None else jnp.asarray(trials, dtype=jnp.int32)
        se = None if se is None else jnp.asarray(se)
        key = jax.random.PRNGKey(seed)
        values = _draw(self.name, link, jnp.asarray(eta), params, trials, se, key)
        return np.asarray(values, dtype=float)


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
    "gaussian": Family("gaussian", ("identity",), ("sigma",), _check_gaussian, robust="student_t"),
    "bernoulli": Family("bernoulli", ("logit", "probit"), (), _check_bernoulli),
    "binomial": Family("binomial", ("logit",), (), _check_binomial, needs_trials=True, counts=True),
    "poisson": Family(
        "poisson", ("log",), (), _check_poisson, counts=True, robust="negative_binomial"
    ),
    "student_t": Family("student_t", ("identity",), ("sigma", "nu"), _check_student_t),
    "negative_binomial": Family(
        "negative_binomial", ("log",), ("shape",), _check_negative_binomial, counts=True
    ),
    "gamma": Family("gamma", ("log",), ("shape",), _check_gamma),
    "lognormal": Family("lognormal", ("identity",), ("sigma",), _check_lognormal),
    "beta": Family("beta", ("logit",), ("phi",), _check_beta),
    "zero_inflated_poisson": Family(
        "zero_inflated_poisson",
        ("log",),
        ("zi",),
        _counts_check("zero_inflated_poisson"),
        counts=True,
        robust="zero_inflated_negative_binomial",
        default_formulas=(("zi", "~ 1"),),
    ),  # fmt: skip
    "zero_inflated_negative_binomial": Family(
        "zero_inflated_negative_binomial",
        ("log",),
        ("shape", "zi"),
        _counts_check("zero_inflated_negative_binomial"),
        counts=True,
        default_formulas=(("zi", "~ 1"),),
    ),  # fmt: skip
    "hurdle_poisson": Family(
        "hurdle_poisson",
        ("log",),
        ("hu",),
        _counts_check("hurdle_poisson"),
        counts=True,
        robust="hurdle_negative_binomial",
        default_formulas=(("hu", "~ 1"),),
    ),  # fmt: skip
    "hurdle_negative_binomial": Family(
        "hurdle_negative_binomial",
        ("log",),
        ("shape", "hu"),
        _counts_check("hurdle_negative_binomial"),
        counts=True,
        default_formulas=(("hu", "~ 1"),),
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
    # mean of the count part exp(eta); with probability zi a structural zero (brms' zi)
    ("zero_inflated_poisson", "log"): lambda eta, aux, n: dist.ZeroInflatedPoisson(
        gate=aux["zi"], rate=jnp.exp(eta)
    ),
    ("zero_inflated_negative_binomial", "log"): lambda eta, aux, n: (
        dist.ZeroInflatedNegativeBinomial2(jnp.exp(eta), aux["shape"], gate=aux["zi"])
    ),
    # zero with probability hu, else a zero-truncated count of mean parameter exp(eta)
    ("hurdle_poisson", "log"): lambda eta, aux, n: dist.HurdlePoisson(
        gate=aux["hu"], rate=jnp.exp(eta)
    ),
    ("hurdle_negative_binomial", "log"): lambda eta, aux, n: dist.HurdleNegativeBinomial2(
        gate=aux["hu"], mean=jnp.exp(eta), concentration=aux["shape"]
    ),
}


@functools.partial(jax.jit, static_argnames=("name", "link"))
def _draw(name, link, eta, params, trials, se, key):
    # Compiled whole: eager sampling of 50,000 zero-inflated and hurdle draws, op by op,
    # preceded SIGABRT/SIGSEGV in XLA's compilation-cache writes later in the suite
    # (issue 13); as one program per family and shape it compiles once.
    return FAMILIES[name].likelihood(eta, link, params, trials, se).sample(key)


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
