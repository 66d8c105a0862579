"""Simulation-based calibration (slow) of two of issue 13's families, 200 simulations each:

* ``cumulative`` (logit) with 4 categories and a varying intercept, ``y ~ x + (1 | g)``:
  parameters ``Intercept[1..3]``, ``x``, ``sd(Intercept|g)`` (5);
* ``zero_inflated_poisson`` with a varying intercept and ``zi ~ 1``: ``Intercept``,
  ``x``, ``zi_Intercept``, ``sd(Intercept|g)`` (4).

The pass rule of tests/workflow/test_sbc_slow.py: every hyper-parameter's rank ECDF
inside its simultaneous band (Säilynoja et al. 2022) at the Bonferroni-corrected level
1 - 0.05 / (number of parameters), so that a calibrated sampler fails with probability
<= 5% per case; and a bulk ESS of at least the L = 99 kept draws in 99% of the
simulations.

    python -m pytest -m slow tests/workflow/test_sbc_ordinal_zero_inflated_slow.py

``MULTILEVEL_SBC_SIMS=<dir>`` keeps the simulations in ``<dir>/<case>`` so an
interrupted run resumes.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.workflow.sbc import sbc
from multilevel.workflow.sbc_runner import ModelRecipe

pytestmark = pytest.mark.slow

N_SIMS = 200
SAMPLER = dict(chains=2, warmup=1000, draws=1000, target_accept=0.9, seed=2026)


def _frame(rng, y):
    g = np.repeat(np.arange(12), 10)
    return pd.DataFrame({"g": [f"g{i:02d}" for i in g], "x": rng.normal(size=g.size), "y": y})


def _cumulative():
    """Thresholds StudentT(3, 0, 1.5) apart enough at 95% that no category is empty in
    most simulations of 120 rows; a simulation that leaves one empty is still a valid
    data set for the model (its thresholds' posterior is then the prior's tail)."""
    rng = np.random.default_rng(7)
    data = _frame(rng, rng.integers(1, 5, 120))
    priors = {"Intercept": ml.StudentT(3, 0, 1.5), "b": ml.Normal(0, 1), "sd": ml.HalfNormal(1)}
    return ml.Model("y ~ x + (1 | g)", data, family="cumulative", priors=priors)


def _zero_inflated_poisson():
    """log mean around log 3 and zi around 0.3: counts of a few, a third of them zero."""
    rng = np.random.default_rng(8)
    data = _frame(rng, rng.poisson(2, 120))
    priors = {
        "Intercept": ml.Normal(1, 0.5),
        "b": ml.Normal(0, 0.5),
        "sd": ml.HalfNormal(0.5),
        "zi_Intercept": ml.Normal(-1, 0.5),
    }
    return ml.Model(
        ml.bf("y ~ x + (1 | g)", zi="~ 1"), data, family="zero_inflated_poisson", priors=priors
    )


CASES = {"cumulative": _cumulative, "zero_inflated_poisson": _zero_inflated_poisson}


@pytest.mark.parametrize("case", CASES)
def test_worker_recipe_rebuilds_the_model(case):
    model = CASES[case]()
    rebuilt = ModelRecipe.of(model).build()
    assert rebuilt.spec.hyper_names == model.spec.hyper_names


@pytest.mark.parametrize("case", CASES)
def test_sbc_passes(tmp_path, case):
    model = CASES[case]()
    sims = os.environ.get("MULTILEVEL_SBC_SIMS")
    path = Path(sims) / case if sims else tmp_path / case
    result = sbc(model, n_sims=N_SIMS, path=path, **SAMPLER)
    print(result.summary())
    check = result.check(alpha=0.05)
    assert check["in_band"].all(), result.summary()
    assert (result.diagnostics["min_ess_bulk"] >= result.n_draws).mean() >= 0.99
