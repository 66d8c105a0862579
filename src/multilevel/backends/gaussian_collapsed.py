"""Gaussian models with the group effects of one grouping factor integrated out.

For group j of the integrated factor, with rows y_j, population design X_j, the other
terms' contribution o_j (zero when there is no other factor) and group covariates Z_j,

    y_j ~ N(X_j beta + o_j, V_j),   V_j = sigma^2 I + Z_j S S' Z_j',

where S = blockdiag over terms of diag(sd_k) L_k is a Cholesky factor of the group
effects' covariance. With M_j = I + S' Z_j'Z_j S / sigma^2 (q x q, well conditioned even
as sd -> 0) the determinant lemma and Woodbury identity give

    log det V_j   = n_j log sigma^2 + log det M_j
    r' V_j^-1 r   = r'r / sigma^2 - u_j' M_j^-1 u_j / sigma^4,   u_j = S' Z_j' r_j,

so the likelihood needs r'r and Z_j'r_j only. Given (beta, S, sigma, other effects) each
group's effects are Gaussian, b_j ~ N(S M_j^-1 u_j / sigma^2, S M_j^-1 S'), and are drawn
exactly afterwards.

Two plans (``Plan``):
  * one grouping factor: r'r and Z'r are quadratic in beta, so per-group sufficient
    statistics make the cost per gradient independent of the number of rows;
  * several factors (crossed or nested): the factor with the most levels is integrated
    out and the others are sampled by NUTS, as in Lai, Domke & Sheldon (NeurIPS 2024):
    centred where their groups are many and rich in data (``_centre``), down a nesting
    where one sampled factor nests in another (``nested_parents``). r'r and Z'r then
    need one pass over the rows per gradient, but NUTS sees far fewer dimensions and
    none of the integrated factor's funnel.

Numerics: everything is centred on a reference coefficient beta_0 (least squares) in
float64, r = e - X delta - o with e = y - X beta_0 and delta = beta - beta_0: e'e is of
the order of n sigma^2 rather than n mean(y)^2, so the residual sum of squares is not
lost to cancellation. The sampler itself runs in float64 (see ``inference.collapsed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.scipy.linalg import block_diag

from multilevel.backends.batched_linalg import cholesky, solve_lower, solve_upper_t
from multilevel.backends.centring import nested_parent, parent_levels
from multilevel.backends.numpyro_model import (
    Structure,
    centring_columns,
    sample_hyperparameters,
    term_effects,
    term_scale_tril,
)
from multilevel.chunked.sums import group_cross_products, group_products
from multilevel.design import Design
from multilevel.shape_buckets import bucket, pad_zero_rows


@dataclass(frozen=True)
class Plan:
    """Which terms are integrated out (all of one grouping factor) and which are sampled."""

    collapsed: tuple[int, ...]
    sampled: tuple[int, ...] = ()
    centered: tuple[bool, ...] = ()  # per sampled term: sample the effects themselves
    # per sampled term: the sampled term its groups nest in and whose coefficients its
    # own are centred on (``nested_parents``), -1 for none
    parents: tuple[int, ...] = ()

    @property
    def by_statistics(self) -> bool:
        """One grouping factor: the likelihood needs per-group statistics only."""
        return not self.sampled


def plan(design: Design, family: str, centered: bool | None = None) -> Plan | str:
    """The plan for this design, or the reason no group effects can be integrated out.

    Sampled terms are centred where their groups are many and rich in data (``_centre``)
    with ``centered=None``; all of them with ``True``, none with ``False`` (the user's
    choice stands, as the README promises)."""
    if family != "gaussian":
        return f"the {family} family has no closed-form marginal likelihood"
    if getattr(design, "se", None) is not None:
        return "known standard errors (se) give each row its own sd; it assumes one sigma"
    if not design.blocks:
        return "there are no group terms"
    sizes: dict[str, int] = {}
    for block in design.blocks:
        sizes[block.group] = len(block.levels)
    widest = max(sizes, key=sizes.get)  # most levels: the most dimensions taken off NUTS
    collapsed = tuple(k for k, b in enumerate(design.blocks) if b.group == widest)
    sampled = tuple(k for k, b in enumerate(design.blocks) if b.group != widest)
    if centered is None:  # the data choose, term by term
        centre = tuple(_centre(design, k, collapsed[0]) for k in sampled)
    else:  # the user's choice, for every sampled term
        centre = (bool(centered),) * len(sampled)
    parents = nested_parents(design, sampled, centre)
    # A parent is centred too, whatever its own number of groups: its coefficients are
    # informed by its children's (InstEval: 14 departments of about 80 lecturers each;
    # left non-centred, min ESS 868 in 275 s, centred 1,141 in 223 s).
    centre = tuple(c or k in parents for k, c in zip(sampled, centre))
    return Plan(collapsed, sampled, centre, parents)


def nested_parents(design: Design, sampled: tuple[int, ...], centre: tuple[bool, ...]):
    """Per sampled term, the sampled term of a coarser grouping factor its groups nest in
    (each group inside one of the parent's), with the same covariates; -1 for none.

    A centred term with such a parent is sampled as coefficients centred on the parent's
    coefficients, and the parent's as coefficients centred on the population ones
    (hierarchical centring down the nesting, Gelfand, Sahu & Carlin 1995). Centred on zero
    instead, each parent's effect trades with the mean of its children's (only their
    prior tells them apart): InstEval's 14 departments beside their 1,128 lecturers,
    sd(dept) ESS 73 of 1,000 draws."""
    return tuple(
        nested_parent(design, k, among=sampled) if centred else -1
        for k, centred in zip(sampled, centre)
    )


def parent_codes(design: Design, chosen: Plan) -> dict:
    """term -> (L_k,) the parent's level of each of term k's levels (nested terms)."""
    return {
        str(k): parent_levels(design, k, a)
        for k, a in zip(chosen.sampled, chosen.parents)
        if a >= 0
    }


def _centre(design: Design, k: int, collapsed: int) -> bool:
    """Sample term k's effects centred when its groups are rich in data and many. With
    few groups centred effects and the intercept share a ridge (the intercept is known
    only up to the mean of the effects) that a diagonal mass matrix follows slowly:
    Penicillin's 6 samples gave an intercept ESS of 144 centred, 372 non-centred."""
    return len(design.blocks[k].levels) >= 50 and data_rich(design, k, collapsed)


def data_rich(design: Design, k: int, collapsed: int) -> bool:
    """Whether term k's groups are informed more by their data than by the population
    distribution: n_j sd^2 / noise > 1 for the median group, with sd^2 and the noise from
    a method-of-moments split of the least-squares residuals' variance. n_j counts the
    group's rows, but at most its distinct groups of the integrated factor (term
    ``collapsed``): rows that share those effects are not independent evidence (Pastes:
    6 rows per batch but 3 casks).

    Non-centred effects suit groups with little data; with much data they make a funnel
    between each sd and its standardised effects that NUTS crosses only with tiny steps
    (InstEval's 1128 lecturers, 65 ratings each: tree depth 9 non-centred, 5 centred)."""
    block, inner = design.blocks[k], design.blocks[collapsed]
    levels = len(block.levels)
    beta0 = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
    e = design.y - design.X @ beta0
    weight = block.Z[:, 0] ** 2  # the intercept (or first covariate) carries the information
    rows_j = np.bincount(block.codes, weights=weight, minlength=levels)
    pairs = np.unique(np.stack([block.codes, inner.codes]), axis=1)
    n_j = np.minimum(rows_j, np.bincount(pairs[0], minlength=levels))
    seen = rows_j > 0
    sums = np.bincount(block.codes, weights=block.Z[:, 0] * e, minlength=levels)
    means = sums[seen] / rows_j[seen]
    noise = np.var(e)
    between = np.var(means) - np.mean(noise / rows_j[seen])
    if between <= 0:
        return False
    return bool(np.median(n_j[seen]) * between / max(noise - between, 1e-12 * noise) > 1)


def collapsible(design: Design, family: str) -> str | None:
    """None when the collapsed sampler applies, else the reason it does not."""
    chosen = plan(design, family)
    return chosen if isinstance(chosen, str) else None


def sufficient_statistics(
    design: Design, chosen: Plan | None = None, weights: np.ndarray | None = None
) -> dict:
    """Model arguments of the collapsed likelihood, accumulated in float64.

    Group dimensions are padded (``bucket``) with empty groups, which contribute nothing
    to the likelihood; ``levels`` keeps the true count. ``weights`` (n,), optional, are
    per-row likelihood weights: every row of y, X and Z is scaled by sqrt(weight), so a
    row of weight 0 contributes nothing, as a padded row (K-fold refits: the same shapes,
    the same compiled sampler). Exact for weights of 0 and 1."""
    chosen = chosen or plan(design, "gaussian")
    X, y = design.X, design.y
    blocks = [design.blocks[k] for k in chosen.collapsed]
    Z = np.concatenate([b.Z for b in blocks], axis=1)  # (n, Q): terms side by side
    Z_other = [design.blocks[k].Z for k in chosen.sampled]
    n = float(len(y))
    if weights is not None:
        root = np.sqrt(np.asarray(weights, dtype=float))
        X, y, Z = X * root[:, None], y * root, Z * root[:, None]
        Z_other = [z * root[:, None] for z in Z_other]
        n = float(np.sum(weights))
    codes, levels = blocks[0].codes, bucket(len(blocks[0].levels))
    beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
    e = y - X @ beta0
    stats = {"beta0": beta0, "ZtZ": group_cross_products(codes, Z, Z, levels), "n": n}
    if chosen.by_statistics:
        return {
            **stats,
            "ee": np.dot(e, e),
            "Xe": X.T @ e,
            "XtX": X.T @ X,
            "ZtX": group_cross_products(codes, Z, X, levels),  # (L, Q, p)
            "Zte": group_products(codes, Z, e, levels),  # (L, Q)
        }
    rows = bucket(len(y))  # padded rows are all zero: no residual, no contribution
    return {
        **stats,
        "parents": parent_codes(design, chosen),
        "e": pad_zero_rows(e, rows),
        "X": pad_zero_rows(X, rows),
        "Z": pad_zero_rows(Z, rows),
        "codes": pad_zero_rows(blocks[0].codes, rows),
        "Z_other": tuple(pad_zero_rows(z, rows) for z in Z_other),
        "codes_other": tuple(pad_zero_rows(design.blocks[k].codes, rows) for k in chosen.sampled),
    }


def as_model_args(stats: dict, dtype=jnp.float32) -> dict:
    def convert(v):
        v = np.asarray(v)
        return jnp.asarray(v) if np.issubdtype(v.dtype, np.integer) else jnp.asarray(v, dtype)

    return jax.tree.map(convert, stats)


def residual_moments(beta, other, stats):
    """r'r and per-group Z'r (L, Q) for r = y - X beta - o.

    ``other`` is the sampled terms' effects (one (L_k, q_k) array per term, or None for a
    term folded into its child's, ``fold_nested``; empty with one grouping factor, where
    sufficient statistics give both moments)."""
    delta = beta - stats["beta0"]
    if "ee" in stats:
        rr = stats["ee"] - 2 * delta @ stats["Xe"] + delta @ stats["XtX"] @ delta
        return rr, stats["Zte"] - stats["ZtX"] @ delta  # (L, Q, p) @ (p,) -> (L, Q)
    r = stats["e"] - stats["X"] @ delta  # (n,)
    for Z, codes, effects in zip(stats["Z_other"], stats["codes_other"], other):
        if effects is not None:
            r = r - _row_sums(Z, effects, codes)
    levels = stats["ZtZ"].shape[0]
    Z = stats["Z"]
    if Z.shape[1] == 1:  # one column: 1-D segment sum (its gradient is a 1-D gather)
        ztr = jax.ops.segment_sum(Z[:, 0] * r, stats["codes"], levels)[:, None]
    else:
        ztr = jax.ops.segment_sum(Z * r[:, None], stats["codes"], levels)  # (L, Q)
    return r @ r, ztr


def _row_sums(Z, effects, codes):
    """(n,) each row's Z_i . effects[codes_i]. With one covariate, 1-D gathers: XLA's CPU
    gather and its scatter-add gradient are about 15% faster on vectors than on (n, 1)
    slices (InstEval's gradient)."""
    if Z.shape[1] == 1:
        return Z[:, 0] * effects[:, 0][codes]
    return jnp.sum(Z * effects[codes], axis=-1)  # (n, q) * (n, q) -> (n,)


def fold_nested(chosen: Plan, effects: dict, stats: dict) -> tuple:
    """The sampled terms' effects as ``residual_moments`` reads them: a parent with a
    single nested child term is added to the child's effects at the child's levels
    (``parent_effects[parent_codes]``, L_child numbers) and read as None, so the rows
    need one gather and one scatter fewer per gradient. Exact: every row of a child
    level lies in that level's parent level, and both terms have the same covariates."""
    children = [a for a in chosen.parents if a >= 0]
    folded = {k: effects[k] for k in chosen.sampled}
    for i in _parents_first(chosen):  # parents first: a chain folds all the way down
        k, a = chosen.sampled[i], chosen.parents[i]
        if a >= 0 and children.count(a) == 1:
            folded[k] = folded[k] + folded[a][stats["parents"][str(k)]]
            folded[a] = None
    return tuple(folded[k] for k in chosen.sampled)


def _moments(rr, ztr, sigma, scale_tril, ztz):
    """u_j = S' Z_j' r_j and the Cholesky factors of M_j."""
    u = ztr @ scale_tril  # (L, Q) @ (Q, Q) -> (L, Q): rows are S' Z_j' r_j
    w = jnp.swapaxes(scale_tril, -1, -2) @ ztz @ scale_tril  # (L, Q, Q)
    eye = jnp.eye(scale_tril.shape[-1], dtype=w.dtype)
    return u, cholesky(eye + w / sigma**2)


def marginal_log_likelihood(beta, sigma, scale_tril, stats, other=()) -> jnp.ndarray:
    """log p(y | beta, S, sigma, other effects) with one factor's effects integrated out."""
    rr, ztr = residual_moments(beta, other, stats)
    u, chol_m = _moments(rr, ztr, sigma, scale_tril, stats["ZtZ"])
    v = solve_lower(chol_m, u)  # M_j = C C', v = C^-1 u
    log_det_m = 2 * jnp.sum(jnp.log(jnp.diagonal(chol_m, axis1=-2, axis2=-1)))
    quad = rr / sigma**2 - jnp.sum(v**2) / sigma**4
    n = stats["n"]
    return -0.5 * (n * jnp.log(2 * jnp.pi * sigma**2) + log_det_m + quad)


def draw_group_effects(key, beta, sigma, scale_tril, stats, other=()) -> jnp.ndarray:
    """One exact draw of every group's effects (L, Q) from their Gaussian conditional."""
    rr, ztr = residual_moments(beta, other, stats)
    u, chol_m = _moments(rr, ztr, sigma, scale_tril, stats["ZtZ"])
    mean_m = solve_upper_t(chol_m, solve_lower(chol_m, u))  # M^-1 u
    eps = jax.random.normal(key, u.shape, dtype=u.dtype)
    noise = solve_upper_t(chol_m, eps)  # C'^-1 eps ~ N(0, M^-1)
    return (mean_m / sigma**2 + noise) @ scale_tril.T  # rows: S (M^-1 u / sigma^2 + noise)


def combined_scale_tril(st: Structure, chosen: Plan, sd, prior: dict) -> jnp.ndarray:
    """blockdiag over the integrated terms of diag(sd_k) L_k; samples each one's L_k."""
    blocks = []
    for k in chosen.collapsed:
        term = st.terms[k]
        term_sd = sd[term.sd_start : term.sd_start + term.q]
        blocks.append(term_scale_tril(k, term, term_sd, prior["eta"][k]))
    return block_diag(*blocks)


def make_collapsed_model(st: Structure, chosen: Plan):
    """The NumPyro model over population effects, sds, correlations, sigma and the
    sampled terms' effects: the integrated factor's effects are not parameters."""

    def model(stats: dict, prior: dict):
        beta, sd, aux = sample_hyperparameters(st, prior)
        scale_tril = combined_scale_tril(st, chosen, sd, prior)
        order = [chosen.sampled[i] for i in _parents_first(chosen)]
        centered = dict(zip(chosen.sampled, chosen.centered))
        parents = dict(zip(chosen.sampled, chosen.parents))
        codes = {k: stats["parents"][str(k)] for k, a in parents.items() if a >= 0}
        effects = term_effects(
            st, order, centered, parents, _centring(st, chosen), beta, sd, prior, codes,
            stats.get("level_counts"),
        )  # fmt: skip
        other = fold_nested(chosen, effects, stats)
        loglik = marginal_log_likelihood(beta, aux[0], scale_tril, stats, other)
        numpyro.factor("y", loglik)

    return model


def _centring(st: Structure, chosen: Plan) -> dict[int, tuple[int, ...]]:
    """Centred terms sampled around the population coefficients: a lone sampled term, or
    the top terms of a nesting (see ``nested_parents``)."""
    if len(chosen.sampled) == 1:
        return centring_columns(st, tuple(k for k, c in zip(chosen.sampled, chosen.centered) if c))
    tops = tuple(k for k, a in zip(chosen.sampled, chosen.parents) if a < 0 and k in chosen.parents)
    return centring_columns(st, tops)


def _parents_first(chosen: Plan) -> list[int]:
    """Positions in ``chosen.sampled``, each term after the term it is centred on."""

    def depth(k):
        a = chosen.parents[chosen.sampled.index(k)]
        return 0 if a < 0 else 1 + depth(a)

    return sorted(range(len(chosen.sampled)), key=lambda i: depth(chosen.sampled[i]))


def split_effects(st: Structure, chosen: Plan, effects: np.ndarray) -> dict:
    """(..., L, Q) combined effects -> ``effects_<k>`` (..., L, q_k) per integrated term."""
    out, start = {}, 0
    for k in chosen.collapsed:
        q = st.terms[k].q
        out[f"effects_{k}"] = effects[..., start : start + q]
        start += q
    return out
