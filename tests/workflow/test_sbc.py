"""Simulation-based calibration: the driver (structure, resuming, processes, Dask) on a
tiny model, and ``SBCResult``'s verdict on synthetic ranks with known answers.

The rank statistics alone are tested in test_sbc_ranks.py, seeds and the resume store in
test_sbc_runner.py, the plot in test_sbc_plot.py; the full SBC of three models (200+
simulations each) is in test_sbc_slow.py."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.workflow import sbc as S
from multilevel.workflow.sbc_ranks import rank_of

# Deliberately short chains: these tests check the machinery, not calibration.
FAST = dict(chains=1, warmup=150, draws=200, progress=False)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 6)
    data = pd.DataFrame({"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "g": g})
    data["g"] = "g" + data["g"].astype(str)
    priors = {
        "Intercept": ml.Normal(0, 1),
        "b": ml.Normal(0, 1),
        "sd": ml.HalfNormal(1),
        "sigma": ml.HalfNormal(1),
    }
    return ml.Model("y ~ x + (1 | g)", data, priors=priors)


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory):
    """An interrupted run (4 of 6 simulations saved), its resumption in 2 worker
    processes, and an uninterrupted run of all 6 in this process."""
    path = tmp_path_factory.mktemp("sbc") / "run"
    first = S.sbc(model, n_sims=4, processes=1, path=path, **FAST)
    # A crash while writing leaves at most a temporary file behind: it must be ignored.
    (path / ".tmp-crashed.json").write_text('{"index": 4, "ran')
    resumed = S.sbc(model, n_sims=6, processes=2, path=path, **FAST)
    fresh = S.sbc(model, n_sims=6, processes=1, **FAST)
    return {"path": path, "first": first, "resumed": resumed, "fresh": fresh}


def test_structure(runs, model):
    result = runs["fresh"]
    names = list(model.spec.hyper_names)
    assert result.n_draws == 99  # default: 99 kept draws, 100 possible ranks
    assert list(result.ranks.columns) == names
    assert result.ranks.shape == (6, len(names))
    assert result.ranks.index.tolist() == list(range(6))
    values = result.ranks.to_numpy()
    assert values.dtype.kind == "i" and values.min() >= 0 and values.max() <= 99
    assert result.truth.shape == result.ranks.shape
    assert (result.truth["sigma"] > 0).all() and (result.truth["sd(Intercept|g)"] > 0).all()
    for column in ("divergences", "max_r_hat", "min_ess_bulk", "min_ess_tail", "sampling_s"):
        assert column in result.diagnostics
    assert (result.ess_bulk.to_numpy() > 0).all()
    table = result.uniformity
    assert list(table.index) == names
    assert {"chi2_p", "ecdf_p", "in_band"} <= set(table.columns)
    assert table[["chi2_p", "ecdf_p"]].apply(lambda p: p.between(0, 1)).all().all()
    assert isinstance(result.passed(), bool)
    assert "simulations" in repr(result)


def test_resume_runs_only_missing_simulations(runs):
    first, resumed, fresh, path = runs["first"], runs["resumed"], runs["fresh"], runs["path"]
    assert first.resumed == 0 and resumed.resumed == 4
    assert sorted(p.name for p in path.glob("sim_*.json")) == [
        f"sim_{i:06d}.json" for i in range(6)
    ]
    saved = [json.loads((path / f"sim_{i:06d}.json").read_text()) for i in range(6)]
    # Only simulations 4 and 5 were fitted again, and in the worker processes.
    assert {r["pid"] for r in saved[:4]} == {os.getpid()}
    assert os.getpid() not in {r["pid"] for r in saved[4:]}
    pd.testing.assert_frame_equal(resumed.ranks.iloc[:4], first.ranks)
    # Seeds depend on (seed, index) only: resuming, and running in other processes,
    # gives exactly the uninterrupted in-process run.
    pd.testing.assert_frame_equal(resumed.ranks, fresh.ranks)
    pd.testing.assert_frame_equal(resumed.truth, fresh.truth)


def test_resume_refuses_other_settings(runs, model):
    with pytest.raises(ml.MultilevelError, match="another run"):
        S.sbc(model, n_sims=6, processes=1, path=runs["path"], **{**FAST, "draws": 300})
    with pytest.raises(ml.MultilevelError, match="another run"):
        S.sbc(model, n_sims=6, processes=1, path=runs["path"], seed=1, **FAST)


def test_plot_writes_a_png(runs, tmp_path):
    fig = runs["fresh"].plot(tmp_path / "sbc.png")
    assert (tmp_path / "sbc.png").stat().st_size > 10_000
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4


def test_bad_arguments(model):
    with pytest.raises(ml.MultilevelError, match="not one of"):
        S.sbc(model, n_sims=2, params=["Intercept|g"], **FAST)
    with pytest.raises(ml.MultilevelError, match="thin"):
        S.sbc(model, n_sims=2, thin=0, **FAST)
    with pytest.raises(ml.MultilevelError, match="n_sims"):
        S.sbc(model, n_sims=0, **FAST)


def test_dask_missing_is_explained(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import raises ImportError
    with pytest.raises(ml.MultilevelError, match=r"multilevel\[cluster\]"):
        S.sbc(model, n_sims=1, client=object(), **FAST)


def test_dask_cluster_gives_the_same_ranks(model, runs):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        result = S.sbc(model, n_sims=4, client=client, **FAST)
    pd.testing.assert_frame_equal(result.ranks, runs["fresh"].ranks.iloc[:4])
    workers = set(result.diagnostics["pid"])
    assert os.getpid() not in workers


# ------------------------------------------------------------------ uniformity, synthetic ranks
def _conjugate_ranks(n_sims, shift=0.0, scale=1.0, seed=0, n_draws=99):
    """theta ~ N(0, 1), x ~ N(theta, 1): the posterior is N(x / 2, 1 / 2). Ranks of theta
    among draws of that posterior, shifted by ``shift`` posterior sds and with its sd
    multiplied by ``scale`` (1 and 0: calibrated)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_sims)
    x = rng.normal(theta, 1.0)
    sd = np.sqrt(0.5)
    draws = rng.normal(x[:, None] / 2 + shift * sd, scale * sd, (n_sims, n_draws))
    return np.array([rank_of(t, d, rng) for t, d in zip(theta, draws)])


def _result(**columns):
    return S.SBCResult(pd.DataFrame(columns), n_draws=99)


def test_calibrated_ranks_pass():
    result = _result(a=_conjugate_ranks(300, seed=1), b=_conjugate_ranks(300, seed=2))
    table = result.uniformity
    assert table["in_band"].all()
    assert (table[["chi2_p", "ecdf_p"]] > 0.01).all().all()
    assert result.passed()


@pytest.mark.parametrize(
    "shift, scale, why",
    [(0.5, 1.0, "biased posterior"), (0.0, 0.6, "too narrow"), (0.0, 1.5, "too wide")],
)
def test_miscalibrated_ranks_fail(shift, scale, why):
    bad = _conjugate_ranks(300, shift=shift, scale=scale, seed=3)
    result = _result(good=_conjugate_ranks(300, seed=4), bad=bad)
    table = result.uniformity
    assert not result.passed(), why
    assert not table.loc["bad", "in_band"], why
    assert table.loc["bad", "ecdf_p"] < 0.001, why
    assert result.check().loc["good", "ok"], why
