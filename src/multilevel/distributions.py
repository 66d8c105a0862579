"""Response distributions NumPyro lacks, parameterised as brms parameterises them.

Each is a small ``numpyro.distributions.Distribution`` with ``log_prob`` and ``sample``
(what the model, the log-likelihood and simulation use), checked against ``scipy.stats``
or a written-out density in ``tests/models/test_more_families.py``:

* ``SkewNormal(mean, sd, alpha)``: brms' skew_normal, by its mean and standard
  deviation; ``delta = alpha / sqrt(1 + alpha^2)``, scale ``omega = sd / sqrt(1 - 2
  delta^2 / pi)``, location ``xi = mean - omega delta sqrt(2 / pi)``.
* ``ExGaussian(mean, sigma, beta)``: a Normal(mean - beta, sigma) plus an exponential of
  mean ``beta`` (brms' exgaussian: ``mu`` is the mean of the sum).
* ``ShiftedLogNormal(loc, scale, shift)``: ``log(y - shift) ~ Normal(loc, scale)``; no
  density at or below ``shift`` (brms' shifted_lognormal, ``shift`` its ``ndt``).
* ``InverseGaussian(mean, shape)``: variance ``mean^3 / shape``.
* ``ZeroOneInflatedBeta(mean, phi, zoi, coi)``: 0 or 1 with probability ``zoi`` (1 with
  probability ``coi`` among those), else Beta(mean phi, (1 - mean) phi).
* ``OutsideMean(law, valid)``: ``law`` where ``valid``, no density (log 0) elsewhere: a
  link whose mean can leave the family's support (an identity-link Poisson rate below
  0) gives the sampler -inf there instead of NaN, so NUTS rejects such points.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import erfcx, log_ndtr, ndtr
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes

_LOG_2PI = math.log(2 * math.pi)


def _batch_shape(*values) -> tuple[int, ...]:
    return jax.lax.broadcast_shapes(*(jnp.shape(v) for v in values))


class SkewNormal(dist.Distribution):
    """Azzalini's skew normal by its mean ``mean``, standard deviation ``sd`` and
    skewness ``alpha`` (brms' parameterisation; ``alpha = 0`` is Normal(mean, sd))."""

    arg_constraints = {
        "mean_": constraints.real,
        "sd": constraints.positive,
        "alpha": constraints.real,
    }
    support = constraints.real
    reparametrized_params = ["mean_", "sd", "alpha"]

    def __init__(self, mean, sd, alpha, *, validate_args=None):
        self.mean_, self.sd, self.alpha = promote_shapes(mean, sd, alpha)
        super().__init__(_batch_shape(mean, sd, alpha), validate_args=validate_args)

    def _location_scale(self):
        delta = self.alpha / jnp.sqrt(1.0 + self.alpha**2)
        omega = self.sd / jnp.sqrt(1.0 - 2.0 / math.pi * delta**2)
        return self.mean_ - omega * delta * math.sqrt(2.0 / math.pi), omega, delta

    def log_prob(self, value):
        xi, omega, _ = self._location_scale()
        z = (value - xi) / omega
        # 2 phi(z) Phi(alpha z) / omega
        return (
            math.log(2.0) - 0.5 * _LOG_2PI - 0.5 * z**2 - jnp.log(omega) + log_ndtr(self.alpha * z)
        )

    def sample(self, key, sample_shape=()):
        xi, omega, delta = self._location_scale()
        shape = sample_shape + self.batch_shape
        first, second = jax.random.split(key)
        u0 = jax.random.normal(first, shape)
        u1 = jax.random.normal(second, shape)
        # |u0| delta + sqrt(1 - delta^2) u1 is standard skew normal with skewness alpha
        z = delta * jnp.abs(u0) + jnp.sqrt(1.0 - delta**2) * u1
        return xi + omega * z

    @property
    def mean(self):
        return jnp.broadcast_to(self.mean_, self.batch_shape)


class ExGaussian(dist.Distribution):
    """Normal(mean - beta, sigma) plus Exponential(rate 1 / beta): mean ``mean``, variance
    ``sigma^2 + beta^2`` (brms' exgaussian)."""

    arg_constraints = {
        "mean_": constraints.real,
        "sigma": constraints.positive,
        "beta": constraints.positive,
    }
    support = constraints.real
    reparametrized_params = ["mean_", "sigma", "beta"]

    def __init__(self, mean, sigma, beta, *, validate_args=None):
        self.mean_, self.sigma, self.beta = promote_shapes(mean, sigma, beta)
        super().__init__(_batch_shape(mean, sigma, beta), validate_args=validate_args)

    def log_prob(self, value):
        # d = y - (mean - beta), z = d / sigma - sigma / beta:
        # log f = -log beta - d / beta + sigma^2 / (2 beta^2) + log Phi(z)
        #       = -log beta - (d / sigma)^2 / 2 + [log Phi(z) + z^2 / 2].
        # The second form keeps float32 exact when sigma >> beta (z far below 0), where
        # the first subtracts terms of size z^2 / 2; the bracket is log(erfcx(-z/sqrt2)/2)
        # for z < 0 (no overflow there) and computed as written for z >= 0.
        d = value - (self.mean_ - self.beta)
        z = d / self.sigma - self.sigma / self.beta
        negative = jnp.minimum(z, 0.0)
        tail = jnp.log(erfcx(-negative / math.sqrt(2.0)) / 2.0)
        bracket = jnp.where(z < 0, tail, log_ndtr(jnp.maximum(z, 0.0)) + z**2 / 2)
        return -jnp.log(self.beta) - 0.5 * (d / self.sigma) ** 2 + bracket

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        first, second = jax.random.split(key)
        normal = jax.random.normal(first, shape)
        exponential = jax.random.exponential(second, shape)
        return self.mean_ - self.beta + self.sigma * normal + self.beta * exponential

    @property
    def mean(self):
        return jnp.broadcast_to(self.mean_, self.batch_shape)


class ShiftedLogNormal(dist.Distribution):
    """``shift + LogNormal(loc, scale)``; log density -inf at or below ``shift``."""

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "shift": constraints.positive,
    }
    support = constraints.positive
    reparametrized_params = ["loc", "scale", "shift"]

    def __init__(self, loc, scale, shift, *, validate_args=None):
        self.loc, self.scale, self.shift = promote_shapes(loc, scale, shift)
        super().__init__(_batch_shape(loc, scale, shift), validate_args=validate_args)

    def log_prob(self, value):
        inside = value > self.shift
        excess = jnp.where(inside, value - self.shift, 1.0)  # no NaN gradient outside
        log_excess = jnp.log(excess)
        z = (log_excess - self.loc) / self.scale
        density = -0.5 * z**2 - jnp.log(self.scale) - 0.5 * _LOG_2PI - log_excess
        return jnp.where(inside, density, -jnp.inf)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        return self.shift + jnp.exp(self.loc + self.scale * jax.random.normal(key, shape))

    def cdf(self, value):
        inside = value > self.shift
        excess = jnp.where(inside, value - self.shift, 1.0)
        return jnp.where(inside, ndtr((jnp.log(excess) - self.loc) / self.scale), 0.0)

    @property
    def mean(self):
        return self.shift + jnp.exp(self.loc + self.scale**2 / 2)


class InverseGaussian(dist.Distribution):
    """The inverse Gaussian (Wald) distribution by its mean and shape ``lambda``:
    density ``sqrt(lambda / (2 pi y^3)) exp(-lambda (y - mean)^2 / (2 mean^2 y))``."""

    arg_constraints = {"mean_": constraints.positive, "shape_": constraints.positive}
    support = constraints.positive
    reparametrized_params = ["mean_", "shape_"]

    def __init__(self, mean, shape, *, validate_args=None):
        self.mean_, self.shape_ = promote_shapes(mean, shape)
        super().__init__(_batch_shape(mean, shape), validate_args=validate_args)

    def log_prob(self, value):
        positive = value > 0
        y = jnp.where(positive, value, 1.0)
        density = 0.5 * (jnp.log(self.shape_) - _LOG_2PI - 3.0 * jnp.log(y)) - self.shape_ * (
            y - self.mean_
        ) ** 2 / (2.0 * self.mean_**2 * y)
        return jnp.where(positive, density, -jnp.inf)

    def sample(self, key, sample_shape=()):
        # Michael, Schucany & Haas (1976): the smaller root of the chi-square(1)
        # equation, then the larger one with probability 1 - mean / (mean + root).
        # With a = mean v / (2 shape) the root is mean (1 + a - sqrt(a^2 + 2a)), written
        # as mean / (1 + a + sqrt(a^2 + 2a)) so that it does not cancel for large a.
        shape = sample_shape + self.batch_shape
        first, second = jax.random.split(key)
        v = jax.random.normal(first, shape) ** 2
        a = self.mean_ * v / (2.0 * self.shape_)
        root = self.mean_ / (1.0 + a + jnp.sqrt(a**2 + 2.0 * a))
        u = jax.random.uniform(second, shape)
        return jnp.where(u <= self.mean_ / (self.mean_ + root), root, self.mean_**2 / root)

    @property
    def mean(self):
        return jnp.broadcast_to(self.mean_, self.batch_shape)


class ZeroOneInflatedBeta(dist.Distribution):
    """brms' zero_one_inflated_beta: P(0) = zoi (1 - coi), P(1) = zoi coi, and with
    probability 1 - zoi a Beta(mean phi, (1 - mean) phi) value strictly inside (0, 1)."""

    arg_constraints = {
        "mean_": constraints.open_interval(0.0, 1.0),
        "phi": constraints.positive,
        "zoi": constraints.unit_interval,
        "coi": constraints.unit_interval,
    }
    support = constraints.unit_interval

    def __init__(self, mean, phi, zoi, coi, complement=None, *, validate_args=None):
        # ``complement``: 1 - mean where the caller knows it more precisely (logistic(-eta)),
        # so that neither Beta shape rounds to 0 in float32 when the mean is near 1
        complement = 1.0 - jnp.asarray(mean) if complement is None else complement
        self.mean_, self.phi, self.zoi, self.coi, self.complement = promote_shapes(
            mean, phi, zoi, coi, complement
        )
        super().__init__(_batch_shape(mean, phi, zoi, coi), validate_args=validate_args)

    def _beta(self):
        return dist.Beta(self.mean_ * self.phi, self.complement * self.phi)

    def log_prob(self, value):
        inside = (value > 0) & (value < 1)
        safe = jnp.where(inside, value, 0.5)
        continuous = jnp.log1p(-self.zoi) + self._beta().log_prob(safe)
        zero = jnp.log(self.zoi) + jnp.log1p(-self.coi)
        one = jnp.log(self.zoi) + jnp.log(self.coi)
        return jnp.where(inside, continuous, jnp.where(value == 0, zero, one))

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        k_zoi, k_coi, k_beta = jax.random.split(key, 3)
        inflated = jax.random.bernoulli(k_zoi, self.zoi, shape)
        one = jax.random.bernoulli(k_coi, self.coi, shape)
        beta = self._beta().expand(self.batch_shape).sample(k_beta, sample_shape)
        return jnp.where(inflated, one.astype(beta.dtype), beta)

    @property
    def mean(self):
        return self.zoi * self.coi + (1.0 - self.zoi) * self.mean_


class OutsideMean(dist.Distribution):
    """``law`` where ``valid`` (a boolean array broadcastable against its batch), and no
    density elsewhere: log_prob -inf, draws NaN. ``law`` must be built from parameters
    that are finite everywhere (invalid rows given a harmless stand-in), so that neither
    its values nor its gradients are NaN where they are masked."""

    arg_constraints: dict = {}
    pytree_data_fields = ("law", "valid")

    def __init__(self, law, valid):
        self.law, self.valid = law, valid
        super().__init__(batch_shape=law.batch_shape, event_shape=law.event_shape)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return self.law.support

    def log_prob(self, value):
        return jnp.where(self.valid, self.law.log_prob(value), -jnp.inf)

    def sample(self, key, sample_shape=()):
        draws = self.law.sample(key, sample_shape)
        return jnp.where(self.valid, draws, jnp.nan)

    def cdf(self, value):
        return jnp.where(self.valid, self.law.cdf(value), jnp.nan)

    @property
    def mean(self):
        return jnp.where(self.valid, self.law.mean, jnp.nan)
