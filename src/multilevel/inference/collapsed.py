"""The collapsed Gaussian sampler: NUTS over population effects, sds, correlations,
sigma (and the effects of any other grouping factor) with one factor's group effects
integrated out, then one exact draw of those effects per posterior draw (see
``backends.gaussian_collapsed`` for the algebra)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from multilevel.backends import gaussian_collapsed as gc
from multilevel.backends.numpyro_model import Structure
from multilevel.inference import nuts
from multilevel.inference.compile import compile_async, jit, prng_key
from multilevel.inference.compile import signature as program_signature
from multilevel.program_cache import ProgramCache

_EFFECT_PROGRAMS: ProgramCache = (
    ProgramCache()
)  # (structure, plan, shapes) -> compiled draw of group effects


def method_name(chosen: gc.Plan) -> str:
    """How the printed fit names the sampler."""
    if chosen.by_statistics:
        return "NUTS, group effects integrated out (collapsed Gaussian)"
    return "NUTS, one factor's group effects integrated out (partially collapsed Gaussian)"


def _scale_trils(st: Structure, chosen: gc.Plan, samples: dict) -> jnp.ndarray:
    """(S, Q, Q) block-diagonal Cholesky factors of the integrated terms, per draw."""
    blocks = []
    for k in chosen.collapsed:
        term = st.terms[k]
        sd = samples["sd"][..., term.sd_start : term.sd_start + term.q]
        if term.correlated:
            blocks.append(sd[..., :, None] * samples[f"L_{k}"])
        else:
            blocks.append(sd[..., :, None] * jnp.eye(term.q))
    return jax.vmap(jax.scipy.linalg.block_diag)(*(b.reshape(-1, *b.shape[-2:]) for b in blocks))


def _effects_program(st: Structure, chosen: gc.Plan):
    def draw_all(key, beta, sigma, samples, stats):
        trils = _scale_trils(st, chosen, samples)  # (S, Q, Q)
        other = tuple(samples[f"effects_{k}"] for k in chosen.sampled)  # (S, L_k, q_k) each
        keys = jax.random.split(key, beta.shape[0])

        def draw_one(args):
            key, beta, sigma, tril, other = args
            return gc.draw_group_effects(key, beta, sigma, tril, stats, other)

        # Batches of draws bound the working set (S x L x Q x Q, or S x rows) of big models.
        # A batch size that divides S: lax.map compiles the leftover draws as a second copy
        # of the loop body (S = 4000 with 256: 15 x 256 + 160), 30% more to compile.
        batch = max(d for d in range(1, min(256, beta.shape[0]) + 1) if beta.shape[0] % d == 0)
        return jax.lax.map(draw_one, (keys, beta, sigma, trils, other), batch_size=batch)

    return jit(draw_all)


def _needed(chosen: gc.Plan) -> list[str]:
    """The sites (besides beta and sigma) that the effect draws read."""
    return [
        "sd",
        *(f"L_{k}" for k in chosen.collapsed),
        *(f"effects_{k}" for k in chosen.sampled),
    ]


def sample(
    st: Structure,
    chosen: gc.Plan,
    stats: dict,
    prior: dict,
    settings: nuts.NutsSettings,
    seed: int,
    progress: bool,
) -> nuts.NutsResult:
    """Run NUTS on the collapsed model, then draw the integrated effects exactly.

    Everything runs in float64: the marginal log-likelihood of n rows is of order n, and
    in float32 its resolution (0.125 at a million rows) is coarser than the energy
    differences NUTS accepts or rejects on (step sizes collapsed to 1e-6 at 1M rows).
    The cost per gradient is per group, so double precision costs little."""
    with jax.enable_x64(True):
        return _sample(st, chosen, stats, prior, settings, seed, progress)


def _sample(st, chosen, stats, prior, settings, seed, progress) -> nuts.NutsResult:
    # float64 by NumPy: jnp.float64(x) would compile a conversion per shape on a cold start
    prior = jax.tree.map(lambda x: np.asarray(x, dtype=np.float64), prior)
    model_args = (gc.as_model_args(stats, jnp.float64), prior)
    draws = settings.chains * settings.draws
    key = prng_key(seed + 1)

    def effects_args(shapes: dict) -> tuple:
        """The effect draws' arguments, as shapes (site shapes are per draw)."""

        def flat(name, shape=None):
            site = shapes[name]
            return jax.ShapeDtypeStruct(
                (draws, *(site.shape if shape is None else shape)), site.dtype
            )

        needed = {k: flat(k) for k in _needed(chosen) if k in shapes}
        return (key, flat("beta"), flat("aux", ()), needed, model_args[0])

    def start_effects(shapes: dict):
        """Compile the effect draws while the chains sample (``nuts.sample``'s companion)."""
        args = effects_args(shapes)
        signature = (st, chosen, program_signature(args))
        if signature not in _EFFECT_PROGRAMS:
            lowered = _effects_program(st, chosen).trace(*args).lower()
            _EFFECT_PROGRAMS[signature] = compile_async(lowered)
        return signature

    result = nuts.sample(
        ("collapsed", st, chosen),
        gc.make_collapsed_model(st, chosen),
        model_args,
        settings,
        seed=seed,
        dense_blocks=(st.dense_sites,),
        progress=progress,
        # Large data makes the posterior narrow (what NumPyro's mass-matrix regulariser
        # cannot represent). Only the dense block of population effects could be
        # singular without it; with p <= 10 it is well inside the first 25-draw window.
        regularize_mass=st.p > 10,
        # Sampled group effects beside integrated ones (crossed or nested factors): many
        # dimensions whose posterior scales span orders of magnitude (InstEval: log sigma
        # 0.003, a lecturer 0.15); from the identity the first warmup window ran at the
        # maximum tree depth (InstEval, 250 + 250 draws: 310 s -> 140 s with this start).
        start_mass="mode" if chosen.sampled else "identity",
        companion=start_effects,
    )
    samples = result.samples
    chains, draws = samples["beta"].shape[:2]
    flat = {
        k: samples[k].reshape(chains * draws, *samples[k].shape[2:])
        for k in _needed(chosen)
        if k in samples
    }
    beta = samples["beta"].reshape(chains * draws, -1)
    sigma = samples["aux"][..., 0].reshape(-1)
    args = (key, beta, sigma, flat, model_args[0])

    t0 = time.perf_counter()
    signature = result.companion
    try:
        program = _EFFECT_PROGRAMS[signature].result()
    except BaseException:
        _EFFECT_PROGRAMS.pop(signature, None)  # a failed compile is not kept
        raise
    t1 = time.perf_counter()
    effects = np.asarray(program(*args))  # (S, L padded, Q)
    levels = st.terms[chosen.collapsed[0]].n_levels
    effects = effects[:, :levels].reshape(chains, draws, levels, -1)
    t2 = time.perf_counter()

    samples.update(gc.split_effects(st, chosen, effects))
    result.compile_s += t1 - t0
    result.sampling_s += t2 - t1
    return result
