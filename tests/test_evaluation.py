"""Model evaluation: the stored pointwise log-likelihood, PSIS-LOO, WAIC, ml.compare and
K-fold cross-validation with weighted (never recompiled) refits.

Fits are module-scoped (compilation dominates) with 4 chains x 300 draws: radon with and
without county intercepts, and a 30-row data set with one point 20 sd out."""

import copy
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from numpyro.infer.util import log_density
from scipy import stats

import multilevel as ml
from multilevel import evaluation, loglik
from multilevel._arviz import az
from multilevel.backends import gaussian_collapsed as gc
from multilevel.backends import numpyro_model as backend

PARTIAL = "log_radon ~ floor + (1 | county)"
COMPLETE = "log_radon ~ floor"
KW = dict(chains=4, warmup=300, draws=300, seed=1, progress=False, warn=False)


@pytest.fixture(scope="module")
def radon():
    return ml.datasets.load("radon")


@pytest.fixture(scope="module")
def partial(radon):
    return ml.Model(PARTIAL, radon).fit(**KW)


@pytest.fixture(scope="module")
def complete(radon):
    return ml.Model(COMPLETE, radon).fit(**KW)


@pytest.fixture(scope="module")
def outlier():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    df = pd.DataFrame({"x": x, "y": 1 + 0.5 * x + rng.normal(size=30)})
    df.loc[7, "y"] += 20.0  # 20 sd out
    return ml.Model("y ~ x", df).fit(**KW)


# --------------------------------------------------------------------------- log-likelihood
def test_log_likelihood_is_stored_and_matches_scipy(partial, radon):
    ll = partial.idata.log_likelihood["log_radon"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (4, 300, 919)
    assert ll.dtype == np.float64
    assert partial.info["log_likelihood"] == "stored"
    post = partial.idata.posterior
    county = pd.Index(post["county"].values).get_indexer(radon["county"])
    for c, d in [(0, 0), (2, 150), (3, 299)]:
        mu = (
            float(post["Intercept"][c, d])
            + float(post["floor"][c, d]) * radon["floor"].to_numpy()
            + post["Intercept|county"].values[c, d][county]
        )
        ref = stats.norm.logpdf(radon["log_radon"], mu, float(post["sigma"][c, d]))
        np.testing.assert_allclose(ll.values[c, d], ref, rtol=1e-10)
    # workflow.pooling uses the same function, now from evaluation
    np.testing.assert_array_equal(evaluation.pointwise_log_likelihood(partial), ll.values)


def test_auto_threshold_and_override(partial, radon, monkeypatch):
    """Over the threshold nothing is stored (and info says so); loo computes it on
    demand, to the same numbers. log_likelihood=True/False override the threshold."""
    monkeypatch.setattr(loglik, "MAX_STORED_VALUES", 1000)
    model = ml.Model(PARTIAL, radon)
    skipped = model.fit(**KW)  # same seed: the same draws as `partial`
    assert "log_likelihood" not in skipped.idata.groups()
    assert skipped.info["log_likelihood"].startswith("not stored")
    assert "fit.loo()" in skipped.info["log_likelihood"]
    assert skipped.loo().elpd == pytest.approx(partial.loo().elpd, rel=1e-12)
    assert "log_likelihood" in model.fit(**KW, log_likelihood=True).idata.groups()
    monkeypatch.setattr(evaluation, "MAX_STORED_VALUES", 2e8)
    off = model.fit(**KW, log_likelihood=False)
    assert "log_likelihood" not in off.idata.groups()
    assert "log_likelihood=False" in off.info["log_likelihood"]


# --------------------------------------------------------------------------- LOO / WAIC
def test_loo_and_waic_equal_arviz_on_the_stored_group(partial):
    res, ref = partial.loo(), az.loo(partial.idata, pointwise=True)
    assert res.elpd == pytest.approx(float(ref["elpd_loo"]))
    assert res.se == pytest.approx(float(ref["se"]))
    assert res.p_loo == pytest.approx(float(ref["p_loo"]))
    k = np.asarray(ref["pareto_k"])
    assert res.pareto_k["bad"] == int((k >= 0.7).sum())
    assert sum(res.pareto_k.values()) == 919
    w, ref_w = partial.waic(), az.waic(partial.idata, pointwise=True)
    assert w.elpd == pytest.approx(float(ref_w["elpd_waic"]))
    assert w.p_waic == pytest.approx(float(ref_w["p_waic"]))
    table = res.pointwise
    cols = ["log_radon", "county", "floor", "elpd_loo", "p_loo", "pareto_k"]
    assert list(table.columns) == cols
    assert table["elpd_loo"].sum() == pytest.approx(res.elpd)
    assert table["p_loo"].sum() == pytest.approx(res.p_loo)
    assert partial.loo() is res  # cached


def test_p_loo_is_below_the_nominal_count_with_partial_pooling(partial):
    res = partial.loo()
    assert res.n_params == 4 + 85  # Intercept, floor, sd, sigma + 85 county intercepts
    assert 10 < res.p_loo < res.n_params
    text = str(res)
    assert "nominal count 89" in text and "partial pooling shrinks group effects" in text
    assert "Pareto k:" in text


def test_p_loo_is_close_to_p_without_groups(complete):
    res = complete.loo()
    assert res.n_params == 3
    assert abs(res.p_loo - 3) < 1, res


def test_compare_ranks_partial_above_complete_pooling(partial, complete, tmp_path):
    table = ml.compare({"complete": complete, "partial": partial})
    assert list(table.index) == ["partial", "complete"]
    for col in ["elpd", "p", "elpd_diff", "se_diff", "weight", "warning", "n_params"]:
        assert col in table
    assert table.loc["partial", "elpd_diff"] == 0
    assert table.loc["complete", "elpd_diff"] > 2 * table.loc["complete", "se_diff"]
    assert table["weight"].sum() == pytest.approx(1)
    assert table.loc["partial", "p"] == pytest.approx(partial.loo().p_loo)
    fig = ml.plot_compare(table, tmp_path / "compare.png")
    assert isinstance(fig, Figure) and (tmp_path / "compare.png").stat().st_size > 0


def test_compare_refuses_fits_of_other_rows(partial, complete):
    other = copy.copy(complete)
    other.idata = complete.idata.copy()
    other.idata.observed_data["log_radon"].values[0] += 1.0
    with pytest.raises(ml.MultilevelError, match="same rows"):
        ml.compare({"a": partial, "b": other})
    with pytest.raises(ml.MultilevelError, match="two or more"):
        ml.compare({"a": partial})


def test_loo_warning_names_the_outlier(outlier):
    with pytest.warns(ml.LooWarning, match=r"row 7 .*Try ml\.kfold\(fit, 10\)") as caught:
        res = outlier.loo()
    assert res.pareto_k["bad"] >= 1
    assert res.pointwise["pareto_k"].idxmax() == 7
    message = next(str(w.message) for w in caught if issubclass(w.category, ml.LooWarning))
    assert 'family="student_t"' in message
    assert "Warning:" in str(res)


# --------------------------------------------------------------------------- K-fold
def test_kfold_by_county_reuses_the_compiled_sampler(partial):
    res = ml.kfold(partial, 5, by="county", progress=False)
    assert (res.folds["retraced"].iloc[1:] == 0).all()
    assert res.folds["groups"].sum() == 85 and res.folds["rows"].sum() == 919
    # whole counties held out: each fold's rows share no county with the others
    per_county = res.pointwise.groupby("county")["fold"].nunique()
    assert (per_county == 1).all()
    loo = partial.loo()
    # Predicting new counties is harder than new houses in known counties, not much harder.
    assert res.elpd < loo.elpd
    assert abs(res.elpd - loo.elpd) < 4 * loo.se
    assert res.p == pytest.approx(loo.p_loo + loo.elpd - res.elpd, abs=1e-6)
    assert "5-fold cross-validation by county" in str(res)


def test_kfold_by_rows_agrees_with_loo(partial):
    res = ml.kfold(partial, 5, progress=False)
    loo = partial.loo()
    assert abs(res.elpd - loo.elpd) < loo.se / 2
    assert res.pointwise["fold"].value_counts().max() <= 919 // 5 + 1


def test_kfold_joint_sampler_compiles_once(outlier):
    """The joint (row-wise) model: held-out rows get weight 0, so folds 2..k reuse the
    program the first fold compiled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.ConvergenceWarning)
        res = ml.kfold(outlier, 3, progress=False)
    assert (res.folds["retraced"].iloc[1:] == 0).all()
    assert res.pointwise.loc[7, "elpd_kfold"] < -20  # the outlier is badly predicted


def test_kfold_checks_its_arguments(partial):
    with pytest.raises(ml.MultilevelError, match="only 85 groups"):
        ml.kfold(partial, 86, by="county")
    with pytest.raises(ml.MultilevelError, match="no such column"):
        ml.kfold(partial, 5, by="state")
    with pytest.raises(ml.MultilevelError, match="k must be"):
        ml.kfold(partial, 1)


# --------------------------------------------------------------------------- weights
def test_weight_zero_rows_add_nothing(radon):
    """Weight 0 equals dropping the rows: in the collapsed statistics' likelihood and in
    the joint model's log density, at fixed parameter values."""
    model = ml.Model(PARTIAL, radon)
    design = model.design
    keep = (radon.groupby("county").cumcount() % 2 == 0).to_numpy()  # every county keeps rows
    sub = ml.Model(PARTIAL, radon[keep].reset_index(drop=True))
    assert sub.design.blocks[0].levels == design.blocks[0].levels  # same counties
    chosen = gc.plan(design, "gaussian")
    weighted = gc.sufficient_statistics(design, chosen, weights=keep.astype(float))
    dropped = gc.sufficient_statistics(sub.design, chosen)
    with jax.enable_x64(True):
        mll = jax.jit(gc.marginal_log_likelihood)
        beta, tril = jnp.array([1.4, -0.6]), jnp.array([[0.3]])
        a, b = (
            float(mll(beta, 0.7, tril, gc.as_model_args(s, jnp.float64)))
            for s in (weighted, dropped)
        )
    assert a == pytest.approx(b, rel=1e-10)

    _, prior = model.model_args()
    named = {"Intercept": 1.4, "floor": -0.6, "sd(Intercept|county)": 0.3, "sigma": 0.7}
    named["Intercept|county"] = np.linspace(-0.5, 0.5, 85)
    params = backend.site_values(model.spec, prior, named)
    fn = backend.make_model(model.structure)

    @jax.jit
    def density(data):
        return log_density(fn, (data, prior), {}, params)[0]

    full = float(density(backend.data_arrays(design)))
    lw = float(density(backend.data_arrays(design, weight=keep.astype(float))))
    ls = float(density(backend.data_arrays(sub.design)))
    assert lw == pytest.approx(ls, rel=1e-5) and abs(full - lw) > 100


# --------------------------------------------------------------------------- no rows
def test_from_chunks_model_refuses_loo(radon):
    chunked = ml.Model.from_chunks(PARTIAL, [radon.iloc[:400], radon.iloc[400:]], progress=False)
    with pytest.raises(ml.MultilevelError, match="chunked statistics"):
        chunked.fit(**KW, log_likelihood=True)
    fit = chunked.fit(**KW)
    assert fit.info["log_likelihood"].startswith("not available")
    for call in (fit.loo, fit.waic, lambda: ml.kfold(fit, 5)):
        with pytest.raises(ml.MultilevelError, match=r"Model\.from_chunks.*per-group sums"):
            call()
