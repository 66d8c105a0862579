"""Group effects integrated out approximately: the embedded Laplace approximation
(Margossian et al. 2020; Stan's ``laplace_marginal``) behind ``Model.fit(method="laplace")``.

NUTS samples the hyper-parameters theta (population coefficients, sds, the correlation's
Cholesky factor); the group effects of the model's one group term are not parameters.
Write group j's effects r_j = S u_j, with S = diag(sd) L the Cholesky factor of their
covariance, so that u_j ~ N(0, I). Given theta, Newton's method finds the mode u_hat_j of

    f_j(u) = sum_i log p(y_i | eta_i) - u'u / 2,   eta_i = x_i' beta + offset_i + z_i' S u,

over the group's rows i, with gradient and negative Hessian

    g_j = S' sum_i d_i z_i - u,    H_j = I + S' (sum_i w_i z_i z_i') S,

where d_i = y_i - E[y_i] and w_i = Var(y_i) are the first and minus the second
derivative of log p(y_i | eta) in eta under a canonical link (logit for the bernoulli
and binomial families, log for the poisson): each log-likelihood is concave in eta, so
each f_j has one mode. Per-row terms are summed per group with segment sums over the
integer codes (never an n x groups matrix), and the q x q systems solved batched
(``batched_linalg``). H_j >= I keeps them well conditioned even as the sds go to zero
(the parametrisation of ``gaussian_collapsed``'s M_j). The approximate log marginal
likelihood is

    log p(y | theta) ~ sum_j [ f_j(u_hat_j) - log det(H_j) / 2 ]

(the prior's normal constant cancels against the Gaussian integral's (2 pi)^(q/2), and
log det S against the change of variables: the same value as in r's own coordinates).

Its gradient (``log_marginal``): the Newton iterations run on frozen inputs
(``stop_gradient``), and one more Newton step is taken with gradients on, u* = u_hat +
H^-1 g(u_hat, theta). Since g = 0 at the mode, du*/dtheta = H^-1 dg/dtheta, the
implicit-function theorem's derivative of the mode, so automatic differentiation of
f(u*) - log det H(u*) / 2 gives the exact gradient of the approximation without
differentiating through the iterations.

Draws (``draw_effects``): per posterior draw of theta, u_j ~ N(u_hat_j, H_j^-1), r_j = S
u_j, with the log importance weight of the draw against the joint posterior,

    log w = log p(y | r, theta) + log p(r | theta) - log p_Laplace(y | theta)
            - log N(r; r_hat, S H^-1 S') = sum_j f_j(u_j) - f_j(u_hat_j) + |e_j|^2 / 2

for u_j = u_hat_j + C_j'^-1 e_j, H_j = C_j C_j' (the log determinants cancel). Their
Pareto-smoothed k-hat says how far the approximation is from the joint posterior.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax import lax

from multilevel.backends.batched_linalg import cholesky, solve_lower, solve_upper_t
from multilevel.backends.numpyro_model import (
    Structure,
    sample_hyperparameters,
    term_scale_tril,
)
from multilevel.families import FAMILIES
from multilevel.linear_predictor import linear_predictors
from multilevel.shape_buckets import bucket

# Family -> link whose log-likelihood the approximation handles: concave in eta, with
# d = y - E[y] and w = Var(y) (canonical links).
SUPPORTED = {"bernoulli": "logit", "binomial": "logit", "poisson": "log"}

# Newton's method stops after a step taken where every group's Newton decrement g' H^-1 g
# (twice the gain in f a full step promises, in log-density units: scale-free, unlike
# |g|) was below TOLERANCE, or after MAX_ITERATIONS steps. Convergence is quadratic
# there: decrements of 67, 2.8, 0.046, 1.8e-5, 5e-12 for 200 groups of 100 bernoulli
# rows, so the loop stops after 4 steps, at float32's rounding (about 1e-11; f is then
# that far below its maximum). A tighter test costs a step and gains nothing in float32.
TOLERANCE = 1e-3
MAX_ITERATIONS = 30
# Newton's steps are shortened (along their direction) so that no row's linear
# predictor rises by more than MAX_STEP (log link: from below its mode a full step
# overshoots by exp of the distance, and far from it exp overflows; from above it is
# safe) or moves by more than MAX_STEP_LOGIT (logit). Near the mode steps are small,
# and Newton's quadratic convergence is kept. Measured iterations to convergence
# (float32, 200 groups of 30-100 rows, (1 + x | g)): poisson 4-11 uncapped, 6-8 with
# rises capped at 2 to 4; bernoulli 3-6 with a cap of 4, as uncapped (3-13 with 1).
MAX_STEP = 3.0
MAX_STEP_LOGIT = 4.0


def unsupported(spec, design) -> str | None:
    """Why ``method="laplace"`` does not apply to this model, or None when it does."""
    family, link = spec.family, spec.link
    if SUPPORTED.get(family) != link:
        return (
            f"it supports the bernoulli and binomial families with link 'logit' and the "
            f"poisson family with link 'log' (log-likelihoods concave in the linear "
            f"predictor), not the {family} family with link {link!r}"
        )
    if spec.dpars:
        names = ", ".join(d.name for d in spec.dpars)
        return f"{names} has a formula or value of its own (ml.bf), which it does not support"
    if spec.imputed:
        return "predictors with missing values are sampled (missing='model'), which it does not support"
    if getattr(design, "bounds", None):
        return "censored or truncated responses (cens(), trunc()) are not supported"
    if len(spec.terms) != 1:
        terms = ", ".join(f"({t.expr} | {t.group})" for t in spec.terms) or "none"
        return (
            "it integrates out the effects of exactly one group term, e.g. (1 + x | g) or "
            f"(1 + x || g); this model has {len(spec.terms)} ({terms})"
        )
    return None


# Cost of one slot of the rows' layout (``slot_width``), counted in cells of the layout:
# a slot's reductions and its share of the segment sums over slots.
SLOT_COST = 8


def slot_width(sizes: np.ndarray) -> int:
    """The width m of the slots that hold the rows (``prepare``): the one that makes
    the fewest cells, counting ``SLOT_COST`` per slot, among the group sizes' deciles
    and the powers of two up to the largest group. Balanced groups of 100 rows: 100
    (one slot per group); radon's counties of 1 to 116 houses: a few."""
    sizes = sizes[sizes > 0]
    if sizes.size == 0:
        return 1
    largest = int(sizes.max())
    candidates = {int(w) for w in np.percentile(sizes, np.arange(0, 101, 10))}
    candidates |= {2**k for k in range(largest.bit_length() + 1) if 2**k <= largest}
    candidates = np.array(sorted(c for c in candidates if c >= 1))
    slots = np.ceil(sizes[None, :] / candidates[:, None]).sum(axis=1)
    return int(candidates[np.argmin(slots * (candidates + SLOT_COST))])


def prepare(data: dict, levels: int, dtype=np.float32) -> dict:
    """The joint sampler's data arrays (``numpyro_model.data_arrays`` or pooled rows)
    laid out for ``log_marginal``: each group's rows in slots of ``m`` rows (a group of
    n_j rows takes ceil(n_j / m) slots, the last filled with rows of weight 0; empty
    slots make the number of slots that of its size bucket), so that
    per-group sums are sums along a slot's axis and a segment sum over the few slots
    (``slot_group``, sorted), and no row gathers its group's effects one by one.
    NumPy arrays of ``dtype`` (the caller puts them on the device; float64 inside
    ``jax.enable_x64``): ``X`` (slots * m, p), ``y``, ``trials``, ``offset``, ``weight``
    (slots, m; ``weight`` always, 0 in unused cells), ``Z`` (q, slots, m) of the one
    term, one covariate after the other, ``slot_group`` (slots,) and ``z_range`` (2,
    levels, q), the smallest and largest z_ik of each covariate among each group's
    rows, which bound a Newton step's change of the linear predictor."""
    codes = np.asarray(data["codes"][0])
    n = codes.size
    weight = np.ones(n) if data.get("weight") is None else np.asarray(data["weight"], float)
    # Every row has a cell, those of weight 0 too (K-fold's held-out rows): each fold's
    # refit then has the same shapes and reuses the compiled sampler.
    sizes = np.bincount(codes, minlength=levels)
    width = slot_width(sizes)
    slots_per_group = np.ceil(sizes / width).astype(int)
    slot_group = np.repeat(np.arange(levels), slots_per_group).astype(np.int32)
    first_slot = np.concatenate([[0], np.cumsum(slots_per_group)[:-1]])
    order = np.argsort(codes, kind="stable")
    group = codes[order]
    rank = np.arange(n) - np.concatenate([[0], np.cumsum(sizes)[:-1]])[group]
    cell = (first_slot[group] + rank // width) * width + rank % width
    # empty slots up to the size bucket (``shape_buckets``), in the last group (sorted):
    # data of a somewhat different size reuse the compiled programs
    extra = bucket(slot_group.size) - slot_group.size
    slot_group = np.concatenate([slot_group, np.full(extra, levels - 1, np.int32)])
    cells = slot_group.size * width

    def layout(values, shape=(slot_group.size, width)):
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float64)
        out = np.zeros((cells, *values.shape[1:]))
        out[cell] = values[order]
        return out.reshape(*shape, *values.shape[1:]).astype(dtype)

    Z = np.asarray(data["Z"][0], dtype=np.float64)
    z_high, z_low = np.full((levels, Z.shape[1]), -np.inf), np.full((levels, Z.shape[1]), np.inf)
    np.maximum.at(z_high, group, Z[order])
    np.minimum.at(z_low, group, Z[order])
    empty = sizes == 0  # no rows: nothing bounds a step of effects that nothing reads
    z_high[empty], z_low[empty] = 0.0, 0.0
    return {
        "X": layout(data["X"], (cells,)),
        "y": layout(data["y"]),
        "trials": layout(data.get("trials")),
        "offset": layout(data.get("offset")),
        "weight": layout(weight),
        "Z": np.moveaxis(layout(Z), -1, 0),
        "slot_group": slot_group,
        "z_range": np.stack([z_low, z_high]).astype(dtype),
    }


def population_eta(st: Structure, rows: dict, beta) -> jnp.ndarray:
    """(slots, m) ``X beta`` plus the offset: the linear predictor without group effects."""
    layout_rows = {"X": rows["X"], "Z": (None,), "codes": (None,), "offset": None}
    eta = linear_predictors(st.layout, layout_rows, beta, [None])["mu"]
    eta = eta.reshape(rows["y"].shape)
    return eta if rows.get("offset") is None else eta + rows["offset"]


def scale_tril_of(st: Structure, sd, chol=None) -> jnp.ndarray:
    """(q, q) diag(sd) L of the one term (``sd`` the model's every sd; ``chol`` its
    correlation's Cholesky factor L, None when uncorrelated)."""
    term = st.terms[0]
    term_sd = sd[term.sd_start : term.sd_start + term.q]
    if chol is None:
        return jnp.diag(term_sd)
    return term_sd[:, None] * chol


def _row_terms(family: str, link: str, eta, rows: dict, slope: bool = False):
    """Each row's log-likelihood, d = dlog p/deta and w = -d2 log p/deta2, times its
    weight (0 in unused cells); with ``slope``, also dw/deta. Canonical links: d = y -
    E[y], w = Var(y); dw/deta = n p (1 - p) (1 - 2p) (binomial), mu (poisson)."""
    y, trials, weight = rows["y"], rows["trials"], rows["weight"]
    loglik = FAMILIES[family].likelihood(eta, link, {}, trials).log_prob(y)
    if family == "poisson":
        mean = jnp.exp(eta)
        d, w, dw = y - mean, mean, mean
    else:
        n = 1.0 if trials is None else trials
        p, not_p = jax.nn.sigmoid(eta), jax.nn.sigmoid(-eta)  # 1 - p without cancellation
        d, w = y - n * p, n * p * not_p
        dw = w * (not_p - p)
    out = (weight * loglik, weight * d, weight * w)
    return (*out, weight * dw) if slope else out


def _group_sum(values, rows: dict, levels: int):
    """Per group: the sum over its slots of per-slot values (slots, ...). The slots are
    sorted by group, but ``indices_are_sorted`` is not claimed: the effect draws vmap
    this, and the batched scatter's indices need not be sorted (the sum over slots is a
    small part of a pass either way)."""
    return jax.ops.segment_sum(values, rows["slot_group"], levels)


def _eta(u, scale_tril, base, rows):
    """(slots, m) each row's linear predictor with its group's effects S u_j."""
    r = (u @ scale_tril.T)[rows["slot_group"]]  # (slots, q): r_j = S u_j of each slot's group
    Z = rows["Z"]
    # Covariate by covariate, elementwise: XLA's CPU dot with tiny dims (einsum "kmq,kq")
    # took 4 times as long for a pass over the rows (0.95 vs 0.23 ms, 20,000 rows).
    # jnp.sum(Z * r[:, None, :], -1) on (slots, m, q), vmapped inside a while loop (the
    # effect draws), gave every draw but the first of a batch wrong values on XLA's CPU
    # backend (JAX 0.10.2); test_laplace checks vmapped draws against single ones.
    return base + sum(Z[k] * r[:, k, None] for k in range(Z.shape[0]))


def _pairs(q: int) -> list[tuple[int, int]]:
    """(j, k), j <= k: the entries of a symmetric q x q matrix that are summed."""
    return [(j, k) for j in range(q) for k in range(j, q)]


def _symmetric(entries, q: int):
    """(L, q, q) from (L, q (q + 1) / 2) entries in ``_pairs`` order."""
    index = np.zeros((q, q), dtype=np.intp)
    for i, (j, k) in enumerate(_pairs(q)):
        index[j, k] = index[k, j] = i
    return entries[:, index]


def _sums(d, w, rows: dict, levels: int):
    """Per group: b_j = sum_i d_i z_i (L, q) and A_j = sum_i w_i z_i z_i' (L, q, q)."""
    Z = rows["Z"]
    q = Z.shape[0]
    b = jnp.stack([jnp.sum(d * Z[k], axis=1) for k in range(q)], axis=-1)  # (slots, q)
    a = jnp.stack([jnp.sum(w * Z[j] * Z[k], axis=1) for j, k in _pairs(q)], axis=-1)
    return _group_sum(b, rows, levels), _symmetric(_group_sum(a, rows, levels), q)


def curvature(family, link, u, scale_tril, base, rows):
    """The total log-likelihood, each group's gradient g_j (L, q) and negative Hessian
    H_j (L, q, q) of f_j at u (L, q)."""
    levels, q = u.shape
    loglik, d, w = _row_terms(family, link, _eta(u, scale_tril, base, rows), rows)
    b, a = _sums(d, w, rows, levels)
    g = b @ scale_tril - u  # rows: S' b_j - u_j
    H = jnp.eye(q, dtype=u.dtype) + scale_tril.T @ a @ scale_tril  # (L, q, q)
    return jnp.sum(loglik), g, H


def _newton_step(g, H):
    """H^-1 g per group, with H's Cholesky factor."""
    chol = cholesky(H)
    return solve_upper_t(chol, solve_lower(chol, g)), chol


def _step_shrink(family: str, change, rows: dict):
    """(L,) the factor shortening each group's step, whose effects change by ``change``
    (L, q): so that no row's eta rises by more than ``MAX_STEP`` (a log link, whose
    steps from below overshoot) or moves by more than ``MAX_STEP_LOGIT``. The rise of
    z_i' change is bounded by sum_k max(z_low_k change_k, z_high_k change_k), over the
    smallest and largest z_ik among the group's rows (``prepare``)."""
    low, high = rows["z_range"][0], rows["z_range"][1]
    if family == "poisson":
        rise = jnp.maximum(low * change, high * change)
        bound, largest = rise @ jnp.ones(rise.shape[-1], rise.dtype), MAX_STEP
    else:
        spread = jnp.maximum(jnp.abs(low), jnp.abs(high))
        bound, largest = jnp.einsum("lq,lq->l", spread, jnp.abs(change)), MAX_STEP_LOGIT
    return jnp.minimum(1.0, largest / jnp.maximum(bound, largest))


def newton_modes(family: str, link: str, scale_tril, base, rows: dict):
    """Each group's mode u_hat (L, q) of f_j by Newton's method from zero, the number of
    iterations taken, the largest Newton decrement before the last step and the
    Cholesky factors (L, q, q) of H there. Not to be differentiated (a while loop):
    ``log_marginal`` freezes its inputs."""
    levels, q = rows["z_range"].shape[1], scale_tril.shape[-1]

    def body(state):
        i, u, _, _ = state
        _, g, H = curvature(family, link, u, scale_tril, base, rows)
        delta, chol = _newton_step(g, H)
        decrement = jnp.max(jnp.sum(g * delta, axis=-1))
        shrink = _step_shrink(family, delta @ scale_tril.T, rows)
        return i + 1, u + shrink[:, None] * delta, decrement, chol

    def unfinished(state):
        i, _, decrement, _ = state
        return (i < MAX_ITERATIONS) & (decrement > TOLERANCE)

    dtype = base.dtype
    eye = jnp.broadcast_to(jnp.eye(q, dtype=dtype), (levels, q, q))
    start = (jnp.int32(0), jnp.zeros((levels, q), dtype), jnp.asarray(jnp.inf, dtype), eye)
    iterations, u, decrement, chol = lax.while_loop(unfinished, body, start)
    return u, iterations, decrement, chol


def _log_det_slope(family, link, eta, u, scale_tril, chol, rows):
    """t_j = d log det H_j / d u_j (L, q), with H_j = chol chol' near u:
    S' sum_i (dw_i/deta) (z_i' S H_j^-1 S' z_i) z_i."""
    levels, q = u.shape
    Z = rows["Z"]
    # V_j = C_j^-1 S' (columns solved one by one), so that S H_j^-1 S' = V_j' V_j
    columns = [solve_lower(chol, jnp.broadcast_to(scale_tril[k], (levels, q))) for k in range(q)]
    v = jnp.stack(columns, axis=-1)  # (L, q, q)
    spread = (jnp.swapaxes(v, -1, -2) @ v)[rows["slot_group"]]  # (slots, q, q)
    leverage = sum(
        (1.0 if j == k else 2.0) * spread[:, j, k, None] * Z[j] * Z[k] for j, k in _pairs(q)
    )  # (slots, m): z_i' S H_j^-1 S' z_i
    _, _, _, dw = _row_terms(family, link, eta, rows, slope=True)
    weighted = dw * leverage
    sums = jnp.stack([jnp.sum(weighted * Z[k], axis=1) for k in range(q)], axis=-1)
    return _group_sum(sums, rows, levels) @ scale_tril


def log_marginal(family: str, link: str, scale_tril, base, rows: dict) -> jnp.ndarray:
    """The Laplace approximation of log p(y | theta), differentiable in ``scale_tril``
    (q, q) and ``base`` (slots, m), the linear predictor without group effects.

    Its value is sum_j f_j(u_hat_j) - log det H_j / 2 at Newton's modes. Its gradient
    is that of the implicit function u_hat(theta), by the rule of the total
    derivative: d/dtheta = partial/dtheta at fixed u, plus (g - t/2)' du/dtheta with
    du/dtheta = H^-1 dg/dtheta (the implicit-function theorem; the derivative of one
    more Newton step) and t = d log det H / du. So the function below is evaluated at
    the frozen mode, with ``c' (g - stop_gradient(g))``, c = H^-1 (g - t/2) frozen, added:
    zero in value, that term in derivative. One pass over the rows with gradients, where
    a Newton step with gradients on and the value at its end took two (30% of the
    gradient's time on 20,000 rows); t needs dw/deta, a third derivative. Exact to
    first order in g (about 1e-4 after Newton's method here: the sampler is exact for
    any gradient, which only steers its trajectories); t reads H from the last Newton
    iterate (about 1% off, a small term)."""
    frozen = lax.stop_gradient
    u_hat, _, _, chol_last = newton_modes(family, link, frozen(scale_tril), frozen(base), rows)
    levels, q = u_hat.shape
    eta = _eta(u_hat, scale_tril, base, rows)
    loglik, d, w = _row_terms(family, link, eta, rows)
    b, a = _sums(d, w, rows, levels)
    g = b @ scale_tril - u_hat
    H = jnp.eye(q, dtype=u_hat.dtype) + scale_tril.T @ a @ scale_tril
    chol = cholesky(H)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)))
    slope = _log_det_slope(
        family, link, frozen(eta), u_hat, frozen(scale_tril), frozen(chol_last), rows
    )
    direction = frozen(_newton_step(g - 0.5 * slope, H)[0])  # H^-1 (g - t/2)
    implicit = jnp.sum(direction * (g - frozen(g)))
    return jnp.sum(loglik) - 0.5 * jnp.sum(u_hat**2) - 0.5 * log_det + implicit


def make_model(st: Structure):
    """The NumPyro model over population coefficients, sds and the correlation's
    Cholesky factor (the joint model's sites and priors: ``sample_hyperparameters``,
    ``term_scale_tril``), with the group effects integrated out by ``log_marginal``.
    Takes ``(rows, prior)``: ``prepare``'s arrays and ``numpyro_model.prior_arrays``."""
    term = st.terms[0]

    def model(rows: dict, prior: dict):
        beta, sd, _ = sample_hyperparameters(st, prior)
        term_sd = sd[term.sd_start : term.sd_start + term.q]
        scale_tril = term_scale_tril(0, term, term_sd, prior["eta"][0])
        base = population_eta(st, rows, beta)
        numpyro.factor("y", log_marginal(st.family, st.link, scale_tril, base, rows))

    return model


def draw_effects(key, st: Structure, beta, scale_tril, rows: dict) -> dict:
    """For one draw of the hyper-parameters: the group effects (L, q) drawn from the
    approximation N(r_hat, S H^-1 S'), the draw's log importance weight against the
    joint posterior (``log_weight``), Newton's ``iterations`` and the largest |g| left
    at the mode (``gradient``)."""
    family, link = st.family, st.link
    base = population_eta(st, rows, beta)
    u_hat, iterations, _, _ = newton_modes(family, link, scale_tril, base, rows)
    loglik_hat, g, H = curvature(family, link, u_hat, scale_tril, base, rows)
    chol = cholesky(H)
    noise = jax.random.normal(key, u_hat.shape, dtype=u_hat.dtype)
    u = u_hat + solve_upper_t(chol, noise)  # ~ N(u_hat, H^-1)
    loglik, _, _ = _row_terms(family, link, _eta(u, scale_tril, base, rows), rows)
    log_weight = (
        jnp.sum(loglik) - 0.5 * jnp.sum(u**2) - loglik_hat + 0.5 * jnp.sum(u_hat**2)
        + 0.5 * jnp.sum(noise**2)
    )  # fmt: skip
    return {
        "effects": u @ scale_tril.T,
        "log_weight": log_weight,
        "iterations": iterations,
        "gradient": jnp.max(jnp.abs(g)),
    }
