"""Aggregating repeated rows of discrete models into covariate patterns: the patterns and
pooled counts, the log density (equal to the row-wise one up to a constant, with equal
gradients), and one posterior against the row-wise sampler."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import log_density

import multilevel as ml
from multilevel._arviz import az
from multilevel.backends import aggregate
from multilevel.backends import numpyro_model as backend
from multilevel.families import get_family
from multilevel.inference import nuts


def _pooled_table(agg, design):
    """The aggregated rows as a frame: X columns, codes of each term, y, trials, offset."""
    data = agg.data
    table = pd.DataFrame(np.asarray(data["X"]), columns=design.columns)
    for k, codes in enumerate(data["codes"]):
        table[f"code{k}"] = np.asarray(codes)
        for j in range(data["Z"][k].shape[1]):
            table[f"Z{k}_{j}"] = np.asarray(data["Z"][k][:, j])
    table["y"] = np.asarray(data["y"])
    if data["trials"] is not None:
        table["trials"] = np.asarray(data["trials"])
    if data["offset"] is not None:
        table["offset"] = np.asarray(data["offset"])
    return table


def test_bernoulli_rows_pool_into_binomial_counts():
    frame = pd.DataFrame({
        "y": [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0],
        "x": [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1],
        "g": list("aaaaaabbbbbb"),
    })  # fmt: skip
    model = ml.Model("y ~ x + (1 | g)", frame, family="bernoulli")
    agg = aggregate.aggregate(model.design, "bernoulli", "logit")
    assert (agg.rows, agg.patterns, agg.family, agg.link) == (12, 4, "binomial", "logit")
    assert agg.note == "12 rows aggregated into 4 covariate patterns"
    table = _pooled_table(agg, model.design)
    got = table.set_index(["x", "code0"])[["y", "trials"]].sort_index()
    expected = frame.assign(code0=frame.g.map({"a": 0, "b": 1}))
    expected = expected.groupby(["x", "code0"]).y.agg(["sum", "size"]).sort_index()
    np.testing.assert_array_equal(got.y, expected["sum"])
    np.testing.assert_array_equal(got.trials, expected["size"])
    assert agg.data["offset"] is None
    # each original row is mapped to the pattern that holds its covariates
    pooled_x = np.asarray(agg.data["X"][:, 1])[agg.row_pattern]
    np.testing.assert_array_equal(pooled_x, frame.x)


def test_refits_of_simulated_responses_reuse_the_patterns(monkeypatch):
    """Patterns depend on covariates and groups only: a with_response clone's inputs are
    pooled with the original model's patterns, and equal a fresh model's."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.integers(0, 2, 400), "x": rng.integers(0, 2, 400),
                         "g": rng.integers(0, 5, 400)})  # fmt: skip
    model = ml.Model("y ~ x + (1 | g)", data, family="bernoulli")
    _, first, _ = model._joint_inputs()
    calls = []
    original = aggregate.covariate_patterns
    monkeypatch.setattr(
        aggregate, "covariate_patterns", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    y = 1 - data["y"].to_numpy()
    _, refit, _ = model.with_response(y)._joint_inputs()
    assert calls == []  # found once, for the first model
    _, fresh, _ = ml.Model("y ~ x + (1 | g)", data.assign(y=y), family="bernoulli")._joint_inputs()
    assert calls == [1]
    for key in ("X", "y", "trials"):
        np.testing.assert_array_equal(np.asarray(refit[key]), np.asarray(fresh[key]))
    assert not np.array_equal(np.asarray(refit["y"]), np.asarray(first["y"]))


def test_rows_without_repeats_are_left_alone():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"y": rng.integers(0, 2, 40), "x": rng.normal(size=40)})
    frame["g"] = np.repeat(["a", "b", "c", "d"], 10)
    model = ml.Model("y ~ x + (1 | g)", frame, family="bernoulli")
    assert aggregate.aggregate(model.design, "bernoulli", "logit") is None
    assert (
        aggregate.aggregated_model_inputs(model.structure, model.design, "bernoulli", "logit")
        is None
    )


def test_gaussian_is_never_aggregated():
    frame = pd.DataFrame({"y": np.arange(20.0), "g": ["a", "b"] * 10})
    model = ml.Model("y ~ 1 + (1 | g)", frame)
    assert aggregate.aggregate(model.design, "gaussian", "identity") is None


def test_crossed_codes_and_group_covariates_are_part_of_the_pattern():
    """x only enters the group term (1 + x | g), h is crossed with g: rows that differ in
    either stay apart; rows equal in all of them pool."""
    g = np.repeat(["a", "b", "c"], 24)
    h = np.tile(np.repeat(["u", "v", "w", "z"], 6), 3)
    x = np.tile([0.0, 1.0], 36)
    y = np.random.default_rng(1).integers(0, 2, g.size)
    frame = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
    model = ml.Model("y ~ 1 + (1 + x | g) + (1 | h)", frame, family="bernoulli")
    agg = aggregate.aggregate(model.design, "bernoulli", "logit")
    assert agg.patterns == 3 * 4 * 2
    table = _pooled_table(agg, model.design)
    assert not table.duplicated(["code0", "code1", "Z0_1"]).any()
    counts = frame.groupby(["g", "h", "x"]).y.agg(["sum", "size"])
    assert sorted(table.trials) == sorted(counts["size"])
    assert table.y.sum() == y.sum()
    # with h left out, the rows that differed only in h pool together
    fewer = ml.Model("y ~ 1 + (1 + x | g)", frame, family="bernoulli")
    assert aggregate.aggregate(fewer.design, "bernoulli", "logit").patterns == 3 * 2


def test_binomial_sums_successes_and_trials():
    frame = pd.DataFrame({
        "k": [1, 2, 0, 3, 4, 1, 2, 5],
        "n": [3, 4, 2, 5, 6, 2, 3, 9],
        "period": ["1", "1", "2", "2", "1", "1", "2", "2"],
        "herd": list("aaaabbbb"),
    })  # fmt: skip
    model = ml.Model("k | trials(n) ~ period + (1 | herd)", frame, family="binomial")
    agg = aggregate.aggregate(model.design, "binomial", "logit")
    assert agg.patterns == 4 and agg.family == "binomial"
    table = _pooled_table(agg, model.design).sort_values(["code0", "period[T.2]"])
    expected = frame.groupby(["herd", "period"])[["k", "n"]].sum()
    np.testing.assert_array_equal(table.y, expected.k)
    np.testing.assert_array_equal(table.trials, expected.n)
    assert agg.data["offset"] is None


def test_poisson_sums_counts_with_log_count_offset():
    frame = pd.DataFrame({"y": [0, 3, 1, 2, 5, 4, 1, 2], "x": [0, 0, 0, 1, 1, 0, 1, 0]})
    frame["g"] = ["a"] * 7 + ["b"]
    model = ml.Model("y ~ x + (1 | g)", frame, family="poisson")
    agg = aggregate.aggregate(model.design, "poisson", "log")
    table = _pooled_table(agg, model.design).sort_values(["code0", "x"])
    np.testing.assert_array_equal(table.y, [8, 8, 2])
    np.testing.assert_allclose(table.offset, np.log([4, 3, 1]), atol=1e-6)
    assert agg.family == "poisson" and agg.data["trials"] is None


def test_counts_beyond_float32_whole_numbers_are_not_pooled():
    frame = pd.DataFrame({"y": [10**7] * 4 + [1] * 4, "x": [0, 1] * 4, "g": ["a", "b"] * 4})
    model = ml.Model("y ~ x + (1 | g)", frame, family="poisson")
    assert aggregate.aggregate(model.design, "poisson", "log") is None  # 2e7 > 2**24


def test_binomial_takes_probability_links_only():
    """probit is a user link of binomial now (issue 13); a link that can leave (0, 1)
    is still refused, naming the ones it takes."""
    assert get_family("binomial", "probit")[1] == "probit"
    with pytest.raises(ml.errors.DataError, match="logit"):
        get_family("binomial", "identity")


def test_aggregated_structure_differs_only_in_family():
    frame = pd.DataFrame({"y": [0, 1] * 10, "x": [0, 0, 1, 1] * 5, "g": ["a", "b"] * 10})
    model = ml.Model("y ~ x + (1 + x | g)", frame, family="bernoulli", link="probit")
    st, data, note = aggregate.aggregated_model_inputs(
        model.structure, model.design, "bernoulli", "probit"
    )
    expected = dataclasses.replace(model.structure, family="binomial", has_trials=True)
    assert st == expected and st.link == "probit" and st.aux_names == ()
    assert note == "20 rows aggregated into 4 covariate patterns"
    assert data["X"].shape == (4, 2) and data["trials"].dtype == np.int32


def test_a_million_rows_pool_into_their_patterns():
    rng = np.random.default_rng(0)
    n = 1_000_000
    x = rng.integers(0, 2, n).astype(float)
    f = rng.integers(0, 3, n)
    X = np.column_stack([np.ones(n), x, f == 1, f == 2]).astype(float)
    blocks = tuple(
        ml.design.GroupBlock(None, ("Intercept", "x"), Z, codes, (), np.ones(2))
        for Z, codes in [
            (np.column_stack([np.ones(n), x]), rng.integers(0, 300, n).astype(np.int32)),
            (np.ones((n, 1)), rng.integers(0, 5, n).astype(np.int32)),
        ]
    )
    design = ml.design.Design((rng.random(n) < 0.3).astype(float), None, X, ("a",) * 4, blocks)
    agg = aggregate.aggregate(design, "bernoulli", "logit")  # speed: benchmarks/peers.py bern1m
    assert agg.patterns == 2 * 3 * 300 * 5
    assert int(np.asarray(agg.data["trials"]).sum()) == n
    assert int(np.asarray(agg.data["y"]).sum()) == int(design.y.sum())


# ---------------------------------------------------------------------------------------
# The log density: equal to the row-wise one up to a constant


def _frame(family: str, seed: int = 5) -> tuple[pd.DataFrame, str]:
    """About 400 rows with a 0/1 covariate, a 3-level factor, a random slope (correlated)
    by g and a crossed intercept by h: 2 * 3 * 6 * 3 = 108 possible patterns."""
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame({
        "x": rng.integers(0, 2, n),
        "f": rng.choice(["p", "q", "r"], n),
        "g": rng.choice([f"g{i}" for i in range(6)], n),
        "h": rng.choice(["u", "v", "w"], n),
    })  # fmt: skip
    eta = -0.3 + 0.8 * frame.x + rng.normal(0, 0.5, 6)[frame.g.str[1].astype(int)]
    if family == "poisson":
        frame["y"] = rng.poisson(np.exp(eta))
    elif family == "binomial":
        frame["n"] = rng.integers(1, 8, n)
        frame["y"] = rng.binomial(frame.n, 1 / (1 + np.exp(-eta)))
    else:
        frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    lhs = "y | trials(n)" if family == "binomial" else "y"
    return frame, f"{lhs} ~ x + f + (1 + x | g) + (1 | h)"


def _latent_transforms(model, args) -> dict:
    """Latent site -> (transform to its support, unconstrained shape), traced abstractly."""
    supports = {}

    def latent():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args)
        sites = {k: s for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"]}
        supports.update({k: s["fn"].support for k, s in sites.items()})
        return {k: s["value"] for k, s in sites.items()}

    shapes = jax.eval_shape(latent)
    out = {}
    for name, value in shapes.items():
        transform = biject_to(supports[name])
        out[name] = (transform, tuple(transform.inverse_shape(value.shape)))
    return out


def _evaluate(structure, args, transforms, points, dtype):
    """Log density and its gradient (constrained values) at each unconstrained point, with
    every floating array of the model cast to ``dtype``."""
    model = backend.make_model(structure)
    args = jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, args
    )

    @jax.jit
    def value_and_grad(u, args):
        values = {name: transforms[name][0](v) for name, v in u.items()}
        return jax.value_and_grad(lambda c: log_density(model, args, {}, c)[0])(values)

    out = [value_and_grad({k: jnp.asarray(v, dtype) for k, v in u.items()}, args) for u in points]
    return np.array([float(v) for v, _ in out]), [jax.tree.map(np.asarray, g) for _, g in out]


# float32 (what NUTS runs in): a few units in the last place of the log density's
# magnitude; float64: the algebra alone
TOLERANCE = {"float32": 1e-6, "float64": 1e-11}


@pytest.mark.parametrize(
    "family, link",
    [("bernoulli", "logit"), ("bernoulli", "probit"), ("binomial", "logit"), ("poisson", "log")],
)
def test_log_density_equals_rowwise_up_to_a_constant(family, link):
    """At 4 random parameter points, row-wise minus aggregated log density is one constant
    and the gradients (what NUTS follows) are equal."""
    frame, formula = _frame(family)
    model = ml.Model(formula, frame, family=family, link=link)
    data, prior = model.model_args()
    st, pooled, _ = aggregate.aggregated_model_inputs(model.structure, model.design, family, link)
    assert pooled["X"].shape[0] <= 108 < model.design.n
    if pooled["offset"] is not None:  # log(count) as stored is rounded to float32
        counts = np.bincount(aggregate.aggregate(model.design, family, link).row_pattern)
        np.testing.assert_allclose(pooled["offset"], np.log(counts), rtol=1e-6)
        pooled = {**pooled, "offset": np.log(counts)}  # float64 for the float64 check
    transforms = _latent_transforms(backend.make_model(model.structure), (data, prior))
    pooled_sites = _latent_transforms(backend.make_model(st), (pooled, prior))
    assert {k: s for k, (_, s) in pooled_sites.items()} == {
        k: s for k, (_, s) in transforms.items()
    }
    rng = np.random.default_rng(7)
    points = [
        {name: rng.normal(0.0, 0.5, shape) for name, (_, shape) in sorted(transforms.items())}
        for _ in range(4)
    ]
    for dtype, tol in TOLERANCE.items():
        with jax.enable_x64(dtype == "float64"):
            rows, grad_rows = _evaluate(model.structure, (data, prior), transforms, points, dtype)
            pools, grad_pools = _evaluate(st, (pooled, prior), transforms, points, dtype)
        assert np.ptp(rows) > 10.0  # the points differ: the check below is not vacuous
        difference = rows - pools
        scale = np.abs(rows).max()
        np.testing.assert_allclose(difference, difference[0], rtol=0, atol=tol * scale)
        for grad_a, grad_b in zip(grad_rows, grad_pools):
            for name in grad_a:
                size = np.abs(grad_a[name]).max() + 1.0
                np.testing.assert_allclose(
                    grad_b[name], grad_a[name], rtol=0, atol=100 * tol * size, err_msg=name
                )


# ---------------------------------------------------------------------------------------
# One posterior, sampled both ways


@pytest.mark.slow  # 20-25 s; the log densities agree up to a constant in the default run
def test_aggregated_posterior_matches_rowwise_nuts():
    """20,000 bernoulli rows, a 0/1 covariate, 30 groups: 60 patterns. Posterior means of
    beta and sd within 4 combined Monte Carlo standard errors."""
    rng = np.random.default_rng(11)
    n, groups = 20_000, 30
    g = rng.integers(0, groups, n)
    x = rng.integers(0, 2, n)
    eta = -0.5 + 0.7 * x + rng.normal(0, 0.6, groups)[g]
    frame = pd.DataFrame({
        "y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "x": x,
        "g": [f"g{i:02d}" for i in g],
    })  # fmt: skip
    model = ml.Model("y ~ x + (1 | g)", frame, family="bernoulli")
    data, prior = model.model_args()
    settings = nuts.NutsSettings(chains=2, warmup=300, draws=300)
    rowwise = nuts.sample(model.structure, backend.make_model(model.structure), (data, prior),
                          settings, seed=3, dense_blocks=model.structure.joint_dense_blocks,
                          progress=False)  # fmt: skip
    pooled = model.fit(chains=2, warmup=300, draws=300, seed=3, progress=False)
    assert pooled.info["method"] == "NUTS (20,000 rows aggregated into 60 covariate patterns)"
    for name, index, label in [
        ("beta", 0, "Intercept"),
        ("beta", 1, "x"),
        ("sd", 0, "sd(Intercept|g)"),
    ]:
        a, b = rowwise.samples[name][..., index], pooled.idata.posterior[label].values
        mcse = np.hypot(float(az.mcse(a)), float(az.mcse(b)))
        assert abs(a.mean() - b.mean()) < 4 * mcse, (name, index, a.mean(), b.mean(), mcse)
    assert int(rowwise.stats["diverging"].sum()) == 0
    assert pooled.diagnostics.divergences == 0
