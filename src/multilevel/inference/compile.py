"""JAX utilities every compiled program here shares: ``jit`` with the package's XLA
options, compilation on a background thread (``compile_async``), seeds as PRNG keys
built without compiling anything (``prng_key``) and the shape signature of a pytree
(``signature``), the key of cached programs."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

# XLA CPU compiler options for every program compiled here. XLA's newer "fusion emitters"
# (MLIR-based code generation of fused loops) take about twice as long to compile our
# samplers as the classic LLVM IR emitters and make them no faster. Measured on 2 CPU
# cores (benchmarks/compile_time.py, radon's collapsed sampler, seconds of XLA compile,
# default -> this): sampler loop 4.1 -> 1.5, chain initialisation 2.1 -> 0.7, with
# sampling 1.7-2.0 s either way. Tried and not taken: xla_backend_optimization_level=0
# (compiles ~40% faster, samples 2-3x slower), xla_llvm_disable_expensive_passes and
# xla_cpu_parallel_codegen_split_count=1 (no measurable change on top of this).
# The options are part of JAX's persistent-cache key. An XLA that no longer knows an
# option fails every compile with "No such compile option": drop it here on upgrades.
COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}

# ... and on again for a sampler whose every gradient passes over many rows, where they
# make the passes much faster (``row_pass_options``). The joint sampler, bernoulli
# ``(1 + x | g)``, one core, value and gradient: 20,000 rows 429 -> 313 us, 200,000 rows
# 3.8 -> 2.7 ms. A whole fit (4 x (1,000 + 1,000), cold, 2 cores): 20,000 rows 25.1 ->
# 18.5 s (compiling 4.1 -> 5.9 s, sampling 19.7 -> 11.4 s); VerbAgg (7,584 rows, two
# crossed terms) 24.0 -> 21.4 s; 5,000 rows 12.0 -> 10.8 s; 2,000 rows 9.7 -> 10.6 s
# (the longer compile not yet repaid). The collapsed sampler reads per-group sums, not
# rows: 8.7 -> 11.4 s with them (45,000 rows), so it keeps them off.
FUSION_EMITTERS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": True}
# From this many numbers read per gradient (the data's size: about 6 per row of a
# bernoulli (1 + x | g), 11 per row of VerbAgg); 2,000 rows of that bernoulli read
# 12,000, 5,000 rows 30,000.
ROW_PASS_MIN_WORK = 24_000


# Options a sampler sets for its own programs (``options``), over COMPILER_OPTIONS.
_OVERRIDES: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "compiler_options", default=()
)


def compiler_options() -> dict[str, Any]:
    """``COMPILER_OPTIONS`` (and any ``options`` in force) on the CPU backend, none
    elsewhere."""
    if jax.default_backend() != "cpu":
        return {}
    return {**COMPILER_OPTIONS, **dict(_OVERRIDES.get())}


@contextlib.contextmanager
def options(**overrides: Any):
    """Programs jitted inside (``jit``) compile with ``overrides`` over
    ``COMPILER_OPTIONS`` on the CPU: for a sampler whose programs run faster with
    another option than the one chosen for all (the Laplace sampler's fused loops)."""
    token = _OVERRIDES.set(tuple({**dict(_OVERRIDES.get()), **overrides}.items()))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


@contextlib.contextmanager
def _only(overrides: dict[str, Any]):
    """Programs jitted inside compile with ``overrides`` over ``COMPILER_OPTIONS``,
    whatever ``options`` are in force outside."""
    token = _OVERRIDES.set(tuple(overrides.items()))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def base_options():
    """Programs jitted inside compile with ``COMPILER_OPTIONS`` alone, whatever
    ``options`` are in force outside."""
    return _only({})


# For a program that runs once, as the joint sampler's chain initialisation: LLVM's
# optimisations off. Its compile is then shorter by more than its one run is longer.
# bernoulli (1 + x | g), 20,000 rows, cold fit: initialisation compiled in 1.7 s instead
# of 3.3, and the sampler loop compiling beside it on the other core in 3.3 s instead
# of 4.5; time to the first transition 7.4-7.9 -> 6.4-6.7 s. Not for the collapsed
# Gaussian sampler: Penicillin's crossed model (tests/models/test_nested_crossed.py)
# then drew 8 divergent transitions over seeds 1-6 where it drew none (unexplained: the
# same program at -O0 starts its chains elsewhere in the last bits).
RUN_ONCE_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}


def run_once_options():
    """Programs jitted inside compile with ``COMPILER_OPTIONS`` and
    ``RUN_ONCE_OPTIONS``, whatever ``options`` are in force outside."""
    return _only(RUN_ONCE_OPTIONS)


def row_pass_options(work: int, minimum: int = ROW_PASS_MIN_WORK):
    """``options`` for a sampler whose every gradient passes over rows reading ``work``
    numbers (the joint sampler: ``placement.work_of`` its padded data): ``FUSION_EMITTERS``
    from ``minimum`` on (a sampler measured on its own rows passes its own), else none. A
    function of the data's shapes, which key the compiled programs, so a cached program
    was always compiled with the options a fresh process would choose (the same draws
    from the same seed)."""
    return options(**FUSION_EMITTERS) if work >= minimum else contextlib.nullcontext()


def jit(fun: Callable, **kwargs) -> Callable:
    """``jax.jit`` with this package's compiler options (``COMPILER_OPTIONS``)."""
    return jax.jit(fun, compiler_options=compiler_options(), **kwargs)


_COMPILER_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    global _COMPILER_POOL
    _COMPILER_POOL = None  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def compile_async(lowered) -> Future:
    """XLA-compile a ``jax.stages.Lowered`` on a background thread.

    XLA releases the GIL while it compiles, so the caller can trace the next program (pure
    Python) or run a compiled one meanwhile: on two cores a cold fit overlaps compiling
    the chain initialisation with tracing and compiling the sampler loop, and compiling
    the collapsed sampler's effect draws with sampling. Two workers: more would only
    compete for the cores with the sampler. ``jax.enable_x64`` is thread-local, so the
    caller's setting is carried over."""
    global _COMPILER_POOL
    if _COMPILER_POOL is None:
        _COMPILER_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="multilevel-xla")
    x64 = bool(jax.config.jax_enable_x64)

    def compile_():
        with jax.enable_x64(x64):
            return lowered.compile()

    return _COMPILER_POOL.submit(compile_)


def prng_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` (threefry: the seed's high and low 32 bits), built in
    NumPy so that a cold start compiles nothing for it."""
    seed = int(seed)
    return np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], dtype=np.uint32)


def signature(tree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return (str(treedef), tuple((tuple(x.shape), str(x.dtype)) for x in leaves))
