"""Tests for multilevel.diagnostics: the convergence verdict, its causes and its advice.

Cheap: synthetic summaries and sampler statistics, and models that are built but never
sampled (a Fit is assembled from made-up draws where printing is tested).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import diagnostics as diag
from multilevel._arviz import az
from multilevel.fit import Fit

CHAINS, DRAWS = 4, 100


def summary(r_hat=1.0, ess_bulk=1000.0, ess_tail=1000.0, worst="b") -> pd.DataFrame:
    """Three parameters; ``worst`` gets the given R-hat and ESS, the others good ones."""
    rows = {name: (1.0, 1000.0, 1000.0) for name in ("a", "b", "c")}
    rows[worst] = (r_hat, ess_bulk, ess_tail)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["r_hat", "ess_bulk", "ess_tail"])


def stats(diverging=None, n_steps=None, **extra) -> dict:
    """Sampler statistics (chains, draws): 7 leapfrog steps, nothing divergent."""
    out = {
        "diverging": np.zeros((CHAINS, DRAWS), bool) if diverging is None else diverging,
        "n_steps": np.full((CHAINS, DRAWS), 7) if n_steps is None else n_steps,
    }
    return {**out, **extra}


def compute(table=None, sampler=None) -> diag.Diagnostics:
    return diag.compute(summary() if table is None else table, sampler or stats(), 10)


# ------------------------------------------------------------------------- verdict
def test_healthy_fit_converged_without_verdict():
    d = compute()
    assert d.converged and d.failures() == [] and d.verdict() == ""
    assert d.frozen_chains == ()


def test_most_draws_divergent_is_not_converged():
    diverging = np.zeros((CHAINS, DRAWS), bool)
    diverging[:, :60] = True  # 60% of draws
    d = compute(sampler=stats(diverging=diverging))
    assert not d.converged
    assert d.verdict().startswith("The fit did NOT converge")
    assert f"240 of {CHAINS * DRAWS} draws divergent" in d.verdict()
    # a minority of divergences is a problem to report, not a failed fit
    diverging[:, 40:] = False
    assert compute(sampler=stats(diverging=diverging)).converged


@pytest.mark.parametrize("r_hat, converged", [(1.09, True), (1.11, False), (np.inf, False)])
def test_r_hat_above_1_1_is_not_converged_and_names_the_parameter(r_hat, converged):
    d = compute(summary(r_hat=r_hat, worst="c"))
    assert d.converged is converged
    assert d.worst_r_hat == "c"
    if not converged:
        assert "(c) > 1.1" in d.verdict().splitlines()[0]


@pytest.mark.parametrize("kind", ["ess_bulk", "ess_tail"])
def test_ess_under_a_tenth_of_the_draws_is_not_converged(kind):
    draws = CHAINS * DRAWS
    assert compute(summary(**{kind: 0.1 * draws})).converged
    d = compute(summary(**{kind: 0.1 * draws - 1}, worst="a"))
    assert not d.converged
    assert f"{kind.split('_')[1]} ESS 39 (a) < 10% of {draws} draws" in d.verdict()


def test_frozen_chain_is_found_and_named_in_the_advice():
    """A chain stuck at its start: every draw one divergent leapfrog step (MASS epil,
    uniform(-2, 2) start, chain 3)."""
    diverging = np.zeros((CHAINS, DRAWS), bool)
    n_steps = np.full((CHAINS, DRAWS), 15)
    diverging[2], n_steps[2] = True, 1
    d = compute(sampler=stats(diverging, n_steps))
    assert d.frozen_chains == (2,) and not d.converged
    text = d.verdict()
    assert "chain 2 did not move from the start" in text.splitlines()[0]
    assert "chain 2 did not move from its start" in text
    # one-step draws that moved (accepted, not divergent) are not a frozen chain
    assert compute(sampler=stats(np.zeros_like(diverging), n_steps)).frozen_chains == ()


def test_frozen_chain_from_acceptance_without_divergences():
    n_steps = np.full((CHAINS, DRAWS), 15)
    acceptance = np.full((CHAINS, DRAWS), 0.8)
    n_steps[[0, 3]], acceptance[[0, 3]] = 1, 0.0
    d = compute(sampler=stats(n_steps=n_steps, acceptance_rate=acceptance))
    assert d.frozen_chains == (0, 3)
    assert "chains 0 and 3 did not move from their start" in d.verdict()


def test_hints_come_first_and_replace_the_general_advice():
    d = compute(summary(r_hat=3.0))
    general = d.verdict()
    assert "trace plots" in general.splitlines()[1]
    hinted = d.verdict(["`YEAR` is far from zero; centre it."])
    assert hinted.splitlines()[1] == "  - `YEAR` is far from zero; centre it."
    assert "trace plots" not in hinted


def test_problems_api_is_unchanged():
    """Other code (CLI, benchmarks, K-fold) reads ``problems(centered)``."""
    d = compute(summary(r_hat=1.05, ess_bulk=50.0))
    problems = d.problems(centered=False)
    assert len(problems) == 2 and "R-hat" in problems[0] and "effective sample" in problems[1]
    assert {"divergences", "max_r_hat", "min_ess_bulk", "n_draws"} <= set(d.to_dict())


def test_warn_gives_the_verdict_first():
    d = compute(summary(r_hat=2.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diag.warn(d, centered=False, hints=("a cause",))
    messages = [str(w.message) for w in caught]
    assert messages[0].startswith("The fit did NOT converge") and "a cause" in messages[0]
    assert messages[1:] == d.problems(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diag.warn(compute(summary(r_hat=1.05)), centered=False)
    assert not any("NOT converge" in str(w.message) for w in caught)


# ------------------------------------------------------------------------- suspects
@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    """grouseticks-like: YEAR as a number 95-97, a 0/1 column, an age of 20-40."""
    rng = np.random.default_rng(1)
    n = 120
    return pd.DataFrame(
        {
            "y": rng.poisson(3, n),
            "YEAR": rng.choice([95, 96, 97], n),
            "age": rng.uniform(20, 40, n),
            "treated": rng.integers(0, 2, n),
            "g": rng.choice(list("abcdefgh"), n),
        }
    )


def test_predictor_far_from_zero_gets_centring_advice(ticks):
    model = ml.Model("y ~ YEAR + age + treated + (1 | g)", ticks, family="poisson")
    hints = diag.suspects(model.design, model.spec)
    assert len(hints) == 1  # age (mean / sd ~ 5) and the dummy are left alone
    assert "`YEAR` runs from 95 to 97" in hints[0]
    assert "`I(YEAR - 96)` or `center(YEAR)`" in hints[0]


def test_predictor_far_from_zero_in_chunked_statistics(ticks):
    """``Model.from_chunks`` keeps each column's mean and sd, not its rows."""
    data = ticks.assign(y=ticks["y"].astype(float))
    model = ml.Model.from_chunks("y ~ YEAR + age + (1 | g)", [data], progress=False)
    (hint,) = diag.suspects(model.design, model.spec)
    assert hint.startswith("`YEAR`: its mean (96") and "`I(YEAR - 96)`" in hint


def test_large_counts_get_advice():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(10), 5)
    df = pd.DataFrame({"y": rng.poisson(np.exp(12 + rng.normal(0, 0.3, 10)[g])), "g": g})
    model = ml.Model("y ~ 1 + (1 | g)", df, family="poisson", centered=False)
    (hint,) = diag.suspects(model.design, model.spec)
    assert "counts up to" in hint and "centered=True" in hint and "negative_binomial" in hint
    small = df.assign(y=rng.poisson(5, len(df)))
    assert (
        diag.suspects(ml.Model("y ~ 1 + (1 | g)", small, family="poisson").design, model.spec) == ()
    )


def test_imputed_group_level_covariate_is_named():
    """radon's uranium: one value per county; under missing='model' its imputation
    model cannot identify it."""
    rng = np.random.default_rng(3)
    county = rng.integers(0, 12, 150)
    uranium = rng.normal(0, 1, 12)[county]
    df = pd.DataFrame({"y": rng.normal(size=150), "u": uranium, "county": county})
    df.loc[rng.random(150) < 0.2, "u"] = np.nan
    model = ml.Model("y ~ u + (1 | county)", df, missing="model")
    hints = diag.suspects(model.design, model.spec)
    assert len(hints) == 1
    assert "`u` is constant within each level of `county`" in hints[0]
    assert "missing='drop'" in hints[0] and "no observed value" not in hints[0]
    df.loc[df["county"] == 0, "u"] = np.nan  # a county with no observed value
    model = ml.Model("y ~ u + (1 | county)", df, missing="model")
    assert "1 county level(s) have no observed value" in diag.suspects(model.design, model.spec)[0]
    # a row-level predictor with gaps is not flagged
    varied = df.assign(u=df["u"] + rng.normal(0, 0.5, 150))
    model = ml.Model("y ~ u + (1 | county)", varied, missing="model")
    assert diag.suspects(model.design, model.spec) == ()


# ------------------------------------------------------------------------- print(fit)
def fake_fit(model: ml.Model, disagree: bool) -> Fit:
    """A Fit of made-up draws (no sampling); ``disagree``: the chains sit apart."""
    rng = np.random.default_rng(4)
    shift = np.arange(CHAINS)[:, None] * (5.0 if disagree else 0.0)
    posterior = {
        name: rng.normal(size=(CHAINS, DRAWS)) + shift + (2.0 if name.startswith("sd") else 0)
        for name in model.spec.hyper_names
    }
    sample_stats = {
        "diverging": np.zeros((CHAINS, DRAWS), bool),
        "n_steps": np.full((CHAINS, DRAWS), 7),
    }
    idata = az.from_dict(posterior=posterior, sample_stats=sample_stats)
    info = {
        "method": "NUTS",
        "n_rows": model.design.n,
        "seed": 0,
        "settings": {
            "chains": CHAINS,
            "warmup": DRAWS,
            "draws": DRAWS,
            "target_accept": 0.8,
            "max_tree_depth": 10,
        },
        "timing": {"compile_s": 0.0, "sampling_s": 0.0, "total_s": 0.0},
    }
    fit = Fit(idata, model.spec, info, model=model)
    if not fit.diagnostics.converged:  # as Model.fit does
        fit.info["hints"] = list(diag.suspects(model.design, model.spec))
    return fit


def test_print_of_unconverged_fit_starts_with_the_verdict(ticks):
    model = ml.Model("y ~ YEAR + (1 | g)", ticks, family="poisson")
    lines = str(fake_fit(model, disagree=True)).splitlines()
    assert lines[0].startswith("The fit did NOT converge; do not use its estimates: R-hat")
    assert "I(YEAR - 96)" in lines[1]
    assert str(fake_fit(model, disagree=False)).startswith("Formula: y ~ YEAR")


def test_hints_of_a_loaded_fit_are_read_as_text_only(ticks):
    fit = fake_fit(ml.Model("y ~ YEAR + (1 | g)", ticks, family="poisson"), disagree=True)
    fit.info["hints"] = ["fine", 3, {"x": 1}]  # as an edited file might hold
    assert str(fit).splitlines()[1] == "  - fine"
    fit.info["hints"] = "not a list"
    assert "trace plots" in str(fit).splitlines()[1]
    fit.diagnostics = dataclasses.replace(fit.diagnostics, max_r_hat=1.0, min_ess_bulk=1e3)
    fit.diagnostics = dataclasses.replace(fit.diagnostics, min_ess_tail=1e3)
    assert str(fit).startswith("Formula:")
