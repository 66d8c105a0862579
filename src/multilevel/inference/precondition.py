"""A starting point and a starting mass matrix for NUTS, from the posterior's curvature.

Warmup (Stan's windowed adaptation, as NumPyro runs it) starts from the identity mass
matrix and keeps it for its first 100 iterations. When the posterior's scales differ by
orders of magnitude (log sigma at 73,000 rows has a posterior sd of 0.003, a lecturer's
effect 0.15) the step size shrinks to the narrowest scale and every one of those
iterations runs to the maximum tree depth: InstEval spent 85 s of each chain there and
then sampled at 31 leapfrog steps per draw.

``start`` estimates the diagonal of the potential's Hessian with Hutchinson's estimator
(Rademacher probes s, E[s * Hs] = diag H) and starts the mass matrix from its inverse:
at the chain's own start (``search=False``: the joint sampler, whose chains start at the
pooled GLM's estimate and each group's estimate, near the typical set), or after a short
Adam run from a random start towards the mode (``search=True``: the partially collapsed
sampler; Adam's steps are invariant to each coordinate's scale). Not towards the mode
for the joint sampler's centred effects: their joint mode is the funnel's neck (every
group at the mean, sd -> 0), and a bernoulli ``(1 + x | g)`` of 20,000 rows then spent
88 gradients per warmup draw, against 42 with the identity and 17 probed at its start. Each Hs is a central
difference of two gradients, so the whole start is one loop around one gradient: the
forward-over-reverse Hessian-vector product compiled a second copy of the model's
derivative (InstEval's initialisation: 8 s more to compile). The cost is ``ADAM_STEPS +
2 PROBES`` gradients, less than one saturated NUTS iteration. Windowed adaptation then
proceeds as before: the first slow window replaces this guess with the draws' variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

ADAM_STEPS = 100
PROBES = 16
# Adam's learning rate decays geometrically from the first to the last step: large steps
# cross the unit-scale prior box of the random start, small ones settle near the mode.
# (200 steps from 0.3 got nearer the mode but no faster a fit: InstEval 170 s vs 168 s.)
LEARNING_RATE = (0.1, 0.001)
# Bounds on the starting inverse mass (a variance on the unconstrained scale). The upper
# bound keeps a direction the probes found flat (or concave) from getting huge steps.
INVERSE_MASS_BOUNDS = (1e-10, 10.0)


def _difference_step(dtype) -> float:
    """Half-width of the central differences: exact for a quadratic potential, and small
    against the narrowest posterior sd we meet (0.003) in float64, where the collapsed
    sampler runs; wider in float32, whose rounding would swamp the difference."""
    return 1e-4 if dtype == jnp.float64 else 1e-2


def _search_and_probe(f, x, rng_key, steps: int, block: np.ndarray):
    """(Adam's end point, Hutchinson's diag(H) there, the Hessian's (m, m) block of the
    coordinates ``block`` there), from one loop of gradients.

    Steps 0 .. steps - 1 take Adam steps from x (non-finite gradients count as
    zero); then each probe s_j takes two steps, the gradient at x* + h s_j and at
    x* - h s_j, and adds s_j * (g+ - g-) / 2h = s_j * H s_j to the sum; then each of
    the block's unit vectors e_j, likewise, gives the block's column j of H."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    first, last = LEARNING_RATE
    h = _difference_step(x.dtype)
    probes = jax.random.rademacher(rng_key, (PROBES, x.size), dtype=x.dtype)
    units = jnp.zeros((len(block), x.size), x.dtype).at[np.arange(len(block)), block].set(1.0)
    directions = jnp.concatenate([probes, units])
    differences = 2 * (PROBES + len(block))

    def body(i, carry):
        x, m, v, total, columns = carry
        searching = i < steps
        j = jnp.clip(i - steps, 0, differences - 1)
        s = directions[j // 2]
        sign = jnp.where(j % 2 == 0, 1.0, -1.0).astype(x.dtype)
        g = jax.grad(f)(jnp.where(searching, x, x + sign * h * s))
        # Adam on the search steps; x stays put while probing
        finite = jnp.where(jnp.isfinite(g), g, 0.0)
        m_new = b1 * m + (1 - b1) * finite
        v_new = b2 * v + (1 - b2) * finite * finite
        t = i + 1
        rate = first * (last / first) ** (i / max(steps - 1, 1))
        step = rate * (m_new / (1 - b1**t)) / (jnp.sqrt(v_new / (1 - b2**t)) + eps)
        x = jnp.where(searching, x - step, x)
        m, v = jnp.where(searching, m_new, m), jnp.where(searching, v_new, v)
        probing = ~searching & (j < 2 * PROBES)
        total = total + jnp.where(probing, sign * s * g / (2 * h), 0.0)
        if len(block):
            column = jnp.clip(j // 2 - PROBES, 0, len(block) - 1)
            unit = ~searching & (j >= 2 * PROBES)
            update = jnp.where(unit, sign * g[block] / (2 * h), 0.0)
            columns = columns.at[column].add(update)
        return x, m, v, total, columns

    zeros = jnp.zeros_like(x)
    columns = jnp.zeros((len(block), len(block)), x.dtype)
    carry = (x, zeros, zeros, zeros, columns)
    x, _, _, total, columns = lax.fori_loop(0, steps + differences, body, carry)
    return x, total / PROBES, 0.5 * (columns + columns.T)


def start(
    potential_fn, z: dict, rng_key, search: bool = True, dense: tuple[str, ...] = ()
) -> tuple[dict, dict, jnp.ndarray | None]:
    """(starting point, inverse mass diagonal per site, the inverse mass of the sites
    ``dense`` as one matrix or None): ``search`` first moves ``z`` towards the mode
    (``ADAM_STEPS``), else the curvature is probed at ``z`` itself, which is returned
    unchanged.

    ``dense`` (the dense mass block's sites, at most ``MAX_DENSE`` coordinates): their
    block of the Hessian, from central differences along each coordinate, inverted.
    Population coefficients move together along lines (an intercept and the slope of a
    predictor far from zero; an intercept and a group-level predictor's coefficient
    under ``centring.level_predictors``), which a diagonal start makes NUTS cross with
    tiny steps until the first adaptation window ends: VerbAgg's 100 first iterations
    took 587 gradients each with a diagonal start, 107 with the block's (one chain).

    Falls back to the given point where the search ends somewhere the potential is not
    finite, to the identity for every direction whose curvature is not finite and
    positive, and to the diagonal for a block that is not finite."""
    flat, unravel = ravel_pytree(z)
    block = _block_positions(z, dense)

    def f(x):
        return potential_fn(unravel(x))

    x, diag, hessian = _search_and_probe(f, flat, rng_key, ADAM_STEPS if search else 0, block)
    finite = jnp.isfinite(f(x))
    x = jnp.where(finite, x, flat)
    low, high = INVERSE_MASS_BOUNDS
    inverse = jnp.where(finite & jnp.isfinite(diag) & (diag > 0), 1.0 / diag, 1.0)
    inverse = jnp.clip(inverse, low, high)
    dense_inverse = None
    if len(block):
        dense_inverse = _bounded_inverse(hessian, inverse[block], finite)
    return unravel(x), unravel(inverse), dense_inverse


MAX_DENSE = 64  # coordinates of a dense block probed one by one (2 gradients each)


def _block_positions(z: dict, sites: tuple[str, ...]) -> np.ndarray:
    """Positions in ``ravel_pytree(z)`` of the sites' coordinates (empty when there are
    none or more than ``MAX_DENSE``): the leaves' order, as ravel_pytree flattens them."""
    sizes = {name: int(np.size(value)) for name, value in z.items()}
    order = jax.tree_util.tree_flatten_with_path(z)[0]
    positions, offset = [], 0
    for path, _ in order:
        name = path[0].key
        if name in sites:
            positions.extend(range(offset, offset + sizes[name]))
        offset += sizes[name]
    if len(positions) > MAX_DENSE:
        return np.zeros(0, np.int32)
    return np.asarray(positions, np.int32)


def _bounded_inverse(hessian, diagonal_inverse, finite):
    """The inverse of a symmetric Hessian block with each eigenvalue's inverse kept in
    ``INVERSE_MASS_BOUNDS`` (1 for a direction that is flat or concave); the diagonal
    estimate where the block is not finite."""
    low, high = INVERSE_MASS_BOUNDS
    ok = finite & jnp.all(jnp.isfinite(hessian))
    values, vectors = jnp.linalg.eigh(jnp.where(ok, hessian, jnp.eye(len(hessian))))
    inverse_values = jnp.clip(jnp.where(values > 0, 1.0 / values, 1.0), low, high)
    matrix = (vectors * inverse_values) @ vectors.T
    return jnp.where(ok, 0.5 * (matrix + matrix.T), jnp.diag(diagonal_inverse))


def mass_blocks(inverse: dict, dense: list[tuple[str, ...]], dense_inverse=None) -> dict:
    """NumPyro's ``inverse_mass_matrix`` dict from per-site diagonals: each dense block
    as a diagonal matrix (the first block as ``dense_inverse`` where ``start`` gave one),
    every other site in one diagonal block (NumPyro's layout)."""
    blocks = {}
    for names in dense:
        if dense_inverse is not None and names == dense[0]:
            blocks[names] = dense_inverse
            continue
        blocks[names] = jnp.diag(ravel_pytree(tuple(inverse[k] for k in names))[0])
    rest = tuple(sorted(set(inverse) - {k for names in dense for k in names}))
    if rest:
        blocks[rest] = ravel_pytree(tuple(inverse[k] for k in rest))[0]
    return blocks
