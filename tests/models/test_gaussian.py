"""Gaussian models against independent references: lme4's published fits and a
hand-written NumPyro model. Fits are module-scoped: compilation dominates test time."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

import multilevel as ml
from multilevel.inference import nuts

SLEEP = "Reaction ~ Days + (Days | Subject)"
SETTINGS = dict(chains=4, warmup=1000, draws=1000, progress=False)


@pytest.fixture(scope="module")
def sleep_fit():
    return ml.Model(SLEEP, ml.datasets.load("sleepstudy")).fit(seed=11, **SETTINGS)


def test_sleepstudy_matches_lme4(sleep_fit):
    """lme4 REML (Bates et al. 2015, JSS 67(1), sleepstudy example): fixed effects 251.41
    and 10.47, sd(Intercept) 24.74, sd(Days) 5.92, residual 25.59.

    Fixed effects: with near-flat priors the posterior mean is the REML estimate up to
    Monte Carlo error, so it must lie within one posterior sd. Scales: REML is a mode,
    and with 18 subjects the posterior of a group sd is right-skewed (mean above the
    mode), so we require the REML value inside the central 90% interval and the posterior
    median within half a posterior sd of it."""
    s = sleep_fit.summary()
    for name, lme4 in {"Intercept": 251.41, "Days": 10.47}.items():
        assert abs(s.loc[name, "mean"] - lme4) < s.loc[name, "sd"], name
    scales = {"sd(Intercept|Subject)": 24.74, "sd(Days|Subject)": 5.92, "sigma": 25.59}
    for name, lme4 in scales.items():
        assert s.loc[name, "q5"] < lme4 < s.loc[name, "q95"], name
        median = np.median(sleep_fit.draws(name))
        assert abs(median - lme4) < 0.5 * s.loc[name, "sd"], name
    assert sleep_fit.diagnostics.divergences == 0
    assert sleep_fit.diagnostics.max_r_hat < 1.01


def test_summary_layout(sleep_fit):
    s = sleep_fit.summary()
    assert list(s.columns) == ["mean", "sd", "q5", "q95", "r_hat", "ess_bulk", "ess_tail"]
    assert list(s.index) == [
        "Intercept",
        "Days",
        "sd(Intercept|Subject)",
        "sd(Days|Subject)",
        "cor(Intercept,Days|Subject)",
        "sigma",
    ]
    full = sleep_fit.summary(group_effects=True)
    assert "Days|Subject[308]" in full.index and len(full) == 6 + 2 * 18
    text = repr(sleep_fit)
    order = [
        text.index(k) for k in ["Population-level effects", "~Subject", "sigma", "Diagnostics"]
    ]
    assert order == sorted(order)


def test_idata_has_named_dims_and_levels(sleep_fit):
    post = sleep_fit.idata.posterior
    assert post["Intercept|Subject"].dims == ("chain", "draw", "Subject")
    assert list(post["Subject"].values[:3]) == ["308", "309", "310"]
    assert post["Days"].shape == (4, 1000)
    assert "diverging" in sleep_fit.idata.sample_stats
    assert "tree_depth" in sleep_fit.idata.sample_stats
    # Correlation draws come from an LKJ Cholesky factor: always a valid correlation.
    cor = post["cor(Intercept,Days|Subject)"].values
    assert np.all(np.abs(cor) <= 1)


def test_same_seed_same_draws_and_no_recompile(sleep_fit):
    traces = sum(nuts.TRACE_COUNTS.values())
    again = ml.Model(SLEEP, ml.datasets.load("sleepstudy")).fit(seed=11, **SETTINGS)
    assert sum(nuts.TRACE_COUNTS.values()) == traces, "a same-shaped refit recompiled"
    np.testing.assert_array_equal(again.draws("Days"), sleep_fit.draws("Days"))
    np.testing.assert_array_equal(
        again.draws("Intercept|Subject"), sleep_fit.draws("Intercept|Subject")
    )
    other = ml.Model(SLEEP, ml.datasets.load("sleepstudy")).fit(seed=12, **SETTINGS)
    assert not np.array_equal(other.draws("Days"), sleep_fit.draws("Days"))


def test_save_load_round_trip(sleep_fit, tmp_path):
    path = sleep_fit.save(tmp_path / "sleep.nc")
    loaded = ml.load(path)
    assert loaded.spec == sleep_fit.spec
    assert loaded.info == sleep_fit.info
    for name in sleep_fit.idata.posterior.data_vars:
        np.testing.assert_array_equal(
            loaded.idata.posterior[name].values, sleep_fit.idata.posterior[name].values
        )
    np.testing.assert_array_equal(
        loaded.idata.sample_stats["diverging"].values,
        sleep_fit.idata.sample_stats["diverging"].values,
    )
    assert loaded.summary().equals(sleep_fit.summary())
    with pytest.raises(ml.MultilevelError, match="No saved fit"):
        ml.load(tmp_path / "missing.nc")


# --------------------------------------------------------------------------- radon
RADON_PRIORS = {
    "Intercept": ml.Normal(0, 10),
    "floor": ml.Normal(0, 10),
    "sd": ml.HalfNormal(1),
    "sigma": ml.HalfNormal(1),
}


def _reference_radon(y, floor, county, n_county):
    """The varying-intercept radon model written by hand in NumPyro (non-centred)."""
    a = numpyro.sample("a", dist.Normal(0, 10))
    b = numpyro.sample("b", dist.Normal(0, 10))
    tau = numpyro.sample("tau", dist.HalfNormal(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1))
    z = numpyro.sample("z", dist.Normal(0, 1).expand([n_county]))
    numpyro.deterministic("alpha", tau * z)
    numpyro.sample("y", dist.Normal(a + b * floor + tau * z[county], sigma), obs=y)


@pytest.fixture(scope="module")
def radon_pair():
    radon = ml.datasets.load("radon")
    model = ml.Model("log_radon ~ floor + (1 | county)", radon, priors=RADON_PRIORS)
    ours = model.fit(chains=4, warmup=1000, draws=1000, seed=3, progress=False)
    block = model.design.blocks[0]
    mcmc = MCMC(
        NUTS(_reference_radon),
        num_warmup=1000,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(4),
        radon["log_radon"].to_numpy(),
        radon["floor"].to_numpy(),
        block.codes,
        len(block.levels),
    )
    return ours, mcmc.get_samples(group_by_chain=True)


def _agree(ours: np.ndarray, ref: np.ndarray, what: str):
    """Posterior means agree within 4 combined Monte Carlo standard errors, posterior sds
    within 10% (the MCSE of an sd with ESS ~ 1000 is about 2%)."""
    from multilevel._arviz import az

    ours, ref = np.asarray(ours), np.asarray(ref)
    mcse = np.hypot(az.mcse(ours), az.mcse(ref))
    diff = abs(ours.mean() - ref.mean())
    assert diff < 4 * mcse, f"{what}: means {ours.mean():.4f} vs {ref.mean():.4f}, mcse {mcse:.4f}"
    assert abs(ours.std() / ref.std() - 1) < 0.1, f"{what}: sds {ours.std():.4f} vs {ref.std():.4f}"


def test_radon_matches_hand_written_numpyro(radon_pair):
    ours, ref = radon_pair
    post = ours.idata.posterior
    pairs = {"Intercept": "a", "floor": "b", "sd(Intercept|county)": "tau", "sigma": "sigma"}
    for name, ref_name in pairs.items():
        _agree(post[name].values, ref[ref_name], name)
    effects = post["Intercept|county"].values
    for j in [0, 1, 25, 50, 84]:  # small and large counties
        _agree(effects[..., j], ref["alpha"][..., j], f"county {post['county'].values[j]}")
