"""K-fold cross-validation (ml.kfold): refits with held-out rows at weight 0, which
leave every shape as it is (no recompilation) and add nothing to the likelihood."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import multilevel as ml
from conftest import PARTIAL
from multilevel.backends import gaussian_collapsed as gc
from multilevel.backends import numpyro_model as backend


# --------------------------------------------------------------------------- K-fold
def test_kfold_by_county_reuses_the_compiled_sampler(partial):
    res = ml.kfold(partial, 5, by="county", progress=False)
    assert (res.folds["retraced"].iloc[1:] == 0).all()
    assert res.folds["groups"].sum() == 85 and res.folds["rows"].sum() == 919
    # whole counties held out: each fold's rows share no county with the others
    per_county = res.pointwise.groupby("county")["fold"].nunique()
    assert (per_county == 1).all()
    loo = partial.loo()
    # Predicting new counties is harder than new houses in known counties, not much harder.
    assert res.elpd < loo.elpd
    assert abs(res.elpd - loo.elpd) < 4 * loo.se
    assert res.p == pytest.approx(loo.p_loo + loo.elpd - res.elpd, abs=1e-6)
    assert "5-fold cross-validation by county" in str(res)


def test_kfold_by_rows_agrees_with_loo(partial):
    res = ml.kfold(partial, 5, progress=False)
    loo = partial.loo()
    assert abs(res.elpd - loo.elpd) < loo.se / 2
    assert res.pointwise["fold"].value_counts().max() <= 919 // 5 + 1


def test_kfold_joint_sampler_compiles_once(outlier):
    """The joint (row-wise) model: held-out rows get weight 0, so folds 2..k reuse the
    program the first fold compiled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.ConvergenceWarning)
        res = ml.kfold(outlier, 3, progress=False)
    assert (res.folds["retraced"].iloc[1:] == 0).all()
    assert res.pointwise.loc[7, "elpd_kfold"] < -20  # the outlier is badly predicted


def test_kfold_checks_its_arguments(partial):
    with pytest.raises(ml.MultilevelError, match="only 85 groups"):
        ml.kfold(partial, 86, by="county")
    with pytest.raises(ml.MultilevelError, match="no such column"):
        ml.kfold(partial, 5, by="state")
    with pytest.raises(ml.MultilevelError, match="k must be"):
        ml.kfold(partial, 1)


# --------------------------------------------------------------------------- weights
def test_weight_zero_rows_add_nothing(radon):
    """Weight 0 equals dropping the rows: in the collapsed statistics' likelihood and in
    the joint model's log density, at fixed parameter values."""
    model = ml.Model(PARTIAL, radon)
    design = model.design
    keep = (radon.groupby("county").cumcount() % 2 == 0).to_numpy()  # every county keeps rows
    sub = ml.Model(PARTIAL, radon[keep].reset_index(drop=True))
    assert sub.design.blocks[0].levels == design.blocks[0].levels  # same counties
    chosen = gc.plan(design, "gaussian")
    weighted = gc.sufficient_statistics(design, chosen, weights=keep.astype(float))
    dropped = gc.sufficient_statistics(sub.design, chosen)
    with jax.enable_x64(True):
        mll = jax.jit(gc.marginal_log_likelihood)
        beta, tril = jnp.array([1.4, -0.6]), jnp.array([[0.3]])
        a, b = (
            float(mll(beta, 0.7, tril, gc.as_model_args(s, jnp.float64)))
            for s in (weighted, dropped)
        )
    assert a == pytest.approx(b, rel=1e-10)

    _, prior = model.model_args()
    named = {"Intercept": 1.4, "floor": -0.6, "sd(Intercept|county)": 0.3, "sigma": 0.7}
    named["Intercept|county"] = np.linspace(-0.5, 0.5, 85)
    params = backend.site_values(model.spec, prior, named)
    fn = backend.make_model(model.structure)

    @jax.jit
    def density(data):
        return log_density(fn, (data, prior), {}, params)[0]

    full = float(density(backend.data_arrays(design)))
    lw = float(density(backend.data_arrays(design, weight=keep.astype(float))))
    ls = float(density(backend.data_arrays(sub.design)))
    assert lw == pytest.approx(ls, rel=1e-5) and abs(full - lw) > 100
