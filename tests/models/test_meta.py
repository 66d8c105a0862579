"""Meta-analysis with known standard errors, `y | se(s) ~ 1 + (1 | study)`: parsing,
checks, no sigma anywhere, and eight schools against posteriordb's reference posterior."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel._arviz import az
from multilevel.formula import parse_formula
from multilevel.spec import ModelSpec

FORMULA = "y | se(se) ~ 1 + (1 | school)"
PRIORS = {"Intercept": ml.Normal(0, 5), "sd": ml.HalfCauchy(5)}
# A copy of ../shared/data/posteriordb/eight_schools_reference.json (tests/data/README.md)
REFERENCE = Path(__file__).parents[1] / "data" / "eight_schools_reference.json"


@pytest.fixture(scope="module")
def schools():
    return ml.datasets.load("eight_schools")


def test_se_is_parsed_like_trials():
    parsed = parse_formula("y | se( s ) ~ x + (1 | g)")
    assert (parsed.response, parsed.se, parsed.trials) == ("y", "s", None)
    assert parsed.columns == {"y", "s", "g"}
    assert parse_formula("y ~ x").se is None


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y | se(s, sigma = maybe) ~ 1", "TRUE or FALSE"),
        ("y | sd(s) ~ 1", "`se\\(\\)`"),
    ],
)
def test_se_syntax_errors(formula, message):
    with pytest.raises(ml.FormulaError, match=message):
        parse_formula(formula)


def test_model_has_no_sigma(schools, capsys):
    model = ml.Model(FORMULA, schools, priors=PRIORS)
    assert model.spec.aux == () and model.spec.se == "se"
    assert "sigma" not in model.spec.prior_of and "sigma" not in model.spec.hyper_names
    model.describe()
    out = capsys.readouterr().out
    assert "known standard errors `se` (no sigma)" in out and "sigma " not in out
    np.testing.assert_array_equal(model.design.se, schools["se"])
    # the spec survives a JSON round trip, still without sigma
    assert ModelSpec.from_json(model.spec.to_json()).aux == ()


def test_sigma_prior_is_refused(schools):
    with pytest.raises(ml.PriorError, match="No parameter or class named 'sigma'"):
        ml.Model(FORMULA, schools, priors={"sigma": ml.HalfNormal(1)})


@pytest.mark.parametrize(
    "values, message",
    [
        ([15.0, 10.0, 0.0, 11.0, 9.0, 11.0, 10.0, 18.0], "positive and finite.*1 rows.*0 in row 2"),
        ([15.0, -1.0, 16.0, 11.0, -9.0, 11.0, 10.0, 18.0], "2 rows.*-1 in row 1"),
        ([15.0, 10.0, 16.0, np.inf, 9.0, 11.0, 10.0, 18.0], "infinite"),
        (list("abcdefgh"), "holds text"),
    ],
)
def test_bad_standard_errors(schools, values, message):
    data = schools.assign(se=values)
    with pytest.raises(ml.DataError, match=message):
        ml.Model(FORMULA, data)


def test_se_needs_gaussian(schools):
    with pytest.raises(ml.FormulaError, match="needs family='gaussian'"):
        ml.Model("y | se(se) ~ 1 + (1 | school)", schools.assign(y=1), family="poisson")


def test_chunked_statistics_are_refused(schools):
    """Chunked statistics sum over rows with one sigma; they cannot carry each row's se."""
    with pytest.raises(ml.MultilevelError, match=r"need the data's rows"):
        ml.Model.from_chunks(FORMULA, [schools], progress=False)


def test_collapsed_sampler_is_refused(schools):
    """The collapsed sampler assumes one residual sigma; method='auto' falls back to NUTS."""
    model = ml.Model(FORMULA, schools, priors=PRIORS)
    with pytest.raises(ml.MultilevelError, match="known standard errors"):
        model.fit(method="collapsed")


def test_simulate_keeps_the_standard_errors(schools):
    model = ml.Model(FORMULA, schools, priors=PRIORS)
    truth = {"Intercept": 5.0, "sd(Intercept|school)": 1e-3}
    df = model.simulate(truth, seed=4)
    assert list(df.columns) == ["school", "y", "se"]
    # with tau ~ 0, y_j ~ N(5, se_j): standardised residuals of 8 schools x 200 seeds
    z = np.concatenate(
        [(model.simulate(truth, seed=s)["y"] - 5.0) / schools["se"] for s in range(200)]
    )
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.05


# --------------------------------------------------------------------------- reference


@pytest.fixture(scope="module")
def eight_schools_fit(schools):
    """posteriordb's eight_schools_noncentered: mu ~ N(0, 5), tau ~ HalfCauchy(0, 5),
    theta_j = mu + tau z_j. Our default non-centred parameterisation is the same; the
    funnel needs a high target acceptance (the reference used adapt_delta 0.95)."""
    model = ml.Model(FORMULA, schools, priors=PRIORS)
    return model.fit(chains=4, warmup=1000, draws=2500, seed=8, target_accept=0.95, progress=False)


def _draws(fit) -> dict[str, np.ndarray]:
    """(chains, draws) arrays of mu, tau and theta[1..8] (schools A..H in data order)."""
    post = fit.idata.posterior
    mu = post["Intercept"].values
    out = {"mu": mu, "tau": post["sd(Intercept|school)"].values}
    effects = post["Intercept|school"]
    for j, school in enumerate("ABCDEFGH", start=1):
        out[f"theta[{j}]"] = mu + effects.sel(school=school).values
    return out


def eight_schools_comparison(fit) -> pd.DataFrame:
    """Ours against the reference: means with their MCSEs, sds with theirs, per parameter.

    Our MCSEs are ArviZ's (mean and sd, from the effective sample sizes of our chains).
    The reference gives the MCSE of each mean; its draws are 10 x 1000 thinned draws
    with ESS ~ 10,000 (README), i.e. ESS_ref = (sd / mcse_mean)^2. The MCSE of its sd is
    not given: it is ours scaled to the reference's sample size, mcse_sd_ours *
    sqrt(ESS_sd_ours / ESS_ref), i.e. assuming the same posterior shape (the MCSE of a
    sd depends on the kurtosis, which is the same posterior's)."""
    reference = json.loads(REFERENCE.read_text())["params"]
    rows = []
    for name, values in _draws(fit).items():
        ref = reference[name]
        data = az.convert_to_dataset(values[None] if values.ndim == 1 else values)
        mcse_mean = float(az.mcse(data, method="mean")["x"])
        mcse_sd = float(az.mcse(data, method="sd")["x"])
        ess_sd = float(az.ess(data, method="sd")["x"])
        ess_ref = (ref["sd"] / ref["mcse_mean_posteriordb"]) ** 2
        rows.append(
            {
                "parameter": name,
                "mean": values.mean(),
                "ref_mean": ref["mean"],
                "mcse_mean": np.hypot(mcse_mean, ref["mcse_mean_posteriordb"]),
                "sd": values.std(ddof=1),
                "ref_sd": ref["sd"],
                "mcse_sd": np.hypot(mcse_sd, mcse_sd * np.sqrt(ess_sd / ess_ref)),
                "median": np.median(values),
                "ref_median": ref["median"],
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


def test_sampler_and_summary(eight_schools_fit):
    fit = eight_schools_fit
    assert fit.info["method"] == "NUTS"
    assert "sigma" not in fit.summary().index
    assert list(fit.summary().index) == ["Intercept", "sd(Intercept|school)"]
    assert fit.diagnostics.divergences <= 10, fit.diagnostics.divergences  # of 10,000
    assert (fit.summary()["r_hat"] < 1.01).all()


def test_eight_schools_matches_posteriordb(eight_schools_fit):
    """Means within 4 combined MCSEs of the reference (a 4-sigma band of two independent
    Monte Carlo errors: 10 parameters pass by chance with probability > 0.999 when the
    posteriors are the same); sds within 4 combined MCSEs of the sd estimate."""
    table = eight_schools_comparison(eight_schools_fit)
    z_mean = (table["mean"] - table["ref_mean"]) / table["mcse_mean"]
    z_sd = (table["sd"] - table["ref_sd"]) / table["mcse_sd"]
    assert (z_mean.abs() < 4).all(), z_mean
    assert (z_sd.abs() < 4).all(), z_sd
