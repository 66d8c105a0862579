"""Priors: parsing, defaults scaled to the data, user overrides, and that they hold exactly."""

import jax
import numpy as np
import pytest
from numpyro.infer import Predictive

import multilevel as ml
from multilevel.errors import PriorError
from multilevel.priors import parse_prior


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


def test_parse_prior_reads_python_calls():
    assert parse_prior("Normal(0, 10)") == ml.Normal(0, 10)
    assert parse_prior("StudentT(3, 0, sigma=2.5)") == ml.StudentT(3, 0, 2.5)
    assert parse_prior(" HalfNormal( 1 ) ") == ml.HalfNormal(1)


def test_parse_prior_suggests_close_name():
    with pytest.raises(PriorError, match="HalfNormal"):
        parse_prior("HalfNormall(1)")


@pytest.mark.parametrize("text", ["InverseWishart(3)", "InverseWishart()"])
def test_inverse_wishart_is_refused_with_reasons(text):
    with pytest.raises(PriorError, match="sd.*LKJ|LKJ"):
        parse_prior(text)
    with pytest.raises(PriorError, match="separately"):
        ml.InverseWishart(3)


def test_invalid_prior_parameters():
    with pytest.raises(PriorError, match="sigma"):
        ml.Normal(0, -1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ml.Normal(0, float("inf")), r"Normal: `sigma` must be a finite number, got inf"),
        (lambda: ml.Normal(float("-inf"), 1), r"Normal: `mu` must be a finite number, got -inf"),
        (lambda: ml.HalfNormal(np.nan), r"HalfNormal: `sigma` must be a finite number, got nan"),
        (lambda: ml.StudentT(np.inf, 0, 1), r"StudentT: `df` .*finite.*use Normal"),
        (lambda: ml.StudentT(3, np.nan, 1), r"StudentT: `mu` must be a finite number"),
        (lambda: ml.HalfCauchy(np.inf), r"HalfCauchy: `sigma` must be a finite"),
        (lambda: ml.HalfStudentT(3, np.inf), r"HalfStudentT: `sigma` must be a finite"),
        (lambda: ml.Exponential(np.inf), r"Exponential: `rate` must be a finite.*small"),
        (lambda: ml.Gamma(np.nan, 1), r"Gamma: `shape` must be a finite"),
        (lambda: ml.LKJ(np.inf), r"LKJ: `eta` must be a finite"),
        (lambda: ml.Normal(0, "1"), r"Normal: `sigma` must be a number, got '1'"),
        (lambda: ml.Exponential(True), r"Exponential: `rate` must be a number, got True"),
        (lambda: ml.HalfNormal(0), r"HalfNormal: `sigma` must be positive, got 0"),
        (lambda: ml.Gamma(2, -0.1), r"Gamma: `rate` must be positive, got -0.1"),
        (lambda: parse_prior("HalfNormal(1e400)"), r"HalfNormal: `sigma` must be a finite"),
    ],
)
def test_infinite_nan_and_non_positive_parameters_are_refused(make, message):
    with pytest.raises(PriorError, match=message):
        make()


def test_numpy_numbers_are_prior_parameters():
    assert ml.Normal(np.float32(1), np.int64(2)) == ml.Normal(1, 2)


def test_defaults_are_scaled_to_the_data(sleep):
    model = ml.Model("Reaction ~ Days + (Days | Subject)", sleep)
    priors = model.spec.prior_of
    sd_y, sd_x = sleep["Reaction"].std(ddof=0), sleep["Days"].std(ddof=0)
    assert priors["Days"].mu == 0
    assert priors["Days"].sigma == pytest.approx(2.5 * sd_y / sd_x)
    # The intercept is at Days = 0, 1.57 sds of Days away from its mean: widen accordingly.
    spread = np.sqrt(1 + (sleep["Days"].mean() / sd_x) ** 2)
    assert priors["Intercept"].mu == pytest.approx(sleep["Reaction"].mean())
    assert priors["Intercept"].sigma == pytest.approx(2.5 * sd_y * spread)
    assert priors["sigma"].rate == pytest.approx(1 / sd_y)
    assert priors["sd(Days|Subject)"].rate == pytest.approx(sd_x / sd_y)
    assert priors["cor(Intercept,Days|Subject)"] == ml.LKJ(2)


def test_name_beats_class_beats_default(sleep):
    model = ml.Model(
        "Reaction ~ Days + (Days | Subject)",
        sleep,
        priors={
            "sd": ml.HalfNormal(30),
            "sd(Days|Subject)": "HalfCauchy(5)",
            "b": ml.Normal(0, 20),
        },
    )
    sources = dict(model.spec.prior_sources)
    priors = model.spec.prior_of
    assert priors["sd(Intercept|Subject)"] == ml.HalfNormal(30)
    assert sources["sd(Intercept|Subject)"] == "set by class 'sd'"
    assert priors["sd(Days|Subject)"] == ml.HalfCauchy(5)
    assert sources["sd(Days|Subject)"] == "set by name"
    assert priors["Days"] == ml.Normal(0, 20)
    assert sources["Intercept"].startswith("default")


def test_describe_lists_every_parameter(sleep, capsys):
    ml.Model("Reaction ~ Days + (Days | Subject)", sleep).describe()
    out = capsys.readouterr().out
    for name in [
        "Intercept",
        "Days",
        "sd(Intercept|Subject)",
        "sd(Days|Subject)",
        "cor(Intercept,Days|Subject)",
        "sigma",
        "18 levels of Subject",
    ]:
        assert name in out


@pytest.mark.parametrize(
    "priors, message",
    [
        ({"sd": ml.Normal(0, 1)}, "positive"),
        ({"Days": ml.HalfNormal(1)}, "real"),
        ({"cor": ml.HalfNormal(1)}, "LKJ"),
        ({"sd(Day|Subject)": ml.HalfNormal(1)}, "sd\\(Days\\|Subject\\)"),
        ({"slope": ml.Normal(0, 1)}, "classes"),
        ({"b": 3.0}, "multilevel prior"),
    ],
)
def test_bad_priors_name_the_problem(sleep, priors, message):
    with pytest.raises(PriorError, match=message):
        ml.Model("Reaction ~ Days + (Days | Subject)", sleep, priors=priors)


def test_stated_priors_hold_exactly_in_the_model(sleep):
    """Sampling the model's prior must reproduce the distributions the user wrote, even
    though the sampler works on standardised variables."""
    priors = {
        "Intercept": ml.Normal(250, 40),
        "Days": ml.StudentT(5, 10, 3),
        "sd(Intercept|Subject)": ml.HalfNormal(20),
        "sd(Days|Subject)": ml.Exponential(0.2),
        "sigma": ml.HalfStudentT(4, 10),
    }
    model = ml.Model("Reaction ~ Days + (Days | Subject)", sleep, priors=priors)
    data, prior = model.model_args(with_response=False)
    draws = Predictive(model.numpyro_model(), num_samples=40_000)(
        jax.random.PRNGKey(0), data, prior
    )
    rng = np.random.default_rng(0)
    n = 40_000
    reference = {
        "Intercept": (draws["beta"][:, 0], rng.normal(250, 40, n)),
        "Days": (draws["beta"][:, 1], 10 + 3 * rng.standard_t(5, n)),
        "sd(Intercept|Subject)": (draws["sd"][:, 0], np.abs(rng.normal(0, 20, n))),
        "sd(Days|Subject)": (draws["sd"][:, 1], rng.exponential(5, n)),
        "sigma": (draws["aux"][:, 0], 10 * np.abs(rng.standard_t(4, n))),
    }
    for name, (ours, truth) in reference.items():
        # Quantiles of two 40k samples: compare at 10/50/90% with a tolerance of 3% of the
        # interdecile range (several Monte Carlo standard errors at this sample size).
        q_ours = np.quantile(np.asarray(ours), [0.1, 0.5, 0.9])
        q_true = np.quantile(truth, [0.1, 0.5, 0.9])
        tol = 0.03 * (q_true[2] - q_true[0])
        np.testing.assert_allclose(q_ours, q_true, atol=tol, err_msg=name)
