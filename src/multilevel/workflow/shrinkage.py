"""The shrinkage plot: how far partial pooling moves each group toward the population.

One varying coefficient: each group's no-pooling and partial-pooling estimates joined by a
segment, against the group's size on a log axis, with the complete-pooling estimate and
the population mean as horizontal lines. Two (intercept and slope): a 2-D plot with an
arrow per group from its no-pooling to its partial-pooling estimate, over contour
ellipses of the fitted population distribution.

Figures are drawn on matplotlib's Agg canvas and never open a window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, FancyArrowPatch
from matplotlib.ticker import FuncFormatter, NullFormatter

from multilevel.errors import MultilevelError
from multilevel.figures import check_figure_path, new_figure, save_figure

__all__ = ["ELLIPSE_LEVELS", "plot_shrinkage"]


class ShrinkageSource(Protocol):
    """What the plot reads from a comparison (``multilevel.PoolingComparison`` is one).

    Named here rather than imported so that this module does not depend on
    ``workflow.pooling``, which draws its plots with this one."""

    group: str
    terms: tuple[str, ...]
    table: pd.DataFrame  # group, term, n, no_pooling, partial_pooling, complete_pooling
    fits: Mapping  # fits["partial"].spec.terms[0]: sd_names, cor_names

    def population(self) -> pd.Series: ...


#: Probability mass inside the population ellipses of the 2-D plot.
ELLIPSE_LEVELS = (0.5, 0.9)
_NO, _PARTIAL, _COMPLETE, _SHIFT = "#1f77b4", "#d62728", "#333333", "#777777"


def plot_shrinkage(comparison: ShrinkageSource, path=None, kind: str = "auto") -> Figure:
    """Draw the no-pooling and partial-pooling estimate of every group.

    Parameters
    ----------
    comparison : PoolingComparison
        From :func:`multilevel.compare_pooling` (any object with the attributes of
        :class:`ShrinkageSource` will do).
    path : str or Path, optional
        Where to save the figure; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
    kind : {"auto", "1d", "2d"}
        ``"1d"``: one panel per varying coefficient, estimate against group size.
        ``"2d"``: intercept against slope with the population's contour ellipses (needs
        exactly two varying coefficients). ``"auto"``: 2-D for two, else 1-D.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> cmp = ml.compare_pooling("log_radon ~ floor + (1 | county)", radon)  # doctest: +SKIP
    >>> fig = plot_shrinkage(cmp, "shrinkage.png")  # doctest: +SKIP
    """
    terms = comparison.terms
    if kind == "auto":
        kind = "2d" if len(terms) == 2 else "1d"
    if kind not in ("1d", "2d"):
        raise MultilevelError(f"kind must be 'auto', '1d' or '2d', got {kind!r}.")
    if kind == "2d" and len(terms) != 2:
        raise MultilevelError(
            f"A 2-D shrinkage plot needs exactly two varying coefficients; this model has "
            f"{len(terms)} ({', '.join(terms)}). Use kind='1d'."
        )
    check_figure_path(path)
    fig = _plot_2d(comparison) if kind == "2d" else _plot_1d(comparison)
    return save_figure(fig, path)


def _panels(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = new_figure(width, height, layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _key(label: str, **style) -> Line2D:
    """A legend entry: a marker (``marker=...``) or a line."""
    if "marker" in style:
        style.setdefault("linestyle", "none")
    return Line2D([], [], label=label, **style)


_NO_KEY = {"marker": "o", "markerfacecolor": "none", "markeredgecolor": _NO}
_PARTIAL_KEY = {"marker": "o", "color": _PARTIAL}


def _legend(ax, handles: list, below: bool) -> None:
    if below:  # several panels side by side: keep each panel narrow
        ax.legend(
            handles=handles,
            fontsize=8,
            loc="upper center",
            ncols=2,
            bbox_to_anchor=(0.5, -0.16),
            frameon=False,
        )
    else:
        ax.legend(
            handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False
        )


def _jittered(n: np.ndarray, spread: float = 0.08) -> np.ndarray:
    """Spread groups of equal size apart a little on the log axis (deterministically)."""
    rng = np.random.default_rng(0)
    return n * np.exp(rng.uniform(-spread, spread, size=n.shape))


def _plot_1d(cmp: ShrinkageSource) -> Figure:
    population = cmp.population()
    several = len(cmp.terms) > 1
    fig, axes = _panels(
        6.5 * len(cmp.terms) if several else 10.0, 5.8 if several else 5.0, len(cmp.terms)
    )
    for ax, term in zip(axes, cmp.terms):
        rows = cmp.table[cmp.table["term"] == term]
        x = _jittered(rows["n"].to_numpy(dtype=float))
        no, part = rows["no_pooling"].to_numpy(), rows["partial_pooling"].to_numpy()
        # (groups, 2 ends, 2 coordinates): one segment from no to partial pooling per group
        segments = np.stack([np.column_stack([x, no]), np.column_stack([x, part])], axis=1)
        ax.add_collection(LineCollection(segments, colors=_SHIFT, linewidths=0.8, alpha=0.6))
        ax.scatter(x, no, s=22, facecolors="none", edgecolors=_NO, linewidths=1.0, zorder=3)
        ax.scatter(x, part, s=18, color=_PARTIAL, zorder=4)
        complete = float(rows["complete_pooling"].iloc[0])
        ax.axhline(complete, color=_COMPLETE, linewidth=1.4, zorder=2)
        ax.axhline(population[term], color=_PARTIAL, linewidth=1.2, linestyle="--", zorder=2)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"rows in the {cmp.group} (log scale; equal sizes jittered)")
        ax.set_ylabel(f"{term} of each {cmp.group}")
        ax.grid(alpha=0.25)
        handles = [
            _key("no pooling (own data only)", **_NO_KEY),
            _key("partial pooling (multilevel)", **_PARTIAL_KEY),
            _key("shift from no to partial pooling", color=_SHIFT),
            _key(f"complete pooling ({complete:.3g})", color=_COMPLETE),
            _key(
                f"population mean, partial pooling ({population[term]:.3g})",
                color=_PARTIAL,
                linestyle="--",
            ),
        ]
        _legend(ax, handles, below=several)
    sizes = cmp.table["n"].unique()
    why = (
        "furthest for the smallest groups"
        if len(sizes) > 1
        else f"(every {cmp.group} has {sizes[0]} rows)"
    )
    fig.suptitle(
        f"Shrinkage: partial pooling pulls each {cmp.group}'s estimate from its own data "
        f"(circle) toward the population mean (dashed),\n{why}",
        fontsize=11,
    )
    return fig


def _ellipse_radius(mass: float) -> float:
    """Mahalanobis radius enclosing ``mass`` of a bivariate normal: the chi-square(2)
    quantile is -2 log(1 - mass)."""
    return float(np.sqrt(-2.0 * np.log1p(-mass)))


def _population_covariance(cmp: ShrinkageSource) -> tuple[np.ndarray, np.ndarray]:
    """Mean (2,) and covariance (2, 2) of the fitted population, from posterior means."""
    pop = cmp.population()
    term = cmp.fits["partial"].spec.terms[0]
    sd = np.array([pop[n] for n in term.sd_names])
    rho = float(pop[term.cor_names[0]]) if term.cor_names else 0.0
    cov = np.outer(sd, sd) * np.array([[1.0, rho], [rho, 1.0]])
    return np.array([pop[t] for t in cmp.terms]), cov


def _plot_2d(cmp: ShrinkageSource) -> Figure:
    a, b = cmp.terms
    wide = cmp.table.pivot(index="group", columns="term")
    no = wide["no_pooling"][[a, b]].to_numpy()  # (groups, 2)
    part = wide["partial_pooling"][[a, b]].to_numpy()
    complete = wide["complete_pooling"][[a, b]].to_numpy()[0]
    mean, cov = _population_covariance(cmp)
    fig, (ax,) = _panels(10.0, 6.5)
    values, vectors = np.linalg.eigh(cov)  # ascending: the major axis is the last
    angle = float(np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1])))
    styles = ["-", "--", ":", "-."]
    ellipse_keys = []
    for i, mass in enumerate(ELLIPSE_LEVELS):
        r, style = _ellipse_radius(mass), styles[i % len(styles)]
        width, height = 2 * r * np.sqrt(values[::-1])
        ax.add_patch(
            Ellipse(
                mean,
                width=width,
                height=height,
                angle=angle,
                fill=False,
                edgecolor=_PARTIAL,
                linestyle=style,
                linewidth=1.3,
                alpha=0.8,
            )
        )
        ellipse_keys.append(
            _key(
                f"{mass:.0%} of the fitted population of {cmp.group}s",
                color=_PARTIAL,
                linestyle=style,
            )
        )
    for start, end in zip(no, part):
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=10,
                color=_SHIFT,
                linewidth=0.9,
                alpha=0.8,
                shrinkA=3,
                shrinkB=3,
                zorder=2,
            )
        )
    ax.scatter(*no.T, s=30, facecolors="none", edgecolors=_NO, linewidths=1.1, zorder=3)
    ax.scatter(*part.T, s=24, color=_PARTIAL, zorder=4)
    ax.scatter(*mean, marker="P", s=110, color=_PARTIAL, edgecolors="white", zorder=5)
    ax.scatter(
        *complete,
        marker="*",
        s=260,
        facecolors="none",
        edgecolors=_COMPLETE,
        linewidths=1.5,
        zorder=6,
    )
    # Limits that show every point and the outer ellipse (patches do not autoscale).
    points = np.vstack([no, part, complete, mean])
    reach = _ellipse_radius(max(ELLIPSE_LEVELS)) * np.sqrt(np.diag(cov))
    lo = np.minimum(points.min(axis=0), mean - reach)
    hi = np.maximum(points.max(axis=0), mean + reach)
    pad = 0.06 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xlabel(f"{a} of each {cmp.group}")
    ax.set_ylabel(f"{b} of each {cmp.group}")
    ax.grid(alpha=0.25)
    handles = [
        _key("no pooling (own data only)", **_NO_KEY),
        _key("partial pooling (multilevel)", **_PARTIAL_KEY),
        _key(
            "shift from no to partial pooling", marker=r"$\rightarrow$", color=_SHIFT, markersize=12
        ),
        _key(
            "complete pooling",
            marker="*",
            markerfacecolor="none",
            markeredgecolor=_COMPLETE,
            markersize=13,
        ),
        _key("population mean (partial pooling)", marker="P", color=_PARTIAL, markersize=9),
        *ellipse_keys,
    ]
    _legend(ax, handles, below=False)
    correlated = bool(cmp.fits["partial"].spec.terms[0].cor_names)
    along = ", along the fitted correlation" if correlated else ""
    ax.set_title(
        f"Shrinkage: partial pooling moves each {cmp.group}'s ({a}, {b}) from its own "
        f"estimate (circle)\ntoward the population mean (cross){along}",
        fontsize=11,
    )
    return fig
