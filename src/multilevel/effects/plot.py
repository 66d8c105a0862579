"""Conditional-effects plots (brms' ``conditional_effects``): the prediction against one
predictor, the others at typical values, with its interval.

A numeric predictor gives a line and a band over 50 points of its fitted range; a
categorical one a point and an error bar per level. ``by`` (a second predictor) draws
one line (or one set of points, side by side) per value: its levels, or for a numeric
``by`` its mean and the mean plus and minus one sd (as brms). An ordinal or categorical
response draws one line per category, and ``by`` then makes one panel per value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multilevel.effects.estimates import predictions
from multilevel.effects.grid import levels_of, numeric
from multilevel.errors import MultilevelError
from multilevel.figures import new_figure, save_figure

GRID_POINTS = 50
MAX_LINES = 10  # beyond this the colours cannot be told apart


def plot_effects(fit, variable: str, by: str | None = None, groups: str = "zero",
                 scale: str = "response", dpar=None, prob: float = 0.9, path=None,
                 data=None, draws=None, seed: int = 0):  # fmt: skip
    """The figure of ``variable``'s conditional effect (saved to ``path`` if given)."""
    _, fitted = fit.rows(data, what="Effects")
    values = {variable: _values(fitted, variable, GRID_POINTS)}
    if by is not None:
        values[by] = _values(fitted, by, 3)
        if len(values[by]) > MAX_LINES:
            raise MultilevelError(
                f"by={by!r} has {len(values[by])} values; a plot shows at most {MAX_LINES}. "
                "Pick another by, or compute fit.predictions(at=...) and plot a subset."
            )
    effect = predictions(fit, at=values, groups=groups, scale=scale, dpar=dpar, prob=prob,
                         data=data, draws=draws, seed=seed)  # fmt: skip
    table = effect.summary()
    low, high = table.columns[-2], table.columns[-1]
    categories = "category" in table.columns
    panels = list(values[by]) if (by is not None and categories) else [None]
    fig = new_figure(5.0 * len(panels), 3.8, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, panel in zip(axes, panels):
        shown = table if panel is None else table[table[by] == panel]
        lines = "category" if categories else by
        for i, (label, part) in enumerate(_split(shown, lines)):
            colour = f"C{i % 10}"
            name = None if label is None else f"{lines} = {label}"
            _draw(ax, part, variable, numeric(fitted[variable]), colour, name, low, high, i,
                  len(_split(shown, lines)))  # fmt: skip
        ax.set_xlabel(variable)
        ax.set_ylabel(_ylabel(fit, scale, dpar, categories))
        if panel is not None:
            ax.set_title(f"{by} = {panel}", fontsize=10)
        if lines is not None:
            ax.legend(fontsize=8, frameon=False)
    factors = " and ".join(dict.fromkeys(t.group for t in fit.spec.terms)) or "groups"
    setting = {"zero": f"a typical {factors} (effects 0)",
               "integrated": f"averaged over {factors}", "fitted": "each row's own group"}[groups]  # fmt: skip
    fig.suptitle(f"{variable}: {setting}; {prob:.0%} intervals", fontsize=10)
    return save_figure(fig, path)


def _values(fitted: pd.DataFrame, column: str, points: int) -> list:
    if column not in fitted.columns:
        raise MultilevelError(f"{column!r} is not a column of the fitted data.")
    series = fitted[column]
    if not numeric(series):
        return levels_of(series)
    if points == 3:  # a numeric `by`: mean and mean +- sd, as brms
        mean, sd = float(series.mean()), float(series.std())
        return [round(mean - sd, 3), round(mean, 3), round(mean + sd, 3)]
    return list(np.linspace(float(series.min()), float(series.max()), points))


def _split(table: pd.DataFrame, column):
    if column is None:
        return [(None, table)]
    return [(label, part) for label, part in table.groupby(column, sort=False)]


def _draw(ax, part, variable, is_numeric, colour, label, low, high, i, n):
    if is_numeric:
        x = part[variable].to_numpy(dtype=float)
        ax.plot(x, part["estimate"], color=colour, label=label)
        ax.fill_between(x, part[low], part[high], color=colour, alpha=0.2, linewidth=0)
        return
    levels = list(dict.fromkeys(part[variable]))
    offset = (i - (n - 1) / 2) * 0.8 / max(n, 1) if n > 1 else 0.0
    x = np.arange(len(levels)) + offset
    estimate = part["estimate"].to_numpy()
    error = [estimate - part[low].to_numpy(), part[high].to_numpy() - estimate]
    ax.errorbar(x, estimate, yerr=error, fmt="o", color=colour, capsize=3, label=label)
    ax.set_xticks(np.arange(len(levels)), [str(v) for v in levels])


def _ylabel(fit, scale: str, dpar, categories: bool) -> str:
    name = dpar or fit.spec.response
    if categories and scale != "link":
        return f"P({name} = category)"
    return f"{name} (link scale)" if scale == "link" else name
