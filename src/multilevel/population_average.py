"""Group effects integrated out: predictions for the population average of groups.

With a non-identity link the prediction for a typical group (effects 0) is not the
average over groups: ``E_u[g^-1(eta + z'u)] != g^-1(eta)``. For every posterior draw and
row this module computes the average over the fitted population distribution of the
group effects, ``u_k ~ N(0, Sigma_k)`` per term (or per set of terms linked by a brms ID),
independently across terms, as ``groups="integrated"`` in ``prediction.predict``.

The effects enter each linear predictor ``p`` (the mean's and each family parameter's
with group terms) through ``c_p = sum_k z_k' u_k``: a row's contributions ``c`` are
jointly normal, ``N(0, S)`` with ``S = sum_k B_k Sigma_k B_k'`` (``B_k`` puts the row's
covariates ``z_k`` in the row of the term's predictor). So whatever the number of terms
(crossed, nested) and covariates, the average is an integral over P dimensions, P the
number of linear predictors with group terms:

* P = 1 (group terms in the mean only, the usual case): the trapezoid rule on a grid
  of spacing ``h = min(0.5, pi / (4 s))`` over +-(8 + 2 min(s, 4)) standard deviations,
  ``s`` the largest sd of a contribution among the rows (a log link's ``exp(eta + c)``
  moves the integrand's mass out by ``s``). For an integrand analytic in a strip around
  the real line the rule converges exponentially, with error about ``exp(-2 pi d /
  h)``, ``d`` the strip's half-width; the logistic's nearest poles lie at ``pi i``, i.e.
  ``d = pi / s`` in standard units, so this spacing leaves ~1e-11 (measured against
  ``scipy.integrate.quad``: 5e-11 or less for s from 0.1 to 10). Gauss-Hermite
  quadrature was the first choice and is not good enough there: for the logistic with
  s = 3 its error with 32 nodes was 1e-5, with s = 5 8e-4 (the poles). The grid has 41
  points for s = 1, 86 for s = 3, 163 for s = 5.
* P = 2 (a mean and a family parameter with group terms, a categorical model with
  three categories): a 20 x 20 Gauss-Hermite grid where every contribution's sd is at
  most 1.5 (its one-dimensional error for the logistic there: 1.4e-7; at sd 3 it would
  be 1.5e-4), else the trapezoid rule on a disc of radius 6 + 2 min(s, 2) with the
  spacing above (8,300 points at s = 4), and quasi-Monte Carlo where that would need
  more than 40,000 points.
* P >= 3 (categorical models with four or more categories): ``MC_NODES`` quasi-random
  normal vectors (a scrambled Sobol sequence, the same for every draw and row), whose
  Monte Carlo error ``integrate`` reports.

Nothing here holds more than one node's values at a time: the cost is the number of
nodes times that of a plain prediction, the memory that of one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

HALF_WIDTH = 8.0  # standard deviations covered in one dimension (mass beyond: 1e-15)
NODES_2D = 20
GAUSS_HERMITE_SPREAD = 1.5  # GH's error for the logistic: 1.4e-7 at sd 1.5, 5e-6 at 2
HALF_WIDTH_2D = 6.0  # the disc's radius in sds (normal mass beyond: 1.5e-8)
MAX_NODES_2D = 40_000  # beyond (sds above ~9), quasi-Monte Carlo with its error stated
MC_NODES = 512


def correlation_matrix(owner, value_of) -> np.ndarray:
    """(..., q, q) the correlation matrix of a term or of a set of linked terms (its
    ``coefs``, ``cor_pairs`` and ``cor_names``), each correlation ``value_of(name)`` (a
    number, or an array over draws); the identity where it has none."""
    values = {name: np.asarray(value_of(name), dtype=float) for name in owner.cor_names}
    lead = np.broadcast_shapes(*(v.shape for v in values.values()))
    q = len(owner.coefs)
    corr = np.broadcast_to(np.eye(q), (*lead, q, q)).copy()
    for (i, j), name in zip(owner.cor_pairs, owner.cor_names):
        corr[..., i, j] = corr[..., j, i] = values[name]
    return corr


def scale_trils(posterior, sd_names, correlations) -> np.ndarray:
    """(chain, draw, q, q) ``diag(sd) L`` per draw, ``L`` the Cholesky factor of the
    correlation matrix of ``correlations`` (a term or a set of linked terms, with
    ``cor_pairs`` and ``cor_names``; the identity where it has none)."""
    sd = np.stack([posterior[n].values.astype(float) for n in sd_names], axis=-1)
    q = sd.shape[-1]
    chol = np.eye(q)
    if correlations.cor_names:
        corr = correlation_matrix(correlations, lambda name: posterior[name].values)
        chol = np.linalg.cholesky(corr + 1e-12 * np.eye(q))
    return sd[..., :, None] * chol


def predictors_with_groups(spec) -> tuple[str, ...]:
    """The linear predictors (``mu`` and family parameters) that have group terms."""
    return tuple(dict.fromkeys(t.dpar for t in spec.terms))


def contribution_covariance(spec, posterior, Z: tuple) -> np.ndarray:
    """(chain, draw, n, P, P): the covariance of the group effects' contributions to the
    linear predictors of ``predictors_with_groups`` for each row, given the rows'
    covariates ``Z`` (one (n, q_k) block per term)."""
    names = predictors_with_groups(spec)
    where = {name: p for p, name in enumerate(names)}
    linked = {k for each in spec.linked_terms for k in each.terms}
    owners = [((k,), term.sd_names, term) for k, term in enumerate(spec.terms) if k not in linked]
    for each in spec.linked_terms:
        owners.append((each.terms, each.sd_names, each))
    n = Z[0].shape[0]
    total = None
    for members, sd_names, correlations in owners:
        tril = scale_trils(posterior, sd_names, correlations)  # (C, D, Q, Q)
        chains_draws, size = tril.shape[:2], tril.shape[-1]
        loadings = np.zeros((*chains_draws, n, len(names), size))  # B L, per row
        start = 0
        for k in members:
            q = Z[k].shape[1]
            rows = np.einsum("nq,cdqj->cdnj", Z[k], tril[..., start : start + q, :])
            loadings[..., where[spec.terms[k].dpar], :] += rows
            start += q
        part = np.einsum("cdnpj,cdnrj->cdnpr", loadings, loadings)
        total = part if total is None else total + part
    return total


def integrate(
    value_at: Callable[[dict], np.ndarray], etas: dict, covariance: np.ndarray, names,
    linear: tuple[str, ...] = (),
) -> tuple[np.ndarray, float]:  # fmt: skip
    """``E[value_at(etas + c)]`` over ``c ~ N(0, covariance)`` per draw and row, and the
    largest Monte Carlo standard error it leaves (0 for quadrature).

    ``etas`` maps each linear predictor to (chain, draw, n) values without group effects;
    ``covariance`` is ``contribution_covariance``'s (chain, draw, n, P, P) for the
    predictors ``names``; ``value_at`` takes shifted ``etas`` and returns (chain, draw,
    n, ...) values. ``linear``: predictors the value depends on linearly or not at all
    (a gaussian mean on the identity link): their sds, in the response's units, say
    nothing of how finely the integrand varies, so they leave the grid's spacing alone
    (a sleepstudy mean's sd of 40 ms made a grid of 75M points)."""
    size = len(names)
    variances = np.diagonal(covariance, axis1=-2, axis2=-1)  # (C, D, n, P)
    curved = [p for p, name in enumerate(names) if name not in linear]
    spread = float(np.sqrt(np.max(variances[..., curved], initial=0.0))) if curved else 0.0
    # (J, P) standard normal points, (J,) weights, and whether they are random
    nodes, weights, monte_carlo = _nodes(size, spread)
    if size == 1:
        factor = np.sqrt(np.maximum(covariance[..., 0, 0], 0.0))[..., None]  # (C, D, n, 1)
    else:
        jitter = 1e-12 * np.eye(size)
        factor = np.linalg.cholesky(covariance + jitter)  # (C, D, n, P, P)
    total = squares = None
    for point, weight in zip(nodes, weights):
        shift = factor * point if size == 1 else factor @ point  # (C, D, n, P)
        shifted = dict(etas)
        for p, name in enumerate(names):
            shifted[name] = etas[name] + shift[..., p]
        value = np.asarray(value_at(shifted), dtype=float)
        total = weight * value if total is None else total + weight * value
        if monte_carlo:
            squares = weight * value**2 if squares is None else squares + weight * value**2
    error = 0.0
    if monte_carlo:  # the Monte Carlo se of the mean over the nodes
        variance = np.maximum(squares - total**2, 0.0)
        error = float(np.sqrt(variance.max() / len(weights)))
    return total, error


def _nodes(size: int, spread: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """Points of a standard ``size``-variate normal, their weights (summing to 1) and
    whether they are (quasi-)random: the trapezoid grid in one dimension (spacing from
    ``spread``, the largest sd of a contribution), in two a Gauss-Hermite grid or the
    trapezoid rule on a disc, quasi-random points beyond (see the module doc)."""
    if size == 1:
        step = min(0.5, np.pi / (4.0 * max(spread, 1e-12)))
        # exp-like means (log links) tilt the mass out by up to ~2 spread: cover that
        half = HALF_WIDTH + 2.0 * min(spread, 4.0)
        axis = np.arange(-half, half + step / 2, step)
        weights = np.exp(-0.5 * axis**2)
        return axis[:, None], weights / weights.sum(), False
    if size == 2 and spread <= GAUSS_HERMITE_SPREAD:
        x, w = np.polynomial.hermite_e.hermegauss(NODES_2D)  # weight exp(-x^2 / 2)
        grid = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
        weights = np.outer(w, w).ravel()
        return grid, weights / weights.sum(), False
    if size == 2:  # the trapezoid rule on the disc, unless it needs too many points
        step = np.pi / (4.0 * spread)
        half = HALF_WIDTH_2D + 2.0 * min(spread, 2.0)
        axis = np.arange(-half, half + step / 2, step)
        grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
        grid = grid[(grid**2).sum(axis=1) <= half**2]
        if len(grid) <= MAX_NODES_2D:
            weights = np.exp(-0.5 * (grid**2).sum(axis=1))
            return grid, weights / weights.sum(), False
    from scipy.stats import norm, qmc  # 0.3 s: imported for quasi-Monte Carlo only

    sobol = qmc.Sobol(size, scramble=True, seed=20261207).random(MC_NODES)
    return norm.ppf(sobol), np.full(MC_NODES, 1.0 / MC_NODES), True
