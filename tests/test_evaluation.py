"""Model evaluation: the stored pointwise log-likelihood, PSIS-LOO, WAIC, ml.compare and
K-fold cross-validation with weighted (never recompiled) refits.

Fits are module-scoped (compilation dominates) with 4 chains x 300 draws: radon with and
without county intercepts, and a 30-row data set with one point 20 sd out."""

import copy

import numpy as np
import pytest
from matplotlib.figure import Figure

import multilevel as ml
from conftest import KW, PARTIAL
from multilevel._arviz import az


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
