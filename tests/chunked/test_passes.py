"""Statistics from data read chunk by chunk equal the in-memory ones; bad data is refused
with messages that name what to fix; Model.from_chunks gives the in-memory posterior."""

import numpy as np
import pandas as pd
import pytest
from chunked_checks import (
    MIXED,
    RADON,
    assert_same,
    in_memory,
    mixed_frame,
    radon_frame,
    small_frame,
)

import multilevel as ml
import multilevel.progress
from multilevel.chunked import chunked_statistics
from multilevel.design import DesignWarning


@pytest.fixture(scope="module")
def radon():
    return radon_frame()


@pytest.fixture(scope="module")
def radon_reference(radon):
    return in_memory(RADON, radon)


@pytest.fixture
def small():
    return small_frame()


@pytest.mark.parametrize("chunk_rows", [7, 100, 5000])
def test_radon_equals_in_memory(radon, radon_reference, chunk_rows):
    summary, stats = chunked_statistics(RADON, radon, chunk_rows=chunk_rows)
    assert_same(summary, stats, *radon_reference)
    assert summary.group == "county" and summary.response == "log_radon"


def test_categories_absent_from_the_first_chunks():
    mixed = mixed_frame()
    summary, stats = chunked_statistics(MIXED, mixed, chunk_rows=53)
    assert "a" not in set(mixed.kind.iloc[:53]) and "d" not in set(mixed.kind.iloc[-53:])
    assert "kind[T.d]" in summary.columns and "C(k)[T.10]" in summary.columns
    assert "shade[T.amber]" in summary.columns  # category order kept, as in memory
    assert_same(summary, stats, *in_memory(MIXED, mixed))


def test_interaction_grouping_factor_and_no_intercept():
    formula = "y ~ 0 + x + (1 | kind:g)"
    mixed = mixed_frame()
    summary, stats = chunked_statistics(formula, mixed, chunk_rows=97)
    assert not summary.has_intercept
    assert_same(summary, stats, *in_memory(formula, mixed))


@pytest.mark.parametrize("offset", [1e4, 1e8])
def test_float64_sums_keep_the_residual_sum_of_squares(offset):
    rng = np.random.default_rng(7)
    n = 200_000
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 500, size=n)})
    df["y"] = offset + 0.5 * df.x + rng.normal(size=n)
    formula = "y ~ x + (1 | g)"
    _, stats = chunked_statistics(formula, df, chunk_rows=40_000)
    _, ref = in_memory(formula, df)
    # y'y summed without the shift would be ~n * offset^2: at 1e8 its rounding alone
    # (~1e21 * 1e-16) is larger than e'e ~ n.
    np.testing.assert_allclose(stats["ee"], ref["ee"], rtol=1e-6)
    np.testing.assert_allclose(stats["ee"], n, rtol=0.02)  # sigma = 1
    # In memory, lstsq on y ~ 1e8 itself gets the slope to ~eps * 1e8 (1e-8 here), and
    # Z'e per group (~20) moves with beta0: compare to that precision.
    tight = offset < 1e6
    np.testing.assert_allclose(stats["beta0"], ref["beta0"], rtol=1e-9 if tight else 1e-7)
    np.testing.assert_allclose(stats["Zte"], ref["Zte"], rtol=0, atol=1e-8 if tight else 1e-4)


def test_progress_bar_only_on_a_terminal(radon, capsys, monkeypatch):
    chunked_statistics(RADON, radon, chunk_rows=300, progress=True)
    assert capsys.readouterr().err == ""  # captured stderr is no terminal: no bar
    monkeypatch.setattr(multilevel.progress, "on_terminal", lambda: True)
    chunked_statistics(RADON, radon, chunk_rows=300, progress=True)
    err = capsys.readouterr().err
    assert "chunked levels" in err and "chunked statistics" in err and "rows" in err


def test_single_level_warns_at_the_caller(small):
    with pytest.warns(DesignWarning, match="single level") as record:
        chunked_statistics("y ~ x + (1 | g)", small.assign(g="a"), chunk_rows=20)
    (mine,) = [w for w in record if issubclass(w.category, DesignWarning)]
    assert mine.filename == __file__  # stacklevel points past the package


# ---------------------------------------------------------------------------------------
# Bad data: every message names what to fix.


def test_bad_chunk_rows(small):
    for bad in (0, 2.5, "10"):
        with pytest.raises(ml.MultilevelError, match="chunk_rows must be a positive"):
            chunked_statistics("y ~ x + (1 | g)", small, chunk_rows=bad)


def test_missing_column_names_close_matches(small):
    with pytest.raises(ml.DataError, match=r"'xx'.*Did you mean 'x'"):
        chunked_statistics("y ~ xx + (1 | g)", small, chunk_rows=20)


def test_missing_values_counted_over_all_chunks(small):
    df = small.copy()
    df.loc[[3, 45], "x"] = np.nan
    df.loc[50, "g"] = None
    with pytest.raises(ml.DataError, match=r"'g' \(1 missing\), 'x' \(2 missing\); 3 rows"):
        chunked_statistics("y ~ x + (1 | g)", df, chunk_rows=20)


def test_infinite_response_and_non_numeric_response(small):
    df = small.assign(y=small.y.where(small.index != 33, np.inf))
    with pytest.raises(ml.DataError, match=r"'y' has 1 infinite"):
        chunked_statistics("y ~ x + (1 | g)", df, chunk_rows=20)
    with pytest.raises(ml.DataError, match=r"response `h`.*numbers"):
        chunked_statistics("h ~ x + (1 | g)", small, chunk_rows=20)


def test_constant_predictor_over_all_chunks(small):
    with pytest.raises(ml.DataError, match=r"'c' is constant"):
        chunked_statistics("y ~ x + c + (1 | g)", small.assign(c=2.0), chunk_rows=7)


# ---------------------------------------------------------------------------------------
# Model.from_chunks: the same model and posterior as the in-memory one


@pytest.fixture(scope="module")
def chunked_and_in_memory_fits(radon, tmp_path_factory):
    path = tmp_path_factory.mktemp("parquet") / "radon.parquet"
    radon.to_parquet(path, row_group_size=200)
    chunked = ml.Model.from_chunks(RADON, path, chunk_rows=150, progress=False)
    in_memory_model = ml.Model(RADON, radon)
    kw = dict(chains=4, warmup=500, draws=500, seed=4, progress=False, warn=False)
    return chunked, chunked.fit(**kw), in_memory_model, in_memory_model.fit(**kw)


def test_from_chunks_has_the_in_memory_priors_and_posterior(chunked_and_in_memory_fits):
    """Same priors; same posterior within 4 combined MCSEs (the float32 statistics may
    differ in a last digit, so the draws need not be identical)."""
    chunked, fit, model, reference = chunked_and_in_memory_fits
    assert chunked.spec.describe() == model.spec.describe()
    for (name, prior), (_, ref) in zip(chunked.spec.priors, model.spec.priors):
        # moments merged over chunks equal np.mean / np.std up to the last digits
        assert vars(prior) == pytest.approx(vars(ref), rel=1e-9), name
    assert fit.info["method"] == reference.info["method"]
    assert fit.info["n_rows"] == reference.info["n_rows"] == len(model.data)
    for name in [*model.spec.hyper_names, "Intercept|county"]:
        a, b = fit.idata.posterior[name].values, reference.idata.posterior[name].values
        a, b = a.reshape(*a.shape[:2], -1), b.reshape(*b.shape[:2], -1)
        for j in range(a.shape[-1]):
            mcse = np.hypot(
                float(ml._arviz.az.mcse(a[..., j])), float(ml._arviz.az.mcse(b[..., j]))
            )
            assert abs(a[..., j].mean() - b[..., j].mean()) < 4 * mcse + 1e-6, (name, j)


def test_from_chunks_refuses_what_needs_rows(chunked_and_in_memory_fits):
    chunked = chunked_and_in_memory_fits[0]
    for call in (
        lambda: chunked.fit(method="nuts"),
        lambda: chunked.simulate(),
        lambda: chunked.sample_prior_predictive(n=10),
        lambda: chunked.with_response(np.zeros(3)),
    ):
        with pytest.raises(ml.MultilevelError, match="Model.from_chunks"):
            call()
