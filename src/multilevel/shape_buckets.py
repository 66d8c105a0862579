"""Size buckets: data of somewhat different sizes share one compiled program.

XLA compiles a program for fixed array shapes, so every new number of rows or of groups
would cost a compile (2-5 s per model on 2 cores, cold) and keep one more executable in
memory. Instead every size is rounded up to its bucket, the next of
``2^k x (1, 1.25, 1.5, 1.75)`` (sizes up to 8 are their own bucket), and the data padded
to it:

* rows with weight 0 (copies of the first row, so every value stays in the family's
  support and every gradient finite; the likelihood masks them out);
* groups with no rows, whose effects are independent standard normals that nothing
  reads (a centred term's padded effects get that density instead of N(mean, sd)).

Neither changes the posterior of any parameter: a masked row adds nothing to the log
density, and a padded group's effects are independent of everything else. They are cut
off before the draws are stored. The cost is at most 25% more rows (11% on average over
sizes) in each gradient of the joint sampler, and the padded groups' extra dimensions.

Buckets for 9 to 130: 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
160 (radon's 919 rows -> 1024, its 85 counties -> 96; sleepstudy's 180 rows -> 192, 18
subjects -> 20).

Examples
--------
>>> bucket(5), bucket(9), bucket(100), bucket(919)
(5, 10, 112, 1024)
>>> pad_groups(np.ones((9, 2))).shape
(10, 2)
"""

from __future__ import annotations

import numpy as np


def bucket(size: int) -> int:
    """The padded size for ``size``: the next of 2^k x (1, 1.25, 1.5, 1.75) (at most 25%
    more), ``size`` itself up to 8."""
    if size <= 8:
        return size
    power = 2 ** (size.bit_length() - 1)
    return next(
        s for s in (power, power * 5 // 4, power * 3 // 2, power * 7 // 4, 2 * power) if s >= size
    )


def pad_groups(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """``a`` with zeros appended along its group ``axis`` up to ``bucket`` of its length,
    in ``a``'s dtype: empty groups' statistics, no effects, or group 0 as a padded
    group's parent (a valid index that nothing reads)."""
    a = np.asarray(a)
    extra = bucket(a.shape[axis]) - a.shape[axis]
    if not extra:
        return a
    width = [(0, 0)] * a.ndim
    width[axis] = (0, extra)
    return np.pad(a, width)


def pad_zero_rows(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` with zero rows appended along axis 0 up to ``rows``: rows that add nothing to
    the Gaussian samplers' per-group sums and residual sums of squares (the collapsed and
    the Gibbs sampler, which carry no row weights)."""
    a = np.asarray(a)
    return np.concatenate([a, np.zeros((rows - a.shape[0], *a.shape[1:]), a.dtype)])
