"""Design arrays and bad input, tried as a new user would: every error names what to fix."""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.design import DesignWarning


@pytest.fixture
def frame():
    rng = np.random.default_rng(1)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "count": rng.poisson(3, size=n),
            "hit": rng.integers(0, 2, size=n),
            "n": np.full(n, 10),
            "g": np.repeat(["a", "b", "c", "d"], n // 4),
            "h": np.tile(["u", "v"], n // 2),
        }
    )


def test_group_term_is_block_plus_codes_not_dense(frame):
    model = ml.Model("y ~ x + (1 + x | g)", frame)
    block = model.design.blocks[0]
    assert block.Z.shape == (40, 2)
    assert block.codes.shape == (40,) and block.codes.dtype == np.int32
    assert block.levels == ("a", "b", "c", "d")
    np.testing.assert_array_equal(block.Z[:, 1], frame["x"])


def test_nested_and_crossed_terms(frame):
    model = ml.Model("y ~ 1 + (1 | g/h) + (1 | h)", frame)
    groups = [b.group for b in model.design.blocks]
    assert groups == ["g", "g:h", "h"]
    nested = model.design.blocks[1]
    assert len(nested.levels) == 8 and nested.levels[0] == "a:u"
    assert model.spec.sd_names == ("sd(Intercept|g)", "sd(Intercept|g:h)", "sd(Intercept|h)")


def test_categorical_predictors_and_no_intercept(frame):
    model = ml.Model("y ~ 0 + g + x + (1 | h)", frame)
    assert model.design.columns == ("g[a]", "g[b]", "g[c]", "g[d]", "x")
    assert ml.Model("y ~ C(h) + (1 | g)", frame).design.columns == ("Intercept", "C(h)[T.v]")


def test_uncorrelated_terms_have_no_correlation(frame):
    spec = ml.Model("y ~ x + (1 + x || g)", frame).spec
    assert spec.cor_names == ()
    assert spec.sd_names == ("sd(Intercept|g)", "sd(x|g)")


def test_unknown_column_suggests_close_match(frame):
    with pytest.raises(ml.DataError, match="'xx'.*Did you mean 'x'"):
        ml.Model("y ~ xx + (1 | g)", frame)
    with pytest.raises(ml.DataError, match="'gg'.*'g'"):
        ml.Model("y ~ x + (1 | gg)", frame)


def test_missing_values_are_counted_and_never_dropped(frame):
    frame.loc[[1, 5], "x"] = np.nan
    frame.loc[[5, 7, 9], "y"] = np.nan
    with pytest.raises(ml.DataError) as info:
        ml.Model("y ~ x + (1 | g)", frame)
    text = str(info.value)
    assert "'x' (2 missing)" in text and "'y' (3 missing)" in text and "4 rows" in text


def test_missing_group_label_is_an_error(frame):
    frame.loc[3, "g"] = None
    with pytest.raises(ml.DataError, match="'g' \\(1 missing\\)"):
        ml.Model("y ~ x + (1 | g)", frame)


def test_infinite_values(frame):
    frame.loc[2, "x"] = np.inf
    with pytest.raises(ml.DataError, match="infinite"):
        ml.Model("y ~ x + (1 | g)", frame)
    frame.loc[2, "x"] = 0.0
    frame.loc[4, "y"] = -np.inf
    with pytest.raises(ml.DataError, match="'y'.*infinite"):
        ml.Model("y ~ x + (1 | g)", frame)


def test_empty_data(frame):
    with pytest.raises(ml.DataError, match="no rows"):
        ml.Model("y ~ x + (1 | g)", frame.iloc[:0])


def test_non_numeric_gaussian_response(frame):
    frame["y"] = frame["g"]
    with pytest.raises(ml.DataError, match="`y`.*numbers"):
        ml.Model("y ~ x + (1 | h)", frame)


def test_non_binary_bernoulli_response(frame):
    with pytest.raises(ml.DataError, match="0/1.*binomial"):
        ml.Model("count ~ x + (1 | g)", frame, family="bernoulli")
    ml.Model("hit ~ x + (1 | g)", frame.assign(hit=frame["hit"].astype(bool)), family="bernoulli")


@pytest.mark.parametrize("bad, kind", [(-1, "negative"), (1.5, "non-integer")])
def test_bad_poisson_counts(frame, bad, kind):
    frame["count"] = frame["count"].astype(float)
    frame.loc[0, "count"] = bad
    with pytest.raises(ml.DataError, match=kind):
        ml.Model("count ~ x + (1 | g)", frame, family="poisson")


def test_successes_exceeding_trials(frame):
    frame.loc[[0, 3], "count"] = 11
    with pytest.raises(ml.DataError, match="exceeds the number of trials in 2 rows"):
        ml.Model("count | trials(n) ~ x + (1 | g)", frame, family="binomial")


def test_binomial_needs_trials(frame):
    with pytest.raises(ml.DataError, match="trials"):
        ml.Model("count ~ x + (1 | g)", frame, family="binomial")
    with pytest.raises(ml.FormulaError, match="only meaningful for a binomial family"):
        ml.Model("count | trials(n) ~ x", frame, family="poisson")


def test_unknown_family_and_link(frame):
    with pytest.raises(ml.DataError, match="gaussian"):
        ml.Model("y ~ x", frame, family="gausian")
    with pytest.raises(ml.DataError, match="logit, probit, cloglog, cauchit"):
        ml.Model("hit ~ x", frame, family="bernoulli", link="log")


def test_constant_predictor(frame):
    frame["c"] = 3.0
    with pytest.raises(ml.DataError, match="'c' is constant"):
        ml.Model("y ~ x + c + (1 | g)", frame)


def test_constant_response(frame):
    frame["y"] = 1.0
    with pytest.raises(ml.DataError, match="constant"):
        ml.Model("y ~ x + (1 | g)", frame)


def test_single_level_group_warns(frame):
    frame["one"] = "only"
    with pytest.warns(DesignWarning, match="single level"):
        ml.Model("y ~ x + (1 | one)", frame)


def test_same_covariate_twice_per_group(frame):
    with pytest.raises(ml.FormulaError, match="two terms"):
        ml.Model("y ~ x + (1 | g) + (1 + x | g)", frame)


def test_data_must_be_a_dataframe():
    with pytest.raises(ml.DataError, match="DataFrame"):
        ml.Model("y ~ x", {"y": [1, 2], "x": [1, 2]})


@pytest.mark.parametrize(
    "formula, named",
    [
        ("y ~ cr(x, df=4) + (1 | g)", ["Intercept", "cr(x, df=4)[1]", "cr(x, df=4)[4]"]),
        ("y ~ x + z + xz + (1 | g)", ["'x'", "'z'", "'xz'"]),
    ],
)
def test_linearly_dependent_columns_are_refused_by_name(frame, formula, named):
    data = frame.assign(z=np.arange(len(frame)) % 7 * 1.0)
    data["xz"] = data["x"] + data["z"]
    with pytest.raises(ml.DataError, match="linearly dependent") as info:
        ml.Model(formula, data)
    for name in named:
        assert name in str(info.value)


def test_collinear_but_identified_columns_pass(frame):
    """A centred spline basis and a square are correlated with their neighbours, not
    dependent: they must not trip the rank check."""
    data = frame.assign(year=1990.0 + np.arange(len(frame)) % 31)
    model = ml.Model("y ~ cr(x, df=4, constraints='center') + year + I(year**2) + (1 | g)", data)
    assert model.design.X.shape[1] == 7


@pytest.mark.parametrize(
    "family, plain",
    [("zero_inflated_poisson", "poisson"), ("hurdle_negative_binomial", "negative_binomial")],
)
def test_an_inflated_family_without_zeros_warns(frame, family, plain):
    frame = frame.assign(count=frame["count"] + 1)
    with pytest.warns(DesignWarning, match=f"no zeros.*family='{plain}'"):
        ml.Model("count ~ x + (1 | g)", frame, family=family)


def test_zero_one_inflated_beta_without_0_or_1_warns(frame):
    frame = frame.assign(share=np.linspace(0.1, 0.9, len(frame)))
    with pytest.warns(DesignWarning, match="no 0s or 1s.*family='beta'"):
        ml.Model("share ~ x", frame, family="zero_one_inflated_beta")


def test_an_ordinal_category_held_by_one_group_warns(frame):
    rating = np.tile([1, 2, 3], len(frame))[: len(frame)]
    rating[0] = 4  # the only 4, in group "a"
    with pytest.warns(
        DesignWarning,
        match="Category '4' of `rating` occurs only in the group 'a' of `g` \\(1 row\\)",
    ):
        ml.Model("rating ~ x + (1 | g)", frame.assign(rating=rating), family="cumulative")


def test_an_offset_in_a_parameters_formula_is_refused_not_dropped(frame):
    """Offsets shift the mean's linear predictor; nothing reads one elsewhere."""
    with pytest.raises(ml.FormulaError, match="offset\\(n\\)` in the formula of sigma"):
        ml.Model(ml.bf("y ~ x", sigma="~ x + offset(n)"), frame)
    labels = frame.assign(choice=np.tile(["a", "b", "c", "d"], len(frame) // 4))
    with pytest.raises(ml.FormulaError, match="which category"):
        ml.Model("choice ~ x + offset(np.log(n))", labels, family="categorical")
