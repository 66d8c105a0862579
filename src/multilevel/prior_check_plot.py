"""The figure of a prior predictive check (``PriorPredictiveCheck.plot``): simulated data
sets next to the observed data, on the Agg canvas (``figures``).

Left panel by the family's outcome: continuous outcomes (gaussian, student_t, lognormal,
gamma, beta): densities of simulated data sets and of the observed data over a window
holding the plausible range (shaded); counts (poisson, negative_binomial): proportions of
counts, observed vs simulated (median, 90% range); successes (bernoulli, binomial): the
simulated data sets' success rates, the observed rate marked. Right panel: each simulated
data set's mean and sd against the observed ones (symmetric-log axes when the spread is
wide), or for successes the implied probabilities. The check is read duck-typed
(``family``, ``observed``, ``draws``, ``plausible``, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multilevel.families import FAMILIES, success_rate
from multilevel.figures import check_figure_path, new_figure, save_figure
from multilevel.prior_check_measures import outside, per_draw_statistics, percent


def plot_prior_check(check, path: str | Path | None = None, n_sets: int = 50):
    """The check's figure, saved to ``path`` if given; returns the matplotlib Figure."""
    check_figure_path(path)
    family = FAMILIES[check.family]
    fig = new_figure(11, 4.2, layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    if family.binary:
        _rates(check, left)
        _probabilities(check, right)
    else:
        if family.counts and not family.multivariate_response:  # its shares: densities
            _counts(check, left)
        else:
            _densities(check, left, n_sets)
        _moments(check, right)
    fig.suptitle(
        f"Prior predictive check: {check.spec.formula} ({check.family}, {check.n} draws)",
        fontsize=10,
    )
    return save_figure(fig, path)


def _densities(check, ax, n_sets: int) -> None:
    lo, hi = check.plausible
    obs, sim = check.observed, check.draws["y"]
    a, b = min(lo, obs.min()), max(hi, obs.max())
    pad = 0.05 * (b - a)
    bins = np.linspace(a - pad, b + pad, 61)
    width = bins[1] - bins[0]
    centers = (bins[:-1] + bins[1:]) / 2
    peaks = []
    for i, values in enumerate(sim[:n_sets]):
        counts, _ = np.histogram(values[np.isfinite(values)], bins)
        density = counts / (values.size * width)  # mass outside the view is not redrawn
        peaks.append(density.max())
        ax.plot(centers, density, color="C0", alpha=0.35, lw=0.8,
                label="simulated from the priors" if i == 0 else None)  # fmt: skip
    counts, _ = np.histogram(obs, bins)
    observed = counts / (obs.size * width)
    ax.plot(centers, observed, color="black", lw=2.2, label="observed")
    ax.axvspan(lo, hi, color="C2", alpha=0.1, label="plausible range")
    top = max(observed.max(), np.median(peaks) if peaks else 0)
    ax.set_ylim(0, 1.15 * min(max(peaks + [top]), 3 * observed.max()))
    ax.set_xlim(bins[0], bins[-1])
    beyond = float(np.mean(outside(sim, bins[0], bins[-1])))
    ax.set_title(
        f"{min(n_sets, check.n)} simulated data sets vs observed {check.response}\n"
        f"{percent(check.share_outside)} of simulated values outside the plausible range; "
        f"{percent(beyond)} beyond this view",
        fontsize=9,
    )
    ax.set_xlabel(check.response)
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper right")


def _counts(check, ax) -> None:
    obs, sim = check.observed, check.draws["y"]
    top = int(obs.max())
    edges = np.unique(np.round(np.linspace(0, top + 1, min(top + 2, 26)))).astype(float)
    edges = np.append(edges, np.inf)  # the last bin: above the largest observed count
    labels = [
        f"{int(lo)}" if hi - lo == 1 else f"{int(lo)}-{int(hi) - 1}"
        for lo, hi in zip(edges[:-2], edges[1:-1])
    ] + [f">{top}"]

    def proportions(values):  # (..., rows) -> (..., bins)
        idx = np.searchsorted(edges, np.nan_to_num(values, posinf=np.inf), side="right") - 1
        idx = np.clip(idx, 0, len(labels) - 1)
        return np.stack([(idx == k).mean(axis=-1) for k in range(len(labels))], axis=-1)

    sim_p = proportions(sim)
    med, q5, q95 = np.quantile(sim_p, [0.5, 0.05, 0.95], axis=0)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, proportions(obs), width=0.4, color="black", alpha=0.8, label="observed")
    ax.bar(x + 0.2, med, width=0.4, color="C0", alpha=0.7,
           yerr=[med - q5, q95 - med], ecolor="C0", capsize=2,
           label="simulated (median, 90% of data sets)")  # fmt: skip
    ax.set_xticks(x, labels, rotation=60 if len(labels) > 12 else 0, fontsize=7)
    ax.set_xlabel(check.response)
    ax.set_ylabel("proportion of rows")
    ax.set_title(
        f"Counts: simulated vs observed; {percent(check.share_outside)} of simulated counts "
        f"outside [{check.plausible[0]:.4g}, {check.plausible[1]:.4g}]",
        fontsize=9,
    )
    ax.legend(fontsize=8)


def _rates(check, ax) -> None:
    lo, hi = check.plausible
    ax.hist(check._measured["rate"], bins=np.linspace(0, 1, 41), color="C0", alpha=0.7,
            label="simulated data sets")  # fmt: skip
    ax.axvspan(0, lo, color="C3", alpha=0.12, label="extreme")
    ax.axvspan(hi, 1, color="C3", alpha=0.12)
    ax.axvline(success_rate(check.observed, check.trials), color="black", lw=2.2,
               label="observed")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"success rate of {check.response}")
    ax.set_ylabel("simulated data sets")
    ax.set_title(
        f"Success rate: {percent(check.share_extreme_rates)} of simulated data sets outside "
        f"[{lo:.3g}, {hi:.3g}]",
        fontsize=9,
    )
    ax.legend(fontsize=8)


def _probabilities(check, ax) -> None:
    lo, hi = check.plausible
    p = check._measured["p"].ravel()
    if p.size > 200_000:
        p = p[:: int(np.ceil(p.size / 200_000))]
    bins = np.linspace(0, 1, 51)
    ax.hist(p, bins=bins, density=True, color="C0", alpha=0.7,
            label="implied by the priors")  # fmt: skip
    if check.trials is not None:  # successes out of trials
        ax.hist(check.observed / check.trials, bins=bins, density=True, histtype="step",
                color="black", lw=2, label="observed")  # fmt: skip
    else:
        ax.axvline(success_rate(check.observed, None), color="black", lw=2,
                   label="observed")  # fmt: skip
    ax.axvspan(0, lo, color="C3", alpha=0.12)
    ax.axvspan(hi, 1, color="C3", alpha=0.12)
    ax.set_xlim(0, 1)
    ax.set_xlabel("success probability of a row")
    ax.set_ylabel("density")
    ax.set_title(
        f"{percent(check.share_outside)} of implied probabilities below {lo:.3g} or above {hi:.3g}",
        fontsize=9,
    )
    ax.legend(fontsize=8)


def _moments(check, ax) -> None:
    per_draw = per_draw_statistics(check.draws["y"])
    obs = per_draw_statistics(check.observed[None])
    means, sds = per_draw["mean"], per_draw["sd"]
    ok = np.isfinite(means) & np.isfinite(sds)
    ax.scatter(means[ok], sds[ok], s=6, color="C0", alpha=0.4,
               label="simulated data sets")  # fmt: skip
    ax.scatter(obs["mean"], obs["sd"], s=160, marker="*", color="black", zorder=3,
               label="observed")  # fmt: skip
    ax.axvspan(*check.plausible, color="C2", alpha=0.1, label="plausible range")
    lo, hi = check.plausible
    # Symmetric-log axes when the spread is wide: linear over the plausible range
    # (means) or up to the observed sd (sds), logarithmic beyond.
    x_lin = max(abs(lo), abs(hi), 1e-12)
    y_lin = max(float(obs["sd"][0]), 1e-12)
    if ok.any() and np.quantile(np.abs(means[ok]), 0.9) > 2 * x_lin:
        ax.set_xscale("symlog", linthresh=x_lin)
    if ok.any() and np.quantile(sds[ok], 0.9) > 20 * y_lin:
        ax.set_yscale("symlog", linthresh=y_lin)
    ax.set_xlabel(f"mean of a data set of {check.response}")
    ax.set_ylabel("sd of a data set")
    ax.set_title("Each simulated data set's mean and sd", fontsize=9)
    ax.legend(fontsize=8)
