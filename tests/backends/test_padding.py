"""Padding to the size bucket leaves the posterior exactly as it was.

The check is on the log density, where "the same posterior" is an identity rather than a
Monte Carlo statement: at any point, the padded model's log density equals the unpadded
model's at the same real coordinates plus the padded groups' own standard normal density
(independent of every real coordinate), and so do the gradients with respect to the real
coordinates. Float32 sums over a few hundred rows: agreement to 1e-4 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import multilevel as ml
from multilevel.backends import gaussian_collapsed as gc
from multilevel.backends import numpyro_model as backend
from multilevel.backends import padding
from multilevel.shape_buckets import bucket


def _data(seed=0, n=300, groups=23):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    a = g % 5  # nesting: g within a
    h = rng.integers(0, 11, n)  # crossed with g
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.7, groups)[g] + rng.normal(0, 0.4, 11)[h]
    y = y + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "a": a, "h": h, "k": (y > 1).astype(int)})


def _point(model_fn, args, seed=1):
    """Values of every latent site: a draw from the model's prior with the data held."""
    trace = handlers.trace(handlers.seed(model_fn, seed)).get_trace(*args)
    return {
        name: site["value"]
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _pad_point(point: dict, padded_st, seed=2) -> tuple[dict, float]:
    """``point`` with random values for padded groups, and their own log density: standard
    normal for non-centred effects (z), -r^2/2 for centred ones (r)."""
    rng = np.random.default_rng(seed)
    out, extra = {}, 0.0
    for name, value in point.items():
        value = np.asarray(value)
        levels = padding._site_levels(name, padded_st)
        if levels is not None and levels > value.shape[0]:
            pad = rng.normal(size=(levels - value.shape[0], *value.shape[1:]))
            value = np.concatenate([value, pad.astype(value.dtype)])
            if name.startswith("z"):
                extra += float(np.sum(-0.5 * pad**2 - 0.5 * np.log(2 * np.pi)))
            else:
                extra += float(np.sum(-0.5 * pad**2))
        out[name] = jnp.asarray(value)
    return out, extra


def _check_joint(model: ml.Model):
    st = model.structure
    data, prior = model.model_args()
    point = _point(backend.make_model(st), (data, prior))
    padded_st = padding.padded_structure(st)
    padded_data = padding.pad_data(st, data)
    assert len(padded_data["y"]) == bucket(len(data["y"])) > len(data["y"])
    assert any(t.n_levels > s.n_levels for t, s in zip(padded_st.terms, st.terms))
    padded_point, extra = _pad_point(point, padded_st)

    def plain(values):
        return log_density(backend.make_model(st), (data, prior), {}, values)[0]

    def padded(values):
        return log_density(backend.make_model(padded_st), (padded_data, prior), {}, values)[0]

    # jitted: op by op, every operation compiles on its own (seconds per model)
    lp, grad = jax.jit(jax.value_and_grad(plain))(point)
    lp_padded, grad_padded = jax.jit(jax.value_and_grad(padded))(padded_point)
    np.testing.assert_allclose(float(lp_padded), float(lp) + extra, rtol=1e-4)
    for name, g in grad.items():
        real = np.asarray(grad_padded[name])[: np.shape(g)[0]] if np.ndim(g) else grad_padded[name]
        np.testing.assert_allclose(real, np.asarray(g), rtol=1e-3, atol=1e-3)
    return st


@pytest.fixture(scope="module")
def data():
    return _data()


def test_non_centred_correlated_term(data):
    st = _check_joint(ml.Model("y ~ x + (1 + x | g)", data, centered=False))
    assert not st.terms[0].centered


def test_centred_correlated_term(data):
    st = _check_joint(ml.Model("y ~ x + (1 + x | g)", data, centered=True))
    assert st.terms[0].centered


def test_centred_uncorrelated_crossed_terms(data):
    st = _check_joint(ml.Model("k ~ x + (1 + x || g) + (1 | h)", data, family="bernoulli",
                               centered=True))  # fmt: skip
    assert all(t.centered for t in st.terms)


def test_nested_centred_terms(data):
    st = _check_joint(ml.Model("y ~ x + (1 | a/g)", data, centered=True))
    assert any(t.parent >= 0 for t in st.terms)


def test_censored_rows(data):
    """Padded rows are copies of real rows, evaluated at their own values: with NumPyro's
    mask handler a censored lognormal's masked rows were evaluated at 0 (nan gradients)."""
    censored = data.assign(t=np.exp(data["y"]), c=np.where(data["x"] > 1, "right", "none"))
    _check_joint(ml.Model("t | cens(c) ~ x + (1 | g)", censored, family="lognormal"))


def test_linked_terms(data):
    st = _check_joint(ml.Model(ml.bf("y ~ x + (1 |p| g)", sigma="~ 1 + (1 |p| g)"), data))
    assert st.linked


def test_partially_collapsed_model_with_a_centred_sampled_term(data):
    """Crossed gaussian factors: g integrated out, h sampled (centred, padded 11 -> 12)."""
    model = ml.Model("y ~ x + (1 | g) + (1 | h)", data)
    st = model.structure
    chosen = gc.plan(model.design, "gaussian", centered=True)
    assert chosen.sampled and all(chosen.centered)
    stats = gc.as_model_args(gc.sufficient_statistics(model.design, chosen), jnp.float32)
    prior = backend.prior_arrays(model.spec)
    padded_st = padding.padded_structure(st)
    padded_stats = gc.as_model_args(padding.pad_statistics(st, stats), jnp.float32)
    point = _point(gc.make_collapsed_model(st, chosen), (stats, prior))
    padded_point, extra = _pad_point(point, padded_st)
    model_plain = gc.make_collapsed_model(st, chosen)
    model_padded = gc.make_collapsed_model(padded_st, chosen)
    lp = jax.jit(lambda v: log_density(model_plain, (stats, prior), {}, v)[0])(point)
    lp_padded = jax.jit(lambda v: log_density(model_padded, (padded_stats, prior), {}, v)[0])(
        padded_point
    )
    assert extra != 0.0  # some sampled term was padded
    np.testing.assert_allclose(float(lp_padded), float(lp) + extra, rtol=1e-4)


def test_draws_are_cut_back_to_the_true_groups():
    st = ml.Model("y ~ x + (1 + x | g)", _data(n=100, groups=9)).structure
    padded = padding.padded_structure(st)
    assert padded.terms[0].n_levels == 10
    samples = {"z_0": np.zeros((2, 3, 10, 2)), "effects_0": np.zeros((2, 3, 10, 2)),
               "beta": np.zeros((2, 3, 2))}  # fmt: skip
    cut = padding.unpad(samples, st)
    assert cut["z_0"].shape == cut["effects_0"].shape == (2, 3, 9, 2)
    assert cut["beta"].shape == (2, 3, 2)


def test_padding_keeps_a_float64_start_in_float64(monkeypatch):
    """Counts near 1e6 run in float64 (``backends.start``); padded outside that precision,
    the arrays came back float32 (``jax.device_put`` without x64). Checked on what
    ``Model.fit`` hands the sampler, and on ``pad_data`` itself."""
    from multilevel.backends import start
    from multilevel.inference import nuts

    class SamplerHandedError(Exception):
        pass

    def sampler(structure, model, model_args, *args, **kwargs):
        raise SamplerHandedError({k: model_args[0][k].dtype for k in ("X", "y", "weight")})

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 20)
    x = rng.normal(size=200)
    y = rng.poisson(np.exp(13 + 0.1 * x + rng.normal(0, 0.1, 10)[g]))
    model = ml.Model("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": g}), family="poisson")
    data, prior = model.model_args()
    begin = start.plan(model.spec, model.structure, data, prior, 2, 0, 100)
    assert begin.float64
    with begin.precision():
        padded = padding.pad_data(model.structure, begin.model_args[0])
    assert len(padded["y"]) == 224
    assert {padded[k].dtype for k in ("X", "y", "weight")} == {np.dtype(np.float64)}
    monkeypatch.setattr(nuts, "sample", sampler)
    with pytest.raises(SamplerHandedError) as handed:
        model.fit(chains=2, warmup=100, draws=100, progress=False)
    assert set(handed.value.args[0].values()) == {np.dtype(np.float64)}
