"""Running SBC simulations: one simulation, the model rebuilt in worker processes,
processes or a Dask cluster, and the store of finished simulations that lets a run resume.

It uses ``Model`` and ``Fit`` as a user would (``Model.draw``, ``Model.with_response``,
``Fit.draws``, ``Fit.summary``). Every simulation has its own seeds, derived from the run's
seed and its index, so results do not depend on how the work was split.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from multilevel._arviz import az
from multilevel.errors import MultilevelError
from multilevel.fitted_rows import distributional_formula
from multilevel.formula import DistributionalFormula
from multilevel.model import Model
from multilevel.workflow.sbc_ranks import kept_indices, rank_of

FORMAT_VERSION = 1  # of the stored simulations; part of the store's config
MODELS_PER_PROCESS = 4  # rebuilt models a worker keeps (each holds compiled samplers)


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SBCSettings:
    """Sampler settings of every refit, and which posterior draws are kept."""

    chains: int = 2
    warmup: int = 1000
    draws: int = 1000
    thin: int | None = None
    target_accept: float = 0.8
    max_tree_depth: int = 10
    method: str | None = None  # Model.fit's method; None: its default

    @property
    def n_ranks(self) -> int:
        """L, the number of kept draws: ranks lie in 0..L."""
        return len(kept_indices(self.chains, self.draws, self.thin))


def sim_seeds(seed: int, index: int) -> tuple[int, int, int]:
    """(prior draw, NUTS, rank tie-break) seeds of simulation ``index``: a function of
    ``seed`` and ``index`` only, so a resumed or differently split run is identical.

    Examples
    --------
    >>> sim_seeds(0, 3) == sim_seeds(0, 3) != sim_seeds(0, 4)
    True
    """
    a, b, c = np.random.SeedSequence([int(seed), int(index)]).generate_state(3)
    return int(a) >> 1, int(b) >> 1, int(c)  # 31-bit: jax.random.PRNGKey takes them as is


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ModelRecipe:
    """What a worker process needs to rebuild the model: plain, picklable values.

    ``priors`` holds the model's resolved prior of every parameter, so the rebuilt model
    has exactly the same priors whatever response ``data`` holds. ``token`` identifies
    the spec and the data (a hash), for the per-process model cache and the store."""

    formula: DistributionalFormula  # with every family parameter's formula
    data: pd.DataFrame
    family: str
    link: str
    priors: dict
    centered: bool | None  # the model's own choice (None: the data's, term by term)
    spec: object  # ModelSpec, checked against the rebuilt model
    token: str

    @classmethod
    def of(cls, model: Model) -> ModelRecipe:
        """The recipe of ``model``."""
        spec = model.spec
        data_hash = pd.util.hash_pandas_object(model.data, index=True).to_numpy().tobytes()
        token = hashlib.sha256(spec.to_json().encode() + data_hash).hexdigest()[:16]
        return cls(
            distributional_formula(spec),
            model.data,
            spec.family,
            spec.link,
            dict(spec.priors),
            model.centered_choice,
            spec,
            token,
        )

    def build(self) -> Model:
        """The model again; refuses one whose spec differs from the original's."""
        model = Model(
            self.formula,
            self.data,
            family=self.family,
            link=self.link,
            priors=self.priors,
            centered=self.centered,
        )
        rebuilt = dataclasses.replace(model.spec, prior_sources=self.spec.prior_sources)
        if rebuilt != self.spec:
            raise MultilevelError(
                "The model rebuilt in a worker process differs from the original "
                f"(formula {str(self.formula)!r}); SBC cannot run it in parallel. "
                "Use processes=1."
            )
        return model


_MODELS: dict[str, Model] = {}  # per process: recipe token -> Model (compiled once)


def _model_for(recipe: ModelRecipe) -> Model:
    model = _MODELS.get(recipe.token)
    if model is None:
        if len(_MODELS) >= MODELS_PER_PROCESS:
            _MODELS.pop(next(iter(_MODELS)))
        model = _MODELS[recipe.token] = recipe.build()
    return model


# ---------------------------------------------------------------------------- one simulation
def simulate_one(
    model: Model, index: int, settings: SBCSettings, seed: int, params: Sequence[str]
) -> dict:
    """Draw from the prior, refit, and rank the truth: one JSON-ready record.

    Parameters
    ----------
    model : Model
        Its priors and design define the simulation.
    index : int
        The simulation's number; with ``seed`` it fixes every random choice.
    settings : SBCSettings
        Sampler settings of the refit and the kept draws.
    seed : int
        The run's seed.
    params : sequence of str
        Scalar hyper-parameters to rank.

    Returns
    -------
    dict
        ``index``, ``seeds``, ``truth``, ``ranks``, ESS and R-hat per parameter,
        divergences, tree-depth saturation, timings and the process id.

    Examples
    --------
    >>> record = simulate_one(model, 0, SBCSettings(chains=1), 0, ["sigma"])  # doctest: +SKIP
    >>> record["ranks"]["sigma"]  # doctest: +SKIP
    """
    draw_seed, fit_seed, tie_seed = sim_seeds(seed, index)
    sim = model.draw(1, seed=draw_seed)
    truth = {name: float(np.asarray(sim[name]).reshape(-1)[0]) for name in params}
    t0 = time.perf_counter()
    extra = {} if settings.method is None else {"method": settings.method}
    with _quiet_arviz():  # one chain: ArviZ logs a shape warning per fit
        fit = model.with_response(sim["y"][0]).fit(
            chains=settings.chains,
            warmup=settings.warmup,
            draws=settings.draws,
            seed=fit_seed,
            target_accept=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
            log_likelihood=False,  # ranks need the posterior draws only
            progress=False,
            warn=False,
            **extra,
        )
        summary = fit.summary()
    elapsed = time.perf_counter() - t0
    keep = kept_indices(settings.chains, settings.draws, settings.thin)
    rng = np.random.default_rng(tie_seed)
    ranks = {name: rank_of(truth[name], fit.draws(name)[keep], rng) for name in params}
    d = fit.diagnostics
    return {
        "index": int(index),
        "seeds": [draw_seed, fit_seed, tie_seed],
        "truth": truth,
        "ranks": ranks,
        "ess_bulk": {n: float(summary.loc[n, "ess_bulk"]) for n in params},
        "ess_tail": {n: float(summary.loc[n, "ess_tail"]) for n in params},
        "r_hat": {n: float(summary.loc[n, "r_hat"]) for n in params},
        "divergences": int(d.divergences),
        "tree_depth_saturated": int(d.tree_depth_saturated),
        "compile_s": float(fit.timing["compile_s"]),
        "sampling_s": float(fit.timing["sampling_s"]),
        "time_s": float(elapsed),
        "pid": os.getpid(),
    }


def run_indices(
    recipe: ModelRecipe,
    indices: Sequence[int],
    settings: SBCSettings,
    seed: int,
    params: Sequence[str],
) -> list[dict]:
    """The worker function of both the process pool and Dask: rebuild the model once per
    process (cached), then run the given simulations."""
    model = _model_for(recipe)
    return [simulate_one(model, i, settings, seed, params) for i in indices]


@contextlib.contextmanager
def _quiet_arviz():
    """Silence ArviZ's log (its logger is ``arviz._log``, not registered with logging):
    with one chain it warns that R-hat needs two, once per process."""
    logger = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------- many simulations
def run_simulations(
    model: Model,
    recipe: ModelRecipe,
    todo: Sequence[int],
    settings: SBCSettings,
    seed: int,
    params: Sequence[str],
    processes: int | None = None,
    client=None,
) -> Iterator[dict]:
    """Records of the simulations ``todo``, each as soon as it finishes (in any order).

    ``client`` (a ``dask.distributed.Client``) runs them on its cluster; otherwise
    ``processes`` worker processes (default ``min(os.cpu_count(), len(todo))``), started
    with "spawn" since JAX is not fork-safe; ``1`` runs them here, on ``model`` itself.
    Workers rebuild the model from ``recipe``. On an error or Ctrl-C, simulations not yet
    started are dropped.

    Examples
    --------
    >>> for record in run_simulations(model, ModelRecipe.of(model), [0, 1],
    ...                               SBCSettings(), 0, ["sigma"], processes=1):
    ...     print(record["index"])  # doctest: +SKIP
    """
    if not todo:
        return
    if client is not None:
        yield from _run_dask(client, recipe, todo, settings, seed, params)
        return
    if processes is None:
        processes = min(os.cpu_count() or 1, len(todo))
    if not isinstance(processes, (int, np.integer)) or processes < 1:
        raise MultilevelError(f"processes must be a positive whole number, got {processes!r}.")
    processes = min(processes, len(todo))
    if processes == 1:
        for i in todo:
            yield simulate_one(model, i, settings, seed, params)
        return
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    executor = cf.ProcessPoolExecutor(max_workers=processes, mp_context=ctx)
    try:
        futures = [
            executor.submit(run_indices, recipe, chunk, settings, seed, params)
            for chunk in _chunks(todo, processes)
        ]
        for future in cf.as_completed(futures):
            yield from future.result()
    finally:
        # On an error or Ctrl-C: drop what has not started; finished ones are saved.
        executor.shutdown(wait=True, cancel_futures=True)


def _run_dask(client, recipe, todo, settings, seed, params) -> Iterator[dict]:
    try:
        from distributed import as_completed
    except ImportError as err:
        raise MultilevelError(
            "Running SBC on a cluster needs Dask: pip install 'multilevel[cluster]'"
        ) from err
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    recipe_future = client.scatter(recipe, broadcast=True, hash=False)
    chunks = list(_chunks(todo, n_workers))
    futures = client.map(
        run_indices,
        [recipe_future] * len(chunks),
        chunks,
        settings=settings,
        seed=seed,
        params=params,
        pure=False,
    )
    try:
        for future in as_completed(futures):
            yield from future.result()
    finally:
        client.cancel(futures)


def _chunks(todo: Sequence[int], workers: int) -> Iterator[list[int]]:
    """Small chunks (about 4 per worker, at most 4 simulations each): even load, frequent
    progress and saves; each worker process compiles only once whatever the chunking."""
    todo = list(todo)
    size = max(1, min(4, len(todo) // (4 * workers)))
    for start in range(0, len(todo), size):
        yield todo[start : start + size]


# ---------------------------------------------------------------------------- storage
class SimulationStore:
    """One JSON file per finished simulation, written atomically; ``config.json`` holds
    what the simulations depend on, so a resumed run cannot mix in other settings.

    Parameters
    ----------
    path : str or Path
        The directory (created if missing).
    config : dict
        JSON-ready description of the run; a directory holding another config is refused.

    Examples
    --------
    >>> store = SimulationStore("sbc-runs/a", {"version": FORMAT_VERSION})  # doctest: +SKIP
    >>> finished = store.load_all(100)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, config: dict):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        config_file = self.path / "config.json"
        if config_file.exists():
            old = json.loads(config_file.read_text())
            if old != config:
                changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise MultilevelError(
                    f"{str(self.path)!r} holds SBC results of another run (differs in: "
                    f"{', '.join(changed)}). Use another path or delete it."
                )
        else:
            self._write(config_file, config)

    def file(self, index: int) -> Path:
        """Where simulation ``index`` is kept."""
        return self.path / f"sim_{index:06d}.json"

    def load(self, index: int) -> dict | None:
        """The record of simulation ``index``, or None when it is missing or unreadable."""
        file = self.file(index)
        if not file.exists():
            return None
        try:
            record = json.loads(file.read_text())
        except (OSError, ValueError):
            return None  # unreadable: run it again
        return record if record.get("index") == index else None

    def load_all(self, n_sims: int) -> dict[int, dict]:
        """Index -> record of the finished simulations among ``0..n_sims - 1``."""
        records = {}
        for i in range(n_sims):
            record = self.load(i)
            if record is not None:
                records[i] = record
        return records

    def save(self, record: dict) -> None:
        """Keep one simulation's record (atomically: a crash leaves the old state)."""
        self._write(self.file(record["index"]), record)

    def _write(self, file: Path, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


__all__ = [
    "FORMAT_VERSION",
    "ModelRecipe",
    "SBCSettings",
    "SimulationStore",
    "run_indices",
    "run_simulations",
    "sim_seeds",
    "simulate_one",
]
