"""The Laplace sampler: NUTS over the hyper-parameters with the group effects integrated
out approximately (``backends.laplace``), then one draw of the effects per posterior
draw from the approximation, with PSIS k-hat of their importance weights against the
joint posterior as the fit's accuracy report."""

from __future__ import annotations

import time

import jax
import numpy as np

from multilevel import diagnostics as diag
from multilevel._arviz import az
from multilevel.backends import laplace
from multilevel.backends.numpyro_model import Structure
from multilevel.inference import nuts
from multilevel.inference.compile import compile_async, jit, prng_key, row_pass_options
from multilevel.inference.compile import signature as program_signature
from multilevel.program_cache import ProgramCache

_DRAW_PROGRAMS: ProgramCache = ProgramCache()  # (structure, shapes) -> compiled effect draws

# XLA's fusion emitters, which the package turns off to compile faster
# (``compile.COMPILER_OPTIONS``), on for these programs (``compile.row_pass_options``)
# when the rows are many: without
# them a gradient of the Laplace model (Newton's loop, elementwise passes over the rows)
# took 1.11 ms instead of 0.64 (20,000 rows, 200 groups, float32, 2 busy cores), and
# sampling 4 x 2000 draws 66 s instead of 47; with them a cold compile took 5 s longer
# (23 s instead of 18 for 960 rows, where sampling took 2 s either way).
FUSION_MIN_CELLS = 10_000


def method_name(k_hat: float) -> str:
    """How the printed fit names the sampler, with the approximation's accuracy."""
    return (
        f"Laplace (group effects integrated out approximately; PSIS k-hat {k_hat:.2f}: "
        f"{diag.laplace_verdict(k_hat)})"
    )


def _needed(st: Structure) -> list[str]:
    """The sites the effect draws read."""
    return ["beta", "sd", *(["L_0"] if st.terms[0].correlated else [])]


def _draws_program(st: Structure):
    def draw_all(key, samples, rows):
        keys = jax.random.split(key, samples["beta"].shape[0])

        def draw_one(args):
            key, draw = args
            scale_tril = laplace.scale_tril_of(st, draw["sd"], draw.get("L_0"))
            return laplace.draw_effects(key, st, draw["beta"], scale_tril, rows)

        # batches of draws bound the working set (draws x rows); a divisor of the
        # number of draws, so that lax.map compiles one copy of the loop body
        size = samples["beta"].shape[0]
        batch = max(d for d in range(1, min(64, size) + 1) if size % d == 0)
        return jax.lax.map(draw_one, (keys, samples), batch_size=batch)

    return jit(draw_all)


def sample(
    st: Structure,
    data: dict,
    prior: dict,
    settings: nuts.NutsSettings,
    seed: int,
    progress: bool,
    start: dict | None = None,
    regularize_mass: bool = True,
    float64: bool = False,
) -> tuple[nuts.NutsResult, dict]:
    """Run NUTS on the Laplace-approximated model, then draw the group effects.

    ``data``: the joint sampler's arrays (``numpyro_model.data_arrays``, pooled or
    padded, one group term); ``start``: chains' initial points by site (the joint
    sampler's, ``backends.start``; its group effects are not read). Returns the result,
    whose samples carry ``effects_0`` as the joint sampler's do, and the accuracy report:
    ``k_hat``, Newton's largest number of ``newton_iterations`` and largest |gradient|
    left at a mode (``max_gradient``) over the draws.

    It runs in float32 as the joint sampler does, or in float64 where the joint sampler
    would (``float64``: ``backends.start``, for huge counts); in float32 a pass over the
    rows costs a third of one in float64 (20,000 rows on this machine)."""
    with jax.enable_x64(float64):
        return _sample(st, data, prior, settings, seed, progress, start, regularize_mass)


def _sample(st, data, prior, settings, seed, progress, start, regularize_mass):
    dtype = jax.dtypes.canonicalize_dtype(np.float64)  # float32 unless x64 is on
    # converted by NumPy: jnp.asarray(x, dtype) would compile a conversion per shape
    prior = jax.tree.map(lambda x: np.asarray(x, dtype=dtype), prior)
    rows = jax.device_put(laplace.prepare(data, st.terms[0].n_levels, dtype))
    draws = settings.chains * settings.draws
    key = prng_key(seed + 1)

    def draws_args(shapes: dict) -> tuple:
        """The effect draws' arguments, as shapes (site shapes are per draw)."""
        needed = {
            name: jax.ShapeDtypeStruct((draws, *shapes[name].shape), shapes[name].dtype)
            for name in _needed(st)
        }
        return key, needed, rows

    def start_draws(shapes: dict):
        """Compile the effect draws while the chains sample (``nuts.sample``'s companion)."""
        signature = (st, program_signature(draws_args(shapes)))
        if signature not in _DRAW_PROGRAMS:
            lowered = _draws_program(st).trace(*draws_args(shapes)).lower()
            _DRAW_PROGRAMS[signature] = compile_async(lowered)
        return signature

    with row_pass_options(rows["y"].size, FUSION_MIN_CELLS):
        result = nuts.sample(
            ("laplace", st),
            laplace.make_model(st),
            (rows, prior),
            settings,
            seed=seed,
            dense_blocks=(st.dense_sites,),
            progress=progress,
            start=start,
            regularize_mass=regularize_mass,
            companion=start_draws,
        )
    samples = result.samples
    chains, per_chain = samples["beta"].shape[:2]
    flat = {name: samples[name].reshape(draws, *samples[name].shape[2:]) for name in _needed(st)}

    t0 = time.perf_counter()
    signature = result.companion
    try:
        program = _DRAW_PROGRAMS[signature].result()
    except BaseException:
        _DRAW_PROGRAMS.pop(signature, None)  # a failed compile is not kept
        raise
    t1 = time.perf_counter()
    out = jax.tree.map(np.asarray, program(key, flat, rows))
    t2 = time.perf_counter()
    effects = out["effects"]
    samples["effects_0"] = effects.reshape(chains, per_chain, *effects.shape[1:])
    result.compile_s += t1 - t0
    result.sampling_s += t2 - t1
    return result, accuracy_report(out)


def accuracy_report(out: dict) -> dict:
    """The approximation's accuracy from the effect draws' outputs (``draw_effects``,
    one per draw): PSIS k-hat of the log importance weights (Vehtari et al. 2024:
    below 0.5 the approximation is close to the joint posterior, above 0.7 importance
    sampling cannot correct it), Newton's largest number of iterations, whether every
    draw's Newton iterations converged, and the largest |gradient| left at a mode."""
    log_weights = np.asarray(out["log_weight"], dtype=np.float64).reshape(-1)
    _, k_hat = az.psislw(log_weights)
    iterations = int(np.max(out["iterations"]))
    return {
        "k_hat": float(k_hat),
        "newton_iterations": iterations,
        "newton_converged": iterations < laplace.MAX_ITERATIONS,
        "max_gradient": float(np.max(out["gradient"])),
    }
