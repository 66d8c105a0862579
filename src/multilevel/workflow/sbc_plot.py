"""The SBC ECDF-difference plot (Säilynoja, Bürkner & Vehtari 2022).

Each panel shows, for one parameter, ``ECDF(z) - z`` of the scaled ranks
``z = (rank + 1) / (L + 1)`` against ``z``, with the simultaneous band: a calibrated
sampler's curve leaves the band with probability ``1 - prob`` only. A curve above zero
in the middle means the truths sit too often low among the draws (posterior
overestimates), a curve below zero the reverse; a U-shaped rank histogram (posterior
too narrow) gives an ECDF difference that falls then rises (an S through zero), a
posterior too wide the mirror image.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from multilevel.figures import check_figure_path, new_figure, save_figure
from multilevel.workflow.sbc_ranks import ecdf_band, ecdf_counts, ecdf_outside


def plot_ecdf_difference(
    result, path: str | Path | None = None, prob: float = 0.95, ncols: int = 3, width: float = 3.2
):
    """One panel per ranked parameter; returns the Figure (saved to ``path`` if given).

    Parameters
    ----------
    result : SBCResult
        Read for ``params``, ``ranks``, ``n_sims``, ``n_draws``, ``uniformity`` (p-values
        in the titles) and ``formula``.
    path : str or Path, optional
        Image file (.png, .svg or .pdf), checked before anything is drawn.
    prob : float
        Level of the simultaneous band.
    ncols, width : int, float
        Panels per row, and the width of one panel in inches.

    Examples
    --------
    >>> fig = plot_ecdf_difference(result, "sbc.png")  # doctest: +SKIP
    """
    path = check_figure_path(path)
    names = list(result.params)
    n, L = result.n_sims, result.n_draws
    ncols = max(1, min(ncols, len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig = new_figure(width * ncols, 0.8 * width * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    lower, upper = ecdf_band(n, L, prob)
    z = (np.arange(L) + 1) / (L + 1)
    # Steps: the ECDF of ranks is flat between evaluation points; start and end at 0.
    zs = np.concatenate([[0.0], z, [1.0]])
    table = result.uniformity
    for ax, name in zip(axes.flat, names):
        ecdf = ecdf_counts(result.ranks[name].to_numpy(dtype=int), L) / n
        outside = ecdf_outside(ecdf, lower, upper)
        ax.fill_between(
            zs,
            np.concatenate([[0.0], lower - z, [0.0]]),
            np.concatenate([[0.0], upper - z, [0.0]]),
            step="post",
            color="0.85",
            linewidth=0,
            label=f"{prob:.0%} simultaneous band",
        )
        ax.axhline(0, color="0.5", linewidth=0.6)
        ax.step(zs, np.concatenate([[0.0], ecdf - z, [0.0]]), where="post", color="C0", lw=1.2)
        if outside.any():
            ax.plot(z[outside], (ecdf - z)[outside], "o", color="C3", ms=3, label="outside")
        row = table.loc[name]
        ax.set_title(f"{name}\nchi2 p={row['chi2_p']:.2g}, ECDF p={row['ecdf_p']:.2g}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fractional rank", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("ECDF difference", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle(f"SBC: {result.formula}\n{n} simulations, L = {L} draws", fontsize=10, y=0.995)
    fig.tight_layout()
    return save_figure(fig, path)
