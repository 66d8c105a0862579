"""What a fitted model says: predictions, comparisons and slopes on the response scale,
with group effects conditioned on or integrated out (``estimates``), on rows built by
``grid``."""

from multilevel.effects.estimates import Effects, comparisons, predictions, slopes

__all__ = ["Effects", "comparisons", "predictions", "slopes"]
