"""The blocked Gibbs sampler for gaussian models whose group terms have one covariate
each (crossed or nested intercepts: InstEval, Penicillin, Pastes).

Each sweep: for every block (the population coefficients with one chain of nested
terms, ``backends.gaussian_gibbs``) an exact joint Gaussian draw, accepted with the
ratio of beta's prior; then sigma, and each sd by slice sampling (Neal 2003) on the log
scale: given its effects; given its standardised effects
(``gaussian_gibbs.scale_moments``); for a parent, given its children's coefficients;
for the top term of a chain, together with the population coefficient of its
covariate, given the coefficients the rows see. Exact MCMC: every step leaves the
posterior invariant. A sweep costs a few passes over the rows and no gradient, and its
draws are far less correlated than NUTS's on the same model (InstEval, 4 x 1000 + 1000:
min bulk ESS 1,989 at about 1 ms of wall time a chain-sweep, against NUTS's 1,210 at 46
gradients of 1.2 ms per draw).

The chains run side by side in one program (vectorised), in chunks of ``CHUNK`` sweeps
so that a progress bar can move; the draws' statistics stand where NUTS's do
(``potential_energy`` is minus the log joint density; ``n_steps`` is 1, nothing
diverges; ``acceptance_rate`` is the blocks' mean acceptance).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from multilevel.backends import gaussian_gibbs as gg
from multilevel.backends.numpyro_model import Structure
from multilevel.inference.compile import ROW_PASS_MIN_WORK, jit, options, prng_key, row_pass_options
from multilevel.inference.compile import signature as program_signature
from multilevel.inference.nuts import NutsResult, NutsSettings
from multilevel.inference.placement import work_of
from multilevel.program_cache import ProgramCache
from multilevel.progress import progress_bar

# XLA's options for the sweeps (over compile.COMPILER_OPTIONS). Many rows: its fusion
# emitters (``compile.row_pass_options``): InstEval's 73,421 rows, 50 sweeps of 4 chains
# 352 -> 158 ms, compiling 4.4 -> 5.6 s. Few rows: LLVM's optimisations off, as for a
# program that runs once: Penicillin's 144 rows compile in 1.4 s instead of 3.2, and 50
# sweeps take 10 ms instead of 4.4 (2,000 sweeps: 0.4 s instead of 0.18).
SMALL_DATA_OPTIONS = {"xla_backend_optimization_level": 0}


def program_options(data: dict):
    """The sweeps' compile options, a function of the data's (padded) shapes, which key
    the program: a cached program was compiled with the options a fresh process picks."""
    work = work_of(data)
    return row_pass_options(work) if work >= ROW_PASS_MIN_WORK else options(**SMALL_DATA_OPTIONS)


CHUNK = 50  # sweeps per compiled call: the progress bar's step (a fixed shape, one program)
SLICE_WIDTH = 6.0  # a slice update's interval, in its caller's scales
SLICE_STEPS = 60  # most shrinkages per slice update (each halves the interval on average)
_PROGRAMS: ProgramCache = ProgramCache()  # (structure, layout, shapes) -> chunk program


@dataclass(frozen=True)
class SweepCost:
    """Where a Gibbs fit's time went (``fit.timing``, beside NUTS's ``ChainCost``)."""

    warmup_s: float
    draws_s: float
    sweeps: int  # per chain, as run (whole chunks)

    def timing(self) -> dict:
        """Seconds of warmup and of the kept draws (a chunk that holds both is split by
        its sweeps), and the wall seconds per sweep of all chains side by side."""
        return {
            "warmup_s": self.warmup_s,
            "draws_s": self.draws_s,
            "sweeps_per_chain": self.sweeps,
            "seconds_per_sweep": (self.warmup_s + self.draws_s) / max(self.sweeps, 1),
        }


def method_name() -> str:
    """How the printed fit names the sampler."""
    return "blocked Gibbs (exact Gaussian blocks, slice-sampled scales)"


def slice_log_scale(key, value, log_density, scale):
    """One slice-sampling update of a positive scalar on u = log(value), whose density
    is log_density(exp(u)) + u: an interval of ``SLICE_WIDTH`` x ``scale`` (``scale``:
    about 3 of the conditional's sds of u) placed at random around u, shrunk towards u
    until a uniform point of it lies in the slice (Neal 2003). No stepping out (valid for
    any width): its loop doubled the sweep's compile (Penicillin 6.0 -> 3.9 s), and with
    this width it draws nearly the ESS it did (Penicillin's sigma 2,460 vs 2,876; 899
    with an interval of 1 x ``scale``)."""

    def f(u):
        out = log_density(jnp.exp(u)) + u
        return jnp.where(jnp.isnan(out), -jnp.inf, out)

    u0 = jnp.log(value)
    width = SLICE_WIDTH * scale
    k_level, k_place, k_shrink = jax.random.split(key, 3)
    level = f(u0) + jnp.log(jax.random.uniform(k_level, dtype=u0.dtype))
    left = u0 - width * jax.random.uniform(k_place, dtype=u0.dtype)

    def shrinking(state):
        return ~state[3] & (state[4] < SLICE_STEPS)

    def shrink(state):
        lo, hi, key, _, i, _ = state
        key, sub = jax.random.split(key)
        u = lo + (hi - lo) * jax.random.uniform(sub, dtype=u0.dtype)
        inside = f(u) > level
        lo = jnp.where(inside | (u > u0), lo, u)
        hi = jnp.where(inside | (u < u0), hi, u)
        return lo, hi, key, inside, i + 1, u

    state = (left, left + width, k_shrink, False, 0, u0)
    _, _, _, found, _, u = jax.lax.while_loop(shrinking, shrink, state)
    return jnp.exp(jnp.where(found, u, u0))


def _sweep(st: Structure, chosen: gg.Layout, key, state, data, prior):
    beta, effects, sigma, sd = state
    keys = jax.random.split(key, len(chosen.chains) + 1)
    accepted = jnp.zeros((), beta.dtype)
    for i, chain in enumerate(chosen.chains):
        k_draw, k_accept = jax.random.split(keys[i])
        new_beta, new_effects = gg.draw_block(k_draw, chain, chosen, beta, effects, sigma, sd, data)
        if beta.shape[0]:  # an independence proposal with a flat prior: accept on the prior
            take = _accepted(k_accept, st, prior, new_beta, beta)
        else:
            take = jnp.array(True)
        beta = jnp.where(take, new_beta, beta)
        effects = tuple(jnp.where(take, new, old) for new, old in zip(new_effects, effects))
        accepted = accepted + take
    # sigma; 3 per sd; one per chain (its top term's sd with the population coefficient)
    scale_keys = jax.random.split(keys[-1], 1 + 3 * len(effects) + len(chosen.chains))
    key_for_levels = scale_keys[1 + 3 * len(effects) :]
    resid = gg.residuals(chosen, beta, effects, data)
    rss, n = resid @ resid, data["n"]
    sigma_prior = gg.element_log_prior(st.aux_groups, prior["aux"], 0)
    sigma = slice_log_scale(
        scale_keys[0],
        sigma,
        lambda s: -n * jnp.log(s) - rss / (2 * s**2) + sigma_prior(s),
        3.0 / jnp.sqrt(jnp.maximum(n, 1.0)),
    )
    sd = jnp.asarray(sd)
    for chain in chosen.chains:
        # one pass over the rows per chain: z'r at its finest levels, kept up to date as
        # each sd moves its term's effects (the others' sums follow up the nesting)
        finest = chain[-1]
        zr = gg.level_sums((finest,), resid, data)[finest]
        before = gg.chain_coefficients(chain, effects, data)
        for k in chain:
            sd, effects, moved = _scale_updates(
                st, chosen, k, chain, scale_keys[1 + 3 * k : 4 + 3 * k], sigma, sd, effects,
                zr, data, prior,
            )  # fmt: skip
            zr = zr - data["zz"][finest] * moved[gg.finest_levels(chain, k, data)]
        after = gg.chain_coefficients(chain, effects, data)
        resid = resid - data["z"][finest] * (after - before)[data["codes"][finest]]
        column = st.terms[chain[0]].columns[0]
        if column >= 0 and beta.shape[0]:
            beta, effects, sd = _scale_with_population(
                key_for_levels[chosen.chains.index(chain)], st, chosen, chain[0], column,
                beta, effects, sd, data, prior,
            )  # fmt: skip
    log_density = _log_joint(st, chosen, beta, effects, sigma, sd, resid, data, prior)
    return (beta, effects, sigma, sd), (log_density, accepted / len(chosen.chains))


def _scale_updates(st, chosen, k, chain, keys, sigma, sd, effects, zr_finest, data, prior):
    """Term k's sd given its effects, then given its standardised effects (the
    effects move with it), then, for a parent, given its children's coefficients (its
    children's effects move the other way). ``zr_finest``: z'r of the current residual
    at the chain's finest levels. Returns (sd, effects, the change of term k's effects
    that the rows see)."""
    j = chosen.sd_index[k]
    sd_prior = gg.element_log_prior(st.sd_groups, prior["sd"], j)
    mask = gg.level_mask(k, data)
    levels, squares = jnp.sum(mask), jnp.sum(mask * effects[k] ** 2)
    centred = slice_log_scale(
        keys[0],
        sd[j],
        lambda s: -levels * jnp.log(s) - squares / (2 * s**2) + sd_prior(s),
        3.0 / jnp.sqrt(jnp.maximum(levels, 1.0)),
    )
    # interweaving: the sd again, with the standardised effects b / sd held fixed
    a, b = gg.scale_moments(k, effects, gg.sums_at(chain, k, zr_finest, data), data)
    scale = _scale_of_standardised(keys[1], centred, a, b, sigma, sd_prior)
    moved = effects[k] * (scale / centred - 1.0)
    effects = tuple(e + moved if i == k else e for i, e in enumerate(effects))
    if k in chosen.parents:  # and with its children's coefficients held fixed
        child = chosen.parents.index(k)
        sd_child = sd[chosen.sd_index[child]]
        a, b = gg.child_moments(child, k, effects, data)
        again = _scale_of_standardised(keys[2], scale, a, b, sd_child, sd_prior)
        shift = effects[k] * (again / scale - 1.0)  # the parent's effects move
        codes = data["parent_codes"][child]  # and its children's the other way
        effects = tuple(
            e + shift if i == k else e - shift[codes] if i == child else e
            for i, e in enumerate(effects)
        )
        scale = again
    return sd.at[j].set(scale), effects, moved


def _scale_with_population(key, st, chosen, k, column, beta, effects, sd, data, prior):
    """Term k's sd and the population coefficient of its covariate together, with the
    coefficients the rows see (c_j = beta[column] + b_j) held fixed. Under a normal
    prior N(l, v) on that coefficient both are exact: the sd from its density with the
    coefficient integrated out (the m levels' spread and their mean:
    s^-(m-1) exp(-S / 2 s^2) N(mean c; l, v + s^2 / m)), then the coefficient from its
    normal conditional; under another prior, that normal of its location and scale
    stands in and the pair is accepted on the ratio of the true prior to it. A top term
    of few levels otherwise trades its sd with the intercept a small step at a time (3
    departments of precise means, SBC simulation 101 of
    ``tests/workflow/test_sbc_slow.py``: bulk ESS of the intercept 18 of 2,000)."""
    k_scale, k_mean, k_accept = jax.random.split(key, 3)
    j = chosen.sd_index[k]
    sd_prior = gg.element_log_prior(st.sd_groups, prior["sd"], j)
    loc, spread = gg.element_location_scale(st.coef_groups, prior["b"], column)
    levels, mean, squares = gg.level_moments(k, column, beta, effects, data)

    def density(s):
        var = spread**2 + s * s / levels
        spread_term = -(levels - 1) * jnp.log(s) - squares / (2 * s**2)
        return spread_term - 0.5 * jnp.log(var) - (mean - loc) ** 2 / (2 * var) + sd_prior(s)

    scale = slice_log_scale(k_scale, sd[j], density, 3.0 / jnp.sqrt(jnp.maximum(levels, 2.0)))
    precision = levels / scale**2 + 1.0 / spread**2
    centre = (mean * levels / scale**2 + loc / spread**2) / precision
    centre = centre + jax.random.normal(k_mean, (), beta.dtype) / jnp.sqrt(precision)
    new_beta = beta.at[column].set(centre)

    def stand_in(value):  # the normal the draw assumed, up to a constant
        return -((value - loc) ** 2) / (2 * spread**2)

    take = _accepted(
        k_accept, st, prior, new_beta, beta, assumed=stand_in(centre) - stand_in(beta[column])
    )
    shifted = jnp.where(gg.level_mask(k, data) > 0, effects[k] + beta[column] - centre, effects[k])
    effects = tuple(jnp.where(take, shifted, e) if i == k else e for i, e in enumerate(effects))
    return jnp.where(take, new_beta, beta), effects, jnp.where(take, sd.at[j].set(scale), sd)


def _accepted(key, st, prior, new_beta, beta, assumed=0.0):
    """Metropolis-Hastings for a proposal that keeps the posterior under another prior
    on beta: accept on the ratio of beta's prior at the new and the old values, less
    ``assumed``, the log ratio of the prior the proposal assumed (0 for a flat one)."""
    log_ratio = gg.prior_log_density(st.coef_groups, prior["b"], new_beta)
    log_ratio -= gg.prior_log_density(st.coef_groups, prior["b"], beta)
    log_ratio -= assumed
    return jnp.log(jax.random.uniform(key, dtype=beta.dtype)) < log_ratio


def _scale_of_standardised(key, current, a, b, spread, sd_prior):
    """A slice update of an sd s with its standardised effects held fixed, where the
    density it moves is a Gaussian sum of squares s^2 A_u - 2 s B_u over 2 spread^2 (the
    residuals' with spread sigma, ``gaussian_gibbs.scale_moments``, or the children's
    with spread their sd, ``child_moments``); (a, b) are the moments at s = ``current``."""
    a_u, b_u = a / current**2, b / current
    return slice_log_scale(
        key,
        current,
        lambda s: -(s * s * a_u - 2 * s * b_u) / (2 * spread**2) + sd_prior(s),
        # about 3 posterior sds of log s: s sqrt(A_u) / spread = sqrt(a) / spread
        jnp.clip(3.0 * spread / jnp.sqrt(jnp.maximum(a, 1e-300)), 0.01, 2.0),
    )


def _log_joint(st, chosen, beta, effects, sigma, sd, resid, data, prior):
    """log p(y, beta, effects, sigma, sds) up to a constant (``lp`` of the draws)."""
    out = -data["n"] * jnp.log(sigma) - resid @ resid / (2 * sigma**2)
    for k, b in enumerate(effects):
        s = sd[chosen.sd_index[k]]
        mask = gg.level_mask(k, data)
        out = out - jnp.sum(mask) * jnp.log(s) - jnp.sum(mask * b**2) / (2 * s**2)
    out = out + gg.prior_log_density(st.coef_groups, prior["b"], beta)
    out = out + gg.prior_log_density(st.sd_groups, prior["sd"], sd)
    return out + gg.prior_log_density(st.aux_groups, prior["aux"], jnp.reshape(sigma, (1,)))


def _chunk_program(st: Structure, chosen: gg.Layout):
    """(keys (chains, CHUNK, 2), states, data, prior) -> (states, per-sweep draws)."""

    def one_chain(keys, state, data, prior):
        def step(state, key):
            state, (log_density, accepted) = _sweep(st, chosen, key, state, data, prior)
            beta, effects, sigma, sd = state
            return state, (beta, effects, sigma, sd, log_density, accepted)

        return jax.lax.scan(step, state, keys)

    return jit(jax.vmap(one_chain, in_axes=(0, 0, None, None)))


def _starts(key, chains: int, data: dict, st: Structure):
    """Dispersed starting points: beta at least squares, effects zero, sigma within a
    factor e^0.5 of the residuals' sd and each sd within e^-2..e of it (the first
    sweep draws beta and the effects from their conditionals)."""
    X, y, n = np.asarray(data["X"]), np.asarray(data["y"]), max(data["n"], 1.0)
    beta = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
    spread = math.sqrt(max(float(np.sum((y - X @ beta) ** 2)) / n, 1e-12))
    rng = np.random.default_rng(np.asarray(key))
    sigma = spread * np.exp(rng.uniform(-0.5, 0.5, chains))
    sd = spread * np.exp(rng.uniform(-2.0, 1.0, (chains, st.n_sd)))
    effects = tuple(np.zeros((chains, z.shape[0])) for z in data["zz"])
    return (np.tile(beta, (chains, 1)), effects, sigma, sd)


def sample(
    st: Structure,
    chosen: gg.Layout,
    data: dict,
    prior: dict,
    settings: NutsSettings,
    seed: int,
    progress: bool,
) -> NutsResult:
    """Run ``settings.chains`` chains of ``warmup + draws`` sweeps; keep the last
    ``draws`` of each. In float64: the residual sum of squares of many rows is of the
    order of n sigma^2, whose float32 resolution is coarser than sigma's posterior."""
    with jax.enable_x64(True):
        return _sample(st, chosen, data, prior, settings, seed, progress)


def _sample(st, chosen, data, prior, settings, seed, progress) -> NutsResult:
    data = jax.tree.map(jnp.asarray, data)  # float64 and int32 as given (x64 is on)
    prior = jax.tree.map(lambda x: np.asarray(x, dtype=np.float64), prior)
    chains, total = settings.chains, settings.warmup + settings.draws
    chunks = -(-total // CHUNK)
    start_key, run_key = jax.random.split(jnp.asarray(prng_key(seed)))
    state = _starts(start_key, chains, data, st)
    keys = jax.random.split(run_key, chains * chunks * CHUNK).reshape(chains, chunks, CHUNK, 2)
    t0 = time.perf_counter()
    args = (keys[:, 0], state, data, prior)
    signature = (st, chosen, program_signature(args))
    if signature not in _PROGRAMS:
        with program_options(data):
            _PROGRAMS[signature] = _chunk_program(st, chosen).lower(*args).compile()
    program = _PROGRAMS[signature]
    compile_s = time.perf_counter() - t0
    kept, warmup_s, draws_s = [], 0.0, 0.0
    with progress_bar(chunks * CHUNK * chains, "Gibbs", unit="it", show=progress) as bar:
        for c in range(chunks):
            began = time.perf_counter()
            state, draws = program(keys[:, c], state, data, prior)
            if c * CHUNK + CHUNK > settings.warmup:
                kept.append(jax.tree.map(np.asarray, draws))
            else:
                jax.block_until_ready(state)  # the bar moves with the work done
            seconds = time.perf_counter() - began
            in_warmup = min(max(settings.warmup - c * CHUNK, 0), CHUNK) / CHUNK
            warmup_s, draws_s = warmup_s + seconds * in_warmup, draws_s + seconds * (1 - in_warmup)
            bar.update(CHUNK * chains)
    joined = jax.tree.map(lambda *parts: np.concatenate(parts, axis=1), *kept)
    first = settings.warmup - (chunks * CHUNK - len(kept) * CHUNK)
    beta, effects, sigma, sd, log_density, accepted = jax.tree.map(
        lambda a: a[:, first : first + settings.draws], joined
    )
    samples = {
        "beta": beta,
        "sd": sd,
        "aux": sigma[..., None],
        **{f"effects_{k}": e[..., None] for k, e in enumerate(effects)},
    }
    stats = {
        "diverging": np.zeros(log_density.shape, dtype=bool),
        "n_steps": np.ones(log_density.shape, dtype=np.int64),
        "potential_energy": -log_density,
        "acceptance_rate": accepted,
    }
    sampling_s = time.perf_counter() - t0 - compile_s
    cost = SweepCost(warmup_s, draws_s, chunks * CHUNK)
    return NutsResult(samples, stats, compile_s, sampling_s, settings, cost=cost)
