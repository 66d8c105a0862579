"""Simulation-based calibration of a distributional model (slow): gaussian with a
varying intercept and ``sigma ~ x`` (``ml.bf``), 200 simulations.

The same design and pass rule as tests/workflow/test_sbc_slow.py: every hyper-parameter's
rank ECDF inside its simultaneous band (Säilynoja et al. 2022) at the Bonferroni-
corrected level 1 - 0.05 / 5 over the model's 5 parameters (``Intercept``, ``x``,
``sigma_Intercept``, ``sigma_x``, ``sd(Intercept|g)``), so that a calibrated sampler
fails with probability <= 5%; and a bulk ESS of at least the L = 99 kept draws in 99%
of the simulations (ranks of autocorrelated draws pile up at the ends even for a
calibrated sampler).

``ml.sbc`` runs its simulations in worker processes by default, each rebuilding the
model from a recipe; ``test_worker_recipe_rebuilds_the_model`` checks that rebuild on
its own, in seconds.

    python -m pytest -m slow tests/workflow/test_sbc_distributional_slow.py

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
# As in test_sbc_slow.py: 2 x 1000 draws, 99 kept (about every 20th).
SAMPLER = dict(chains=2, warmup=1000, draws=1000, target_accept=0.9, seed=2024)


def _gaussian_sigma_slope():
    """10 groups x 10 rows, x varying within groups; varying intercepts for the mean,
    log sigma linear in x. Priors by class, brms' names for sigma's (``sigma_Intercept``,
    ``sigma_b``): Normal(0, 0.5) keeps sigma within a factor e^1 of 1 at x = 0 and a unit
    of x scaling it by at most ~e^1, at 95%, so no simulation is degenerate."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(10), 10)
    data = pd.DataFrame({"g": [f"g{i:02d}" for i in g], "x": rng.normal(size=g.size)})
    data["y"] = rng.normal(size=g.size)
    priors = {
        "Intercept": ml.Normal(0, 1),
        "b": ml.Normal(0, 1),
        "sd": ml.HalfNormal(1),
        "sigma_Intercept": ml.Normal(0, 0.5),
        "sigma_b": ml.Normal(0, 0.5),
    }
    return ml.Model(ml.bf("y ~ x + (1 | g)", sigma="~ x"), data, priors=priors)


def test_worker_recipe_rebuilds_the_model():
    """What each worker process does first: rebuild the model from ``ModelRecipe``. The
    rebuilt model must have sigma's formula, hence the same spec and parameters."""
    model = _gaussian_sigma_slope()
    rebuilt = ModelRecipe.of(model).build()
    assert rebuilt.spec.hyper_names == model.spec.hyper_names
    assert rebuilt.spec.dpars == model.spec.dpars


def test_sbc_passes(tmp_path):
    case = "gaussian_sigma_slope"
    model = _gaussian_sigma_slope()
    assert model.spec.hyper_names == (
        "Intercept",
        "x",
        "sigma_Intercept",
        "sigma_x",
        "sd(Intercept|g)",
    )
    sims = os.environ.get("MULTILEVEL_SBC_SIMS")
    path = Path(sims) / case if sims else tmp_path / case
    result = sbc(model, n_sims=N_SIMS, path=path, **SAMPLER)
    print(result.summary())
    check = result.check(alpha=0.05)
    assert check["in_band"].all(), result.summary()
    assert (result.diagnostics["min_ess_bulk"] >= result.n_draws).mean() >= 0.99
