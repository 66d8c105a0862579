"""Coverage of 90% intervals over replications (slow), ``ml.recover``, for brms' ID
syntax ``(1 |p| g)``: effects of one grouping factor correlated across the formulas of a
family parameter or of categories. Data simulated from known values (correlation 0.5)
on a fixed design of 30 groups, refitted 40 times.

Pass rule, as in test_recover_issue13_slow.py: the overall coverage within the binomial
band that a calibrated posterior stays inside with probability 99.9%, taken for the
number of replications (a conservative, wider band).

    python -m pytest -m slow tests/workflow/test_recover_linked_slow.py
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel as ml

pytestmark = pytest.mark.slow

N_REPS = 40
SETTINGS = dict(chains=2, warmup=500, draws=500, progress=False)


def _design(rng, y):
    g = np.repeat(np.arange(30), 15)
    return pd.DataFrame({"g": g, "x": rng.normal(size=g.size), "y": y(g.size)})


def _cases():
    rng = np.random.default_rng(16)
    return {
        "categorical": (
            ml.Model("y ~ x + (1 |p| g)", _design(rng, lambda n: rng.choice(list("abc"), n)),
                     family="categorical"),
            {"mub_Intercept": 0.3, "mub_x": 0.6, "muc_Intercept": -0.2, "muc_x": -0.4,
             "sd(mub_Intercept|g)": 0.7, "sd(muc_Intercept|g)": 0.7,
             "cor(mub_Intercept,muc_Intercept|g)": 0.5},
        ),
        "gaussian_sigma": (
            ml.Model(ml.bf("y ~ x + (1 |p| g)", sigma="~ 1 + (1 |p| g)"),
                     _design(rng, lambda n: rng.normal(size=n))),
            {"Intercept": 0.5, "x": 0.3, "sigma_Intercept": -0.3, "sd(Intercept|g)": 0.6,
             "sd(sigma_Intercept|g)": 0.4, "cor(Intercept,sigma_Intercept|g)": 0.5},
        ),
    }  # fmt: skip


CASES = _cases()


@pytest.mark.parametrize("case", CASES)
def test_coverage_of_90_percent_intervals(case):
    model, truth = CASES[case]
    result = ml.recover(model, truth, n_reps=N_REPS, seed=2026, **SETTINGS)
    print(case, result.coverage, sep="\n")
    low, high = stats.binom(N_REPS, 0.9).ppf([0.0005, 0.9995]) / N_REPS
    assert low <= result.overall["coverage"] <= high, result.coverage
