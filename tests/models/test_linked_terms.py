"""brms' ID syntax ``(1 |p| g)``: group effects of one grouping factor correlated across
the formulas of distributional parameters or categories.

Reference: hand-written NumPyro models with the same priors (read from the spec) and the
linked effects drawn from one bivariate normal with an LKJ(2) correlation, non-centred:
- categorical choices (the data of ``test_categorical``, 600 rows, 15 groups) with
  ``mode ~ x + (1 |p| g)``: the two categories' intercepts correlated;
- sleepstudy with ``Reaction ~ Days + (1 |p| Subject)`` and ``sigma ~ 1 + (1 |p| Subject)``:
  a subject's mean and its residual sd correlated.
Agreement within Monte Carlo error (``same_posterior``: means within 4.5 combined
MCSEs, sds within 12% or 4.5 combined ses), correlations included. The parts around
the sampler (names, priors, printout, JSON, predictions for new groups, simulation with
given values, refusals) are checked on the same fits.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from posterior_checks import numpyro_priors, same_posterior
from test_categorical import choice_reference  # noqa: F401  (the unlinked twin, for readers)
from test_distributional import reference_fit

import multilevel as ml
from multilevel.errors import FitFileError, FormulaError
from multilevel.simulation import check_params
from multilevel.spec import ModelSpec

SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)
CHOICE = "mode ~ x + (1 |p| g)"
CHOICE_COR = "cor(mucar_Intercept,mutrain_Intercept|g)"
SLEEP = ml.bf("Reaction ~ Days + (1 |p| Subject)", sigma="~ 1 + (1 |p| Subject)")
SLEEP_COR = "cor(Intercept,sigma_Intercept|Subject)"


def linked_intercepts(name: str, sd_names: list[str], n_groups: int, priors):
    """(n_groups, 2) effects ~ N(0, diag(sd) R diag(sd)), R ~ LKJ(2), non-centred."""
    sd = jnp.stack([numpyro.sample(n, priors[n]) for n in sd_names])
    chol = numpyro.sample("L", dist.LKJCholesky(2, 2.0))
    numpyro.deterministic(name, chol[1, 0])  # R[0, 1] = L[1, 0] L[0, 0] = L[1, 0]
    z = numpyro.sample("z", dist.Normal(0, 1).expand([n_groups, 2]))
    return z @ (sd[:, None] * chol).T


# ------------------------------------------------------------------ categorical choices
@pytest.fixture(scope="module")
def choices():
    rng = np.random.default_rng(1)
    n, groups = 600, 15
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    u = rng.multivariate_normal([0, 0], [[0.36, 0.27], [0.27, 0.36]], groups)  # cor 0.75
    logits = np.stack([np.zeros(n), 0.5 + 0.8 * x + u[g, 0], -0.3 - 0.6 * x + u[g, 1]], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mode = np.array([rng.choice(["bus", "car", "train"], p=row) for row in p])
    return pd.DataFrame({"mode": mode, "x": x, "g": g})


@pytest.fixture(scope="module")
def choice_model(choices):
    return ml.Model(CHOICE, choices, family="categorical")


@pytest.fixture(scope="module")
def choice_fit(choice_model):
    return choice_model.fit(seed=3, **SETTINGS)


def linked_choice_reference(y, x, codes, n_groups, priors):
    sd_names = ["sd(mucar_Intercept|g)", "sd(mutrain_Intercept|g)"]
    u = linked_intercepts(CHOICE_COR, sd_names, n_groups, priors)
    etas = []
    for j, name in enumerate(("mucar", "mutrain")):
        intercept = numpyro.sample(f"{name}_Intercept", priors[f"{name}_Intercept"])
        slope = numpyro.sample(f"{name}_x", priors[f"{name}_x"])
        etas.append(intercept + slope * x + u[codes, j])
    logits = jnp.stack([jnp.zeros_like(x), *etas], axis=-1)
    numpyro.sample("y", dist.CategoricalLogits(logits), obs=y)


def test_linked_terms_share_one_correlation(choice_model):
    spec = choice_model.spec
    assert [t.id for t in spec.terms] == ["p", "p"]
    assert spec.cor_names == (CHOICE_COR,)
    assert spec.prior_of[CHOICE_COR] == ml.priors.LKJ(2.0)
    assert dict(spec.prior_sources)[CHOICE_COR].startswith("default")
    assert "correlated with the other terms of ID |p|" in spec.describe()
    assert choice_model.structure.linked == ((0, 1),)
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_categorical_matches_a_hand_written_numpyro_model(choices, choice_model, choice_fit):
    assert choice_fit.diagnostics.divergences <= 2
    args = (
        jnp.asarray(choice_model.design.y, dtype=jnp.int32),
        jnp.asarray(choices["x"].to_numpy(), dtype=jnp.float32),
        jnp.asarray(choice_model.design.dpars[0].blocks[0].codes),
        15,
        numpyro_priors(choice_model.spec),
    )
    names = list(choice_model.spec.hyper_names)
    reference = reference_fit(linked_choice_reference, args, seed=4, names=names)
    same_posterior(choice_fit, reference, names)
    assert CHOICE_COR in str(choice_fit)  # printed with the group's sds


def test_new_groups_draw_linked_effects_together(choice_fit):
    """A new group's two intercepts come from one bivariate normal per draw: across draws
    their correlation follows the posterior's (checked on the link scale, where the new
    group's effects are all that varies beyond the population coefficients)."""
    new = pd.DataFrame({"x": [0.0] * 2, "g": ["a new group", 0]})
    car = choice_fit.predict(new, dpar="mucar", kind="link", seed=5).draws["mucar"].values
    train = choice_fit.predict(new, dpar="mutrain", kind="link", seed=5).draws["mutrain"].values
    post = choice_fit.idata.posterior
    u_car = (car[..., 0] - post["mucar_Intercept"].values).ravel()
    u_train = (train[..., 0] - post["mutrain_Intercept"].values).ravel()
    # the new effects' correlation is a mixture over draws of each draw's correlation;
    # with 1,500 draws its se is about 0.03, and it must be far from 0 (truth 0.75)
    expected = np.mean(post[CHOICE_COR].values * 1.0)
    assert abs(np.corrcoef(u_car, u_train)[0, 1] - expected) < 0.15


def test_simulation_with_given_values_draws_correlated_effects(choice_model):
    params = {n: 0.0 for n in choice_model.spec.columns}
    params.update({"sd(mucar_Intercept|g)": 1.0, "sd(mutrain_Intercept|g)": 1.0})
    params[CHOICE_COR] = 0.9
    draws = choice_model.draw(200, seed=6, params=params)
    a, b = np.ravel(draws["mucar_Intercept|g"]), np.ravel(draws["mutrain_Intercept|g"])
    # 3,000 pairs: the sample correlation's se is about (1 - 0.81) / sqrt(3000) < 0.01
    assert abs(np.corrcoef(a, b)[0, 1] - 0.9) < 0.03
    partial = {**params, "mucar_Intercept|g": np.zeros(15)}
    with pytest.raises(ml.MultilevelError, match="give all of them or none"):
        check_params(choice_model, partial)
    with pytest.raises(KeyError, match="mutrain_Intercept"):
        choice_model.draw(1, seed=6, params=partial)


# ------------------------------------------------------------------ sleepstudy, mean & sigma
@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep_model(sleep):
    return ml.Model(SLEEP, sleep)


@pytest.fixture(scope="module")
def sleep_fit(sleep_model):
    return sleep_model.fit(seed=7, **SETTINGS)


def linked_sleep_reference(y, days, codes, n_groups, priors):
    sd_names = ["sd(Intercept|Subject)", "sd(sigma_Intercept|Subject)"]
    u = linked_intercepts(SLEEP_COR, sd_names, n_groups, priors)
    b0 = numpyro.sample("Intercept", priors["Intercept"])
    b1 = numpyro.sample("Days", priors["Days"])
    s0 = numpyro.sample("sigma_Intercept", priors["sigma_Intercept"])
    numpyro.sample("y", dist.Normal(b0 + b1 * days + u[codes, 0], jnp.exp(s0 + u[codes, 1])), obs=y)


def test_mean_and_sigma_linked_match_a_hand_written_numpyro_model(sleep, sleep_model, sleep_fit):
    args = (
        jnp.asarray(sleep_model.design.y),
        jnp.asarray(sleep["Days"].to_numpy(dtype=float)),
        jnp.asarray(sleep_model.design.blocks[0].codes),
        18,
        numpyro_priors(sleep_model.spec),
    )
    names = list(sleep_model.spec.hyper_names)
    assert SLEEP_COR in names
    reference = reference_fit(linked_sleep_reference, args, seed=8, names=names)
    same_posterior(sleep_fit, reference, names)


def test_saved_fits_keep_the_links(sleep, sleep_fit, tmp_path):
    loaded = ml.load(sleep_fit.save(tmp_path / "linked.nc"))
    assert loaded.spec == sleep_fit.spec and loaded.spec.linked_terms
    new = sleep.head(3)
    a = sleep_fit.predict(new, dpar="sigma").draws["sigma"].values
    b = loaded.predict(new, dpar="sigma", data=sleep).draws["sigma"].values
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_file_whose_ids_differ_from_its_formulas_is_refused(sleep_model):
    text = sleep_model.spec.to_json().replace('"id": "p"', '"id": "q"', 1)
    with pytest.raises(FitFileError, match="ID"):
        ModelSpec.from_json(text)


# ------------------------------------------------------------------ refusals and edge cases
def test_an_id_in_one_formula_alone_is_a_plain_term(sleep):
    model = ml.Model(ml.bf("Reaction ~ Days + (1 + Days |p| Subject)", sigma="~ 1"), sleep)
    assert model.spec.terms[0].id == "" and model.spec.linked_terms == ()
    assert model.spec.cor_names == ("cor(Intercept,Days|Subject)",)


def test_an_id_twice_in_one_formula_is_refused(sleep):
    with pytest.raises(FormulaError, match="appears twice.*one term"):
        ml.Model("Reaction ~ Days + (1 |p| Subject) + (0 + Days |p| Subject)", sleep)


def test_centring_linked_effects_on_request_is_refused(sleep):
    with pytest.raises(ml.MultilevelError, match="non-centred"):
        ml.Model(SLEEP, sleep, centered=True)


def test_centring_a_categorical_models_terms_is_refused_not_ignored(choices):
    """A categorical model's group terms are its categories': centered=True would centre
    nothing (it used to be accepted and ignored)."""
    with pytest.raises(ml.MultilevelError, match="centered=True centres the group terms"):
        ml.Model("mode ~ x + (1 | g)", choices, family="categorical", centered=True)
