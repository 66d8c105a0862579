"""What a fitted model says: predictions, comparisons and slopes on the response scale,
with group effects conditioned on or integrated out (``estimates``), on rows built by
``grid``, and conditional-effects plots (``plot``)."""

from multilevel.effects.estimates import Effects, comparisons, predictions, slopes
from multilevel.effects.plot import plot_effects

__all__ = ["Effects", "comparisons", "plot_effects", "predictions", "slopes"]
