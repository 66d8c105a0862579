"""The collapsed Gaussian sampler: NUTS over population effects, sds, correlations and
sigma with the group effects integrated out, then one exact draw of every group's
effects per posterior draw (see ``backends.gaussian_collapsed`` for the algebra)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from multilevel.backends import gaussian_collapsed as gc
from multilevel.backends.numpyro_model import Structure
from multilevel.inference import nuts

_EFFECT_PROGRAMS: dict = {}  # (structure, shapes) -> compiled draw of group effects

METHOD = "NUTS, group effects integrated out (collapsed Gaussian)"


def _scale_trils(st: Structure, samples: dict) -> jnp.ndarray:
    """(..., Q, Q) block-diagonal Cholesky factors from constrained draws."""
    blocks = []
    for k, term in enumerate(st.terms):
        sd = samples["sd"][..., term.sd_start : term.sd_start + term.q]
        if term.correlated:
            blocks.append(sd[..., :, None] * samples[f"L_{k}"])
        else:
            blocks.append(sd[..., :, None] * jnp.eye(term.q))
    return jax.vmap(jax.scipy.linalg.block_diag)(*(b.reshape(-1, *b.shape[-2:]) for b in blocks))


def _effects_program(st: Structure):
    def draw_all(key, beta, sigma, samples, stats):
        trils = _scale_trils(st, samples)  # (S, Q, Q)
        keys = jax.random.split(key, beta.shape[0])

        def draw_one(args):
            return gc.draw_group_effects(*args, stats)

        # Batches of draws bound the working set (S x L x Q x Q) for large models.
        return jax.lax.map(draw_one, (keys, beta, sigma, trils), batch_size=256)

    return jax.jit(draw_all)


def sample(
    st: Structure,
    stats: dict,
    prior: dict,
    settings: nuts.NutsSettings,
    seed: int,
    progress: bool,
) -> nuts.NutsResult:
    """Run NUTS on the collapsed model, then draw the group effects exactly."""
    model_args = (gc.as_model_args(stats), prior)
    result = nuts.sample(
        ("collapsed", st),
        gc.make_collapsed_model(st),
        model_args,
        settings,
        seed=seed,
        dense_sites=st.dense_sites,
        progress=progress,
    )
    samples = result.samples
    chains, draws = samples["beta"].shape[:2]
    flat = {
        k: jnp.asarray(v.reshape(chains * draws, *v.shape[2:]))
        for k, v in samples.items()
        if k in ("sd",) or k.startswith("L_")
    }
    beta = jnp.asarray(samples["beta"].reshape(chains * draws, -1))
    sigma = jnp.asarray(samples["aux"][..., 0].reshape(-1))
    args = (nuts.prng_key(seed + 1), beta, sigma, flat, model_args[0])

    t0 = time.perf_counter()
    signature = (st, nuts.signature(args))
    program = _EFFECT_PROGRAMS.get(signature)
    if program is None:
        program = _EFFECT_PROGRAMS[signature] = _effects_program(st).lower(*args).compile()
    t1 = time.perf_counter()
    effects = np.asarray(program(*args)).reshape(chains, draws, *stats["Zte"].shape)
    t2 = time.perf_counter()

    samples.update(gc.split_effects(st, effects))
    result.compile_s += t1 - t0
    result.sampling_s += t2 - t1
    return result
