"""Simulation-based calibration (SBC): does the sampler recover the model's own prior?

For each simulation ``i`` draw one parameter set and a response from the prior
(``Model.draw``), refit the same model to that response (``Model.with_response``) and
record the rank of each true hyper-parameter among ``L`` posterior draws, thinned to be
roughly independent. If the sampler is calibrated, every rank is uniform on ``0..L``
(Talts et al. 2018, "Validating Bayesian inference algorithms with simulation-based
calibration"; Modrák et al. 2023, "Simulation-based calibration checking for Bayesian
computation: the choice of test quantities shapes sensitivity").

Uniformity is judged with the ECDF-difference plot and its simultaneous confidence band
(Säilynoja, Bürkner & Vehtari 2022, "Graphical test for discrete uniformity and its
applications in goodness-of-fit evaluation and multiple sample comparison", Statistics
and Computing 32:32), plus a chi-square test on binned ranks.

Simulations run in parallel processes (``processes=``) or on a Dask cluster
(``client=``); with ``path=`` each finished simulation is saved, so an interrupted run
resumes where it stopped. Every simulation has its own seeds, derived from ``seed`` and
its index, so results do not depend on how the work was split.

Examples
--------
>>> import multilevel as ml
>>> model = ml.Model("y ~ x + (1 | g)", data, priors={"sd": ml.HalfNormal(1)})  # doctest: +SKIP
>>> result = ml.sbc(model, n_sims=200, path="sbc-runs/varying-intercept")  # doctest: +SKIP
>>> result.uniformity  # doctest: +SKIP
>>> result.passed()  # doctest: +SKIP
>>> result.plot("sbc.png")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.errors import MultilevelError
from multilevel.options import check_count, check_sampler_options

FORMAT_VERSION = 1
DEFAULT_RANKS = 99  # L: 100 possible ranks, so 2, 4, 5, 10, 20 ... bins divide them
BAND_TRIALS = 5000  # uniform samples simulated for a simultaneous band
PVALUE_TRIALS = 4000  # uniform samples simulated for the ECDF p-value
MAX_BINS = 20  # chi-square bins (Talts et al. use 20)
MIN_EXPECTED = 5  # smallest expected count per chi-square bin


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


def kept_indices(chains: int, draws: int, thin: int | None) -> np.ndarray:
    """Positions of the kept draws in the pooled (chain after chain) draws.

    ``thin=None`` keeps ``L = 99`` draws evenly spaced over all ``chains * draws`` (about
    ``chains * draws / 99`` apart, e.g. 20 with the defaults); an integer keeps every
    ``thin``-th draw of each chain, ``L = chains * (draws // thin)``."""
    total = chains * draws
    if thin is None:
        n = min(DEFAULT_RANKS, total)
        return np.floor((np.arange(n) + 0.5) * total / n).astype(int)
    if not isinstance(thin, (int, np.integer)) or thin < 1:
        raise MultilevelError(f"thin must be a positive whole number or None, got {thin!r}.")
    if thin > draws:
        raise MultilevelError(f"thin={thin} keeps no draws out of draws={draws} per chain.")
    return np.concatenate([c * draws + np.arange(thin - 1, draws, thin) for c in range(chains)])


def sim_seeds(seed: int, index: int) -> tuple[int, int, int]:
    """(prior draw, NUTS, rank tie-break) seeds of simulation ``index``: a function of
    ``seed`` and ``index`` only, so a resumed or differently split run is identical."""
    a, b, c = np.random.SeedSequence([int(seed), int(index)]).generate_state(3)
    return int(a) >> 1, int(b) >> 1, int(c)  # 31-bit: jax.random.PRNGKey takes them as is


def rank_of(truth: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """Number of draws below ``truth``; ties (possible in float32) are split at random."""
    draws = np.asarray(draws)
    below = int(np.sum(draws < truth))
    ties = int(np.sum(draws == truth))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ModelRecipe:
    """What a worker process needs to rebuild the model: plain, picklable values.

    ``priors`` holds the model's resolved prior of every parameter, so the rebuilt model
    has exactly the same priors whatever response ``data`` holds."""

    formula: str
    data: pd.DataFrame
    family: str
    link: str
    priors: dict
    centered: bool
    spec: object  # ModelSpec, checked against the rebuilt model
    token: str

    @classmethod
    def of(cls, model) -> ModelRecipe:
        spec = model.spec
        data_hash = pd.util.hash_pandas_object(model.data, index=True).to_numpy().tobytes()
        token = hashlib.sha256(spec.to_json().encode() + data_hash).hexdigest()[:16]
        return cls(
            spec.formula,
            model.data,
            spec.family,
            spec.link,
            dict(spec.priors),
            spec.centered,
            spec,
            token,
        )

    def build(self):
        from multilevel.model import Model

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
                f"(formula {self.formula!r}); SBC cannot run it in parallel. "
                "Use processes=1."
            )
        return model


_MODELS: dict[str, object] = {}  # per process: recipe token -> Model (compiled once)


def _model_for(recipe: ModelRecipe):
    model = _MODELS.get(recipe.token)
    if model is None:
        if len(_MODELS) >= 4:
            _MODELS.pop(next(iter(_MODELS)))
        model = _MODELS[recipe.token] = recipe.build()
    return model


# ---------------------------------------------------------------------------- one simulation
def simulate_one(model, index: int, settings: SBCSettings, seed: int, params: Sequence[str]):
    """Draw from the prior, refit, and rank the truth: one JSON-ready record."""
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
    from multilevel._arviz import az

    logger = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------- storage
class _Store:
    """One JSON file per finished simulation, written atomically; ``config.json`` holds
    what the simulations depend on, so a resumed run cannot mix in other settings."""

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
        return self.path / f"sim_{index:06d}.json"

    def load(self, index: int) -> dict | None:
        file = self.file(index)
        if not file.exists():
            return None
        try:
            record = json.loads(file.read_text())
        except (OSError, ValueError):
            return None  # unreadable: run it again
        return record if record.get("index") == index else None

    def save(self, record: dict) -> None:
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


# ---------------------------------------------------------------------------- the driver
def sbc(
    model,
    n_sims: int = 100,
    draws: int = 1000,
    warmup: int = 1000,
    chains: int = 2,
    seed: int = 0,
    thin: int | None = None,
    processes: int | None = None,
    client=None,
    path: str | Path | None = None,
    progress: bool = True,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    method: str | None = None,
    params: Sequence[str] | None = None,
) -> SBCResult:
    """Simulation-based calibration of ``model`` with its priors, design and sampler.

    Simulation ``i`` draws parameters and a response from the prior, refits the model
    with NUTS and ranks each true hyper-parameter among ``L`` kept posterior draws.
    Ranks of a calibrated sampler are uniform on ``0..L``.

    Parameters
    ----------
    model : Model
        Its priors and design (predictors, groups) define the simulations; its response
        is not used.
    n_sims : int
        Number of simulations. 100 finds gross problems; use 200 to 1000 for a check.
    draws, warmup, chains, target_accept, max_tree_depth, method
        Sampler settings of every refit (``draws`` and ``warmup`` per chain), passed to
        ``Model.fit``; ``method=None`` leaves ``Model.fit``'s default.
    seed : int
        Simulation ``i`` uses seeds derived from ``(seed, i)`` only.
    thin : int, optional
        Keep every ``thin``-th draw of each chain (``L = chains * (draws // thin)``).
        Default: ``L = 99`` draws evenly spaced over all draws. Kept draws should be
        nearly independent: aim for a bulk ESS of at least ``L`` (``result.diagnostics``
        records it), or the ranks pile up at the ends even for a correct sampler.
    processes : int, optional
        Worker processes on this machine (default: ``min(os.cpu_count(), n_sims)``);
        ``1`` runs in this process. Workers are started with "spawn" (JAX is not
        fork-safe), so a script calling ``sbc`` needs an ``if __name__ == "__main__":``
        guard. Each worker rebuilds the model once and compiles its sampler once.
    client : dask.distributed.Client, optional
        Run the simulations on this Dask cluster instead (``processes`` is ignored).
        Needs ``pip install 'multilevel[cluster]'``.
    path : str or Path, optional
        Directory to keep each finished simulation in. Run again with the same path
        (and a larger ``n_sims`` if you like) to resume: finished simulations are
        loaded, not refitted. Settings, seed, model or data that differ are refused.
    progress : bool
        Progress bar over finished simulations (only when stderr is a terminal).
    params : sequence of str, optional
        Parameters to rank (default: every population effect, group sd and cor, and
        family parameter: ``model.spec.hyper_names``).

    Returns
    -------
    SBCResult
        ``ranks``, ``uniformity``, ``passed()``, ``plot()``.

    Examples
    --------
    >>> result = ml.sbc(model, n_sims=200, processes=4, path="sbc/")  # doctest: +SKIP
    >>> result.uniformity  # doctest: +SKIP
    >>> result.plot("sbc.png")  # doctest: +SKIP
    """
    check_count("n_sims", n_sims)
    check_sampler_options(
        chains=chains, warmup=warmup, draws=draws, seed=seed,
        target_accept=target_accept, max_tree_depth=max_tree_depth,
    )  # fmt: skip
    settings = SBCSettings(chains, warmup, draws, thin, target_accept, max_tree_depth, method)
    n_ranks = settings.n_ranks  # validates thin
    hyper = list(model.spec.hyper_names)
    params = hyper if params is None else list(params)
    unknown = [p for p in params if p not in hyper]
    if unknown:
        raise MultilevelError(
            f"SBC ranks scalar hyper-parameters; {', '.join(map(repr, unknown))} "
            f"{'is' if len(unknown) == 1 else 'are'} not one of {', '.join(hyper)}."
        )
    recipe = ModelRecipe.of(model)
    config = {
        "version": FORMAT_VERSION,
        "spec": model.spec.to_json(),
        "data": recipe.token,
        "settings": dataclasses.asdict(settings),
        "seed": int(seed),
        "params": params,
        "n_ranks": n_ranks,
    }
    store = _Store(path, config) if path is not None else None

    records: dict[int, dict] = {}
    if store is not None:
        for i in range(n_sims):
            record = store.load(i)
            if record is not None:
                records[i] = record
    resumed = len(records)
    todo = [i for i in range(n_sims) if i not in records]

    bar = _progress_bar(n_sims, resumed, progress)
    t0 = time.perf_counter()
    try:
        for record in _execute(model, recipe, todo, settings, seed, params, processes, client):
            records[record["index"]] = record
            if store is not None:
                store.save(record)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    ordered = [records[i] for i in range(n_sims)]
    return SBCResult.from_records(
        ordered,
        n_ranks,
        params,
        settings=settings,
        seed=int(seed),
        formula=model.spec.formula,
        resumed=resumed,
        wall_s=time.perf_counter() - t0,
    )


def _execute(model, recipe, todo, settings, seed, params, processes, client) -> Iterator[dict]:
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


def _chunks(todo: list[int], workers: int) -> Iterator[list[int]]:
    """Small chunks (about 4 per worker, at most 4 simulations each): even load, frequent
    progress and saves; each worker process compiles only once whatever the chunking."""
    size = max(1, min(4, len(todo) // (4 * workers)))
    for start in range(0, len(todo), size):
        yield todo[start : start + size]


def _progress_bar(total: int, done: int, progress: bool):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="SBC", unit="sim", file=sys.stderr)


# ---------------------------------------------------------------------------- uniformity
def ecdf_band(
    n: int, n_ranks: int, prob: float = 0.95, trials: int = BAND_TRIALS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band for the ECDF of ``n`` ranks uniform on ``0..n_ranks``.

    Säilynoja, Bürkner & Vehtari (2022), simulation method, as implemented by ArviZ
    (``arviz.stats.ecdf_utils.ecdf_confidence_band(method="simulated")``): simulate
    ``trials`` uniform samples of size ``n``; for each, take the smallest over the
    evaluation points of the two-sided binomial tail probability of its ECDF value;
    ``gamma`` is the ``1 - prob`` quantile of these minima, and the band at each point is
    the binomial quantiles at ``gamma / 2`` and ``1 - gamma / 2``. Seeded: the same
    arguments give the same band.

    The ECDF is evaluated at ``z_x = (x + 1) / (n_ranks + 1)``, ``x = 0..n_ranks - 1``
    (the fraction of ranks ``<= x``; at ``x = n_ranks`` it is always 1).

    Returns
    -------
    lower, upper : arrays of length ``n_ranks``
        Band limits for the ECDF (fractions of ``n``) at ``z_x``.
    """
    lower, upper = _ecdf_band_cached(int(n), int(n_ranks), float(prob), int(trials), int(seed))
    return lower.copy(), upper.copy()


@functools.lru_cache(maxsize=64)
def _ecdf_band_cached(n, n_ranks, prob, trials, seed):
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    x = np.arange(n_ranks)
    rvs = stats.randint(0, n_ranks + 1).rvs
    # A Generator, not an int: ArviZ passes random_state to every rvs call, and an int
    # would make every simulated sample the same.
    return ecdf_confidence_band(
        n,
        x,
        (x + 1) / (n_ranks + 1),
        prob=prob,
        method="simulated",
        rvs=rvs,
        num_trials=trials,
        random_state=np.random.default_rng(seed),
    )


def ecdf_counts(ranks: np.ndarray, n_ranks: int) -> np.ndarray:
    """Number of ranks ``<= x`` for ``x = 0..n_ranks - 1``; ``ranks`` (..., n)."""
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size and (ranks.min() < 0 or ranks.max() > n_ranks):
        raise MultilevelError(f"Ranks must lie in 0..{n_ranks}.")
    flat = ranks.reshape(-1, ranks.shape[-1])
    offset = (n_ranks + 1) * np.arange(len(flat))[:, None]
    hist = np.bincount((flat + offset).ravel(), minlength=len(flat) * (n_ranks + 1))
    counts = np.cumsum(hist.reshape(len(flat), n_ranks + 1), axis=-1)[:, :n_ranks]
    return counts.reshape(*ranks.shape[:-1], n_ranks)


def ecdf_statistic(ranks: np.ndarray, n_ranks: int) -> np.ndarray:
    """The band's statistic: the smallest over evaluation points of the two-sided
    binomial tail probability ``2 min(P(K <= k), P(K >= k))`` of each ECDF count ``k``
    (``K ~ Binomial(n, z_x)``); ``ranks`` (..., n) -> (...). Small means non-uniform."""
    ranks = np.asarray(ranks)
    n = ranks.shape[-1]
    k = ecdf_counts(ranks, n_ranks)
    z = (np.arange(n_ranks) + 1) / (n_ranks + 1)
    tails = np.minimum(stats.binom.cdf(k, n, z), stats.binom.sf(k - 1, n, z))
    return np.minimum(1.0, 2 * tails.min(axis=-1))


@functools.lru_cache(maxsize=64)
def _null_statistics(n: int, n_ranks: int, trials: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(ecdf_statistic(rng.integers(0, n_ranks + 1, (trials, n)), n_ranks))


def ecdf_pvalue(ranks: np.ndarray, n_ranks: int, trials: int = PVALUE_TRIALS, seed: int = 1):
    """P-value of the band's statistic under uniformity, by simulating ``trials`` uniform
    samples of the same size (seeded): ``(1 + #{null <= observed}) / (trials + 1)``.
    ``p < 1 - prob`` corresponds to leaving the simultaneous ``prob`` band."""
    observed = ecdf_statistic(np.asarray(ranks), n_ranks)
    null = _null_statistics(np.asarray(ranks).shape[-1], int(n_ranks), int(trials), int(seed))
    below = np.searchsorted(null, observed, side="right")
    return (1 + below) / (trials + 1)


def chi2_bins(n: int, n_ranks: int) -> np.ndarray:
    """Edges (first rank of each bin, then ``n_ranks + 1``) of the chi-square bins: the
    largest number of equal bins that divides ``n_ranks + 1``, at most 20 and with at
    least 5 expected ranks each; when none divides, nearly equal bins."""
    size = n_ranks + 1
    most = max(2, min(MAX_BINS, n // MIN_EXPECTED, size))
    divisors = [b for b in range(2, most + 1) if size % b == 0]
    bins = max(divisors) if divisors else most
    return np.round(np.linspace(0, size, bins + 1)).astype(int)


def chi2_pvalue(ranks: np.ndarray, n_ranks: int) -> tuple[float, int, float]:
    """Chi-square test of uniform ranks on bins from ``chi2_bins``: (statistic, bins, p);
    expected counts follow the bins' widths when they are unequal."""
    ranks = np.asarray(ranks, dtype=int)
    edges = chi2_bins(len(ranks), n_ranks)
    observed = np.histogram(ranks, bins=edges)[0]
    expected = len(ranks) * np.diff(edges) / (n_ranks + 1)
    statistic, p = stats.chisquare(observed, expected)
    return float(statistic), len(observed), float(p)


def uniformity_table(
    ranks: pd.DataFrame, n_ranks: int, prob: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Per parameter: chi-square statistic, bins and p-value; the ECDF statistic and its
    p-value; and whether the ECDF stays in the simultaneous ``prob`` band."""
    rows = {}
    values = {name: ranks[name].to_numpy(dtype=int) for name in ranks.columns}
    n = len(ranks)
    lower, upper = ecdf_band(n, n_ranks, prob, seed=seed)
    for name, r in values.items():
        statistic, bins, p = chi2_pvalue(r, n_ranks)
        ecdf = ecdf_counts(r, n_ranks) / n
        rows[name] = {
            "chi2": statistic,
            "bins": bins,
            "chi2_p": p,
            "ecdf_stat": float(ecdf_statistic(r, n_ranks)),
            "ecdf_p": float(ecdf_pvalue(r, n_ranks)),
            "in_band": bool(np.all((ecdf >= lower - 1e-12) & (ecdf <= upper + 1e-12))),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# ---------------------------------------------------------------------------- the result
class SBCResult:
    """Ranks of each simulation's true parameters, with tests and the ECDF plot.

    Attributes
    ----------
    ranks : DataFrame
        Simulation x parameter, integers in ``0..n_draws``.
    truth : DataFrame
        The parameters each simulation drew from the prior.
    n_draws : int
        L, the number of kept posterior draws per simulation.
    diagnostics : DataFrame
        Per simulation: divergences, max R-hat and min bulk/tail ESS over the ranked
        parameters, tree-depth saturation, compile and sampling seconds, and the id of
        the process that ran it.
    ess_bulk : DataFrame
        Simulation x parameter bulk ESS (of all draws, before thinning).
    resumed : int
        Simulations loaded from ``path`` rather than run.
    """

    def __init__(
        self,
        ranks: pd.DataFrame,
        n_draws: int,
        *,
        truth: pd.DataFrame | None = None,
        diagnostics: pd.DataFrame | None = None,
        ess_bulk: pd.DataFrame | None = None,
        settings: SBCSettings | None = None,
        seed: int | None = None,
        formula: str = "",
        resumed: int = 0,
        wall_s: float = float("nan"),
    ):
        self.ranks = ranks.astype(int)
        self.n_draws = int(n_draws)
        counts = self.ranks.to_numpy()
        if counts.size and (counts.min() < 0 or counts.max() > self.n_draws):
            raise MultilevelError(f"Ranks must lie in 0..{self.n_draws}.")
        self.params = list(ranks.columns)
        self.truth = truth
        self.diagnostics = diagnostics
        self.ess_bulk = ess_bulk
        self.settings = settings
        self.seed = seed
        self.formula = formula
        self.resumed = resumed
        self.wall_s = wall_s
        self._uniformity: pd.DataFrame | None = None

    @classmethod
    def from_records(cls, records: list[dict], n_draws: int, params: Sequence[str], **kwargs):
        """From the per-simulation records that ``sbc`` saves (one JSON each)."""
        index = pd.Index([r["index"] for r in records], name="sim")

        def frame(key):
            return pd.DataFrame([r[key] for r in records], index=index, columns=list(params))

        diagnostics = pd.DataFrame(
            {
                "divergences": [r["divergences"] for r in records],
                "max_r_hat": [_extreme(r["r_hat"], np.max) for r in records],
                "min_ess_bulk": [_extreme(r["ess_bulk"], np.min) for r in records],
                "min_ess_tail": [_extreme(r["ess_tail"], np.min) for r in records],
                "tree_depth_saturated": [r["tree_depth_saturated"] for r in records],
                "compile_s": [r["compile_s"] for r in records],
                "sampling_s": [r["sampling_s"] for r in records],
                "pid": [r.get("pid", -1) for r in records],
            },
            index=index,
        )
        return cls(
            frame("ranks"),
            n_draws,
            truth=frame("truth"),
            diagnostics=diagnostics,
            ess_bulk=frame("ess_bulk"),
            **kwargs,
        )

    @property
    def n_sims(self) -> int:
        return len(self.ranks)

    @property
    def uniformity(self) -> pd.DataFrame:
        """Per parameter: ``chi2``, ``bins``, ``chi2_p`` (binned ranks), ``ecdf_stat``,
        ``ecdf_p`` (the simultaneous band's statistic, p-value by simulation) and
        ``in_band`` (ECDF inside the simultaneous 95% band)."""
        if self._uniformity is None:
            self._uniformity = uniformity_table(self.ranks, self.n_draws)
        return self._uniformity.copy()

    def passed(self, alpha: float = 0.05) -> bool:
        """Whether the ranks look uniform, with a Bonferroni correction over the ``m``
        parameters: every ECDF inside its simultaneous ``1 - alpha / m`` band, and no
        chi-square or ECDF p-value below ``alpha / (2 m)`` (two tests per parameter)."""
        return bool(self.check(alpha)["ok"].all())

    def check(self, alpha: float = 0.05) -> pd.DataFrame:
        """The table behind ``passed``: per parameter, the p-values, whether the ECDF is in
        the Bonferroni-corrected band, and ``ok``."""
        if not 0 < alpha < 1:
            raise MultilevelError(f"alpha must be between 0 and 1, got {alpha}.")
        m = len(self.params)
        table = self.uniformity[["chi2_p", "ecdf_p"]]
        lower, upper = ecdf_band(self.n_sims, self.n_draws, 1 - alpha / m)
        table["in_band"] = [
            bool(np.all((e >= lower - 1e-12) & (e <= upper + 1e-12)))
            for e in (
                ecdf_counts(self.ranks[name].to_numpy(dtype=int), self.n_draws) / self.n_sims
                for name in self.params
            )
        ]
        threshold = alpha / (2 * m)
        table["ok"] = (
            table["in_band"] & (table["chi2_p"] >= threshold) & (table["ecdf_p"] >= threshold)
        )
        return table

    def problems(self) -> list[str]:
        """Sampler problems across simulations that can make calibrated ranks look bad."""
        d = self.diagnostics
        out = []
        if d is None:
            return out
        if d["divergences"].sum():
            out.append(
                f"{int((d['divergences'] > 0).sum())} of {self.n_sims} simulations had "
                f"divergent transitions ({int(d['divergences'].sum())} in all)."
            )
        low = int((d["min_ess_bulk"] < self.n_draws).sum())
        if low:
            out.append(
                f"{low} of {self.n_sims} simulations have a bulk ESS below the {self.n_draws} "
                "kept draws: their kept draws are autocorrelated (ranks pile up at the "
                "ends). Use more draws."
            )
        if d["tree_depth_saturated"].sum():
            out.append(
                f"{int((d['tree_depth_saturated'] > 0).sum())} simulations hit the maximum "
                "tree depth."
            )
        return out

    def summary(self, alpha: float = 0.05) -> str:
        table = self.check(alpha)
        head = f"SBC of {self.formula or 'a model'}: {self.n_sims} simulations, ranks among L = {self.n_draws} draws"
        if self.settings is not None:
            s = self.settings
            head += f" ({s.chains} chains x {s.draws}, warmup {s.warmup})"
        if self.diagnostics is not None:
            warm = self.diagnostics["sampling_s"].median()
            head += f"; median sampling time {warm:.2f} s per simulation"
        lines = [
            head,
            table.to_string(float_format=lambda x: f"{x:.3g}"),
            f"{'PASSED' if table['ok'].all() else 'FAILED'} at alpha = {alpha} "
            f"(Bonferroni over {len(self.params)} parameters)",
        ]
        lines += [f"  Note: {p}" for p in self.problems()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, path: str | Path | None = None, prob: float = 0.95, **kwargs):
        """ECDF difference (ECDF of the scaled ranks minus the uniform CDF) per parameter,
        with the simultaneous ``prob`` band (Säilynoja et al. 2022). Returns the matplotlib
        Figure; saved to ``path`` when given."""
        from multilevel.workflow.sbc_plot import plot_ecdf_difference

        return plot_ecdf_difference(self, path=path, prob=prob, **kwargs)

    def to_frame(self) -> pd.DataFrame:
        """Ranks, truths and per-simulation diagnostics in one wide table."""
        parts = [self.ranks.add_prefix("rank:")]
        if self.truth is not None:
            parts.append(self.truth.add_prefix("truth:"))
        if self.diagnostics is not None:
            parts.append(self.diagnostics)
        return pd.concat(parts, axis=1)


def _extreme(values: dict, how) -> float:
    """Max or min over parameters, ignoring NaN (R-hat of a single chain)."""
    finite = [v for v in values.values() if np.isfinite(v)]
    return float(how(finite)) if finite else float("nan")


__all__ = [
    "SBCResult",
    "SBCSettings",
    "chi2_pvalue",
    "ecdf_band",
    "ecdf_pvalue",
    "ecdf_statistic",
    "rank_of",
    "sbc",
    "uniformity_table",
]
