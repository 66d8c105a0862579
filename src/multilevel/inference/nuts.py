"""NUTS with all chains in one process, compiled once per model structure.

NumPyro's ``hmc`` kernel does the work; this module owns the loop around it, so that
  * one sampler loop is compiled for one chain and runs every chain, side by side on
    threads, one per core (``_run_chunks``), or for large data in worker processes, one
    per core (``inference.chain_processes``, which runs this module's ``sample`` for a
    share of the chains in each);
  * with ``sample(sharding=...)`` that loop's rows are split across devices, XLA adding
    the devices' partial sums (``inference.sharding``);
  * the loop runs in chunks of a few tenths of a second (one compiled program runs any
    number of transitions up to a fixed length), so a progress bar can update and
    Ctrl-C can stop the chains between chunks without compiling anything new;
  * compilation is timed apart from sampling, and compiled programs are cached by model
    structure and array shapes: a refit on data of the same shapes (or of another size in
    the same size bucket: ``backends.padding``) never retraces; the ``MAX_SAMPLERS``
    structures and ``MAX_SHAPES`` shapes used most recently are kept, which bounds the
    memory of a process that fits data of many sizes;
  * a cold start (new process, empty compilation cache) is mostly compiling, so there are
    few programs and small ones (no ``vmap`` over chains; draws leave the loop already
    constrained), XLA's CPU compiler runs with cheaper options (``COMPILER_OPTIONS``),
    and programs compile on background threads while Python traces the next one and
    while the chains sample (``compile_async``). ``benchmarks/compile_time.py`` measures
    where a cold start's time goes; docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax import lax
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import euclidean_kinetic_energy
from numpyro.infer.util import get_potential_fn

from multilevel import interrupt
from multilevel.inference import precondition
from multilevel.inference import sharding as row_sharding
from multilevel.inference.compile import (
    base_options,
    compile_async,
    compiler_options,
    jit,
    prng_key,
    run_once_options,
    signature,
)
from multilevel.inference.compile_cache import enable_compilation_cache  # was defined here
from multilevel.program_cache import ProgramCache, release_evicted
from multilevel.progress import progress_bar

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


@dataclass(frozen=True)
class ChainCost:
    """Where the chains' time went, per chain and phase (column 0 warmup, 1 sampling):
    gradients of the log density (leapfrog steps, NumPyro's ``num_steps``; the few of
    the step-size searches at the start of warmup windows are not counted) and the wall
    seconds of the chain's thread."""

    gradients: np.ndarray  # (chains, 2) int
    seconds: np.ndarray  # (chains, 2)
    workers: int  # chains running at once, one thread per core (``_chain_workers``)
    processes: bool = False  # each worker a process of its own (``chain_processes``)

    def timing(self) -> dict:
        """The keys ``fit.info["timing"]`` gains. A phase's seconds are its chain-seconds
        over the chains running at once: the run's wall time in that phase when the
        chains are alike. ``seconds_per_gradient`` is every chain-second of the loop
        (warmup and sampling) over every gradient: one core's cost of a gradient with
        NUTS's bookkeeping (tree building, adaptation, dispatch), so that
        gradients x seconds_per_gradient / workers is the loop's wall time."""
        return {
            "warmup_s": float(self.seconds[:, 0].sum() / self.workers),
            "draws_s": float(self.seconds[:, 1].sum() / self.workers),
            "gradients_warmup": [int(g) for g in self.gradients[:, 0]],  # per chain
            "gradients_sampling": [int(g) for g in self.gradients[:, 1]],
            "chain_workers": int(self.workers),
            "chain_processes": int(self.workers) if self.processes else 0,
            "seconds_per_gradient": float(self.seconds.sum() / max(1, self.gradients.sum())),
        }


@dataclass
class NutsResult:
    """Draws in the constrained space plus per-draw sampler statistics."""

    samples: dict[str, np.ndarray]  # name -> (chains, draws, ...)
    stats: dict[str, np.ndarray]  # name -> (chains, draws)
    compile_s: float
    sampling_s: float
    settings: NutsSettings
    companion: Any = None  # what ``sample(..., companion=)`` returned
    cost: ChainCost | None = None  # or any cost with timing() (inference.gibbs.SweepCost)

    def timing(self) -> dict:
        """``fit.info["timing"]``: ``sampling_s`` is warmup and sampling together (plus
        turning draws into values), ``warmup_s`` and ``draws_s`` its two phases."""
        out = {
            "compile_s": self.compile_s,
            "sampling_s": self.sampling_s,
            "total_s": self.compile_s + self.sampling_s,
        }
        return out if self.cost is None else {**out, **self.cost.timing()}


# Compiled samplers kept: those of the MAX_SAMPLERS model structures (with settings)
# used most recently, each for the MAX_SHAPES input shapes (size buckets of rows and
# groups) used most recently. One shape's programs take 30-60 MB of memory (a Poisson
# model with a correlated intercept and slope). Sizes are padded to buckets
# (``backends.padding``), and a group count in a new bucket is a new structure, so a
# process fitting data of 40 sizes met 25 structures; with 16 kept it held 1.2 GB more
# after the 12th than after the first (``benchmarks/soak.py``). A refit of an evicted
# structure or shape traces again and reads its programs from the persistent
# compilation cache (about 1 s), so a small bound costs little.
MAX_SAMPLERS = 4
MAX_SHAPES = 4


@dataclass
class _Program:
    """The traced pieces of one (structure, settings) pair: plain functions, jitted
    afresh for each new shape (``_compile``)."""

    init: Callable
    chunk: Callable
    site_shapes: dict[str, tuple[int, ...]]  # unconstrained, per chain
    value_shapes: dict[str, jax.ShapeDtypeStruct]  # constrained and deterministic, per draw
    executables: ProgramCache = field(default_factory=lambda: ProgramCache(MAX_SHAPES))


@dataclass
class _Executables:
    """Futures of the compiled programs (``compile_async``) for one set of shapes."""

    init: Future
    chunk: Future


_PROGRAMS: ProgramCache = ProgramCache(MAX_SAMPLERS)  # bounded: program_cache

START_MASSES = ("identity", "curvature", "mode")  # sample(start_mass=...)


def _chunk_length(settings: NutsSettings) -> int:
    """The most transitions one call of the compiled loop runs (its output buffers'
    length): ``settings.chunk``, or fewer if a phase is shorter. Each call runs a count
    of transitions up to this, chosen to take about ``CHUNK_SECONDS``; a chunk never
    crosses the end of warmup, so one compiled loop serves both phases (NumPyro's state
    switches from warmup to sampling by itself)."""
    return max(1, min(settings.chunk, max(settings.warmup, settings.draws)))


def _latent_sites(model, model_args) -> tuple[dict, dict]:
    """Latent sites -> (support transform, unconstrained shape), and every latent and
    deterministic site -> its (constrained) value's shape, found by abstract tracing.

    NumPyro's ``initialize_model`` runs the model eagerly, which compiles every small
    operation separately (hundreds of tiny XLA programs, seconds on a cold start); tracing
    under ``eval_shape`` compiles nothing."""
    supports, latent_names = {}, []

    # model_args as arguments, not closed over: as constants, NumPyro would validate
    # them eagerly (e.g. binomial trial counts: five small compiles, 0.2 s for cbpp).
    def site_values(model_args):
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(*model_args)
        values = {}
        for name, site in tr.items():
            if site["type"] == "sample" and not site["is_observed"]:
                supports[name] = site["fn"].support
                latent_names.append(name)
                values[name] = site["value"]
            elif site["type"] == "deterministic":
                values[name] = site["value"]
        return values

    shapes = jax.eval_shape(site_values, model_args)
    out = {}
    for name in latent_names:
        transform = biject_to(supports[name])
        out[name] = (transform, tuple(transform.inverse_shape(shapes[name].shape)))
    return out, shapes


def _build_program(
    key,
    model,
    model_args,
    settings: NutsSettings,
    dense_blocks,
    regularize_mass: bool,
    start_mass: str,
) -> _Program:
    sites, value_shapes = _latent_sites(model, model_args)
    potential_gen, postprocess_gen = get_potential_fn(
        model, {name: t for name, (t, _) in sites.items()}, replay_model=True, dynamic_args=True
    )
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=potential_gen, kinetic_fn=euclidean_kinetic_energy, algo="NUTS"
    )
    dense = [tuple(s for s in block if s in sites) for block in dense_blocks]
    dense = [d for d in dense if len(d) > 0]
    length = _chunk_length(settings)

    # The sampler loop is compiled for one chain (and the initialisation maps over chains
    # with lax.map), not vmap-ed over chains: under vmap every data-dependent branch and
    # while loop of NUTS becomes a select over both branches and a loop until the slowest
    # chain is done. For radon that doubled the program (7,100 vs 3,100 lines of MLIR),
    # took 1.4 s instead of 0.15 s to trace and 5.3 s instead of 4.1 s to compile, and
    # sampled slower (2.4-2.8 s vs 1.7-2.0 s on one core: vmap-ed chains wait for each
    # other's longest trajectory).
    def init_one(z, rng_key, model_args):
        inverse_mass = None
        if start_mass != "identity":
            rng_key, probe_key = jax.random.split(rng_key)
            potential = potential_gen(*model_args)
            z, diagonal, block = precondition.start(
                potential, z, probe_key, start_mass == "mode", dense[0] if dense else ()
            )
            inverse_mass = precondition.mass_blocks(diagonal, dense, block)
        return init_kernel(
            z,
            inverse_mass_matrix=inverse_mass,
            num_warmup=settings.warmup,
            dense_mass=dense,
            target_accept_prob=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
            regularize_mass_matrix=regularize_mass,
            model_args=model_args,
            rng_key=rng_key,
        )

    def init(z, rng_key, model_args):
        rng_keys = jax.random.split(rng_key, settings.chains)
        return lax.map(lambda zk: init_one(*zk, model_args), (z, rng_keys))

    def chunk(state, count, model_args):
        """The first ``count`` (<= ``length``) of ``length`` NUTS transitions of one chain:
        (length, ...) outputs, zeros from row ``count`` on. The count is an argument, so
        that ``_run_chunks`` can size each chunk by time without compiling anything; the
        transitions are the same whatever the counts, so are the draws.

        Each draw leaves the loop already in the constrained space, with the
        deterministic sites: a separate postprocessing program cost 0.3 s of tracing and
        compiling on a cold start (radon); here it adds nothing measurable to sampling."""
        TRACE_COUNTS[key] += 1
        constrain = postprocess_gen(*model_args)

        def statistics(state):
            return (
                state.diverging,
                state.num_steps,
                state.accept_prob,
                state.energy,
                state.potential_energy,
                state.adapt_state.step_size,
            )

        def transition(state):
            state = sample_kernel(state, model_args, None)
            return state, (constrain(state.z), statistics(state))

        # What a skipped transition returns: zeros shaped like a draw (from tracing the
        # model once more, not the whole NUTS kernel: cheap on a cold start).
        shaped = (jax.eval_shape(constrain, state.z), statistics(state))
        zeros = jax.tree.map(lambda x: lax.full(x.shape, 0, x.dtype), shaped)

        def body(state, i):
            return lax.cond(i < count, transition, lambda state: (state, zeros), state)

        return lax.scan(body, state, np.arange(length, dtype=np.int32))

    shapes = {name: shape for name, (_, shape) in sites.items()}
    return _Program(init, chunk, shapes, value_shapes)


def _float_dtype():
    """float32, or float64 inside ``jax.enable_x64`` (the collapsed sampler)."""
    return jax.dtypes.canonicalize_dtype(np.float64)


# Half-width of the uniform jitter of each chain's start around the centre of its
# standardised prior (unconstrained scale), for the sites a caller's ``start`` leaves
# out. NumPyro's and Stan's (-2, 2) puts some chains where the likelihood is extreme:
# MASS epil (negative binomial, uncentred age) left 1 of 4 chains frozen at its start
# with every draw divergent. The chains still start apart, so R-hat can still tell
# chains that settle in different places.
START_JITTER = 0.5


def initial_points(
    site_shapes: dict[str, tuple[int, ...]],
    chains: int,
    seed: int,
    given: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Each chain's initial point, per site (chains, *shape): ``given[site]`` where
    given, else uniform(-START_JITTER, START_JITTER) around 0, the site's prior centre.

    Drawn with NumPy from ``seed``, the same for every ``given``: the same seed gives
    the same start, and eager JAX random calls would each compile on a cold start."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in sorted(site_shapes.items()):
        value = rng.uniform(-START_JITTER, START_JITTER, (chains, *shape))
        if given is not None and name in given:
            value = np.broadcast_to(given[name], (chains, *shape))
        out[name] = np.asarray(value, dtype=_float_dtype())
    return out


def sample(
    structure_key,
    model,
    model_args: tuple,
    settings: NutsSettings,
    seed: int,
    dense_blocks: tuple[tuple[str, ...], ...] = (),
    progress: bool = True,
    regularize_mass: bool = True,
    start_mass: str = "identity",
    quick_init: bool = False,
    companion: Callable[[dict[str, jax.ShapeDtypeStruct]], Any] | None = None,
    start: dict[str, np.ndarray] | None = None,
    sharding: row_sharding.RowSharding | None = None,
    chain_ids: tuple[int, ...] | None = None,
    reporter: Callable[[int, int], None] | None = None,
) -> NutsResult:
    """Run NUTS on every chain; compile only what this structure and shape have not seen.

    ``regularize_mass=False`` turns off NumPyro's shrinkage of each adapted mass matrix
    towards 1e-3 x identity, which swamps posterior variances far below 1e-3 (sigma at
    10M rows: log-scale variance 5e-8, inflated 200-fold; step size 0.06 instead of 0.5).
    Safe only when every dense block is much smaller than the first adaptation window.

    ``start_mass`` is the mass matrix warmup starts from: NumPyro's ``"identity"``;
    ``"curvature"``, the inverse of the potential's Hessian diagonal at each chain's
    start (``precondition.start``), for starts near the typical set (``start``); or
    ``"mode"``, the same after moving each chain towards the mode. Warmup keeps its
    first mass matrix for 100 iterations, which run at the maximum tree depth when
    the posterior's scales differ by orders of magnitude (``precondition``).

    ``companion``, if given, is called with the shape of every site's value per draw
    once the sampler's own programs are compiling, and before any of them runs; a caller
    starts compiling its own follow-up program there (``compile_async``) so that it
    compiles while the chains sample. What it returns is ``NutsResult.companion``.

    ``quick_init`` compiles the chain initialisation without LLVM's optimisations
    (``compile.run_once_options``): the joint sampler's, a second sooner to its first
    transition.

    ``start`` gives chains' initial points by site, (chains, *shape) unconstrained values
    (e.g. ``backends.start``: the pooled GLM's coefficients); the sites it leaves out
    start near their standardised prior's centre (``initial_points``).

    ``sharding`` (``inference.sharding``): ``model_args`` are placed by its ``placed``,
    rows split across its devices, and the programs are compiled for them.

    ``chain_ids`` runs only those of the ``settings.chains`` chains (each starts where it
    would among all of them, so its draws are the same), and ``reporter(transitions,
    divergences)`` then replaces the progress bar: how ``inference.chain_processes``
    gives each worker process its share of the chains.

    ``compile_s`` is the wall time before the first transition, ``sampling_s`` the rest."""
    t0 = time.perf_counter()
    enable_compilation_cache()
    release_evicted()  # bounded memory: JAX's caches of forgotten programs
    if start_mass not in START_MASSES:
        raise ValueError(f"start_mass={start_mass!r}: one of {START_MASSES}")
    key = (structure_key, settings, regularize_mass, start_mass)
    program = _PROGRAMS.get(key)
    if program is None:
        program = _PROGRAMS[key] = _build_program(
            key, model, model_args, settings, dense_blocks, regularize_mass, start_mass
        )
    z0 = initial_points(program.site_shapes, settings.chains, seed, start)
    chain_key = prng_key(seed)
    # compiled for these shapes, placement and XLA options (``compile.options``: a
    # program compiled with others may round differently, so give other draws)
    shapes = (
        signature((z0, model_args)),
        None if sharding is None else sharding.key,
        tuple(sorted(compiler_options().items())),
        quick_init,
    )
    executables = program.executables.get(shapes)
    if executables is None:
        executables = _compile(program, z0, chain_key, model_args, sharding, quick_init)
    extra = None if companion is None else companion(program.value_shapes)
    try:
        state = executables.init.result()(z0, chain_key, model_args)
        run_chunk = executables.chunk.result()
    except BaseException:  # a failed compile, or Ctrl-C while compiling
        program.executables.pop(shapes, None)  # is not kept,
        executables.init.cancel()  # and a compile not yet started never starts
        executables.chunk.cancel()
        raise
    program.executables[shapes] = executables
    jax.block_until_ready(state)
    interrupt.check()  # a Ctrl-C whose KeyboardInterrupt was lost while compiling
    compile_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    serial = sharding is not None and sharding.serial_chains
    samples, stats, cost = _run_chunks(
        run_chunk, state, model_args, settings, progress, serial, chain_ids, reporter
    )
    sampling_s = time.perf_counter() - t1
    names = ("diverging", "n_steps", "acceptance_rate", "energy", "potential_energy", "step_size")
    stats = dict(zip(names, stats))
    return NutsResult(samples, stats, compile_s, sampling_s, settings, extra, cost)


def _compile(
    program: _Program, z0, chain_key, model_args, sharding=None, quick_init: bool = False
) -> _Executables:
    """Trace and lower both programs here, compile them on background threads: the
    initialisation compiles while the sampling loop is traced.

    Each shape jits its own copy of the functions (``_fresh``): JAX keeps what it traced,
    lowered and compiled for a jitted function in caches keyed weakly on the function,
    for as long as it lives. Per copy, that memory goes when ``program.executables``
    forgets the shape; with one long-lived jitted function it would stay.

    With ``sharding``, the data keep their placement and everything else (starts, keys,
    chain states, draws) is replicated: XLA partitions the programs along the rows."""
    shardings = {}
    if sharding is not None:
        inputs = (sharding.replicated, sharding.replicated, sharding.shardings(model_args))
        shardings = {"in_shardings": inputs, "out_shardings": sharding.replicated}
    # The initialisation runs once: it compiles without the fusion emitters of a sampler
    # over many rows (``compile.row_pass_options``), which took 1-1.7 s longer to compile
    # it (bernoulli (1 + x | g) of 20,000 rows, VerbAgg) for a few gradients' gain, and
    # with ``quick_init`` without LLVM's optimisations too (``compile.run_once_options``)
    with run_once_options() if quick_init else base_options():
        init = jit(_fresh(program.init), **shardings).trace(z0, chain_key, model_args).lower()
    init_future = compile_async(init)
    # shapes and dtypes of one chain's state
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), init.out_info)
    count = jax.ShapeDtypeStruct((), np.int32)
    chunk = jit(_fresh(program.chunk), **shardings).trace(state, count, model_args).lower()
    chunk_future = compile_async(chunk)
    return _Executables(init_future, chunk_future)


def _fresh(fun: Callable) -> Callable:
    """A new function object that calls ``fun`` (same name: the same compiled module)."""

    @functools.wraps(fun)
    def call(*args):
        return fun(*args)

    return call


def _chain_workers(chains: int) -> int:
    """Threads that run chains side by side: one per core the process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(chains, cores))


# Wall time one call of the sampler loop aims at. The chains check for Ctrl-C between
# calls, so this bounds how late an interrupt is honoured; each call costs about 0.3 ms
# of Python and XLA dispatch, so much shorter calls would cost sampling time. With a
# fixed 100 transitions per call, the first warmup chunk took up to 0.85 s (radon,
# collapsed), 1.15 s (radon, joint) and 1.5 s (sleepstudy, joint) on 2 busy cores:
# early warmup runs long trajectories.
CHUNK_SECONDS = 0.2
FIRST_CHUNK = 5  # transitions in each chain's first call, before any timing is known


def _next_count(count: int, elapsed: float, length: int) -> int:
    """Transitions for the next call: as many as take ``CHUNK_SECONDS`` at the last
    call's pace, at most twice the last count (early in warmup trajectories lengthen
    tenfold from one chunk to the next) and at most ``length``."""
    if elapsed <= 0:
        return min(length, 2 * count)
    return max(1, min(length, 2 * count, int(count * CHUNK_SECONDS / elapsed)))


def _run_chunks(
    executable,
    state,
    model_args,
    settings: NutsSettings,
    progress: bool,
    serial: bool = False,
    chain_ids: tuple[int, ...] | None = None,
    reporter: Callable[[int, int], None] | None = None,
):
    """Run every chain's warmup then sampling, chunk by chunk; keep draws after warmup.
    Returns draws {site: (chains, draws, ...)}, the statistics (chains, draws) each and
    the gradients and seconds of each chain's warmup and sampling (``ChainCost``).

    Each chain runs on its own thread, as many at once as there are cores: XLA releases
    the GIL while it runs a program, and on CPU one program uses one core. A chain's
    draws depend only on its own state, so they are the same however the threads are
    scheduled and however many transitions each call runs. (radon, 2 cores: sampling
    1.8-2.0 s one chain after another, 1.1 s two at a time.)

    Ctrl-C (KeyboardInterrupt in the calling thread), or a chain that fails, sets a stop
    flag that every chain checks between chunks: the other chains end after their current
    chunk (``CHUNK_SECONDS``), are joined, and the exception is raised again. A thread
    pool's own exit would wait for every chain to run to its end."""
    length = _chunk_length(settings)
    total = settings.warmup + settings.draws
    chain_ids = tuple(range(settings.chains)) if chain_ids is None else tuple(chain_ids)
    show = progress and reporter is None
    bar = progress_bar(total * len(chain_ids), "NUTS", unit="it", show=show, threads=True)
    divergences = 0
    # The chains' threads add to one count; the bar is set under the same lock so that a
    # smaller, older count never overwrites a newer one.
    tally = threading.Lock()

    def report(count: int, diverging: int) -> None:
        nonlocal divergences
        if reporter is not None:
            reporter(count, diverging)
        with tally:
            divergences += diverging
            bar.set_postfix_str(f"{divergences} divergences", refresh=False)
            bar.update(count)

    # One chain's state each, in NumPy: slicing device arrays would compile each slice.
    chains = [jax.tree.map(lambda x, i=i: np.asarray(x)[i], state) for i in chain_ids]
    stop = threading.Event()

    x64 = bool(jax.config.jax_enable_x64)  # thread-local: the chains' threads need it too

    def run_chain(state):
        with jax.enable_x64(x64):
            return run_chain_x64(state)

    def run_chain_x64(state):
        kept = []
        gradients, seconds = [0, 0], [0.0, 0.0]  # warmup, sampling
        last = time.perf_counter()
        done, count = 0, min(FIRST_CHUNK, length)
        while done < total:
            if stop.is_set():
                return None
            interrupt.check()  # fails this chain's future, and so the run, on Ctrl-C
            end = settings.warmup if done < settings.warmup else total
            count = min(count, end - done)
            started = time.perf_counter()
            state, (values, stats) = executable(state, np.int32(count), model_args)
            # np.asarray waits for the chunk (XLA runs it asynchronously); NumPy, not
            # jax: eager jnp calls (a slice, a sum) would each compile on a cold start.
            diverging = np.asarray(stats[0])[:count]
            elapsed = time.perf_counter() - started
            if done >= settings.warmup:
                kept.append(jax.tree.map(lambda x, n=count: np.asarray(x)[:n], (values, stats)))
                report(count, int(diverging.sum()))
            else:
                report(count, 0)
            phase = int(done >= settings.warmup)
            gradients[phase] += int(np.asarray(stats[1])[:count].sum())  # num_steps
            now = time.perf_counter()
            seconds[phase], last = seconds[phase] + now - last, now
            done += count
            count = _next_count(count, elapsed, length)
        return jax.tree.map(lambda *xs: np.concatenate(xs), *kept), gradients, seconds

    workers = 1 if serial else _chain_workers(len(chain_ids))
    pool = None
    try:
        if workers == 1:
            runs = [run_chain(c) for c in chains]
        else:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="multilevel-chain")
            futures = [pool.submit(run_chain, c) for c in chains]
            # Not pool.map: it waits for the chains in order, and would not see a later
            # chain fail while an earlier one runs.
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f.exception() for f in futures if f.done() and f.exception()]
            if failed:
                raise failed[0]
            runs = [f.result() for f in futures]
    except BaseException:
        stop.set()
        raise
    finally:
        try:
            if pool is not None:  # chains not started are cancelled, running ones stop
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            bar.close()
    values, stats = jax.tree.map(lambda *xs: np.stack(xs), *(draws for draws, _, _ in runs))
    cost = ChainCost(np.array([g for _, g, _ in runs]), np.array([s for _, _, s in runs]), workers)
    return values, stats, cost
