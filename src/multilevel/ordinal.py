"""Ordinal responses: brms' ``cumulative``, ``sratio``, ``cratio`` and ``acat`` families.

A response with K ordered categories (coded 0..K-1 here, labelled as the data labels
them) has K - 1 thresholds ``Intercept[1] .. Intercept[K-1]`` in place of an intercept,
and a linear predictor ``eta`` without one. With ``F`` the inverse link (a cdf: logistic,
normal or Gumbel-min, i.e. logit, probit, cloglog), the category probabilities are, for
``k = 1..K`` (Bürkner & Vuorre 2019, as brms writes them):

* cumulative: ``P(y <= k) = F(theta_k - eta)``; thresholds ordered.
* sratio (stopping ratio): ``P(y = k | y >= k) = F(theta_k - eta)``.
* cratio (continuation ratio): ``P(y > k | y >= k) = F(eta - theta_k)``.
* acat (adjacent categories): ``P(y = k + 1) / (P(y = k) + P(y = k + 1)) =
  F(eta - theta_k)``; with the logit link, ``log(p_{k+1} / p_k) = eta - theta_k``.

Only the cumulative family needs ordered thresholds (brms); the others' thresholds are
free, so they may differ by row: brms' category-specific effects ``cs(z)`` give ``z`` one
coefficient per threshold, and row ``i`` uses the thresholds ``theta_k - sum_j
z_ij b_jk`` (``CATEGORY_SPECIFIC_FAMILIES``; ``linear_predictor.row_thresholds``).
Every probability is computed on the log scale, so a row far in a tail keeps a finite
log-likelihood in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from numpyro.distributions import constraints

ORDINAL_FAMILIES = ("cumulative", "sratio", "cratio", "acat")
ORDINAL_LINKS = ("logit", "probit", "cloglog")
#: the ordinal families that take category-specific effects ``cs()``: not cumulative,
#: whose thresholds must stay ordered in every row (brms issues #269, #1060)
CATEGORY_SPECIFIC_FAMILIES = ("sratio", "cratio", "acat")


def log_cdf_pair(link: str, x):
    """(log F(x), log(1 - F(x))) of the inverse link ``F``, each stable in the tails."""
    if link == "logit":
        return -jax.nn.softplus(-x), -jax.nn.softplus(x)
    if link == "probit":
        return log_ndtr(x), log_ndtr(-x)
    if link == "cloglog":  # F(x) = 1 - exp(-exp(x))
        log_survival = -jnp.exp(x)
        return jnp.log(-jnp.expm1(log_survival)), log_survival
    raise ValueError(f"no ordinal model for the {link!r} link")


def _log_diff(a, b):
    """log(exp(a) - exp(b)) for a >= b."""
    return a + jnp.log(-jnp.expm1(jnp.minimum(b - a, -1e-30)))


def category_log_probs(family: str, link: str, eta, thresholds):
    """(..., K) log P(y = k) of each category, for ``eta`` (...) and ``thresholds``
    (..., K - 1) broadcastable against ``eta[..., None]``."""
    eta = jnp.asarray(eta)[..., None]
    thresholds = jnp.asarray(thresholds)
    if family == "cumulative":
        log_below, _ = log_cdf_pair(link, thresholds - eta)  # log P(y <= k), k < K
        shape = jnp.broadcast_shapes(log_below.shape[:-1], eta.shape[:-1]) + (1,)
        upper = jnp.concatenate([log_below, jnp.zeros(shape)], axis=-1)
        lower = jnp.concatenate([jnp.full(shape, -jnp.inf), log_below], axis=-1)
        return _log_diff(upper, lower)
    if family == "sratio":
        log_stop, log_go = log_cdf_pair(link, thresholds - eta)
        return _sequential(log_stop, log_go)
    if family == "cratio":
        log_go, log_stop = log_cdf_pair(link, eta - thresholds)
        return _sequential(log_stop, log_go)
    if family == "acat":
        if link == "logit":
            steps = eta - thresholds  # log(p_{k+1} / p_k)
        else:
            log_up, log_down = log_cdf_pair(link, eta - thresholds)
            steps = log_up - log_down
        shape = steps.shape[:-1] + (1,)
        unnormalised = jnp.concatenate([jnp.zeros(shape), jnp.cumsum(steps, axis=-1)], -1)
        return unnormalised - jax.nn.logsumexp(unnormalised, axis=-1, keepdims=True)
    raise ValueError(f"{family!r} is not an ordinal family")


def _sequential(log_stop, log_go):
    """Category log probabilities of a sequential model: stop at k with log_stop[k]
    having gone past every earlier category (log_go)."""
    passed = jnp.cumsum(log_go, axis=-1)  # log P(y > k)
    shape = passed.shape[:-1] + (1,)
    before = jnp.concatenate([jnp.zeros(shape), passed[..., :-1]], axis=-1)
    return jnp.concatenate([before + log_stop, passed[..., -1:]], axis=-1)


class Ordinal(dist.Distribution):
    """Categories 0..K-1 with ``category_log_probs``."""

    arg_constraints = {"eta": constraints.real}
    pytree_data_fields = ("eta", "thresholds")
    pytree_aux_fields = ("family", "link")
    has_enumerate_support = False

    def __init__(self, family: str, link: str, eta, thresholds, validate_args=None):
        self.family, self.link = family, link
        self.eta, self.thresholds = jnp.asarray(eta), jnp.asarray(thresholds)
        batch = jnp.broadcast_shapes(self.eta.shape, self.thresholds.shape[:-1])
        self.n_categories = self.thresholds.shape[-1] + 1
        super().__init__(batch_shape=batch, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.n_categories - 1)

    def log_probs(self):
        """(..., K) log probability of each category."""
        out = category_log_probs(self.family, self.link, self.eta, self.thresholds)
        return jnp.broadcast_to(out, self.batch_shape + (self.n_categories,))

    def log_prob(self, value):
        log_probs = self.log_probs()
        value = jnp.asarray(value).astype(jnp.int32)
        index = jnp.broadcast_to(value, jnp.broadcast_shapes(value.shape, self.batch_shape))
        log_probs = jnp.broadcast_to(log_probs, index.shape + log_probs.shape[-1:])
        return jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]

    def sample(self, key, sample_shape=()):
        logits = self.log_probs()
        return jax.random.categorical(key, logits, shape=sample_shape + self.batch_shape)

    @property
    def mean(self):
        """The expected category index (0-based)."""
        return (jnp.exp(self.log_probs()) * jnp.arange(self.n_categories)).sum(-1)


class ThresholdPrior(dist.Distribution):
    """K - 1 thresholds, each with the density of ``base`` (a scalar distribution);
    with ``ordered``, restricted to increasing vectors: the density of the sorted draws
    of K - 1 independent ones (their order statistics), which is how it samples."""

    arg_constraints: dict = {}
    pytree_data_fields = ("base",)
    pytree_aux_fields = ("size", "ordered")

    def __init__(self, base, size: int, ordered: bool):
        self.base, self.size, self.ordered = base, size, ordered
        super().__init__(batch_shape=(), event_shape=(size,))

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return constraints.ordered_vector if self.ordered else constraints.real_vector

    def sample(self, key, sample_shape=()):
        draws = self.base.expand((self.size,)).sample(key, sample_shape)
        return jnp.sort(draws, axis=-1) if self.ordered else draws

    def log_prob(self, value):
        log_density = self.base.log_prob(value).sum(-1)
        if self.ordered:  # (K - 1)! orderings fold onto the increasing one
            log_density = log_density + jax.scipy.special.gammaln(self.size + 1.0)
        return log_density
