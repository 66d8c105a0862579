"""Tests for multilevel.options: bad sampler options are refused before anything is
compiled or drawn, with one error type naming the option and the value."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest

import multilevel as ml
from multilevel.errors import MultilevelError, OptionError
from multilevel.options import (
    FIT_DEFAULTS,
    MAX_SEED,
    check_max_tree_depth,
    check_sampler_options,
    check_seed,
    check_target_accept,
)
from multilevel.prediction import predict

GOOD = dict(chains=2, warmup=10, draws=10, seed=0, target_accept=0.8, max_tree_depth=10)


@pytest.fixture(scope="module")
def model() -> ml.Model:
    return ml.Model("Reaction ~ Days + (1 | Subject)", ml.datasets.load("sleepstudy"))


def test_option_error_is_a_user_error():
    assert issubclass(OptionError, MultilevelError) and issubclass(OptionError, ValueError)


@pytest.mark.parametrize(
    "seed, hint",
    [(-1, ""), ("7", "seed=7"), (1.5, ""), (2.0, "seed=2"), (True, ""), (None, ""), (2**63, "")],
)
def test_bad_seeds_are_named(seed, hint):
    match = f"seed must be a whole number.*got {re.escape(repr(seed))}"
    with pytest.raises(OptionError, match=match) as info:
        check_seed(seed)
    assert hint in str(info.value)


@pytest.mark.parametrize("seed", [0, 7, np.int64(7), np.uint32(7), MAX_SEED])
def test_whole_numbers_and_numpy_integers_are_seeds(seed):
    assert check_seed(seed) == int(seed) and type(check_seed(seed)) is int


@pytest.mark.parametrize(
    "name, value",
    [
        ("chains", 0),
        ("chains", -1),
        ("chains", 2.0),
        ("chains", True),
        ("warmup", 0),
        ("draws", "100"),
        ("target_accept", 0),
        ("target_accept", 1),
        ("target_accept", 1.5),
        ("target_accept", math.nan),
        ("target_accept", "0.9"),
        ("target_accept", True),
        ("max_tree_depth", 0),
        ("max_tree_depth", -3),
        ("max_tree_depth", 2.5),
        ("max_tree_depth", 31),
        ("max_tree_depth", (10, 12)),
    ],
)
def test_each_bad_option_is_named_with_its_value(name, value):
    with pytest.raises(OptionError, match=f"^{name} must be .*got {re.escape(repr(value))}"):
        check_sampler_options(**{**GOOD, name: value})


def test_good_options_pass():
    check_sampler_options(**GOOD)
    assert check_target_accept(np.float32(0.95)) == pytest.approx(0.95)
    assert check_max_tree_depth(np.int64(12)) == 12


def test_numpy_bools_are_no_numbers():
    # The checks tell NumPy's bool from its integers through `numbers`, not NumPy itself.
    with pytest.raises(OptionError):
        check_seed(np.bool_(True))
    with pytest.raises(OptionError):
        check_target_accept(np.bool_(True))


def test_fit_defaults_are_those_of_model_fit():
    # The CLI's help shows FIT_DEFAULTS without importing the model; Model.fit's signature
    # reads them too, and must not be given literals of its own (same values and types).
    params = inspect.signature(ml.Model.fit).parameters
    actual = {name: params[name].default for name in FIT_DEFAULTS}
    assert actual == FIT_DEFAULTS
    assert {k: type(v) for k, v in actual.items()} == {k: type(v) for k, v in FIT_DEFAULTS.items()}


# Every public entry point that takes a seed refuses a bad one through check_seed, before
# any work (none of these compiles or samples).
@pytest.mark.parametrize(
    "options",
    [{"seed": -1}, {"seed": "7"}, {"max_tree_depth": 0}, {"target_accept": 1.0}, {"chains": 0}],
)
def test_fit_refuses_before_sampling(model, options):
    with pytest.raises(OptionError, match=next(iter(options))):
        model.fit(progress=False, **options)


def test_other_entry_points_refuse_bad_seeds(model):
    truth = {name: 1.0 for name in model.spec.hyper_names}
    calls = {
        "draw": lambda seed: model.draw(seed=seed),
        "simulate": lambda seed: model.simulate(seed=seed),
        "sample_prior_predictive": lambda seed: model.sample_prior_predictive(seed=seed),
        "recover": lambda seed: ml.recover(model, truth, seed=seed),
        "sbc": lambda seed: ml.sbc(model, n_sims=2, seed=seed),
        "predict": lambda seed: predict(object(), seed=seed),  # refused before the fit is read
        "compare_pooling": lambda seed: ml.compare_pooling(
            "Reaction ~ Days + (1 | Subject)", ml.datasets.load("sleepstudy"), seed=seed
        ),
    }
    for name, call in calls.items():
        for seed in (-1, 1.5, True):
            with pytest.raises(OptionError, match="seed must be"):
                call(seed)
            assert name  # (the loop names the entry point in a failure's traceback)


def test_sbc_checks_every_sampler_option(model):
    with pytest.raises(OptionError, match="max_tree_depth"):
        ml.sbc(model, n_sims=2, max_tree_depth=0)
    with pytest.raises(OptionError, match="n_sims"):
        ml.sbc(model, n_sims=0)
