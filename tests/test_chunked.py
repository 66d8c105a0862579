"""Statistics from data read chunk by chunk equal the in-memory ones, from every source."""

import logging
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import multilevel as ml
from multilevel.backends.gaussian_collapsed import sufficient_statistics
from multilevel.chunked import DataSummary, chunked_statistics
from multilevel.design import build_design
from multilevel.families import get_family
from multilevel.formula import parse_formula

RADON = "log_radon ~ floor + (1 + floor | county)"


def in_memory(formula, df):
    design = build_design(parse_formula(formula), df, get_family("gaussian")[0])
    return design, sufficient_statistics(design)


def assert_same(summary: DataSummary, stats: dict, design, ref: dict) -> None:
    assert set(stats) == set(ref)
    for key in ("beta0", "XtX", "ZtZ", "ZtX", "n"):
        np.testing.assert_allclose(stats[key], ref[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # ee, Xe and Zte are sums of residuals e = y - X beta0. The in-memory beta0 comes from
    # lstsq on X, ours from the normal equations: both are the least-squares solution but
    # may differ in their last digits, and Z'e moves with beta0 to first order (X'e is zero
    # up to rounding on both sides). So: relative 1e-8, and an absolute tolerance at the
    # rounding level of the terms each sum cancels.
    np.testing.assert_allclose(stats["ee"], ref["ee"], rtol=1e-8)
    scale = np.sqrt(np.diag(ref["XtX"]) * ref["ee"])
    np.testing.assert_allclose(stats["Xe"], ref["Xe"], rtol=0, atol=1e-8 * scale.max())
    np.testing.assert_allclose(
        stats["Zte"], ref["Zte"], rtol=1e-8, atol=1e-10 * np.abs(ref["Zte"]).max()
    )
    # the summary: what build_design and the default priors see
    X = design.X
    assert summary.n == design.n
    assert summary.columns == design.columns
    assert summary.has_intercept == design.has_intercept
    np.testing.assert_allclose(summary.y_mean, np.mean(design.y), rtol=1e-12)
    np.testing.assert_allclose(summary.y_sd, np.std(design.y), rtol=1e-10)
    np.testing.assert_allclose(summary.x_mean, X.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(summary.x_sd, X.std(axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(summary.x_rms, np.sqrt(np.mean(X**2, axis=0)), rtol=1e-12)
    assert len(summary.blocks) == len(design.blocks)
    for mine, theirs in zip(summary.blocks, design.blocks):
        assert mine.term == theirs.term
        assert mine.coefs == theirs.coefs
        assert mine.levels == theirs.levels
        np.testing.assert_allclose(mine.scales, theirs.scales, rtol=1e-10)


@pytest.fixture(scope="module")
def radon():
    return ml.datasets.load("radon")


@pytest.fixture(scope="module")
def radon_reference(radon):
    return in_memory(RADON, radon)


@pytest.fixture(scope="module")
def mixed():
    """Categorical fixed predictors whose levels the first rows do not show."""
    rng = np.random.default_rng(3)
    n = 600
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "kind": rng.choice(["b", "c", "a", "d"], size=n),
            "k": rng.choice([3, 1, 2, 10], size=n),  # numbers made categorical by C(k)
            "shade": pd.Categorical(
                rng.choice(["zinc", "amber", "moss"], size=n),
                categories=["zinc", "amber", "moss"],  # not sorted: zinc is the base
            ),
            "g": rng.integers(0, 40, size=n) * 7 + 3,  # numeric labels: 10 sorts after 3
        }
    )
    df["y"] = 2 + df.x + (df.kind == "a") + 0.1 * df.k + rng.normal(size=n)
    # rows sorted so the first chunks hold only kind "d" (and "b"), never "a"
    order = np.argsort(df.kind.map({"d": 0, "b": 1, "c": 2, "a": 3}).to_numpy(), kind="stable")
    return df.iloc[order].reset_index(drop=True)


MIXED = "y ~ x * kind + C(k) + shade + (1 + x | g)"


@pytest.mark.parametrize("chunk_rows", [7, 100, 5000])
def test_radon_equals_in_memory(radon, radon_reference, chunk_rows):
    summary, stats = chunked_statistics(RADON, radon, chunk_rows=chunk_rows)
    assert_same(summary, stats, *radon_reference)
    assert summary.group == "county" and summary.response == "log_radon"


def test_list_of_frames_with_categories_absent_from_first_chunks(mixed):
    frames = [mixed.iloc[i : i + 53] for i in range(0, len(mixed), 53)]
    assert "a" not in set(frames[0].kind) and "d" not in set(frames[-1].kind)
    summary, stats = chunked_statistics(MIXED, frames)
    design, ref = in_memory(MIXED, mixed)
    assert "kind[T.d]" in summary.columns and "C(k)[T.10]" in summary.columns
    assert "shade[T.amber]" in summary.columns  # category order kept, as in memory
    assert_same(summary, stats, design, ref)
    # the same from a function that returns a new iterator each time
    summary, stats = chunked_statistics(MIXED, lambda: iter(frames))
    assert_same(summary, stats, design, ref)


def test_interaction_grouping_factor_and_no_intercept(mixed):
    formula = "y ~ 0 + x + (1 | kind:g)"
    summary, stats = chunked_statistics(formula, mixed, chunk_rows=97)
    assert not summary.has_intercept
    assert_same(summary, stats, *in_memory(formula, mixed))


def test_parquet_file_reads_only_the_columns_used(radon, radon_reference, tmp_path, monkeypatch):
    path = tmp_path / "radon.parquet"
    pq.write_table(pa.Table.from_pandas(radon), path, row_group_size=200)
    asked = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        asked.append(set(kwargs["columns"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    summary, stats = chunked_statistics(RADON, str(path), chunk_rows=150)
    assert_same(summary, stats, *radon_reference)
    assert asked[0] == {"county"}  # pass 1: the grouping column only
    assert set().union(*asked) == {"log_radon", "floor", "county"}


def test_parquet_directory(mixed, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, start in enumerate(range(0, len(mixed), 250)):
        part = mixed.iloc[start : start + 250].assign(shade=lambda d: d.shade.astype(str))
        pq.write_table(pa.Table.from_pandas(part), folder / f"part-{i}.parquet")
    formula = "y ~ x + kind + C(k) + (1 + x | g)"
    summary, stats = chunked_statistics(formula, folder, chunk_rows=64)
    assert_same(summary, stats, *in_memory(formula, mixed))


def test_dask_dataframe_on_a_local_cluster(mixed):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    ddf = dd.from_pandas(mixed, npartitions=4)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=False,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster),
    ):
        summary, stats = chunked_statistics(MIXED, ddf)
    assert_same(summary, stats, *in_memory(MIXED, mixed))


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


def test_progress_bar(radon, capsys):
    chunked_statistics(RADON, radon, chunk_rows=300, progress=True)
    assert "rows" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Bad input: every message names what to fix.


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "y": rng.normal(size=60),
            "x": rng.normal(size=60),
            "g": np.repeat(list("abcdef"), 10),
            "h": np.tile(list("uv"), 30),
        }
    )


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


@pytest.mark.parametrize(
    "formula, named",
    [
        ("y ~ center(x) + (1 | g)", "center(x)"),
        ("y ~ x + (1 + scale(x) | g)", "scale(x)"),
        ("y ~ poly(x, 2) + (1 | g)", "poly(x, 2)"),
    ],
)
def test_stateful_transforms_are_refused(small, formula, named):
    with pytest.raises(ml.FormulaError, match=r"Compute the column once") as info:
        chunked_statistics(formula, small)
    assert f"`{named}`" in str(info.value)


def test_categories_of_an_expression_are_refused(small):
    with pytest.raises(ml.FormulaError, match=r"C\(x > 0\)"):
        chunked_statistics("y ~ C(x > 0) + (1 | g)", small)


@pytest.mark.parametrize(
    "formula, family, named",
    [
        ("y ~ x + (1 | g)", "poisson", "poisson"),
        ("y ~ x + (1 | g/h)", "gaussian", "2 grouping factors (g, g:h)"),
        ("y ~ x + (1 | g) + (0 + x | h)", "gaussian", "2 grouping factors (g, h)"),
        ("y ~ x", "gaussian", "no group terms"),
    ],
)
def test_only_gaussian_with_one_grouping_factor(small, formula, family, named):
    with pytest.raises(ml.MultilevelError, match="one grouping factor") as info:
        chunked_statistics(formula, small, family=family)
    assert named in str(info.value) and "in memory" in str(info.value)


def test_constant_predictor_over_all_chunks(small):
    with pytest.raises(ml.DataError, match=r"'c' is constant"):
        chunked_statistics("y ~ x + c + (1 | g)", small.assign(c=2.0), chunk_rows=7)


def test_sources_that_cannot_be_read_twice_or_at_all(small, tmp_path):
    with pytest.raises(ml.DataError, match="one-shot iterator"):
        chunked_statistics("y ~ x + (1 | g)", iter([small]))
    with pytest.raises(ml.DataError, match="No Parquet file"):
        chunked_statistics("y ~ x + (1 | g)", tmp_path / "absent.parquet")
    with pytest.raises(ml.DataError, match="Dask DataFrame"):
        chunked_statistics("y ~ x + (1 | g)", 42)
    calls = []

    def changing():  # a new group appears on the second reading
        calls.append(1)
        return iter([small if len(calls) < 3 else small.assign(g="z")])

    with pytest.raises(ml.DataError, match="'z'.*same rows both times"):
        chunked_statistics("y ~ x + (1 | g)", changing)


def test_missing_dask_names_the_extra(monkeypatch):
    from multilevel.chunked import _import_dask

    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ml.MultilevelError, match=r'pip install "multilevel\[cluster\]"'):
        _import_dask()


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
