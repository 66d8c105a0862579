"""Posterior comparisons shared by the model tests (imported, not collected)."""

import numpy as np
import numpyro.distributions as dist
from scipy import stats

import multilevel as ml
from multilevel._arviz import az


def same_posterior(a, b, names):
    """Posterior means within 4.5 combined MCSEs (about 200 comparisons: a false alarm
    has probability ~0.1%), posterior sds within 12% or 4.5 combined Monte Carlo ses."""
    pa, pb = a.idata.posterior, b.idata.posterior
    for name in names:
        xa, xb = pa[name].values, pb[name].values
        if xa.ndim == 2:
            xa, xb = xa[..., None], xb[..., None]
        for j in range(xa.shape[-1]):
            u, v = xa[..., j], xb[..., j]
            mcse = np.hypot(az.mcse(u), az.mcse(v))
            assert abs(u.mean() - v.mean()) < 4.5 * mcse, (name, j, u.mean(), v.mean(), mcse)
            tol = 4.5 * np.hypot(relative_se_of_sd(u), relative_se_of_sd(v))
            assert abs(u.std() / v.std() - 1) < max(tol, 0.12), (name, j, u.std(), v.std(), tol)


def relative_se_of_sd(x):
    """Monte Carlo se of a posterior sd relative to it, sqrt((kurtosis - 1) / (4 ESS)):
    heavy right tails (a group sd of six levels) make the sd itself noisy."""
    kurtosis = stats.kurtosis(x.ravel(), fisher=False)
    return np.sqrt((kurtosis - 1) / (4 * az.ess(x)))


def numpyro_priors(spec):
    """The spec's priors as NumPyro distributions; Exponential ones as NumPyro's own, whose
    support is positive (a scaled Exponential's support is the real line, and NUTS would
    wander into negative sds). LKJ priors are left out: a reference writes its own
    ``LKJCholesky`` of the matrix's dimension."""
    return {
        name: dist.Exponential(p.rate) if isinstance(p, ml.priors.Exponential) else p.to_numpyro()
        for name, p in spec.priors
        if not isinstance(p, ml.priors.LKJ)
    }
