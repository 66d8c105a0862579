"""Posterior predictive checks: do data replicated from the posterior look like the data?

``Fit.ppc`` draws one replicated data set per posterior draw (``Fit.predict`` with
``kind="response"`` on the fitted rows: seen levels use their posterior effects), stores
them in ``fit.idata`` as the ``posterior_predictive`` group (the variable is named as the
response, dims ``chain, draw, obs`` as in ``observed_data``) and plots:

* continuous families (gaussian, student_t, gamma, lognormal, beta), ``kind="density"``: the observed density (black)
  over the densities of ``n_draws`` replicated data sets (blue), all with the same
  Gaussian kernel bandwidth (Silverman's rule on the observed data);
* count and 0/1 families (poisson, negative_binomial, binomial, bernoulli), ``kind="bars"``: how many rows
  take each value (bars: observed) with the median and 90% interval of that number
  over all replicated data sets (points and lines). Wide count ranges are binned
  (``count_bins``): in equal bins, or, for heavy-tailed counts whose bulk would fill only
  the first equal bin, in bins that widen with the count (a log axis).
* a multinomial response (counts over categories): each category's share of all counts,
  observed (bars) against the median and 90% interval of the replicated shares; no
  ``group`` panel (refused, as ``group_check`` is).
* ``group="county"``: a second panel with each group's observed mean (success rate
  ``sum(y) / sum(trials)`` for binomial) against the 95% interval (thin) and 50%
  interval (thick) of its replicated means, sorted by the observed mean, every group
  labelled. Groups whose observed mean lies outside the 95% interval are red; the title
  counts them against the about 5% expected by chance. Beyond ``MAX_GROUPS_SHOWN``
  groups the panel shows that many: every group outside its interval, then those
  whose observed mean is most extreme among its replicates (``p`` nearest 0 or 1), and
  says so; the figure stays within ``MAX_FIGURE_INCHES``. ``group_check`` returns the
  table of all groups.

Examples
--------
>>> fit = ml.Model("Reaction ~ Days + (Days | Subject)", sleep).fit(seed=1)  # doctest: +SKIP
>>> fig = fit.ppc("ppc.png", group="Subject")  # doctest: +SKIP
>>> fit.idata.posterior_predictive  # doctest: +SKIP
>>> from multilevel.ppc import group_check
>>> group_check(fit, "Subject").query("outside")  # doctest: +SKIP
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from multilevel.design import group_codes
from multilevel.errors import MultilevelError
from multilevel.families import FAMILIES
from multilevel.figures import check_figure_path, new_figure, save_figure
from multilevel.prediction import predict

if TYPE_CHECKING:  # matplotlib is imported by new_figure, when a check is plotted
    from matplotlib.figure import Figure

__all__ = ["KINDS", "count_bins", "group_check", "posterior_predictive", "ppc"]

KINDS = ("auto", "density", "bars")
_MAX_BARS = 40  # count values shown one by one; wider ranges are binned
#: Groups drawn (and labelled, 7 pt) in the group panel; more would not fit a screen.
MAX_GROUPS_SHOWN = 40
#: The largest figure (width, height) in inches: 1650 x 1200 px at figures.DPI (150).
MAX_FIGURE_INCHES = (11.0, 8.0)
_OBS, _REP, _BAD = "black", "#1f77b4", "#d62728"


def posterior_predictive(fit, seed: int = 0, draws: int | None = None, data=None):
    """Replicate the fitted data once per posterior draw; store and return the
    ``posterior_predictive`` group (replacing an earlier one)."""
    pred = predict(fit, None, kind="response", groups="sample", seed=seed, draws=draws, data=data)
    dataset = pred.draws
    if "posterior_predictive" in fit.idata.groups():
        del fit.idata["posterior_predictive"]
    fit.idata.add_groups({"posterior_predictive": dataset})
    return dataset


def _replicated(fit, seed: int, data) -> np.ndarray:
    """(draws, rows) replicated responses: the stored group if it fits, else new ones."""
    n = fit.rows(data, what="The posterior predictive check")[0].n
    response = fit.spec.response
    if "posterior_predictive" in fit.idata.groups():
        stored = fit.idata.posterior_predictive
        if response in stored and stored[response].shape[-1] == n:
            values = stored[response].values
            return values.reshape(-1, n)
    values = posterior_predictive(fit, seed=seed, data=data)[response].values
    return values.reshape(-1, n)


def group_check(fit, group: str, seed: int = 0, data=None) -> pd.DataFrame:
    """Per level of ``group``: rows ``n``, the ``observed`` mean (success rate for
    binomial), the replicated means' ``mean``, ``q2.5``, ``q25``, ``q75``, ``q97.5``,
    ``p`` (share of replicated means >= the observed one) and ``outside`` (observed
    outside the 95% interval). Uses ``fit.idata.posterior_predictive`` if present."""
    _refuse_count_vectors(fit.spec.family)
    design, frame = fit.rows(data, what="The posterior predictive check")
    return _group_table(fit, design, frame, group, _replicated(fit, seed, data))


def _group_table(fit, design, frame, group: str, rep: np.ndarray) -> pd.DataFrame:
    codes, levels = _group_of(design, frame, group)
    y = design.y
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(levels))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rep_sums = np.add.reduceat(rep[:, order], starts, axis=1)
    obs_sums = np.add.reduceat(y[order], starts)
    if design.trials is not None:  # successes out of trials
        denom = np.add.reduceat(design.trials[order], starts)
    else:
        denom = counts.astype(float)
    observed = obs_sums / denom
    rep_means = rep_sums / denom
    lo, q25, q75, hi = np.quantile(rep_means, [0.025, 0.25, 0.75, 0.975], axis=0)
    table = pd.DataFrame(
        {
            "n": counts,
            "observed": observed,
            "mean": rep_means.mean(axis=0),
            "q2.5": lo,
            "q25": q25,
            "q75": q75,
            "q97.5": hi,
            "p": (rep_means >= observed).mean(axis=0),
            "outside": (observed < lo) | (observed > hi),
        },
        index=pd.Index(levels, name=group),
    )
    return table


def _refuse_count_vectors(family: str) -> None:
    if FAMILIES[family].multivariate_response:
        raise MultilevelError(
            "A per-group check compares one number per row, and a multinomial response is "
            "a vector of counts: compare a category's share per group from "
            "fit.predict(kind='response') draws and the count columns yourself."
        )


def _group_of(design, frame, group: str) -> tuple[np.ndarray, tuple[str, ...]]:
    for block in design.blocks:
        if block.group == group:
            return block.codes, block.levels
    factors = tuple(group.split(":"))
    if all(f in frame.columns for f in factors):
        return group_codes(frame, factors)
    known = list(dict.fromkeys(b.group for b in design.blocks))
    raise MultilevelError(
        f"No grouping factor or column {group!r} in the fitted data. Grouping factors: "
        f"{', '.join(known) if known else 'none'}; any column of the data works too."
    )


def ppc(
    fit,
    path: str | Path | None = None,
    kind: str = "auto",
    group: str | None = None,
    n_draws: int = 50,
    seed: int = 0,
    data=None,
) -> Figure:
    """Posterior predictive check of ``fit``; see the module doc. Returns the Figure,
    saved to ``path`` if given (``.png``, ``.svg`` or ``.pdf``)."""
    family = fit.spec.family
    if kind not in KINDS:
        raise MultilevelError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}.")
    if kind == "auto":
        kind = "bars" if FAMILIES[family].discrete else "density"
    if kind == "bars" and not FAMILIES[family].discrete:
        raise MultilevelError(
            f"kind='bars' is for count and 0/1 outcomes; the {family} family is "
            "continuous: use kind='density'."
        )
    if not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise MultilevelError(f"n_draws must be a positive whole number, got {n_draws!r}.")
    check_figure_path(path)
    if group is not None:
        _refuse_count_vectors(family)
    design, frame = fit.rows(data, what="The posterior predictive check")
    if group is not None:
        _group_of(design, frame, group)  # an unknown group fails before simulating
    n = design.n
    rep = posterior_predictive(fit, seed=seed, data=data)[fit.spec.response].values
    if FAMILIES[family].multivariate_response:
        fig = new_figure(7, 4.2, layout="constrained")
        rep = rep.reshape(-1, *design.y.shape)
        _plot_categories(fig.subplots(), design.y, rep, fit.spec.response_levels)
        _title(fig, fit.spec.formula, family, rep.shape[0])
        return save_figure(fig, path)
    rep = rep.reshape(-1, n)
    table = None if group is None else _group_table(fit, design, frame, group, rep)
    y = design.y

    if table is None:
        fig = new_figure(7, 4.2, layout="constrained")
        axes = [fig.subplots()]
    else:
        shown = min(len(table), MAX_GROUPS_SHOWN)
        width, most = MAX_FIGURE_INCHES
        fig = new_figure(width, max(4.2, min(most, 1.6 + 0.15 * shown)), layout="constrained")
        axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    if kind == "density":
        _plot_density(axes[0], y, rep, n_draws, seed, fit.spec.response)
    else:
        _plot_bars(axes[0], y, rep, family, fit.spec.response)
    if table is not None:
        _plot_groups(axes[1], table, group, family, fit.spec.response)
    _title(fig, fit.spec.formula, family, rep.shape[0])
    return save_figure(fig, path)


def _title(fig, formula: str, family: str, n_rep: int) -> None:
    """The figure's title, wrapped to its width (a long formula was cut off at 7 in)."""
    text = f"Posterior predictive check: {formula} ({family}, {n_rep} replicated data sets)"
    chars = int(fig.get_figwidth() * 13)  # about 13 characters of 10 pt text per inch
    fig.suptitle(textwrap.fill(text, chars), fontsize=10)


def _binned_kde(values: np.ndarray, grid: np.ndarray, bw: float) -> np.ndarray:
    """Gaussian kernel density on an equally spaced grid by binning and convolution:
    linear in the number of values (a million rows cost a histogram)."""
    delta = grid[1] - grid[0]
    edges = np.concatenate([grid - delta / 2, [grid[-1] + delta / 2]])
    counts, _ = np.histogram(values, edges)
    m = int(np.ceil(4 * bw / delta))
    kernel = np.exp(-0.5 * ((np.arange(-m, m + 1) * delta) / bw) ** 2)
    kernel /= kernel.sum() * delta
    dens = np.convolve(counts, kernel, mode="full")[m : m + len(counts)]
    return dens / max(len(values), 1)


def _bandwidth(values: np.ndarray) -> float:
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    iqr = np.subtract(*np.quantile(values, [0.75, 0.25]))
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    if not spread > 0:
        spread = max(abs(values).max(), 1.0) * 0.1
    return 0.9 * spread * len(values) ** -0.2


def _plot_density(ax, y, rep, n_draws, seed, response) -> None:
    rng = np.random.default_rng(seed)
    chosen = rep[rng.choice(rep.shape[0], size=min(n_draws, rep.shape[0]), replace=False)]
    bw = _bandwidth(y)
    lo = min(y.min(), np.quantile(chosen, 0.005)) - 3 * bw
    hi = max(y.max(), np.quantile(chosen, 0.995)) + 3 * bw
    grid = np.linspace(lo, hi, 400)
    for i, values in enumerate(chosen):
        ax.plot(
            grid, _binned_kde(values, grid, bw), color=_REP, alpha=0.3, lw=0.8,
            label="replicated" if i == 0 else None,
        )  # fmt: skip
    ax.plot(grid, _binned_kde(y, grid, bw), color=_OBS, lw=2, label="observed")
    ax.set_xlabel(response)
    ax.set_ylabel("density")
    ax.set_title(f"Observed vs {len(chosen)} replicated data sets", fontsize=10)
    ax.legend(frameon=False, fontsize=9)


def count_bins(y: np.ndarray, rep: np.ndarray) -> np.ndarray:
    """The left edges of the bars for counts ``y`` and their replicates ``rep``: one
    value per bar up to ``_MAX_BARS`` values, else ``_MAX_BARS`` equal bins up to the
    larger of the largest count and the replicates' 99.5% quantile (the last bin holds
    everything above). Heavy-tailed counts, half of whose observed rows or more would
    fall in the first of those equal bins, get bins that widen with the count instead:
    0, 1, 2, 3, then edges about sqrt(2) apart (4, 6, 9, 13, 19, 27, 39, 56, ...), two
    per doubling, as on a log axis.

    Measured on 262 negative binomial counts simulated like rstanarm's roaches (shape
    0.27; mean 27, sd 83, 37% zeros, max 652) and a fit of them: the top is 698, so
    equal bins of 18 put 207 of the 262 rows (79%) in the first of 39 bars; the widening
    bins spread them over 18 of 19 bars. Poisson counts around 100 keep equal bins.

    >>> count_bins(np.array([0, 1, 5]), np.array([[0, 2, 7]]))
    array([0, 1, 2, 3, 4, 5, 6])
    """
    top = int(max(y.max(), np.quantile(rep, 0.995)))
    if top < _MAX_BARS:
        return np.arange(top + 1)
    width = int(np.ceil((top + 1) / _MAX_BARS))
    if np.mean(y < width) < 0.5:
        return np.arange(0, top + 1, width)
    edges = [0, 1, 2, 3, 4]
    while edges[-1] * np.sqrt(2) <= top:
        edges.append(int(np.ceil(edges[-1] * np.sqrt(2))))
    return np.asarray(edges)


def _bin_label(low: int, high: int | None) -> str:
    """A bar's label: its value, its range, or ``low+`` for the last bar."""
    if high is None:
        return f"{low}+"
    return str(low) if high == low + 1 else f"{low}-{high - 1}"


def _plot_bars(ax, y, rep, family, response) -> None:
    edges = count_bins(y, rep)
    n_bins = len(edges)
    obs = np.bincount(np.searchsorted(edges, y, side="right") - 1, minlength=n_bins)
    idx = np.searchsorted(edges, rep, side="right") - 1
    offsets = np.arange(rep.shape[0])[:, None] * n_bins
    reps = np.bincount((idx + offsets).ravel(), minlength=rep.shape[0] * n_bins)
    reps = reps.reshape(rep.shape[0], n_bins)
    lo, mid, hi = np.quantile(reps, [0.05, 0.5, 0.95], axis=0)
    widths = np.diff(edges)
    equal = widths.size == 0 or (widths == widths[0]).all()
    width = int(widths[0]) if widths.size else 1
    # equal bins on the count axis; widening ones as equal bars, each labelled by its range
    x = edges if equal else np.arange(n_bins)
    ax.bar(x, obs, width=0.8 * (width if equal else 1), color="#bbbbbb", label="observed")
    ax.errorbar(
        x, mid, yerr=[mid - lo, hi - mid], fmt="o", color=_REP, ms=4, capsize=2,
        label="replicated: median, 90% interval",
    )  # fmt: skip
    title = "How many rows take each value: observed vs replicated"
    if family == "bernoulli":
        ax.set_xticks([0, 1])
    if not equal:
        highs = [*edges[1:], None]
        labels = [_bin_label(a, b) for a, b in zip(edges, highs)]
        ax.set_xticks(x, labels, rotation=90, fontsize=8)
        ax.set_xlabel(f"{response} (bins widen with the count, as on a log axis)")
        title += "\n(heavy tail: bins widen with the count)"
    elif width > 1:
        ax.set_xlabel(f"{response} (bins of {width}; the last, {edges[-1]} or more)")
    else:
        ax.set_xlabel(response)
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=9)


def _plot_categories(ax, y, rep, levels) -> None:
    """Each category's share of all counts: observed (bars), replicated (median, 90%)."""
    observed = y.sum(axis=0) / y.sum()
    shares = rep.sum(axis=1) / rep.sum(axis=(1, 2))[:, None]  # (draws, K)
    lo, mid, hi = np.quantile(shares, [0.05, 0.5, 0.95], axis=0)
    x = np.arange(len(levels))
    ax.bar(x, observed, width=0.8, color="#bbbbbb", label="observed")
    ax.errorbar(
        x, mid, yerr=[mid - lo, hi - mid], fmt="o", color=_REP, ms=4, capsize=2,
        label="replicated: median, 90% interval",
    )  # fmt: skip
    ax.set_xticks(x, list(levels))
    ax.set_xlabel("category (count column)")
    ax.set_ylabel("share of all counts")
    ax.set_title("Each category's share of the counts: observed vs replicated", fontsize=10)
    ax.legend(frameon=False, fontsize=9)


def _plot_groups(ax, table: pd.DataFrame, group: str, family: str, response: str) -> None:
    shown = table
    if len(table) > MAX_GROUPS_SHOWN:  # the outside groups first, then the most extreme
        extreme = pd.DataFrame({"outside": table["outside"], "p": (table["p"] - 0.5).abs()})
        order = extreme.sort_values(["outside", "p"], ascending=False, kind="stable").index
        shown = table.loc[order[:MAX_GROUPS_SHOWN]]
    shown = shown.sort_values(["observed", "mean"], kind="stable")
    pos = np.arange(len(shown))
    ax.hlines(pos, shown["q2.5"], shown["q97.5"], color=_REP, lw=1, alpha=0.7)
    ax.hlines(pos, shown["q25"], shown["q75"], color=_REP, lw=3)
    bad = shown["outside"].to_numpy()
    ax.plot([], [], color=_REP, lw=3, label="replicated: 50%, 95% interval")
    ax.plot(shown["observed"][~bad], pos[~bad], "o", color=_OBS, ms=4, label="observed")
    if bad.any():
        ax.plot(shown["observed"][bad], pos[bad], "o", color=_BAD, ms=5, label="outside 95%")
    labels = [str(v) for v in shown.index]
    ax.set_yticks(pos, labels, fontsize=7 if len(shown) > 30 else 8)
    for tick, flag in zip(ax.get_yticklabels(), bad):
        if flag:
            tick.set_color(_BAD)
    ax.set_ylim(-1, len(shown))
    what = f"{response} / trials" if FAMILIES[family].needs_trials else f"mean {response}"
    ax.set_xlabel(f"{what} per {group}")
    k, n = int(table["outside"].sum()), len(table)
    # A calibrated model puts about 5% of the observed means outside their 95% intervals
    # (fewer in fact: the fit saw these data, so its replicates lean toward them).
    lines = [f"{k} of {n} groups outside their 95% interval", f"{0.05 * n:.1f} expected by chance"]
    if len(shown) < n:
        lines.append(f"{len(shown)} shown: those outside, then the most extreme")
    ax.set_title("\n".join(lines), fontsize=9, color=_BAD if k else "black")
    # below the panel, where no point can hide it
    handles, labels = ax.get_legend_handles_labels()
    ax.get_figure().legend(
        handles, labels, loc="outside lower right", ncol=3, fontsize=8, frameon=False
    )
