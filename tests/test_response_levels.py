"""A bernoulli response stored as two-level text or a categorical, read as glmer reads a
factor (first level failure, the other success); the level that counts is printed."""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.errors import DataError


@pytest.fixture(scope="module")
def answers():
    rng = np.random.default_rng(4)
    x = rng.normal(size=80)
    yes = rng.random(80) < 1 / (1 + np.exp(-x))
    return pd.DataFrame({"x": x, "g": rng.integers(0, 8, 80), "yes": yes.astype(int),
                         "answer": np.where(yes, "Y", "N")})  # fmt: skip


def test_text_levels_are_the_0_1_response(answers):
    text = ml.Model("answer ~ x + (1 | g)", answers, family="bernoulli")
    numbers = ml.Model("yes ~ x + (1 | g)", answers, family="bernoulli")
    np.testing.assert_array_equal(text.design.y, numbers.design.y)
    assert text.spec.response_levels == ("N", "Y")
    assert "success = 'answer' is 'Y' (against 'N')" in text.spec.describe()


def test_a_categorical_keeps_its_own_order(answers):
    data = answers.assign(answer=pd.Categorical(answers["answer"], categories=["Y", "N"]))
    model = ml.Model("answer ~ x", data, family="bernoulli")
    assert model.spec.response_levels == ("Y", "N")
    np.testing.assert_array_equal(model.design.y, 1 - answers["yes"])


def test_simulated_responses_come_back_as_the_levels(answers):
    model = ml.Model("answer ~ x + (1 | g)", answers, family="bernoulli")
    simulated = model.simulate(None, seed=1)
    assert set(simulated["answer"]) <= {"N", "Y"}


def test_three_levels_are_refused_by_value(answers):
    data = answers.assign(answer=answers["answer"].where(answers.index != 3, "maybe"))
    with pytest.raises(DataError, match="'maybe'"):
        ml.Model("answer ~ x", data, family="bernoulli")
