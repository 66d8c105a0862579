"""Nested and crossed grouping factors against lme4's published REML fits
(Bates, lme4 book ch. 2: Pastes and Penicillin)."""

import pytest

import multilevel as ml


def _check_against_reml(fit, fixed: dict, scales: dict):
    """Fixed effects within one posterior sd of REML; REML scales inside the central
    90% posterior interval (REML gives modes; with 6-10 levels the posterior of a group
    sd is wide and right-skewed, so a tighter check would test the prior, not the code)."""
    s = fit.summary()
    for name, value in fixed.items():
        assert abs(s.loc[name, "mean"] - value) < s.loc[name, "sd"], name
    for name, value in scales.items():
        assert s.loc[name, "q5"] < value < s.loc[name, "q95"], (name, s.loc[name].to_dict())
    assert fit.diagnostics.max_r_hat < 1.02


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_nested_pastes_matches_lme4():
    # A weakly identified batch sd (10 batches): the funnel needs a small step size.
    fit = ml.Model("strength ~ 1 + (1 | batch/cask)", ml.datasets.load("Pastes")).fit(
        seed=1, target_accept=0.99, progress=False
    )
    assert fit.diagnostics.divergences <= 5
    _check_against_reml(
        fit,
        {"Intercept": 60.0533},
        {"sd(Intercept|batch)": 1.2900, "sd(Intercept|batch:cask)": 2.9041, "sigma": 0.8234},
    )
    assert fit.idata.posterior["Intercept|batch:cask"].shape[-1] == 30


def test_crossed_penicillin_matches_lme4():
    fit = ml.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", ml.datasets.load("Penicillin")).fit(
        seed=1, target_accept=0.95, warmup=1000, draws=500, progress=False
    )
    # sample's sd rests on 6 levels: its funnel can yield an isolated divergence in 2000
    # draws (as in test_partially_collapsed_and_joint_nuts_agree_on_crossed_penicillin)
    assert fit.diagnostics.divergences <= 2
    _check_against_reml(
        fit,
        {"Intercept": 22.9722},
        {"sd(Intercept|plate)": 0.8467, "sd(Intercept|sample)": 1.9316, "sigma": 0.5499},
    )
