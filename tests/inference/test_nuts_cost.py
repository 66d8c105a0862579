"""Where a fit's sampler time goes: gradients (leapfrog steps) and seconds in warmup and
in sampling, per chain, in ``fit.info["timing"]`` (``nuts.ChainCost``).

The counting is checked exactly on a stand-in sampler loop (no compilation) whose n-th
transition of a chain takes n + 1 leapfrog steps, so every chunk boundary shows; then on
real fits (joint NUTS and the collapsed sampler), where the sampling gradients must equal
the sum of the stored per-draw ``n_steps``."""

import json

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import saved_fits
from multilevel.errors import FitFileError
from multilevel.inference import nuts

CHAINS, WARMUP, DRAWS = 3, 37, 45  # not multiples of the chunk: chunks end at warmup's end
SETTINGS = nuts.NutsSettings(chains=CHAINS, warmup=WARMUP, draws=DRAWS, chunk=10)
KEYS = {"warmup_s", "draws_s", "gradients_warmup", "gradients_sampling", "chain_workers"}


def counting_loop(state, count, model_args):
    """Transition n of a chain (counted from its first warmup transition) takes n + 1
    leapfrog steps; the chain's state counts its transitions."""
    length = SETTINGS.chunk
    n = state["n"] + np.arange(length)
    steps = np.where(np.arange(length) < count, n + 1, 0).astype(np.int32)
    values = {"n": n.astype(np.float32)}
    stats = (np.zeros(length, bool), steps, *(np.zeros(length, np.float32) for _ in range(4)))
    return {"n": state["n"] + int(count)}, (values, stats)


@pytest.mark.parametrize("workers", [1, 2])
def test_gradients_per_phase_are_counted_exactly(monkeypatch, workers):
    monkeypatch.setattr(nuts, "_chain_workers", lambda chains: workers)
    state = {"n": np.zeros(CHAINS, np.int64)}
    values, stats, cost = nuts._run_chunks(counting_loop, state, (), SETTINGS, progress=False)
    warmup_steps = np.arange(WARMUP) + 1
    sampling_steps = np.arange(WARMUP, WARMUP + DRAWS) + 1
    np.testing.assert_array_equal(stats[1], np.tile(sampling_steps, (CHAINS, 1)))
    assert cost.gradients.tolist() == [[warmup_steps.sum(), sampling_steps.sum()]] * CHAINS
    assert cost.workers == workers
    assert (cost.seconds > 0).all()
    timing = cost.timing()
    assert timing["gradients_warmup"] == [int(warmup_steps.sum())] * CHAINS
    assert timing["gradients_sampling"] == [int(stats[1][c].sum()) for c in range(CHAINS)]
    assert timing["chain_workers"] == workers
    # the phases' chain-seconds over the chains running at once, and per gradient
    assert timing["warmup_s"] == pytest.approx(cost.seconds[:, 0].sum() / workers)
    assert timing["draws_s"] == pytest.approx(cost.seconds[:, 1].sum() / workers)
    assert timing["seconds_per_gradient"] == pytest.approx(
        cost.seconds.sum() / cost.gradients.sum()
    )
    json.dumps(timing)  # plain Python numbers: it is saved with the fit


@pytest.fixture(scope="module")
def fits():
    rng = np.random.default_rng(5)
    g = rng.integers(0, 8, 200)
    x = rng.standard_normal(200)
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.5, 8)[g]
    data = pd.DataFrame(
        {
            "y": (rng.random(200) < 1 / (1 + np.exp(-eta))).astype(int),
            "z": eta + rng.standard_normal(200),
            "x": x,
            "g": [f"g{i}" for i in g],
        }
    )
    kw = dict(chains=2, warmup=100, draws=80, seed=3, progress=False, warn=False)
    return {
        "joint": ml.Model("y ~ x + (1 | g)", data, family="bernoulli").fit(**kw),
        "collapsed": ml.Model("z ~ x + (1 | g)", data).fit(**kw),
    }


@pytest.mark.parametrize("kind", ["joint", "collapsed"])
def test_fit_timing_reports_the_phases(fits, kind):
    fit = fits[kind]
    assert ("integrated out" in fit.info["method"]) == (kind == "collapsed")
    timing = fit.timing
    assert KEYS | {"seconds_per_gradient", "compile_s", "sampling_s"} <= set(timing)
    # sampling gradients are exactly the stored per-draw leapfrog steps, chain by chain
    n_steps = fit.idata.sample_stats["n_steps"].values
    assert timing["gradients_sampling"] == n_steps.sum(axis=1).astype(int).tolist()
    # warmup takes at least one gradient a transition, and more early on (tree depth > 0)
    assert all(g > 100 for g in timing["gradients_warmup"])
    assert timing["warmup_s"] > 0 and timing["draws_s"] > 0
    assert timing["warmup_s"] + timing["draws_s"] <= timing["sampling_s"]
    assert 0 < timing["seconds_per_gradient"] < 0.1
    assert 1 <= timing["chain_workers"] <= 2


def test_saved_fits_keep_and_check_the_phases(fits):
    info = fits["joint"].info
    assert saved_fits.check_info(json.dumps(info))["timing"] == info["timing"]
    old = {**info, "timing": {k: info["timing"][k] for k in saved_fits.TIMING}}
    saved_fits.check_info(json.dumps(old))  # fits saved before the phases were reported
    bad = {**info, "timing": {**info["timing"], "warmup_s": "soon"}}
    with pytest.raises(FitFileError, match="info.timing.warmup_s"):
        saved_fits.check_info(json.dumps(bad))
