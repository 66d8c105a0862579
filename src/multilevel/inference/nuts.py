"""NUTS with all chains vectorised in one process, compiled once per model structure.

NumPyro's ``hmc`` kernel does the work; this module owns the loop around it, so that
  * one log-density and one sampler loop are compiled for all chains (``vmap``);
  * the loop runs in chunks of a fixed length, so a progress bar can update between
    chunks without compiling anything new;
  * compilation is timed apart from sampling, and compiled programs are cached by model
    structure and array shapes: a refit on data of the same shapes never retraces.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import euclidean_kinetic_energy
from numpyro.infer.util import initialize_model

# How often each cached program has been traced; tests use it to prove "no recompile".
TRACE_COUNTS: Counter = Counter()


@dataclass(frozen=True)
class NutsSettings:
    """Sampler settings that change the compiled program (part of its cache key)."""

    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    max_tree_depth: int = 10
    chunk: int = 100


@dataclass
class NutsResult:
    """Draws in the constrained space plus per-draw sampler statistics."""

    samples: dict[str, np.ndarray]  # name -> (chains, draws, ...)
    stats: dict[str, np.ndarray]  # name -> (chains, draws)
    compile_s: float
    sampling_s: float
    settings: NutsSettings


@dataclass
class _Program:
    """The compiled pieces of one (structure, settings) pair."""

    init: Callable
    chunk: Callable
    postprocess: Callable
    site_shapes: dict[str, tuple[int, ...]]
    executables: dict[Any, Any] = field(default_factory=dict)


_PROGRAMS: dict[Any, _Program] = {}


def _chunk_length(settings: NutsSettings) -> int:
    """Largest divisor of gcd(warmup, draws) up to ``settings.chunk``: one compiled loop
    serves both phases (NumPyro's state switches from warmup to sampling by itself)."""
    g = math.gcd(settings.warmup, settings.draws) or max(settings.warmup, settings.draws)
    return max(d for d in range(1, min(g, settings.chunk) + 1) if g % d == 0)


def _build_program(key, model, model_args, settings: NutsSettings, dense_sites) -> _Program:
    info = initialize_model(jax.random.PRNGKey(0), model, model_args=model_args, dynamic_args=True)
    potential_gen, postprocess_gen = info.potential_fn, info.postprocess_fn
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=potential_gen, kinetic_fn=euclidean_kinetic_energy, algo="NUTS"
    )
    dense = [tuple(s for s in dense_sites if s in info.param_info.z)]
    dense = [d for d in dense if len(d) > 0]
    length = _chunk_length(settings)

    def init_one(z, rng_key, model_args):
        return init_kernel(
            z,
            num_warmup=settings.warmup,
            dense_mass=dense,
            target_accept_prob=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
            model_args=model_args,
            rng_key=rng_key,
        )

    def init(z, rng_keys, model_args):
        return jax.vmap(init_one, in_axes=(0, 0, None))(z, rng_keys, model_args)

    def chunk(state, model_args):
        TRACE_COUNTS[key] += 1
        step = jax.vmap(sample_kernel, in_axes=(0, None, None))

        def body(state, _):
            state = step(state, model_args, None)
            stats = (
                state.diverging,
                state.num_steps,
                state.accept_prob,
                state.energy,
                state.potential_energy,
                state.adapt_state.step_size,
            )
            return state, (state.z, stats)

        return lax.scan(body, state, None, length=length)

    def postprocess(z, model_args):
        fn = postprocess_gen(*model_args)
        return jax.vmap(jax.vmap(fn))(z)

    shapes = {k: tuple(v.shape) for k, v in info.param_info.z.items()}
    return _Program(jax.jit(init), chunk, jax.jit(postprocess), shapes)


def _signature(tree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return (str(treedef), tuple((tuple(x.shape), str(x.dtype)) for x in leaves))


def sample(
    structure_key,
    model,
    model_args: tuple,
    settings: NutsSettings,
    seed: int,
    dense_sites: tuple[str, ...] = (),
    progress: bool = True,
) -> NutsResult:
    """Run vectorised NUTS; compile only what this structure and shape have not seen."""
    t0 = time.perf_counter()
    key = (structure_key, settings)
    program = _PROGRAMS.get(key)
    if program is None:
        program = _PROGRAMS[key] = _build_program(key, model, model_args, settings, dense_sites)
    rng = jax.random.PRNGKey(seed)
    init_key, chain_key = jax.random.split(rng)
    # NumPyro's init_to_uniform: every site uniform in (-2, 2) on the unconstrained scale.
    site_keys = jax.random.split(init_key, len(program.site_shapes))
    z0 = {
        name: jax.random.uniform(k, (settings.chains, *shape), minval=-2.0, maxval=2.0)
        for k, (name, shape) in zip(site_keys, sorted(program.site_shapes.items()))
    }
    chain_keys = jax.random.split(chain_key, settings.chains)
    # Compile time: building the program, initialising the chains (jitted), compiling the loop.
    state = program.init(z0, chain_keys, model_args)
    signature = _signature((state, model_args))
    executable = program.executables.get(signature)
    if executable is None:
        executable = jax.jit(program.chunk).lower(state, model_args).compile()
        program.executables[signature] = executable
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    zs, stats = _run_chunks(executable, state, model_args, settings, progress)
    samples = program.postprocess(zs, model_args)
    samples = {k: np.asarray(v) for k, v in samples.items()}
    sampling_s = time.perf_counter() - t1
    names = ("diverging", "n_steps", "acceptance_rate", "energy", "potential_energy", "step_size")
    return NutsResult(samples, dict(zip(names, stats)), compile_s, sampling_s, settings)


def _run_chunks(executable, state, model_args, settings: NutsSettings, progress: bool):
    """Run warmup then sampling chunk by chunk; keep draws after warmup only."""
    length = _chunk_length(settings)
    total = settings.warmup + settings.draws
    bar = _progress_bar(total, progress)
    kept_z, kept_stats, divergences = [], [], 0
    for start in range(0, total, length):
        state, (z, stats) = executable(state, model_args)
        if start >= settings.warmup:
            kept_z.append(z)
            kept_stats.append(stats)
            divergences += int(np.sum(stats[0]))
        if bar is not None:
            phase = "warmup" if start + length <= settings.warmup else "sampling"
            bar.set_postfix_str(f"{phase}, {divergences} divergences")
            bar.update(length)
    if bar is not None:
        bar.close()
    # scan stacks (length, chains, ...); we want (chains, draws, ...)
    zs = jax.tree.map(lambda *xs: jnp.swapaxes(jnp.concatenate(xs), 0, 1), *kept_z)
    stats = tuple(
        np.swapaxes(np.concatenate([np.asarray(s[i]) for s in kept_stats]), 0, 1)
        for i in range(len(kept_stats[0]))
    )
    return zs, stats


def _progress_bar(total: int, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="NUTS", unit="it", file=sys.stderr, leave=False)
