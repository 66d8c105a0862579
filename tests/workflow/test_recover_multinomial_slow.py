"""Coverage of 90% intervals over replications (slow), ``ml.recover``, for the
multinomial family: counts over three categories (row totals 5 to 40) simulated from
known values on a fixed design of 20 groups x 15 rows with a varying intercept per
category, refitted 40 times.

Pass rule: the overall coverage of the hyper-parameters' 90% intervals within the
binomial band that a calibrated posterior stays inside with probability 99.9% (the
coverages of one replication's parameters are correlated, so the band is taken for the
number of replications, not of intervals: a conservative, wider band), as in
``test_recover_issue13_slow.py``.

    python -m pytest -m slow tests/workflow/test_recover_multinomial_slow.py
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel as ml

pytestmark = pytest.mark.slow

N_REPS = 40
SETTINGS = dict(chains=2, warmup=500, draws=500, progress=False)
TRUTH = {"mub_Intercept": 0.3, "mub_x": 0.6, "muc_Intercept": -0.2, "muc_x": -0.4,
         "sd(mub_Intercept|g)": 0.5, "sd(muc_Intercept|g)": 0.5}  # fmt: skip


def _model():
    rng = np.random.default_rng(13)
    g = np.repeat(np.arange(20), 15)
    totals = rng.integers(5, 41, g.size)
    counts = rng.multinomial(totals, [0.4, 0.35, 0.25])  # placeholders: recover draws anew
    data = pd.DataFrame({"g": g, "x": rng.normal(size=g.size), "a": counts[:, 0],
                         "b": counts[:, 1], "c": counts[:, 2]})  # fmt: skip
    return ml.Model("cbind(a, b, c) ~ x + (1 | g)", data, family="multinomial")


def test_coverage_of_90_percent_intervals():
    result = ml.recover(
        _model(),
        TRUTH,
        n_reps=N_REPS,
        seed=2026,
        **SETTINGS,
    )
    print(result.coverage)
    low, high = stats.binom(N_REPS, 0.9).ppf([0.0005, 0.9995]) / N_REPS
    assert low <= result.overall["coverage"] <= high, result.coverage
