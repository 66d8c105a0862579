"""Prediction (Fit.predict), the predict command and posterior predictive checks (Fit.ppc).

One sleepstudy fit is shared by the module; the nested, binomial and discrepant-group
cases use fit-like objects whose posterior holds chosen values (no sampling), so their
predictions can be checked against exact numbers.
"""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import special

import multilevel as ml
from multilevel._arviz import az
from multilevel.cli import main
from multilevel.errors import DataError, MultilevelError
from multilevel.ppc import MAX_FIGURE_INCHES, MAX_GROUPS_SHOWN, count_bins, group_check
from multilevel.prediction import predict

matplotlib.use("Agg")

SETTINGS = dict(chains=2, warmup=300, draws=300, seed=1, progress=False, warn=False)
FORMULA = "Reaction ~ Days + (Days | Subject)"
NEW = pd.DataFrame({"Subject": ["308", "308", "999", "999"], "Days": [0, 5, 0, 5]})


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fit(sleep):
    return ml.Model(FORMULA, sleep).fit(**SETTINGS)


def _draws(fit, name, level=None):
    values = fit.idata.posterior[name]
    if level is not None:
        values = values.sel(Subject=level)
    return values.values.astype(float)  # (chain, draw)


def _fixed(fit, days):
    return _draws(fit, "Intercept") + days * _draws(fit, "Days")


# --------------------------------------------------------------------------- predict


def test_seen_level_is_the_posterior_computation(fit):
    pred = fit.predict(NEW, kind="link")
    values = pred.draws["Reaction"].values  # (chain, draw, obs)
    assert values.shape == (2, 300, 4)
    for row, days in ((0, 0), (1, 5)):
        hand = (
            _fixed(fit, days)
            + _draws(fit, "Intercept|Subject", "308")
            + days * _draws(fit, "Days|Subject", "308")
        )
        np.testing.assert_allclose(values[..., row], hand, rtol=1e-12)
    # gaussian: the mean is the linear predictor; the fitted rows by default
    np.testing.assert_allclose(fit.predict(NEW.iloc[:2]).values, pred.values[:, :2], rtol=1e-12)
    fitted = fit.predict(kind="link")
    assert fitted.values.shape == (600, 180)
    first = fit.model.data.iloc[0]
    hand = (
        _fixed(fit, first["Days"])
        + _draws(fit, "Intercept|Subject", first["Subject"])
        + first["Days"] * _draws(fit, "Days|Subject", first["Subject"])
    )
    np.testing.assert_allclose(fitted.values[:, 0], hand.ravel(), rtol=1e-12)


def test_population_groups_is_the_fixed_part(fit):
    values = fit.predict(NEW, kind="link", groups="population").values
    for row, days in enumerate(NEW["Days"]):
        np.testing.assert_allclose(values[:, row], _fixed(fit, days).ravel(), rtol=1e-12)


def test_groups_left_unused_need_no_grouping_column(fit):
    """brms' re_formula = NA needs no group: neither do "population" and "integrated",
    and with the identity link the average over groups is the typical group."""
    days = NEW[["Days"]]
    zero = fit.predict(days, groups="population")
    np.testing.assert_allclose(zero.values, fit.predict(NEW, groups="population").values)
    assert zero.new_levels == {}
    integrated = fit.predict(days, groups="integrated").values
    np.testing.assert_allclose(integrated, zero.values, rtol=1e-9)
    with pytest.raises(ml.DataError, match="Subject"):
        fit.predict(days)  # "sample" uses each row's own group


def test_new_level_draws_from_the_fitted_population(fit):
    # 200 new subjects at Days = 5: each row draws its own effects in every draw
    new = pd.DataFrame({"Subject": [f"new{i}" for i in range(200)], "Days": 5})
    pred = fit.predict(new, kind="link", seed=3)
    assert pred.new_levels["Subject"] == tuple(new["Subject"])
    assert pred.summary()["new_levels"].eq("Subject").all()
    fixed = _fixed(fit, 5).ravel()
    effects = pred.values - fixed[:, None]  # the drawn group part, (600, 200)
    sd_i, sd_d = _draws(fit, "sd(Intercept|Subject)"), _draws(fit, "sd(Days|Subject)")
    rho = _draws(fit, "cor(Intercept,Days|Subject)")
    var = (sd_i**2 + 2 * rho * sd_i * sd_d * 5 + sd_d**2 * 25).mean()  # E over draws
    assert abs(effects.mean()) < 4 * np.sqrt(var / effects.size)
    assert effects.var() == pytest.approx(var, rel=0.05)
    # per row: population mean, sd of fixed part and group spread together
    table = pred.summary()
    assert table["mean"].mean() == pytest.approx(fixed.mean(), abs=4 * np.sqrt(var / 600))
    assert table["sd"].mean() == pytest.approx(np.sqrt(var + fixed.var()), rel=0.06)
    # rows of one new level share its effects
    same = fit.predict(pd.DataFrame({"Subject": ["x", "x"], "Days": [3, 3]}), kind="link")
    np.testing.assert_array_equal(same.values[:, 0], same.values[:, 1])


def test_new_subject_interval_is_wider(fit):
    mean = fit.predict(NEW).summary()
    assert (mean["sd"].iloc[2:].to_numpy() > 1.5 * mean["sd"].iloc[:2].to_numpy()).all()
    table = fit.predict(NEW, kind="response").summary()
    assert list(table.columns) == [
        "Subject", "Days", "mean", "sd", "q5", "q50", "q95", "new_levels"
    ]  # fmt: skip
    assert list(table["new_levels"]) == ["", "", "Subject", "Subject"]
    assert (table["sd"].iloc[2:].to_numpy() > table["sd"].iloc[:2].to_numpy()).all()
    assert "New levels of Subject (1: 999) in 2 rows" in repr(fit.predict(NEW))


def test_seed_and_kind(fit):
    a = fit.predict(NEW, kind="response", seed=5).values
    np.testing.assert_array_equal(a, fit.predict(NEW, kind="response", seed=5).values)
    assert not np.array_equal(a, fit.predict(NEW, kind="response", seed=6).values)
    mean = fit.predict(NEW, kind="mean", seed=5).values
    assert (a.std(axis=0) > mean.std(axis=0)).all()
    thin = fit.predict(NEW, draws=50)
    assert thin.draws["Reaction"].shape == (2, 50, 4)


def test_bad_newdata(fit, sleep):
    with pytest.raises(DataError, match="'Days'.*not in newdata"):
        fit.predict(NEW.drop(columns="Days"))
    with pytest.raises(DataError, match="'Days' \\(1 missing\\)"):
        fit.predict(NEW.assign(Days=[0, np.nan, 1, 2]))
    with pytest.raises(MultilevelError, match="kind must be"):
        fit.predict(NEW, kind="probability")
    with pytest.raises(MultilevelError, match="groups must be"):
        fit.predict(NEW, groups="new")


def test_a_failed_predict_leaves_the_fit_as_it_was(fit):
    # formulaic records a column's kind in the fit's encoding while encoding new rows:
    # a text cell once made `Days` categorical for good, and every later call failed
    before = fit.predict(NEW, seed=3).values
    encoding = repr(fit.model.design.fixed_spec.encoder_state)
    for bad in (["oops"] * 4, ["oops", 5, 0, 5], ["5", "oops", "0", "5"]):
        with pytest.raises(MultilevelError, match="Days"):
            fit.predict(NEW.assign(Days=bad))
        np.testing.assert_array_equal(fit.predict(NEW, seed=3).values, before)
        assert repr(fit.model.design.fixed_spec.encoder_state) == encoding


def test_loaded_fit_needs_the_fitted_data(fit, sleep, tmp_path):
    loaded = ml.load(fit.save(tmp_path / "fit.nc"))
    with pytest.raises(MultilevelError, match="data=original"):
        loaded.predict(NEW)
    with pytest.raises(DataError, match="not the data this fit was made from"):
        loaded.predict(NEW, data=sleep.iloc[:100])
    same = loaded.predict(NEW, kind="response", data=sleep, seed=2).values
    np.testing.assert_array_equal(same, fit.predict(NEW, kind="response", seed=2).values)


# --------------------------------------------------------------------------- fit-like


def fake_fit(model, values: dict, n_draws: int = 4000):
    """A fit-like object whose posterior holds ``values`` in every draw."""
    spec = model.spec
    posterior, dims, coords = {}, {}, {}
    for name in spec.hyper_names:
        posterior[name] = np.full((1, n_draws), float(values[name]))
    for term in spec.terms:
        coords[term.group] = list(term.levels)
        for name in term.effect_names:
            level_values = np.asarray(values[name], dtype=float)
            posterior[name] = np.tile(level_values, (1, n_draws, 1))
            dims[name] = [term.group]
    idata = az.from_dict(posterior=posterior, coords=coords, dims=dims)
    return SimpleNamespace(
        idata=idata,
        spec=spec,
        model=model,
        info={"n_rows": model.design.n},
        rows=lambda data=None, what="": (model.design, model.data),
    )


def test_nested_new_inner_level_keeps_the_outer_effect():
    data = pd.DataFrame({"a": ["A1", "A1", "A2", "A2"], "b": ["b1", "b2", "b1", "b2"]})
    model = ml.Model("y ~ 1 + (1 | a/b)", data.assign(y=[1.0, 2.0, 3.0, 4.0]))
    assert [t.group for t in model.spec.terms] == ["a", "a:b"]
    fake = fake_fit(
        model,
        {
            "Intercept": 10.0,
            "sd(Intercept|a)": 5.0,
            "sd(Intercept|a:b)": 1.0,
            "sigma": 1.0,
            "Intercept|a": [1.0, 2.0],
            "Intercept|a:b": [0.1, 0.2, 0.3, 0.4],
        },
    )
    new = pd.DataFrame({"a": ["A1", "A1", "A9"], "b": ["b1", "b9", "b1"]})
    pred = predict(fake, new, kind="link", seed=1)
    values = pred.values
    np.testing.assert_allclose(values[:, 0], 11.1)
    assert values[:, 1].mean() == pytest.approx(11.0, abs=0.07)  # A1's effect + new draw
    assert values[:, 1].std() == pytest.approx(1.0, rel=0.05)
    assert values[:, 2].mean() == pytest.approx(10.0, abs=0.35)
    assert values[:, 2].std() == pytest.approx(np.sqrt(26.0), rel=0.05)
    assert pred.new_levels == {"a": ("A9",), "a:b": ("A1:b9", "A9:b1")}
    assert list(pred.summary()["new_levels"]) == ["", "a:b", "a,a:b"]
    zero = predict(fake, new, kind="link", groups="population").values
    np.testing.assert_allclose(zero, 10.0)


@pytest.fixture(scope="module")
def cbpp_fake():
    cbpp = ml.datasets.load("cbpp")
    model = ml.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial")
    values = {c: -0.5 for c in model.spec.columns}
    values["Intercept"] = -1.5
    values["sd(Intercept|herd)"] = 0.6
    values["Intercept|herd"] = np.linspace(-0.7, 0.7, len(model.spec.terms[0].levels))
    return cbpp, fake_fit(model, values, n_draws=400), values


def test_binomial_mean_and_trials(cbpp_fake):
    cbpp, fake, values = cbpp_fake
    rows = cbpp.iloc[[0, 1, 20]]
    mean = predict(fake, rows, kind="mean").values
    levels = list(fake.spec.terms[0].levels)
    for i, (_, row) in enumerate(rows.iterrows()):
        eta = values["Intercept"] + values["Intercept|herd"][levels.index(row["herd"])]
        eta += values[f"period[T.{row['period']}]"] if row["period"] != "1" else 0.0
        np.testing.assert_allclose(mean[:, i], row["size"] * special.expit(eta), rtol=1e-12)
    with pytest.raises(DataError, match="trials column 'size'"):
        predict(fake, rows.drop(columns="size"), kind="mean")
    with pytest.raises(DataError, match="trials column 'size'"):
        predict(fake, rows.drop(columns="size"), kind="response")
    link = predict(fake, rows.drop(columns="size"), kind="link").values
    np.testing.assert_allclose(special.expit(link) * rows["size"].to_numpy(), mean, rtol=1e-12)
    counts = predict(fake, rows, kind="response", seed=1).values
    assert (counts >= 0).all() and (counts <= rows["size"].to_numpy()).all()
    assert np.array_equal(counts, np.round(counts))


def test_new_category_of_a_fixed_predictor(cbpp_fake):
    cbpp, fake, _ = cbpp_fake
    rows = cbpp.iloc[:2].assign(period=["2", "5"])
    with pytest.raises(DataError, match="Column 'period'.*never saw: '5'"):
        predict(fake, rows)
    # 2 read from a CSV as a number is the category "2"
    as_int = predict(fake, cbpp.iloc[:2].assign(period=[2, 3])).values
    as_str = predict(fake, cbpp.iloc[:2].assign(period=["2", "3"])).values
    np.testing.assert_array_equal(as_int, as_str)


# --------------------------------------------------------------------------- ppc


def test_ppc_adds_group_and_returns_figure(fit, tmp_path):
    from matplotlib.figure import Figure

    fig = fit.ppc(tmp_path / "ppc.png", group="Subject", n_draws=20)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert (tmp_path / "ppc.png").stat().st_size > 10_000
    rep = fit.idata.posterior_predictive["Reaction"]
    assert rep.dims == ("chain", "draw", "obs") and rep.shape == (2, 300, 180)
    table = group_check(fit, "Subject")
    assert len(table) == 18 and table["n"].eq(10).all()
    with pytest.raises(MultilevelError, match="kind='bars'"):
        fit.ppc(kind="bars")
    with pytest.raises(MultilevelError, match="No grouping factor or column 'county'"):
        fit.ppc(group="county")


def test_ppc_flags_a_discrepant_group():
    base = np.linspace(-1.0, 1.0, 20)
    data = pd.DataFrame(
        {"g": np.repeat(list("abcde"), 20), "y": np.concatenate([base] * 4 + [base + 5])}
    )
    model = ml.Model("y ~ 1", data)
    fake = fake_fit(model, {"Intercept": 0.0, "sigma": 1.0}, n_draws=500)
    fig = ml.Fit.ppc(fake, group="g", n_draws=10)
    assert "1 of 5 groups outside" in fig.axes[1].get_title()
    table = group_check(fake, "g")
    assert list(table.index[table["outside"]]) == ["e"]


def test_ppc_bars_for_counts(cbpp_fake):
    _, fake, _ = cbpp_fake
    fig = ml.Fit.ppc(fake, group="herd")
    assert "How many rows" in fig.axes[0].get_title()
    assert fake.idata.posterior_predictive["incidence"].shape == (1, 400, 56)


def test_ppc_bins_heavy_tailed_counts_as_on_a_log_axis():
    """Counts simulated like rstanarm's roaches (negative binomial, shape 0.27, mean 25):
    equal bins of the range would hold nearly every row in the first bar (bins of about
    18; 90% of the rows lie below 60); bins that widen with the count spread them out."""
    rng = np.random.default_rng(1)
    mean, shape = 25.0, 0.27
    y = rng.negative_binomial(shape, shape / (shape + mean), size=262)
    model = ml.Model("y ~ 1", pd.DataFrame({"y": y}), family="negative_binomial")
    fake = fake_fit(model, {"Intercept": np.log(mean), "shape": shape}, n_draws=400)
    fig = ml.Fit.ppc(fake)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:5] == ["0", "1", "2", "3", "4-5"] and labels[-1].endswith("+")
    observed = [p.get_height() for p in ax.patches]
    assert sum(observed) == len(y)
    assert sum(h > 0 for h in observed) >= 10, observed  # spread over many bars
    assert max(observed) < 0.5 * len(y)
    assert "bins widen" in ax.get_xlabel()
    # counts without a heavy tail keep equal bins (one per value below 40 values)
    light = rng.poisson(100.0, size=(101, 200))
    edges = count_bins(light[0], light[1:])
    assert len(set(np.diff(edges))) == 1 and len(edges) <= 40
    np.testing.assert_array_equal(count_bins(np.array([0, 3]), np.array([[1, 2]])), range(4))


def test_ppc_group_panel_of_85_groups_fits_a_screen():
    """85 groups of 6 rows, 3 of them shifted far from the rest: the panel shows the
    MAX_GROUPS_SHOWN groups with labels, the 3 outside among them (red), and its title
    counts the groups outside against the 5% expected by chance."""
    groups = [f"g{i:02d}" for i in range(85)]
    values = {"Intercept": 0.0, "sigma": 1.0, "sd(Intercept|g)": 1.0}
    values["Intercept|g"] = np.zeros(85)
    y = np.tile(np.linspace(-1.0, 1.0, 6), 85)
    far = ["g10", "g40", "g70"]
    for name in far:
        i = groups.index(name)
        y[6 * i : 6 * i + 6] += 4.0
    data = pd.DataFrame({"g": np.repeat(groups, 6), "y": y})
    fake = fake_fit(ml.Model("y ~ 1 + (1 | g)", data), values, n_draws=400)
    fig = ml.Fit.ppc(fake, group="g")
    width, height = fig.get_size_inches()
    assert (width, height) <= MAX_FIGURE_INCHES and height <= MAX_FIGURE_INCHES[1]
    ticks = fig.axes[1].get_yticklabels()
    assert len(ticks) == MAX_GROUPS_SHOWN
    red = {t.get_text() for t in ticks if t.get_color() != "black"}
    assert red == set(far)
    title = fig.axes[1].get_title()
    assert "3 of 85 groups outside their 95% interval" in title
    assert "4.2 expected by chance" in title and f"{MAX_GROUPS_SHOWN} shown" in title


# --------------------------------------------------------------------------- CLI


def test_cli_predict(fit, tmp_path, capsys):
    saved = fit.save(tmp_path / "fit.nc")
    new = tmp_path / "new.csv"
    NEW.to_csv(new, index=False)
    out = tmp_path / "pred.csv"
    args = ["predict", str(saved), str(new), "--data", "sleepstudy", "--out", str(out)]
    assert main(args + ["--kind", "response"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["Subject", "Days", "mean", "sd"]
    assert len(table) == 4
    assert table["new_levels"].fillna("").tolist() == ["", "", "Subject", "Subject"]
    printed = capsys.readouterr().out
    assert "New levels of Subject" in printed and "q95" in printed

    NEW.drop(columns="Days").to_csv(new, index=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'Days'" in err and "Traceback" not in err
    assert main(["predict", str(saved), str(new)]) == 2
    assert "--data ORIGINAL" in capsys.readouterr().err
    assert main(["predict", str(new), str(new), "--data", "sleepstudy"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_mean_of_lognormal_and_known_standard_errors():
    data = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "s": [0.5, 1.0, 1.0, 2.0]})
    lognormal = fake_fit(
        ml.Model("y ~ 1", data, family="lognormal"), {"Intercept": 1.0, "sigma": 0.5}
    )
    np.testing.assert_allclose(predict(lognormal, data, kind="mean").values, np.exp(1.125))
    meta = fake_fit(ml.Model("y | se(s) ~ 1", data), {"Intercept": 2.0}, n_draws=2000)
    with pytest.raises(DataError, match="needs the column 's'"):
        predict(meta, data.drop(columns="s"), kind="response")
    draws = predict(meta, data, kind="response", seed=1).values
    np.testing.assert_allclose(draws.std(axis=0), data["s"], rtol=0.08)
