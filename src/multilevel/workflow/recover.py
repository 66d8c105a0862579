"""Fake-data recovery: simulate from known values, refit, and see how often the truth is
inside the posterior interval.

Each replication draws a response from the model with the true values
(``Model.draw`` with fixed parameters), refits the same model to it with
``Model.with_response(y).fit(...)`` (same priors, same design, so the compiled sampler is
reused after the first fit) and records, for every parameter, the truth, the posterior
mean, sd and 5% / 95% quantiles. If the model and sampler are right, a 90% interval holds
the truth in about 90% of replications, and z = (mean - truth) / sd is centred near 0.

Coverage at a *fixed* truth is exactly nominal only on average over truths drawn from the
prior (simulation-based calibration); at one fixed truth a prior that shrinks towards
other values can lower it a little. Large shortfalls, or mean z far from 0, point to a
coding or sampling error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multilevel.errors import MultilevelError
from multilevel.figures import check_figure_path, new_figure, save_figure
from multilevel.options import check_count, check_seed
from multilevel.progress import progress_bar
from multilevel.simulation import check_params, draw_response

__all__ = ["RecoveryResult", "recover"]

LEVEL = 0.9  # the interval of Fit.summary: 5% to 95% quantiles
TABLE_COLUMNS = [
    "replication",
    "parameter",
    "truth",
    "mean",
    "sd",
    "q5",
    "q95",
    "covered",
    "z",
]


@dataclass
class RecoveryResult:
    """What :func:`recover` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per replication and parameter: ``replication``, ``parameter``, ``truth``,
        posterior ``mean``, ``sd``, ``q5``, ``q95``, ``covered`` (truth inside
        [q5, q95]) and ``z`` = (mean - truth) / sd.
    diagnostics : pandas.DataFrame
        One row per replication: its simulation and fit seeds, divergences, largest
        R-hat, smallest bulk ESS, compile and sampling seconds.
    formula : str
    hyper_names : tuple of str
        The hyper-parameters (population effects, sd, cor, family parameters).
    fit_settings : dict
        The keyword arguments every fit ran with.
    """

    table: pd.DataFrame
    diagnostics: pd.DataFrame
    formula: str
    hyper_names: tuple[str, ...]
    fit_settings: dict = field(default_factory=dict)

    @property
    def n_reps(self) -> int:
        return int(self.table["replication"].nunique())

    @property
    def coverage(self) -> pd.DataFrame:
        """Per parameter: ``coverage`` (share of 90% intervals holding the truth), ``se``
        (binomial standard error of that share at the nominal 90%:
        sqrt(0.9 * 0.1 / n_reps), the yardstick for "consistent with 90%"), ``mean_z``,
        ``sd_z`` (near 0 and 1 when the posterior is calibrated) and ``n_reps``."""
        grouped = self.table.groupby("parameter", sort=False)
        out = pd.DataFrame(
            {
                "coverage": grouped["covered"].mean(),
                "mean_z": grouped["z"].mean(),
                "sd_z": grouped["z"].std(ddof=1),
                "n_reps": grouped["covered"].size(),
            }
        )
        out.insert(1, "se", np.sqrt(LEVEL * (1 - LEVEL) / out["n_reps"]))
        out.index.name = "parameter"
        return out

    @property
    def overall(self) -> pd.Series:
        """Coverage over all parameters and replications, with its binomial standard error
        at 90% (intervals of one replication are correlated, so take it as a rough guide)."""
        n = len(self.table)
        return pd.Series(
            {
                "coverage": float(self.table["covered"].mean()),
                "se": float(np.sqrt(LEVEL * (1 - LEVEL) / n)),
                "mean_z": float(self.table["z"].mean()),
                "sd_z": float(self.table["z"].std(ddof=1)),
                "n_intervals": n,
            }
        )

    def __repr__(self) -> str:
        overall = self.overall
        table = self.coverage.to_string(
            float_format=lambda x: f"{x:.3f}", formatters={"n_reps": "{:d}".format}
        )
        divergent = int((self.diagnostics["divergences"] > 0).sum())
        return "\n".join(
            [
                f"Recovery of {self.formula}: {self.n_reps} replications, "
                f"{int(LEVEL * 100)}% intervals",
                table,
                f"Overall: {overall['coverage']:.3f} of {int(overall['n_intervals'])} "
                f"intervals cover the truth (nominal {LEVEL:.2f}, se {overall['se']:.3f}); "
                f"{divergent} of {self.n_reps} fits had divergences.",
            ]
        )

    def plot(self, path: str | Path | None = None, parameters: list[str] | None = None):
        """Per parameter, each replication's 90% interval and mean, with the truth marked.

        Intervals that hold the truth are blue, those that miss it red; the truth is a
        black tick per replication (a dashed line when it is the same in all).

        Parameters
        ----------
        path : str or Path, optional
            Write the figure there; the suffix picks the format (``.png``, ``.svg`` or
            ``.pdf``).
        parameters : list of str, optional
            Which rows of ``table["parameter"]`` to show; default: the hyper-parameters.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> result.plot("recovery.png")  # doctest: +SKIP
        """
        check_figure_path(path)
        known = list(dict.fromkeys(self.table["parameter"]))
        names = [n for n in self.hyper_names if n in known] if parameters is None else parameters
        unknown = [n for n in names if n not in known]
        if unknown:
            raise MultilevelError(
                f"No recovery results for {', '.join(map(repr, unknown))}; "
                f"parameters: {', '.join(known)}."
            )
        if not names:
            raise MultilevelError("Nothing to plot: no parameters chosen.")
        ncols = min(3, len(names))
        nrows = -(-len(names) // ncols)
        fig = new_figure(4.6 * ncols, 3.0 * nrows + 0.6, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, name in zip(axes, names):
            rows = self.table[self.table["parameter"] == name].sort_values("replication")
            x = rows["replication"].to_numpy() + 1
            for covered, colour in ((True, "tab:blue"), (False, "tab:red")):
                sel = rows["covered"].to_numpy() == covered
                ax.vlines(x[sel], rows["q5"][sel], rows["q95"][sel], color=colour, lw=1.6)
                ax.plot(x[sel], rows["mean"][sel], "o", color=colour, ms=3)
            truth = rows["truth"].to_numpy()
            if np.allclose(truth, truth[0]):
                ax.axhline(truth[0], color="black", ls="--", lw=1)
            else:
                ax.plot(x, truth, "_", color="black", ms=8, mew=1.5)
            share = rows["covered"].mean()
            ax.set_title(
                f"{name}\ncoverage {share:.0%} ({int(rows['covered'].sum())}/{len(rows)})",
                fontsize=10,
            )
            ax.set_xlabel("replication", fontsize=9)
            ax.tick_params(labelsize=8)
        for ax in axes[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(
            f"Recovery of {self.formula}: 90% intervals (blue: holds the truth, red: misses), "
            "truth in black",
            fontsize=11,
        )
        return save_figure(fig, path)


def recover(
    model,
    truth: Mapping,
    n_reps: int = 20,
    seed: int = 0,
    include_group_effects: bool = False,
    progress: bool = True,
    callback: Callable | None = None,
    **fit_kwargs,
) -> RecoveryResult:
    """Simulate data from known values again and again, refit, and measure coverage.

    Parameters
    ----------
    model : multilevel.Model
        The model to check; its design (covariates, groups) is kept in every replication.
    truth : dict
        True values by user-facing name. Every hyper-parameter is required
        (``model.spec.hyper_names``). Group effects (``"Intercept|g"``: a Series by level
        or an array over levels) are optional: given, they are the same in every
        replication; left out, they are drawn anew in each replication from their
        population distribution, and the drawn values are that replication's truth.
    n_reps : int
        Number of replications (simulate + fit).
    seed : int
        Seeds every simulation and fit: the same seed gives the same result. Replication
        ``r`` does not depend on ``n_reps``.
    include_group_effects : bool
        Also record every group effect, as ``Intercept|g[level]``.
    progress : bool
        Show a progress bar over replications (only when stderr is a terminal).
    callback : callable, optional
        Called as ``callback(replication, fit)`` after each fit.
    **fit_kwargs
        Passed to ``Model.fit`` (``chains``, ``warmup``, ``draws``, ``target_accept``, ...).
        Each fit runs with ``progress=False, warn=False`` unless these say otherwise.

    Returns
    -------
    RecoveryResult
        ``.table``, ``.coverage``, ``.overall``, ``.diagnostics``, ``.plot()``.

    Raises
    ------
    MultilevelError
        If ``n_reps`` is not a positive whole number or a name or value in ``truth`` is
        wrong (the message lists the names expected).

    Examples
    --------
    >>> import multilevel as ml
    >>> cafe = ml.datasets.load("cafe")
    >>> model = ml.Model("wait ~ afternoon + (1 + afternoon | cafe)", cafe)
    >>> truth = {k: cafe.attrs["truth"][k] for k in model.spec.hyper_names}
    >>> result = ml.recover(model, truth, n_reps=20, chains=2, warmup=300, draws=300)  # doctest: +SKIP
    >>> result.coverage  # doctest: +SKIP
    >>> result.plot("recovery.png")  # doctest: +SKIP
    """
    check_count("n_reps", n_reps)
    if "seed" in fit_kwargs:
        raise MultilevelError("recover sets each fit's seed from its own `seed`.")
    check_seed(seed)
    params = check_params(model, truth)
    spec = model.spec
    # recovery compares summaries only: no pointwise log-likelihood to store
    settings = {"progress": False, "warn": False, "log_likelihood": False, **fit_kwargs}
    children = np.random.SeedSequence(seed).spawn(int(n_reps))
    rows, diagnostics = [], []
    covered = total = 0
    with progress_bar(int(n_reps), "recovery", unit="fit", show=progress, leave=True) as bar:
        for rep, child in enumerate(children):
            sim_seed, fit_seed = (int(s) for s in child.generate_state(2) >> 1)
            y, used = draw_response(model, params, sim_seed)
            fit = model.with_response(y).fit(seed=fit_seed, **settings)
            true = _truth_by_label(spec, used, include_group_effects)
            summary = fit.summary(group_effects=include_group_effects).loc[list(true)]
            frame = summary[["mean", "sd", "q5", "q95"]].copy()
            frame.insert(0, "truth", pd.Series(true))
            frame["covered"] = (frame["q5"] <= frame["truth"]) & (frame["truth"] <= frame["q95"])
            frame["z"] = (frame["mean"] - frame["truth"]) / frame["sd"]
            frame.insert(0, "parameter", frame.index)
            frame.insert(0, "replication", rep)
            rows.append(frame.reset_index(drop=True))
            d = fit.diagnostics
            diagnostics.append(
                {
                    "replication": rep,
                    "sim_seed": sim_seed,
                    "fit_seed": fit_seed,
                    "divergences": d.divergences,
                    "max_r_hat": d.max_r_hat,
                    "min_ess_bulk": d.min_ess_bulk,
                    "compile_s": fit.timing["compile_s"],
                    "sampling_s": fit.timing["sampling_s"],
                }
            )
            if callback is not None:
                callback(rep, fit)
            covered += int(frame["covered"].sum())
            total += len(frame)
            bar.set_postfix_str(f"coverage {covered / total:.2f}")
            bar.update(1)
    table = pd.concat(rows, ignore_index=True)[TABLE_COLUMNS]
    return RecoveryResult(
        table=table,
        diagnostics=pd.DataFrame(diagnostics),
        formula=spec.formula,
        hyper_names=tuple(spec.hyper_names),
        fit_settings=settings,
    )


def _truth_by_label(spec, used: dict, include_group_effects: bool) -> dict[str, float]:
    """True values under the labels of ``Fit.summary``: ``name`` or ``name[level]``."""
    out = {name: float(used[name]) for name in spec.hyper_names}
    if include_group_effects:
        for term in spec.terms:
            for name in term.effect_names:
                for level, value in used[name].items():
                    out[f"{name}[{level}]"] = float(value)
    return out
