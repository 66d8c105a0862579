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

This module holds the driver ``sbc`` and its result ``SBCResult``; running the
simulations (one simulation, worker processes, Dask, the resume store) is ``sbc_runner``,
the rank statistics ``sbc_ranks`` and the ECDF-difference plot ``sbc_plot``.

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

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from multilevel.errors import MultilevelError
from multilevel.model import Model
from multilevel.options import SBC_CHAINS, check_count, check_sampler_options
from multilevel.progress import progress_bar
from multilevel.workflow.sbc_plot import plot_ecdf_difference
from multilevel.workflow.sbc_ranks import ecdf_band, ecdf_counts, ecdf_inside, uniformity_table
from multilevel.workflow.sbc_runner import (
    FORMAT_VERSION,
    ModelRecipe,
    SBCSettings,
    SimulationStore,
    run_simulations,
)


# ---------------------------------------------------------------------------- the driver
def sbc(
    model: Model,
    n_sims: int = 100,
    draws: int = 1000,
    warmup: int = 1000,
    chains: int = SBC_CHAINS,
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
    store = SimulationStore(path, config) if path is not None else None

    records = store.load_all(n_sims) if store is not None else {}
    resumed = len(records)
    todo = [i for i in range(n_sims) if i not in records]

    t0 = time.perf_counter()
    # leave=True keeps the finished bar on screen, as before the shared progress_bar.
    bar = progress_bar(n_sims, "SBC", unit="sim", show=progress, initial=resumed, leave=True)
    with bar:
        for record in run_simulations(
            model, recipe, todo, settings, seed, params, processes, client
        ):
            records[record["index"]] = record
            if store is not None:
                store.save(record)
            bar.update(1)
    ordered = [records[i] for i in range(n_sims)]
    return SBCResult.from_records(
        ordered,
        n_ranks,
        params,
        settings=settings,
        seed=int(seed),
        formula=model.spec.full_formula,
        resumed=resumed,
        wall_s=time.perf_counter() - t0,
    )


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
            bool(ecdf_inside(self._ecdf(name), lower, upper)) for name in self.params
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

    def _ecdf(self, name: str) -> np.ndarray:
        """ECDF of parameter ``name``'s ranks at ``x = 0..n_draws - 1``, as fractions."""
        return ecdf_counts(self.ranks[name].to_numpy(dtype=int), self.n_draws) / self.n_sims

    def plot(self, path: str | Path | None = None, prob: float = 0.95, **kwargs):
        """ECDF difference (ECDF of the scaled ranks minus the uniform CDF) per parameter,
        with the simultaneous ``prob`` band (Säilynoja et al. 2022). Returns the matplotlib
        Figure; saved to ``path`` when given."""
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


__all__ = ["SBCResult", "SBCSettings", "sbc"]
