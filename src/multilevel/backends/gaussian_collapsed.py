"""Gaussian models with the group effects integrated out (one grouping factor).

For group j with rows y_j, population design X_j and group covariates Z_j,

    y_j ~ N(X_j beta, V_j),   V_j = sigma^2 I + Z_j S S' Z_j',

where S = blockdiag over terms of diag(sd_k) L_k is a Cholesky factor of the group
effects' covariance. With M_j = I + S' Z_j'Z_j S / sigma^2 (q x q, well conditioned even
as sd -> 0) the determinant lemma and Woodbury identity give

    log det V_j   = n_j log sigma^2 + log det M_j
    r' V_j^-1 r   = r'r / sigma^2 - u_j' M_j^-1 u_j / sigma^4,   u_j = S' Z_j' r_j,

so the likelihood needs only per-group sufficient statistics: its cost per gradient does
not depend on the number of rows. Given (beta, S, sigma) each group's effects are
Gaussian, b_j ~ N(S M_j^-1 u_j / sigma^2, S M_j^-1 S'), and are drawn exactly afterwards.

Numerics: the statistics are accumulated in float64 around a reference coefficient
beta_0 (least squares), r = e - X delta with e = y - X beta_0 and delta = beta - beta_0:
e'e is of the order of n sigma^2 rather than n mean(y)^2, so float32 sampling does not
lose the residual sum of squares to cancellation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.scipy.linalg import block_diag, solve_triangular

from multilevel.backends.numpyro_model import (
    Structure,
    sample_hyperparameters,
    term_scale_tril,
)
from multilevel.design import Design


def collapsible(design: Design, family: str) -> str | None:
    """None when the collapsed sampler applies, else the reason it does not."""
    if family != "gaussian":
        return f"the {family} family has no closed-form marginal likelihood"
    groups = {b.group for b in design.blocks}
    if len(groups) != 1:
        return "it needs exactly one grouping factor" if groups else "there are no group terms"
    return None


def sufficient_statistics(design: Design) -> dict:
    """Per-group and total statistics, accumulated in float64 (one pass per column pair)."""
    X, y = design.X, design.y
    Z = np.concatenate([b.Z for b in design.blocks], axis=1)  # (n, Q): terms side by side
    codes = design.blocks[0].codes
    levels = len(design.blocks[0].levels)
    beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
    e = y - X @ beta0

    def per_group(weights: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=weights, minlength=levels)

    q, p = Z.shape[1], X.shape[1]
    ztz = np.empty((levels, q, q))
    for a in range(q):
        for b in range(a, q):
            ztz[:, a, b] = ztz[:, b, a] = per_group(Z[:, a] * Z[:, b])
    ztx = np.stack(
        [np.stack([per_group(Z[:, a] * X[:, c]) for c in range(p)], -1) for a in range(q)], 1
    )
    zte = np.stack([per_group(Z[:, a] * e) for a in range(q)], -1)
    return {
        "beta0": beta0,
        "ee": np.dot(e, e),
        "Xe": X.T @ e,
        "XtX": X.T @ X,
        "ZtZ": ztz,  # (L, Q, Q)
        "ZtX": ztx.reshape(levels, q, p),  # (L, Q, p)
        "Zte": zte,  # (L, Q)
        "n": float(len(y)),
    }


def as_model_args(stats: dict, dtype=jnp.float32) -> dict:
    return {k: jnp.asarray(v, dtype=dtype) for k, v in stats.items()}


# Batched q x q factorisations for the common q = 1, 2 in closed form: elementwise
# arithmetic vectorises over groups and chains, where LAPACK calls per tiny matrix do not.
def _cholesky(m):
    if m.shape[-1] == 1:
        return jnp.sqrt(m)
    if m.shape[-1] == 2:
        l00 = jnp.sqrt(m[..., 0, 0])
        l10 = m[..., 1, 0] / l00
        l11 = jnp.sqrt(m[..., 1, 1] - l10**2)
        zero = jnp.zeros_like(l00)
        return jnp.stack([jnp.stack([l00, zero], -1), jnp.stack([l10, l11], -1)], -2)
    return jnp.linalg.cholesky(m)


def _solve_lower(c, b):
    """c x = b for lower-triangular c (..., q, q) and b (..., q)."""
    if c.shape[-1] == 1:
        return b / c[..., 0]
    if c.shape[-1] == 2:
        x0 = b[..., 0] / c[..., 0, 0]
        x1 = (b[..., 1] - c[..., 1, 0] * x0) / c[..., 1, 1]
        return jnp.stack([x0, x1], -1)
    return solve_triangular(c, b[..., None], lower=True)[..., 0]


def _solve_upper_t(c, b):
    """c' x = b for lower-triangular c (..., q, q) and b (..., q)."""
    if c.shape[-1] == 1:
        return b / c[..., 0]
    if c.shape[-1] == 2:
        x1 = b[..., 1] / c[..., 1, 1]
        x0 = (b[..., 0] - c[..., 1, 0] * x1) / c[..., 0, 0]
        return jnp.stack([x0, x1], -1)
    return solve_triangular(jnp.swapaxes(c, -1, -2), b[..., None], lower=False)[..., 0]


def _moments(beta, sigma, scale_tril, stats):
    """Residual sum of squares, u_j = S' Z_j' r_j and the Cholesky factors of M_j."""
    delta = beta - stats["beta0"]
    rr = stats["ee"] - 2 * delta @ stats["Xe"] + delta @ stats["XtX"] @ delta
    ztr = stats["Zte"] - stats["ZtX"] @ delta  # (L, Q, p) @ (p,) -> (L, Q)
    u = ztr @ scale_tril  # (L, Q) @ (Q, Q) -> (L, Q): rows are S' Z_j' r_j
    w = jnp.swapaxes(scale_tril, -1, -2) @ stats["ZtZ"] @ scale_tril  # (L, Q, Q)
    eye = jnp.eye(scale_tril.shape[-1], dtype=w.dtype)
    chol_m = _cholesky(eye + w / sigma**2)  # (L, Q, Q)
    return rr, u, chol_m


def marginal_log_likelihood(beta, sigma, scale_tril, stats) -> jnp.ndarray:
    """log p(y | beta, S, sigma) with the group effects integrated out."""
    rr, u, chol_m = _moments(beta, sigma, scale_tril, stats)
    v = _solve_lower(chol_m, u)  # M_j = C C', v = C^-1 u
    log_det_m = 2 * jnp.sum(jnp.log(jnp.diagonal(chol_m, axis1=-2, axis2=-1)))
    quad = rr / sigma**2 - jnp.sum(v**2) / sigma**4
    n = stats["n"]
    return -0.5 * (n * jnp.log(2 * jnp.pi * sigma**2) + log_det_m + quad)


def draw_group_effects(key, beta, sigma, scale_tril, stats) -> jnp.ndarray:
    """One exact draw of every group's effects (L, Q) from their Gaussian conditional."""
    _, u, chol_m = _moments(beta, sigma, scale_tril, stats)
    mean_m = _solve_upper_t(chol_m, _solve_lower(chol_m, u))  # M^-1 u
    eps = jax.random.normal(key, u.shape, dtype=u.dtype)
    noise = _solve_upper_t(chol_m, eps)  # C'^-1 eps ~ N(0, M^-1)
    return (mean_m / sigma**2 + noise) @ scale_tril.T  # rows: S (M^-1 u / sigma^2 + noise)


def combined_scale_tril(st: Structure, sd, prior: dict) -> jnp.ndarray:
    """blockdiag over the terms of diag(sd_k) L_k; samples each correlated term's L_k."""
    blocks = [
        term_scale_tril(k, term, sd[term.sd_start : term.sd_start + term.q], prior["eta"][k])
        for k, term in enumerate(st.terms)
    ]
    return block_diag(*blocks)


def make_collapsed_model(st: Structure):
    """The NumPyro model over population effects, sds, correlations and sigma only."""

    def model(stats: dict, prior: dict):
        beta, sd, aux = sample_hyperparameters(st, prior)
        scale_tril = combined_scale_tril(st, sd, prior)
        numpyro.factor("y", marginal_log_likelihood(beta, aux[0], scale_tril, stats))

    return model


def split_effects(st: Structure, effects: np.ndarray) -> dict:
    """(..., L, Q) combined effects -> ``effects_<k>`` (..., L, q_k) per term."""
    return {
        f"effects_{k}": effects[..., term.sd_start : term.sd_start + term.q]
        for k, term in enumerate(st.terms)
    }
