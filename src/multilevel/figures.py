"""One way to make and save a figure: a matplotlib ``Figure`` on the Agg canvas (no
pyplot, so no global figure registry that grows in long sessions and no GUI backend),
and ``save_figure`` with one format check and one resolution for every plot."""

from __future__ import annotations

from pathlib import Path

from multilevel.errors import MultilevelError

FORMATS = (".png", ".svg", ".pdf")
DPI = 150


def check_figure_path(path: str | Path | None) -> Path | None:
    """``path`` as a Path after checking its suffix names a format we write; None stays
    None. Called before any work, so a typo fails fast."""
    if path is None:
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise MultilevelError(
            f"Cannot tell the image format from {str(path)!r}: end the name in "
            f"{', '.join(FORMATS)}."
        )
    return Path(path)


def new_figure(width: float, height: float, **kwargs):
    """A ``matplotlib.figure.Figure`` of ``width`` x ``height`` inches on the Agg canvas.
    ``kwargs`` go to ``Figure`` (e.g. ``layout="constrained"``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path | None):
    """Write ``fig`` to ``path`` (format from the suffix, ``DPI`` dots per inch, tight
    bounding box) when a path is given; returns ``fig`` either way."""
    path = check_figure_path(path)
    if path is not None:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig
