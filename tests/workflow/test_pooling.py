"""compare_pooling: complete, no and partial pooling side by side, their LOO, the shrinkage
plot. Fits are module-scoped (compilation dominates); the radon comparison is fitted once
with 4 chains x 500 draws, the cafe one with 2 x 300."""

import copy
import types
import warnings

import numpy as np
import numpyro
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.patches import Ellipse, FancyArrowPatch
from scipy import stats

import multilevel as ml
from multilevel.backends.numpyro_model import site_values
from multilevel.workflow.pooling import (
    PoolingComparison,
    compare_pooling,
    pointwise_log_likelihood,
)
from multilevel.workflow.shrinkage import plot_shrinkage

RADON = "log_radon ~ floor + (1 | county)"
CAFE = "wait ~ afternoon + (1 + afternoon | cafe)"
COLUMNS = [
    "group",
    "term",
    "n",
    "no_pooling",
    "no_pooling_q5",
    "no_pooling_q95",
    "partial_pooling",
    "partial_pooling_q5",
    "partial_pooling_q95",
    "complete_pooling",
    "complete_pooling_q5",
    "complete_pooling_q95",
    "shrinkage",
]


@pytest.fixture(scope="module")
def radon():
    return ml.datasets.load("radon")


@pytest.fixture(scope="module")
def radon_run(radon):
    """The radon comparison and every warning it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compare_pooling(
            RADON, radon, chains=4, warmup=500, draws=500, seed=7, progress=False, warn=False
        )
    return cmp, caught


@pytest.fixture(scope="module")
def radon_cmp(radon_run):
    return radon_run[0]


@pytest.fixture(scope="module")
def cafe_fit():
    model = ml.Model(CAFE, ml.datasets.load("cafe"))
    return model.fit(chains=2, warmup=300, draws=300, seed=3, progress=False, warn=False)


@pytest.fixture(scope="module")
def cafe_cmp(cafe_fit):
    return PoolingComparison.from_fit(cafe_fit, progress=False, warn=False)


# --------------------------------------------------------------------------- the table
def test_table_has_a_row_per_county_and_the_stated_columns(radon_cmp, radon):
    table = radon_cmp.table
    assert list(table.columns) == COLUMNS
    assert len(table) == 85 and table["group"].is_unique
    assert set(table["term"]) == {"Intercept"}
    assert table["n"].sum() == 919
    sizes = radon["county"].value_counts()
    assert (table.set_index("group")["n"] == sizes.reindex(table["group"])).all()
    assert list(radon_cmp.fits) == ["complete", "none", "partial"]
    assert radon_cmp.formulas["none"] == "log_radon ~ 0 + C(county) + floor"
    assert radon_cmp.formulas["complete"] == "log_radon ~ floor"


def test_columns_are_the_fits_posterior_means(radon_cmp):
    """Each column is a posterior mean of the matching fit (float32 draws: 1e-5)."""
    table = radon_cmp.table.set_index("group")
    complete = radon_cmp.fits["complete"].draws("Intercept").mean()
    np.testing.assert_allclose(table["complete_pooling"], complete, rtol=1e-5)
    none = radon_cmp.fits["none"].summary()["mean"]
    for county in ["AITKIN", "HENNEPIN", "WILKIN"]:
        assert table.loc[county, "no_pooling"] == pytest.approx(
            none[f"C(county)[{county}]"], rel=1e-5
        )
    post = radon_cmp.fits["partial"].idata.posterior
    j = list(post["county"].values).index("WILKIN")
    per_draw = post["Intercept"].values + post["Intercept|county"].values[..., j]
    assert table.loc["WILKIN", "partial_pooling"] == pytest.approx(per_draw.mean(), rel=1e-5)
    lo, hi = np.quantile(per_draw, [0.05, 0.95])
    assert table.loc["WILKIN", "partial_pooling_q5"] == pytest.approx(lo, rel=1e-5)
    assert table.loc["WILKIN", "partial_pooling_q95"] == pytest.approx(hi, rel=1e-5)


def test_small_counties_shrink_more(radon_cmp):
    """The teaching point of partial pooling: the less data a county has, the further its
    estimate moves toward the population mean. Shrinkage is a ratio of posterior means,
    so a margin rather than a tolerance: observed rho about -0.8, means 0.6 vs 0.1."""
    table = radon_cmp.table
    rho = stats.spearmanr(table["n"], table["shrinkage"]).statistic
    assert rho < -0.5, rho
    small = table.loc[table["n"] <= 3, "shrinkage"].mean()
    large = table.loc[table["n"] >= 20, "shrinkage"].mean()
    assert small > large + 0.2, (small, large)
    inside = table["shrinkage"].between(-0.05, 1.05).mean()
    assert inside > 0.9, inside


def test_partial_pooling_lies_between_no_pooling_and_the_pooled_value(radon_cmp):
    """Shrinkage toward the population mean puts each county's partial-pooling estimate
    between its own (no-pooling) estimate and the population mean: all 85 counties here,
    > 90% required. Against the complete-pooling value it holds only for counties whose
    own estimate is clearly away from it (observed 76% of all counties): the multilevel
    population mean (about 1.46, Gelman & Hill's mu_alpha) is not the complete-pooling
    intercept (1.33), so a county between the two is pulled past 1.33's side."""
    t = radon_cmp.table
    population = radon_cmp.population()["Intercept"]

    def between(rows, other):
        lo = np.minimum(rows["no_pooling"], other)
        hi = np.maximum(rows["no_pooling"], other)
        return ((rows["partial_pooling"] >= lo) & (rows["partial_pooling"] <= hi)).mean()

    assert between(t, population) > 0.9
    far = t[(t["no_pooling"] - t["complete_pooling"]).abs() > 0.25]
    assert len(far) > 30 and between(far, far["complete_pooling"]) > 0.9


def test_loo_effective_number_of_parameters(radon_cmp):
    """p_loo counts effective parameters: about 3 for complete pooling (Intercept, floor,
    sigma), about 87 for no pooling (a free intercept per county), in between for partial
    pooling, whose county intercepts are held together by their common distribution."""
    loo = radon_cmp.loo
    assert list(loo.index) == ["complete", "none", "partial"]
    assert list(loo.columns) == ["elpd", "se", "p_loo", "pareto_k_bad"]
    assert np.isfinite(loo[["elpd", "se", "p_loo"]].to_numpy()).all()
    p = loo["p_loo"]
    assert 2 < p["complete"] < 5, p
    assert 70 < p["none"] < 100, p
    assert p["complete"] + 10 < p["partial"] < p["none"] - 10, p
    assert loo.loc["partial", "elpd"] > loo.loc["complete", "elpd"]


def test_loo_is_each_fits_own(radon_cmp):
    """One PSIS-LOO for the package: the table is each fit's fit.loo(), Pareto k counted
    bad from 0.7 as there. The no-pooling fit has rows with k >= 0.7 (counties of one or
    two houses: 11 with seed 7); the comparison reports them in the table, not as a
    LooWarning."""
    for variant, fit in radon_cmp.fits.items():
        own = fit.loo()
        row = radon_cmp.loo.loc[variant]
        assert (row["elpd"], row["se"], row["p_loo"]) == (own.elpd, own.se, own.p_loo)
        assert row["pareto_k_bad"] == own.pareto_k["bad"]
        assert row["pareto_k_bad"] == (own.pointwise["pareto_k"] >= 0.7).sum()
    assert radon_cmp.loo.loc["none", "pareto_k_bad"] > 0


def test_comparison_does_not_warn_about_pareto_k(radon_run):
    """Bad Pareto k is a column of the comparison's table, not a LooWarning, although
    fit.loo() warns about such rows (the no-pooling fit here has some)."""
    cmp, caught = radon_run
    assert cmp.loo.loc["none", "pareto_k_bad"] > 0  # there was something to warn about
    assert not [w for w in caught if issubclass(w.category, ml.LooWarning)]


def test_repr_shows_most_shrunk_groups_and_loo(radon_cmp):
    text = repr(radon_cmp)
    top = radon_cmp.table.sort_values("shrinkage", ascending=False)["group"].head(10)
    assert all(g in text for g in top)
    assert "Leave-one-out" in text and "p_loo" in text
    assert "C(county)" in text


# --------------------------------------------------------------------------- log-likelihood
def test_pointwise_log_likelihood_matches_scipy(radon_cmp, radon):
    fit = radon_cmp.fits["partial"]
    ll = pointwise_log_likelihood(fit)
    assert ll.shape == (4, 500, 919)
    post = fit.idata.posterior
    county = pd.Index(post["county"].values).get_indexer(radon["county"])
    for c, d in [(0, 0), (1, 123), (3, 499)]:
        mu = (
            float(post["Intercept"][c, d])
            + float(post["floor"][c, d]) * radon["floor"].to_numpy()
            + post["Intercept|county"].values[c, d][county]
        )
        ref = stats.norm.logpdf(radon["log_radon"], mu, float(post["sigma"][c, d]))
        np.testing.assert_allclose(ll[c, d], ref, rtol=1e-5)


def test_pointwise_log_likelihood_matches_the_numpyro_model(cafe_fit):
    """The same numbers as the model's own likelihood site, with correlated effects: raw
    site values rebuilt for three draws. The model runs in float32, hence atol 1e-4."""
    model = cafe_fit.model
    data, prior = model.model_args()
    post = cafe_fit.idata.posterior
    names = [*cafe_fit.spec.hyper_names, *cafe_fit.spec.terms[0].effect_names]
    draws = [(0, 0), (0, 150), (1, 299)]
    sites = [
        site_values(cafe_fit.spec, prior, {n: post[n].values[c, d] for n in names})
        for c, d in draws
    ]
    samples = {k: np.stack([s[k] for s in sites]) for k in sites[0]}
    ref = numpyro.infer.log_likelihood(model.numpyro_model(), samples, data, prior)["y"]
    ours = pointwise_log_likelihood(cafe_fit)
    np.testing.assert_allclose(np.stack([ours[c, d] for c, d in draws]), ref, atol=1e-4)


# --------------------------------------------------------------------------- plots
def test_one_dimensional_plot_writes_png_and_svg(radon_cmp, tmp_path):
    fig = radon_cmp.plot_shrinkage(tmp_path / "radon.png")
    (ax,) = fig.axes
    (segments,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segments.get_segments()) == 85  # one no -> partial segment per county
    assert ax.get_xscale() == "log"
    assert fig.get_suptitle().startswith("Shrinkage")
    png = (tmp_path / "radon.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    radon_cmp.plot_shrinkage(tmp_path / "radon.svg")
    assert "<svg" in (tmp_path / "radon.svg").read_text()[:1000]
    with pytest.raises(ml.MultilevelError, match="two varying coefficients"):
        radon_cmp.plot_shrinkage(kind="2d")
    with pytest.raises(ml.MultilevelError, match="format"):
        radon_cmp.plot_shrinkage(tmp_path / "radon.jpeg2")


def test_two_dimensional_plot_has_an_arrow_per_cafe_and_two_ellipses(cafe_cmp, tmp_path):
    assert cafe_cmp.terms == ("Intercept", "afternoon")
    assert len(cafe_cmp.table) == 40
    fig = cafe_cmp.plot_shrinkage(tmp_path / "cafe.png")
    (ax,) = fig.axes
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(arrows) == 20 and len(ellipses) == 2
    # The 90% ellipse is the 50% one scaled by sqrt(chi2_2(0.9) / chi2_2(0.5)).
    small, large = sorted(ellipses, key=lambda e: e.width)
    ratio = np.sqrt(stats.chi2.ppf(0.9, 2) / stats.chi2.ppf(0.5, 2))
    assert large.width / small.width == pytest.approx(ratio)
    assert (tmp_path / "cafe.png").stat().st_size > 10_000


def test_plot_shrinkage_takes_any_object_with_the_comparisons_attributes(radon_cmp):
    """The plot reads attributes, so it needs no import of the comparison's class."""
    stand_in = types.SimpleNamespace(
        group=radon_cmp.group,
        terms=radon_cmp.terms,
        table=radon_cmp.table,
        fits=radon_cmp.fits,
        population=radon_cmp.population,
    )
    fig = plot_shrinkage(stand_in)
    (ax,) = fig.axes
    (segments,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segments.get_segments()) == 85


def test_comparison_from_a_fit_reuses_it(cafe_fit, cafe_cmp, tmp_path):
    """PoolingComparison.from_fit (what fit.plot_shrinkage did, now a workflow) keeps the
    fit as its partial-pooling variant; a fit without its Model (after ml.load) is refused
    before anything is fitted."""
    assert cafe_cmp.fits["partial"] is cafe_fit
    fig = cafe_cmp.plot_shrinkage(tmp_path / "cafe.svg")
    assert sum(isinstance(p, Ellipse) for p in fig.axes[0].patches) == 2
    assert "<svg" in (tmp_path / "cafe.svg").read_text()[:1000]
    with pytest.raises(ml.MultilevelError, match="compare_pooling"):
        cafe_fit.plot_shrinkage()  # moved: the message says where
    loaded = copy.copy(cafe_fit)
    loaded.model = None  # as after ml.load
    with pytest.raises(ml.MultilevelError, match="ml.load"):
        PoolingComparison.from_fit(loaded)
    with pytest.raises(ml.MultilevelError, match="ml.load"):
        compare_pooling(CAFE, ml.datasets.load("cafe"), partial=loaded)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "formula",
    [
        "log_radon ~ floor + (1 | county) + (1 | floor)",  # crossed
        "log_radon ~ floor + (1 | county/floor)",  # nested
        "log_radon ~ floor + (1 | county:floor)",  # interaction
        "log_radon ~ floor",  # no group term
    ],
)
def test_needs_exactly_one_grouping_factor(formula, radon):
    with pytest.raises(ml.FormulaError, match="exactly one grouping factor"):
        compare_pooling(formula, radon)


def test_categorical_varying_coefficient_is_refused(radon):
    data = radon.assign(level=np.where(radon["floor"] > 0, "first", "basement"))
    with pytest.raises(ml.FormulaError, match="numeric"):
        compare_pooling("log_radon ~ 1 + (1 + C(level) | county)", data)


def test_partial_fit_of_another_formula_is_refused(cafe_fit, radon):
    with pytest.raises(ml.MultilevelError, match="not of"):
        compare_pooling(RADON, radon, partial=cafe_fit)


def test_formulas_of_the_variants():
    from multilevel.workflow.pooling import _plan

    cases = {
        "y ~ x + (1 + x | g)": ("y ~ x", "y ~ 0 + C(g) + C(g):x"),
        "y ~ x + z + (1 | g)": ("y ~ x + z", "y ~ 0 + C(g) + x + z"),
        "y ~ x + (0 + x | g)": ("y ~ x", "y ~ 1 + C(g):x"),
        "y ~ 0 + x + (1 + x || g)": ("y ~ 0 + x", "y ~ 0 + C(g) + C(g):x"),
        "k | trials(n) ~ x + (1 | g)": ("k | trials(n) ~ x", "k | trials(n) ~ 0 + C(g) + x"),
    }
    for formula, (complete, none) in cases.items():
        plan = _plan(formula)
        assert plan.formulas["complete"] == complete
        assert plan.formulas["none"] == none
        assert plan.formulas["partial"] == formula


def _slope_data():
    rng = np.random.default_rng(1)
    g = np.repeat(["a", "b", "c", "d"], 12)
    x = rng.normal(size=g.size)
    slope = np.repeat([0.5, 1.0, 1.5, 2.0], 12)
    return pd.DataFrame({"g": g, "x": x, "y": 1 + slope * x + rng.normal(0, 0.3, g.size)})


def test_slope_only_no_pooling_columns_are_named_as_expected():
    """`(0 + x | g)` keeps the population intercept and gives each group its own slope,
    in columns `C(g)[a]:x` (formulaic's names, which the table maps back to groups)."""
    from multilevel.workflow.pooling import _none_column, _plan

    plan = _plan("y ~ x + (0 + x | g)")
    model = ml.Model(plan.formulas["none"], _slope_data())
    expected = ["Intercept", *(_none_column("g", lvl, "x") for lvl in "abcd")]
    assert list(model.spec.columns) == expected


@pytest.mark.slow
def test_slope_only_term_maps_back_to_groups():
    """End to end for `(0 + x | g)`: the table's term is x, one row per group, and the
    no-pooling slopes recover the simulated ones (0.5 .. 2; 12 rows each, noise sd 0.3)."""
    cmp = compare_pooling(
        "y ~ x + (0 + x | g)",
        _slope_data(),
        chains=2,
        warmup=300,
        draws=300,
        progress=False,
        warn=False,
    )
    assert list(cmp.table["term"]) == ["x"] * 4 and list(cmp.table["group"]) == list("abcd")
    np.testing.assert_allclose(cmp.table["no_pooling"], [0.5, 1.0, 1.5, 2.0], atol=0.25)
    assert cmp.table["complete_pooling"].nunique() == 1
