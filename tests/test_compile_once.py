"""Compile once: a refit of same-shaped data reuses every compiled program.

The model function takes data and prior numbers as arguments, so only the structure and
the shapes key a compiled program (BlackJAX's ``test_compilation.py`` is the model).
These checks cover what the distributional work added; the older ones live beside the
fits they reuse (``models/test_gaussian.py``: a same-seed refit; ``workflow/test_recover.py``:
replications; ``workflow/test_kfold.py``: folds with zero weights).
"""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import loglik
from multilevel.inference import nuts

SETTINGS = dict(chains=1, warmup=100, draws=100, progress=False, warn=False)


def traces() -> int:
    return sum(nuts.TRACE_COUNTS.values())


@pytest.fixture(scope="module")
def hetero():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(6), 10)
    x = rng.normal(size=60)
    y = 1 + 0.5 * x + rng.normal(0, 0.3, 6)[g] + np.exp(-0.5 + 0.3 * x) * rng.normal(size=60)
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    model = ml.Model(ml.bf("y ~ x + (1 | g)", sigma="~ x"), data)
    return model, model.fit(seed=1, **SETTINGS)


def test_a_new_response_reuses_the_distributional_sampler(hetero):
    model, fit = hetero
    before = traces()
    y = model.simulate(seed=3)["y"].to_numpy()
    refit = model.with_response(y).fit(seed=2, **SETTINGS)
    assert traces() == before, "a same-shaped refit of a distributional model recompiled"
    # it sampled the new response's posterior, not the old one's
    assert not np.allclose(refit.draws("sigma_x"), fit.draws("sigma_x"))


def test_other_prior_numbers_reuse_the_sampler(hetero):
    """Prior numbers are arguments: a new scale for sigma's slope does not recompile."""
    model, _ = hetero
    before = traces()
    other = ml.Model(
        ml.bf("y ~ x + (1 | g)", sigma="~ x"), model.data, priors={"sigma_b": ml.Normal(0, 2)}
    )
    other.fit(seed=1, **SETTINGS)
    assert traces() == before


def test_one_log_likelihood_program_per_layout(hetero):
    model, fit = hetero
    key = ("gaussian", "identity", loglik.layout_of(model.spec))
    assert key in loglik._PROGRAMS  # the fit stored its log-likelihood with it
    before = len(loglik._PROGRAMS)
    loglik.log_likelihood_values(model.spec, model.design, fit.idata.posterior)
    assert len(loglik._PROGRAMS) == before  # computed again by the same program
