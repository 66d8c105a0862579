"""Coverage of 90% intervals over replications (slow), ``ml.recover``, for issue 13's
model kinds and category-specific effects ``cs()`` (sratio): data simulated from known
values on a fixed design with a varying intercept, refitted 40 times.

Pass rule per case: the overall coverage of the hyper-parameters' 90% intervals within
the binomial band that a calibrated posterior stays inside with probability 99.9%
(coverages of one replication's parameters are correlated, so the band is taken for the
number of replications, not of intervals: a conservative, wider band).

Censoring is not here: ``recover`` refits the model's own simulated (uncensored) response
with the data's censoring indicators, which is not how censored data arise; censoring is
checked on real data against a hand-written model (tests/models/test_addition_references.py).

    python -m pytest -m slow tests/workflow/test_recover_issue13_slow.py
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
    g = np.repeat(np.arange(20), 15)
    return pd.DataFrame({"g": g, "x": rng.normal(size=g.size), "t": rng.uniform(0.5, 2, g.size),
                         "y": y(g.size)})  # fmt: skip


def _cases():
    rng = np.random.default_rng(13)
    sd = {"sd(Intercept|g)": 0.5}
    return {
        "cumulative": (
            ml.Model("y ~ x + (1 | g)", _design(rng, lambda n: rng.integers(1, 5, n)),
                     family="cumulative"),
            {"Intercept[1]": -1.0, "Intercept[2]": 0.0, "Intercept[3]": 1.2, "x": 0.7, **sd},
        ),
        "zero_inflated_poisson": (
            ml.Model("y ~ x + (1 | g)", _design(rng, lambda n: rng.poisson(2, n)),
                     family="zero_inflated_poisson"),
            {"Intercept": 0.8, "x": 0.4, "zi_Intercept": -1.0, **sd},
        ),
        "poisson_rate": (
            ml.Model("y | rate(t) ~ x + (1 | g)", _design(rng, lambda n: rng.poisson(2, n)),
                     family="poisson"),
            {"Intercept": 0.5, "x": 0.4, **sd},
        ),
        "weibull": (
            ml.Model("y ~ x + (1 | g)", _design(rng, lambda n: rng.weibull(1.5, n) + 0.1),
                     family="weibull"),
            {"Intercept": 1.0, "x": 0.3, "shape": 1.5, **sd},
        ),
        "truncated_gaussian": (
            ml.Model("y | trunc(lb = 0) ~ x + (1 | g)", _design(rng, lambda n: rng.uniform(0, 3, n))),
            {"Intercept": 0.8, "x": 0.5, "sigma": 1.0, **sd},
        ),
        "categorical": (
            ml.Model("y ~ x + (1 | g)", _design(rng, lambda n: rng.choice(list("abc"), n)),
                     family="categorical"),
            {"mub_Intercept": 0.3, "mub_x": 0.6, "muc_Intercept": -0.2, "muc_x": -0.4,
             "sd(mub_Intercept|g)": 0.5, "sd(muc_Intercept|g)": 0.5},
        ),
        "sratio_cs": (  # last: the rng draws of the cases above stay theirs
            ml.Model("y ~ x + cs(t) + (1 | g)", _design(rng, lambda n: rng.integers(1, 5, n)),
                     family="sratio"),
            {"Intercept[1]": -0.5, "Intercept[2]": 0.3, "Intercept[3]": 1.0, "x": 0.7,
             "t[1]": 0.6, "t[2]": -0.4, "t[3]": 0.0, **sd},
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
