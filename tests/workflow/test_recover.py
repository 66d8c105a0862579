"""Fake data (Model.simulate) and parameter recovery (recover) on the cafe model.

Small fits (2 chains, 300 warmup, 300 draws) keep the file fast; the statistical checks
state their binomial tolerance.
"""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.inference import nuts
from multilevel.simulation import resample_groups
from multilevel.workflow.recover import RecoveryResult, recover

FORMULA = "wait ~ afternoon + (1 + afternoon | cafe)"
RHO = "cor(Intercept,afternoon|cafe)"
FIT = dict(chains=2, warmup=300, draws=300)
N_REPS = 16


@pytest.fixture(scope="module")
def cafe():
    data = ml.datasets.load("cafe")
    return data, ml.Model(FORMULA, data)


@pytest.fixture(scope="module")
def hyper_truth(cafe):
    data, model = cafe
    return {k: data.attrs["truth"][k] for k in model.spec.hyper_names}


def _traces() -> int:
    return sum(nuts.TRACE_COUNTS.values())


@pytest.fixture(scope="module")
def recovery(cafe, hyper_truth):
    """N_REPS replications, with the trace count recorded before and after each fit."""
    _, model = cafe
    before = _traces()
    after_each = []
    result = recover(
        model,
        hyper_truth,
        n_reps=N_REPS,
        seed=1,
        progress=False,
        callback=lambda rep, fit: after_each.append(_traces()),
        **FIT,
    )
    return result, before, after_each


# --------------------------------------------------------------------------- recover


def test_true_correlation_inside_interval_in_clear_majority(recovery):
    """rho = -0.7 inside the 90% interval in at least 11 of 16 replications: under
    nominal coverage the count is Binomial(16, 0.9), and P(X <= 10) = 0.003."""
    result, _, _ = recovery
    rows = result.table[result.table["parameter"] == RHO]
    assert (rows["truth"] == -0.7).all()
    assert rows["covered"].sum() >= 11, rows
    assert (rows["mean"] < 0).mean() > 0.8  # the data say "negative" nearly every time


def test_coverage_over_all_parameters_is_consistent_with_90_percent(recovery):
    """96 intervals (6 parameters x 16 replications): coverage at least 0.9 minus three
    binomial standard errors, 0.9 - 3 sqrt(0.9 * 0.1 / 96) = 0.808. Intervals of one
    replication are correlated, so the true spread is somewhat wider; a coding error
    (wrong scale, wrong sign) drops coverage far lower. Mean z within 0.5 of 0:
    the average of 96 roughly unit-variance z-scores, correlated within replications."""
    result, _, _ = recovery
    overall = result.overall
    assert overall["n_intervals"] == 6 * N_REPS
    assert overall["se"] == pytest.approx(np.sqrt(0.09 / (6 * N_REPS)))
    assert overall["coverage"] >= 0.9 - 3 * overall["se"], result
    assert abs(overall["mean_z"]) < 0.5, result
    # Per parameter (16 intervals each, se 0.075) none may miss more than 6 times:
    # P(Binomial(16, 0.1) >= 7) = 0.0005.
    assert (result.coverage["coverage"] >= 10 / 16).all(), result


def test_refits_of_same_shaped_data_do_not_recompile(recovery):
    """As BlackJAX's test_compilation.py: the sampling loop is traced at most once (by the
    first fit, unless an earlier test compiled it already), never by later replications."""
    _, before, after_each = recovery
    assert after_each[0] - before <= 1
    assert after_each[-1] == after_each[0], after_each


def test_table_coverage_and_repr(recovery):
    result, _, _ = recovery
    assert isinstance(result, RecoveryResult)
    table = result.table
    assert list(table.columns) == [
        "replication",
        "parameter",
        "truth",
        "mean",
        "sd",
        "q5",
        "q95",
        "covered",
        "z",
    ]
    assert len(table) == N_REPS * 6
    np.testing.assert_allclose(table["z"], (table["mean"] - table["truth"]) / table["sd"])
    inside = (table["q5"] <= table["truth"]) & (table["truth"] <= table["q95"])
    assert (table["covered"] == inside).all()
    coverage = result.coverage
    assert list(coverage.index) == list(result.hyper_names)
    assert list(coverage.columns) == ["coverage", "se", "mean_z", "sd_z", "n_reps"]
    assert (coverage["n_reps"] == N_REPS).all()
    assert len(result.diagnostics) == N_REPS
    text = repr(result)
    assert "coverage" in text and RHO in text and f"{N_REPS} replications" in text


def test_same_seed_same_result_and_group_effects_drawn_anew(cafe, hyper_truth, recovery):
    """Replication r depends on the seed only (not on n_reps), and group effects left
    out of the truth are drawn anew in every replication."""
    _, model = cafe
    result, _, _ = recovery
    before = _traces()
    again = recover(
        model, hyper_truth, n_reps=2, seed=1, include_group_effects=True, progress=False, **FIT
    )
    assert _traces() == before  # same shapes and settings: no new trace
    hyper = again.table[again.table["parameter"].isin(result.hyper_names)]
    first = result.table[result.table["replication"] < 2]
    pd.testing.assert_frame_equal(hyper.reset_index(drop=True), first.reset_index(drop=True))
    effects = again.table[again.table["parameter"].str.startswith("Intercept|cafe[")]
    assert len(effects) == 2 * 20
    t0, t1 = (effects.loc[effects["replication"] == r, "truth"].to_numpy() for r in (0, 1))
    assert not np.allclose(t0, t1)


def test_recover_rejects_bad_input(cafe, hyper_truth):
    _, model = cafe
    with pytest.raises(ml.MultilevelError, match=r"needed for sigma.*Expected: Intercept"):
        recover(model, {k: v for k, v in hyper_truth.items() if k != "sigma"}, n_reps=1)
    with pytest.raises(ml.MultilevelError, match="n_reps"):
        recover(model, hyper_truth, n_reps=0)
    with pytest.raises(ml.MultilevelError, match="between -1 and 1"):
        recover(model, {**hyper_truth, RHO: -1.5}, n_reps=1)


def test_plot_png_svg_and_pdf(recovery, tmp_path):
    result, _, _ = recovery
    fig = result.plot(tmp_path / "recovery.png")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 6
    assert (tmp_path / "recovery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result.plot(tmp_path / "recovery.svg", parameters=[RHO])
    assert b"<svg" in (tmp_path / "recovery.svg").read_bytes()[:500]
    result.plot(tmp_path / "recovery.pdf", parameters=[RHO])
    assert (tmp_path / "recovery.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ml.MultilevelError, match="image format"):
        result.plot(tmp_path / "recovery.jpg")
    with pytest.raises(ml.MultilevelError, match="No recovery results"):
        result.plot(parameters=["rho"])


# --------------------------------------------------------------------------- simulate


def test_simulate_echoes_given_values(cafe):
    data, model = cafe
    truth = data.attrs["truth"]
    df = model.simulate(truth, seed=4)
    assert list(df.columns) == ["cafe", "afternoon", "wait"]
    pd.testing.assert_frame_equal(df[["cafe", "afternoon"]], data[["cafe", "afternoon"]])
    assert not np.allclose(df["wait"], data["wait"])
    used = df.attrs["truth"]
    for name in model.spec.hyper_names:
        assert used[name] == truth[name]
    for name in ("Intercept|cafe", "afternoon|cafe"):
        pd.testing.assert_series_equal(used[name], truth[name], check_index_type=False)


def test_simulate_same_seed_same_frame(cafe):
    data, model = cafe
    a = model.simulate(data.attrs["truth"], seed=7)
    b = model.simulate(data.attrs["truth"], seed=7)
    c = model.simulate(data.attrs["truth"], seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["wait"], c["wait"])


def test_simulated_response_follows_the_reported_truth(cafe, hyper_truth):
    """Group effects left out are drawn, and attrs["truth"] reports the ones used: the
    residuals y - mu(truth) of 200 rows have sd sigma = 0.5 (sd of a sample sd of 200
    normals ~ 0.5 / sqrt(400) = 0.025; we allow 0.1) and mean ~ 0 (se 0.035; allow 0.15)."""
    _, model = cafe
    df = model.simulate(hyper_truth, seed=5)
    used = df.attrs["truth"]
    a = used["Intercept|cafe"].loc[df["cafe"]].to_numpy()
    b = used["afternoon|cafe"].loc[df["cafe"]].to_numpy()
    mu = 3.5 + a + (-1.0 + b) * df["afternoon"].to_numpy()
    residual = df["wait"].to_numpy() - mu
    assert residual.std() == pytest.approx(0.5, abs=0.1)
    assert abs(residual.mean()) < 0.15
    assert list(used["Intercept|cafe"].index) == list(model.spec.terms[0].levels)


def test_simulate_new_design(cafe):
    data, model = cafe
    df = model.simulate(data.attrs["truth"], seed=3, n_groups=30, rows_per_group=7)
    assert df.shape == (210, 3)
    assert df["cafe"].nunique() == 30
    assert (df["cafe"].value_counts() == 7).all()
    assert sorted(df["cafe"].unique())[:2] == ["g001", "g002"]
    assert set(df["afternoon"]) == {0, 1}
    used = df.attrs["truth"]
    assert used[RHO] == -0.7
    # The given effects belong to cafe01..cafe20; the 30 new groups get their own.
    assert list(used["Intercept|cafe"].index) == [f"g{i:03d}" for i in range(1, 31)]
    again = model.simulate(data.attrs["truth"], seed=3, n_groups=30, rows_per_group=7)
    pd.testing.assert_frame_equal(df, again)


def test_new_design_keeps_priors_and_trials():
    cbpp = ml.datasets.load("cbpp")
    model = ml.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial")
    new = resample_groups(model, n_groups=12, rows_per_group=3, seed=2)
    assert new.spec.prior_of == model.spec.prior_of
    assert list(new.data.columns) == ["herd", "incidence", "size", "period"]
    assert len(new.data) == 36 and new.data["herd"].nunique() == 12
    assert (new.data["incidence"] <= new.data["size"]).all()


def test_prior_draw_when_no_params(cafe):
    _, model = cafe
    df = model.simulate(seed=11)
    used = df.attrs["truth"]
    assert set(used) == {*model.spec.hyper_names, "Intercept|cafe", "afternoon|cafe"}
    assert used["sigma"] > 0 and -1 < used[RHO] < 1
    assert used["Intercept"] != model.simulate(seed=12).attrs["truth"]["Intercept"]


def test_bad_parameter_names_list_the_expected_ones(cafe, hyper_truth):
    _, model = cafe
    with pytest.raises(ml.MultilevelError, match=r"'rho'.*Expected: Intercept, afternoon"):
        model.simulate({**hyper_truth, "rho": -0.7})
    with pytest.raises(ml.MultilevelError, match=r"'sigmma' \(did you mean 'sigma'\?\)"):
        model.simulate({**hyper_truth, "sigmma": 1.0})
    with pytest.raises(ml.MultilevelError, match="all group effects"):
        model.simulate({**hyper_truth, "Intercept|cafe": np.zeros(20)})
    with pytest.raises(ml.MultilevelError, match="positive"):
        model.simulate({**hyper_truth, "sigma": -1.0})


def test_new_design_needs_a_single_grouping_factor():
    pen = ml.datasets.load("Penicillin")
    model = ml.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    with pytest.raises(ml.MultilevelError, match="single grouping factor.*plate, sample"):
        model.simulate(n_groups=10, rows_per_group=4)


def test_simulate_binomial_carries_trials():
    cbpp = ml.datasets.load("cbpp")
    model = ml.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial")
    df = model.simulate(seed=1)
    pd.testing.assert_series_equal(df["size"], cbpp["size"])
    assert (df["incidence"] <= df["size"]).all()
