"""Censored and truncated responses: brms' ``cens()`` and ``trunc()`` addition terms as
one NumPyro distribution wrapped around a family's own.

``Bounded(law, cens=..., y2=..., lower=..., upper=..., discrete=...)`` has the
log-probability brms (and Stan) give each row, with ``F`` the family's cdf:

* censoring code 0 (``"none"``): ``log p(y)``; -1 (``"left"``, the value is at most
  ``y``): ``log F(y)``; 1 (``"right"``, more than ``y``): ``log(1 - F(y))``; 2
  (``"interval"``, between ``y`` and ``y2``): ``log(F(y2) - F(y))``. For counts these are
  P(Y <= y), P(Y > y) and P(y < Y <= y2), as in brms.
* truncation to ``[lower, upper]``: minus ``log(F(upper) - F(lower))``, with
  ``F(lower - 1)`` in place of ``F(lower)`` for counts (the bound itself is allowed).

Draws (``sample``) are of the uncensored response, as brms' ``posterior_predict``, and
respect the truncation: by the inverse cdf where the distribution has one (a row whose
mean lies 3 sds beyond its bound keeps 0.1% of the mass: rejection would fail there), else
by rejection, each row redrawn until it falls inside its bounds (at most ``MAX_REDRAWS``
rounds; a row still outside is NaN, which the callers refuse).
The arrays are data, never constants of a compiled program, so refits on new data of
the same shape reuse it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

#: Censoring codes as brms numbers them.
CENSORING_CODES = {"none": 0, "left": -1, "right": 1, "interval": 2}
#: Rounds of rejection sampling for truncated draws: a row whose bounds keep 1% of its
#: distribution's mass is left undrawn with probability 0.99^200 = 13%; 10% of the mass:
#: 7e-10.
MAX_REDRAWS = 200


class Bounded(dist.Distribution):
    """``law`` with censoring (``cens`` codes, ``y2`` upper ends) and truncation
    (``lower``, ``upper``; +-inf where a row has none), each an array broadcastable
    against the batch, or None."""

    arg_constraints: dict = {}
    support = constraints.real
    pytree_data_fields = ("law", "cens", "y2", "lower", "upper")
    pytree_aux_fields = ("discrete",)

    def __init__(self, law, cens=None, y2=None, lower=None, upper=None, discrete=False):
        self.law, self.cens, self.y2 = law, cens, y2
        self.lower, self.upper, self.discrete = lower, upper, discrete
        super().__init__(batch_shape=law.batch_shape, event_shape=law.event_shape)

    def _cdf(self, value, fallback):
        """``F(value)``, with ``fallback`` (0 or 1) where ``value`` is infinite: cdfs of
        counts are not defined there."""
        finite = jnp.isfinite(value)
        safe = jnp.where(finite, value, 0.0)
        return jnp.where(finite, self.law.cdf(safe), fallback)

    def _log_mass(self):
        """log P(lower <= Y <= upper), 0 without truncation."""
        if self.lower is None and self.upper is None:
            return 0.0
        lower = -jnp.inf if self.lower is None else self.lower
        upper = jnp.inf if self.upper is None else self.upper
        below = self._cdf(lower - 1.0 if self.discrete else lower, 0.0)
        return jnp.log(jnp.clip(self._cdf(upper, 1.0) - below, 1e-30, 1.0))

    def log_prob(self, value):
        out = self.law.log_prob(value)
        if self.cens is not None:
            cens = self.cens
            # each branch computed at safe values, so no NaN reaches a gradient
            at = self._cdf(value, 1.0)
            left = jnp.log(jnp.clip(at, 1e-30, 1.0))
            right = jnp.log(jnp.clip(1.0 - at, 1e-30, 1.0))
            upper = value if self.y2 is None else jnp.where(cens == 2, self.y2, value)
            interval = jnp.log(jnp.clip(self._cdf(upper, 1.0) - at, 1e-30, 1.0))
            out = jnp.where(cens == -1, left, jnp.where(cens == 1, right, out))
            out = jnp.where(cens == 2, interval, out)
        return out - self._log_mass()

    def sample(self, key, sample_shape=()):
        if self.lower is None and self.upper is None:
            return self.law.sample(key, sample_shape)
        shape = sample_shape + self.batch_shape
        lower = jnp.broadcast_to(-jnp.inf if self.lower is None else self.lower, shape)
        upper = jnp.broadcast_to(jnp.inf if self.upper is None else self.upper, shape)
        if not self.discrete:
            try:  # by the inverse cdf where the family has one (gaussian, lognormal)
                below, above = self._cdf(lower, 0.0), self._cdf(upper, 1.0)
                uniform = jax.random.uniform(key, shape)
                level = below + uniform * (above - below)
                # a level that rounds to 0 or 1 would be drawn at -inf or inf
                finfo = jnp.finfo(level.dtype)
                level = jnp.clip(level, finfo.tiny, 1.0 - finfo.epsneg)
                values = self.law.icdf(level)
                # bounds whose mass rounds to 0 give no draw (NaN, refused by callers)
                placed = (above > below) & jnp.isfinite(values)
                return jnp.where(placed, jnp.clip(values, lower, upper), jnp.nan)
            except (NotImplementedError, ImportError):
                pass  # otherwise by rejection

        def outside(values):
            return jnp.isnan(values) | (values < lower) | (values > upper)

        def redraw(state):
            key, values, round_ = state
            key, sub = jax.random.split(key)
            fresh = self.law.sample(sub, sample_shape).astype(values.dtype)
            return key, jnp.where(outside(values), fresh, values), round_ + 1

        def more(state):
            return jnp.any(outside(state[1])) & (state[2] < MAX_REDRAWS)

        start = jnp.full(shape, jnp.nan, dtype=jnp.result_type(float))
        _, values, _ = jax.lax.while_loop(more, redraw, (key, start, 0))
        return jnp.where(outside(values), jnp.nan, values)
