"""Batched factorisations and solves of many small q x q matrices (one per group).

The common q = 1, 2 are written in closed form: elementwise arithmetic vectorises over
groups and chains, where LAPACK calls per tiny matrix do not. Used by the collapsed
Gaussian sampler (``gaussian_collapsed``) and the Laplace approximation (``laplace``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular


def cholesky(m):
    """Lower-triangular c with c c' = m, for symmetric positive-definite m (..., q, q)."""
    if m.shape[-1] == 1:
        return jnp.sqrt(m)
    if m.shape[-1] == 2:
        l00 = jnp.sqrt(m[..., 0, 0])
        l10 = m[..., 1, 0] / l00
        l11 = jnp.sqrt(m[..., 1, 1] - l10**2)
        zero = jnp.zeros_like(l00)
        return jnp.stack([jnp.stack([l00, zero], -1), jnp.stack([l10, l11], -1)], -2)
    return jnp.linalg.cholesky(m)


def solve_lower(c, b):
    """c x = b for lower-triangular c (..., q, q) and b (..., q)."""
    if c.shape[-1] == 1:
        return b / c[..., 0]
    if c.shape[-1] == 2:
        x0 = b[..., 0] / c[..., 0, 0]
        x1 = (b[..., 1] - c[..., 1, 0] * x0) / c[..., 1, 1]
        return jnp.stack([x0, x1], -1)
    return solve_triangular(c, b[..., None], lower=True)[..., 0]


def solve_upper_t(c, b):
    """c' x = b for lower-triangular c (..., q, q) and b (..., q)."""
    if c.shape[-1] == 1:
        return b / c[..., 0]
    if c.shape[-1] == 2:
        x1 = b[..., 1] / c[..., 1, 1]
        x0 = (b[..., 0] - c[..., 1, 0] * x1) / c[..., 0, 0]
        return jnp.stack([x0, x1], -1)
    return solve_triangular(jnp.swapaxes(c, -1, -2), b[..., None], lower=False)[..., 0]
