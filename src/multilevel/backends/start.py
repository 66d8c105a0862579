"""Where the joint sampler's chains start, and in what precision they run.

Every site is sampled on a standardised scale (``value = loc + scale * raw``, see
``numpyro_model``), so raw = 0 is its prior's centre. NumPyro and Stan start each chain
uniform in (-2, 2) on the unconstrained scale; with auto-scaled priors that can put the
linear predictor tens of units from the data (an uncentred ``age`` of 20-40 beside the
intercept: MASS ``epil``'s negative binomial model left one chain of four frozen at its
start, every draw divergent). Here the population coefficients start at the pooled
GLM's estimate (the group effects left out, the priors as a ridge) plus a little of its
own uncertainty; each group's effects at one penalised least-squares step from there,
their sds at the spread of those estimates; the family's own parameters (sigma, shape,
...) and imputed values near their priors' centres (``nuts.initial_points``).

Counts near 1e5-1e6 need more than a start: each row's log-likelihood is then a
difference of terms near ``y log y`` that float32 rounds by about one unit, so the
potential energy NUTS compares is noisy by several units, the step size collapses to
1e-7 and every draw runs to the maximum tree depth (R-hat 1e16 on 200 rows of counts
near 2e5, from any start). ``float64_reason`` finds such data; the sampler then runs in
float64 (``Start.precision``), whose rounding is 1e9 times smaller. Such data also make
the posterior so narrow that NumPyro's regularisation of the adapted mass matrix swamps
it (``_narrow``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import jax
import numpy as np

from multilevel.backends.numpyro_model import Structure, site_values
from multilevel.errors import DataError
from multilevel.families import FAMILIES, inverse_link, inverse_link_slope, link_function
from multilevel.spec import ModelSpec

# Chains' population coefficients: the pooled GLM's estimate plus uniform(-1, 1) times
# this many of its standard errors along each principal direction of its covariance.
# Correlated like the estimate (an uncentred slope moves with the intercept), so the
# linear predictor stays near the data while the chains still start apart.
GLM_SPREAD = 2.0
# Group effects: each group's estimate given the pooled fit plus uniform(-s, s) times its
# standard error; sds: the estimates' spread times exp(uniform(-s, s)).
EFFECT_SPREAD = 1.0
SD_SPREAD = 0.25
GLM_ITERATIONS = 50
GLM_MAX_ROWS = 200_000  # a larger data set is thinned evenly for the start's GLM
# Rounding of the potential energy in float32 (2^-24 relative, summed over rows as
# independent errors) above which the sampler runs in float64. NUTS weighs the states of
# a trajectory by exp(-energy): errors of 0.1 change those weights by 10%.
FLOAT32_NOISE_MAX = 0.1
# The mass matrix is left unregularised (``_narrow``) when a standardised coefficient's
# pooled variance is below this, there are at most MAX_DENSE coefficients and warmup
# has at least MIN_WARMUP draws.
NARROW_VARIANCE = 1e-4
MAX_DENSE = 10
MIN_WARMUP = 100


@dataclass
class Start:
    """The sampler's inputs and starting points: ``model_args`` (in float64 when
    ``float64`` is set), ``points`` (site -> (chains, *shape) unconstrained values, for
    ``nuts.sample(start=...)``), a note for the printed method (or None) and whether
    NumPyro may regularise the adapted mass matrix."""

    model_args: tuple
    points: dict[str, np.ndarray] = field(default_factory=dict)
    float64: bool = False
    note: str | None = None
    regularize_mass: bool = True  # nuts.sample's option: False for very narrow posteriors
    # every latent site starts here (near the typical set): warmup may start from the
    # curvature at the start (nuts.sample(start_mass="curvature"))
    complete: bool = False

    def precision(self):
        """Context in which to sample: ``jax.enable_x64`` when float64 is needed."""
        return jax.enable_x64(True) if self.float64 else contextlib.nullcontext()


def plan(
    spec: ModelSpec,
    st: Structure,
    data: dict,
    prior: dict,
    chains: int,
    seed: int,
    warmup: int = 1000,
) -> Start:
    """Starting points of every chain, the precision to sample in and whether to
    regularise the adapted mass matrix, from the data the sampler sees (``data``:
    ``numpyro_model.data_arrays`` or its aggregated rows, with ``st`` their structure)."""
    loc, scale = _block_centre(st.coef_groups, st.p, prior["b"])
    # the pooled GLM fits the mean's coefficients; a model whose family parameters have
    # formulas of their own starts every chain from NumPyro's initial points instead
    simple = (st.layout is None or not st.layout.dpars) and not st.n_thresholds
    fitted = pooled_glm(st, data, loc, scale) if st.p and simple else None
    if fitted is None:
        _check_prior_centre(st, data, loc)
    points = {} if fitted is None else starting_values(spec, st, data, prior, chains, seed, fitted)
    narrow = fitted is not None and _narrow(fitted, scale, st.p, warmup)
    reason = float64_reason(st, data)
    args = (data, prior)
    if reason is not None:
        args = (jax.tree.map(_as_float64, data), jax.tree.map(_as_float64, prior))
    complete = bool(points) and _starts_every_site(st)
    return Start(args, points, reason is not None, reason, not narrow, complete)


def _starts_every_site(st: Structure) -> bool:
    """Whether ``starting_values`` starts every latent site: no family parameters,
    imputed values, thresholds or linked terms, which start at their priors' centres.
    Only then is the curvature at the start a guide to the posterior's scales: a
    weibull shape at its prior's centre (13.5 for kidney's infection times, whose shape
    is near 1) made the mean's curvature 180 times its posterior value, and one chain
    of two froze with a step size of 1e-10."""
    return not (st.aux_names or st.imputed or st.n_thresholds or st.linked or st.n_cs) and (
        st.layout is None or not st.layout.dpars
    )


def _check_prior_centre(st: Structure, data: dict, loc: np.ndarray) -> None:
    """Without a pooled GLM (family parameters with formulas, no coefficients, or a GLM
    that failed) the chains start near the priors' centres: refuse a link whose mean
    is outside the support there, since no chain could move from such a start."""
    family = FAMILIES[st.family]
    if family.valid_mean(st.link, np.ones(1)) is None or not st.p:
        return
    weight = data.get("weight")
    rows = np.flatnonzero(np.ones(len(data["y"]), bool) if weight is None else weight > 0)
    mu_columns = np.asarray(data["X"]).shape[1]
    eta = _mean_eta(data, rows, loc[:mu_columns], [])
    if not family.valid_mean(st.link, eta).all():
        where = "the chains' start (the priors' centres)"
        raise DataError(invalid_mean_message(st.family, st.link, eta, where))


def _narrow(fitted: PooledFit, scale: np.ndarray, p: int, warmup: int) -> bool:
    """True when NumPyro's regularisation of the adapted mass matrix would swamp the
    posterior: it adds about 1e-3 x 5 / (n + 5) to each variance of an n-draw window
    (1.7e-4 for the first, 25 draws), and the pooled fit's variance of some standardised
    coefficient is below ``NARROW_VARIANCE``. Counts near 2e5 (x: 4e-9): inflated
    40,000-fold, step size 0.007 and 80 leapfrog steps per draw instead of 0.66 and 7.
    Safe to turn off only when the dense block of coefficients is much smaller than the
    first window (``MAX_DENSE``) and warmup has windows of 25 draws or more."""
    if p > MAX_DENSE or warmup < MIN_WARMUP:
        return False
    variance = np.diagonal(fitted.cov) / scale**2
    return bool(np.min(variance) < NARROW_VARIANCE)


def _as_float64(x):
    x = np.asarray(x)
    return x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x


def float64_reason(st: Structure, data: dict) -> str | None:
    """Why the sampler must run in float64 (a note for the printed method), or None.

    A count model's row log-likelihood subtracts terms of size ``t (1 + log t)`` (t the
    count, or the trials of a binomial row); float32 keeps each to 2^-24 of its size."""
    if not FAMILIES[st.family].counts:
        return None
    y = np.asarray(data["y"], dtype=np.float64)
    size = y if data.get("trials") is None else np.asarray(data["trials"], dtype=np.float64)
    size = size * (1.0 + np.log1p(size))
    if data.get("weight") is not None:
        size = size * np.asarray(data["weight"], dtype=np.float64)
    noise = 2.0**-24 * float(np.sqrt(np.sum(size**2)))
    if noise <= FLOAT32_NOISE_MAX:
        return None
    what = "trials" if data.get("trials") is not None else "counts"
    top = np.max(np.asarray(data["trials"] if what == "trials" else y))
    return f"float64: {what} up to {top:,.0f}"


def starting_values(
    spec: ModelSpec,
    st: Structure,
    data: dict,
    prior: dict,
    chains: int,
    seed: int,
    fitted: PooledFit,
) -> dict[str, np.ndarray]:
    """Per-chain unconstrained starts of the population coefficients (``b_<family>``)
    and, for every group term, of its sds, correlations and effects (``sd_<family>``,
    ``L_<k>``, ``z_<k>`` or ``r_<k>``); the family's own parameters and imputed values
    are left to ``nuts.initial_points``. ``fitted``: ``pooled_glm``'s result."""
    rng = np.random.default_rng([seed, 1])  # apart from nuts.initial_points' stream
    noise = rng.uniform(-GLM_SPREAD, GLM_SPREAD, (chains, st.p))
    beta = fitted.beta + noise @ _covariance_root(fitted.cov).T  # (chains, p)
    sd_loc, sd_scale = _block_centre(st.sd_groups, st.n_sd, prior["sd"])
    sd = np.empty((chains, st.n_sd))
    effects = []  # per term (chains, L, q)
    estimates = []  # per term (L, q): the groups' estimates, before the chains' jitter
    residual = fitted.working - fitted.X @ fitted.beta
    for k, term in enumerate(st.terms):
        block = slice(term.sd_start, term.sd_start + term.q)
        prior_sd = sd_loc[block] + sd_scale[block]  # a positive site at raw 0
        Z = np.asarray(data["Z"][k], dtype=np.float64)[fitted.rows]
        codes = np.asarray(data["codes"][k])[fitted.rows]
        u, se = _group_estimates(Z, codes, term.n_levels, fitted.w, residual, prior_sd)
        residual = residual - np.sum(Z * u[codes], axis=-1)  # backfitting, one pass
        # the estimates' spread, kept between a tenth of the prior's sd and the prior's sd
        sd_k = np.clip(np.sqrt(np.mean(u**2, axis=0)), 0.1 * prior_sd, prior_sd)
        sd[:, block] = sd_k * np.exp(rng.uniform(-SD_SPREAD, SD_SPREAD, (chains, term.q)))
        effects.append(u + se * rng.uniform(-EFFECT_SPREAD, EFFECT_SPREAD, (chains, *u.shape)))
        estimates.append(u)
    _keep_means_valid(st, data, fitted, beta, effects, estimates)
    aux_loc, aux_scale = _block_centre(st.aux_groups, len(st.aux_names), prior["aux"])
    per_chain = []
    for c in range(chains):
        named = {name: beta[c, j] for j, name in enumerate(spec.columns)}
        named.update({name: sd[c, j] for j, name in enumerate(spec.sd_names)})
        named.update({name: aux_loc[j] + aux_scale[j] for j, name in enumerate(spec.aux)})
        named.update({name: 0.0 for name in spec.cor_names})
        for k, term in enumerate(spec.terms):
            named.update({n: effects[k][c, :, j] for j, n in enumerate(term.effect_names)})
        # the model's own map from reported values to its sites (centring included)
        per_chain.append(
            site_values(spec, prior, named, data.get("parents"), data.get("level_values"))
        )
    points = {}
    for name in per_chain[0]:
        values = np.stack([np.asarray(v[name], dtype=np.float64) for v in per_chain])
        if name.startswith(("b_", "z_", "r_")):  # real sites: unconstrained as they are
            points[name] = values
        elif name.startswith("sd_"):  # standardised positive values: log
            points[name] = np.log(np.maximum(values, 1e-12))
        elif name.startswith("L_"):  # the identity correlation, at raw 0
            q = values.shape[-1]
            points[name] = np.zeros((chains, q * (q - 1) // 2))
    return points


def _mean_eta(data: dict, rows: np.ndarray, beta: np.ndarray, effects: list) -> np.ndarray:
    """The mean's linear predictor on ``rows`` at one chain's start: ``beta`` (p,) and
    each term's (L, q) effects."""
    eta = np.asarray(data["X"], dtype=np.float64)[rows] @ beta
    if data.get("offset") is not None:
        eta = eta + np.asarray(data["offset"], dtype=np.float64)[rows]
    for k, u in enumerate(effects):
        Z = np.asarray(data["Z"][k], dtype=np.float64)[rows]
        eta = eta + np.sum(Z * u[np.asarray(data["codes"][k])[rows]], axis=-1)
    return eta


def invalid_mean_message(family: str, link: str, eta: np.ndarray, where: str) -> str:
    """What to do when ``where`` gives a mean outside the family's support."""
    bad = np.flatnonzero(~FAMILIES[family].valid_mean(link, eta))
    with np.errstate(invalid="ignore", divide="ignore"):  # 1/mu^2: no mean at eta <= 0
        value = float(inverse_link(link, eta[bad[0]]))
    mean = f"a mean of {value:.4g}" if np.isfinite(value) else "no mean"
    return (
        f"With the {link} link, {where} gives the {family} family {mean} (linear "
        f"predictor {eta[bad[0]]:.4g}) in {bad.size} of {eta.size} rows, but {family} "
        "means must be positive: the "
        "likelihood is 0 there, so no chain could start there. Use link='log' (the "
        "default), or predictors under which the mean stays positive (e.g. a dummy's "
        "reference level with the smallest mean)."
    )


def _keep_means_valid(st, data, fitted, beta, effects, estimates) -> None:
    """A link whose mean can leave the support (identity, sqrt, inverse of counts and
    positive responses) has no density where it does (log 0), and a chain started
    there cannot move. Checked on every row the likelihood weighs: the pooled GLM's own
    estimate must give a valid mean (else the data want a mean the link cannot give:
    ``DataError``); a chain whose jittered start does not restarts at the estimate and
    the groups' estimates, or with no group effects, which is valid. Changes ``beta``
    and ``effects`` in place."""
    family = FAMILIES[st.family]
    if family.valid_mean(st.link, np.ones(1)) is None:
        return
    weight = data.get("weight")
    rows = np.flatnonzero(np.ones(len(data["y"]), bool) if weight is None else weight > 0)
    pooled = _mean_eta(data, rows, fitted.beta, [])
    if not family.valid_mean(st.link, pooled).all():
        where = "the pooled fit of the data (group effects left out)"
        raise DataError(invalid_mean_message(st.family, st.link, pooled, where))
    for c in range(beta.shape[0]):
        chain = [e[c] for e in effects]
        if family.valid_mean(st.link, _mean_eta(data, rows, beta[c], chain)).all():
            continue
        beta[c] = fitted.beta
        for k, u in enumerate(estimates):
            effects[k][c] = u
        if not family.valid_mean(st.link, _mean_eta(data, rows, beta[c], estimates)).all():
            for k in range(len(effects)):
                effects[k][c] = 0.0


def _group_estimates(Z, codes, levels: int, w, residual, prior_sd):
    """(L, q) each group's effects given the pooled fit, one penalised weighted
    least-squares step on its working residuals (prior Normal(0, prior_sd)), and their
    standard errors. Groups without rows get 0 and the prior's sd."""
    q = Z.shape[1]
    A = np.zeros((levels, q, q))
    np.add.at(A, codes, w[:, None, None] * Z[:, :, None] * Z[:, None, :])
    b = np.zeros((levels, q))
    np.add.at(b, codes, (w * residual)[:, None] * Z)
    precision = A + np.diag(1.0 / prior_sd**2)
    cov = np.linalg.inv(precision)
    effects = np.einsum("lij,lj->li", cov, b)
    se = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    if not (np.all(np.isfinite(effects)) and np.all(np.isfinite(se))):
        return np.zeros((levels, q)), np.broadcast_to(prior_sd, (levels, q))
    return effects, se


def _block_centre(groups, size: int, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """(size,) loc and scale of each parameter's prior, from the per-family arrays."""
    loc, scale = np.zeros(size), np.ones(size)
    for family, idx in groups:
        loc[list(idx)] = np.asarray(arrays[family]["loc"], dtype=np.float64)
        scale[list(idx)] = np.asarray(arrays[family]["scale"], dtype=np.float64)
    return loc, scale


def _covariance_root(cov: np.ndarray) -> np.ndarray:
    """A square root of a covariance matrix (eigen-decomposition: never fails on a
    nearly singular one)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


@dataclass
class PooledFit:
    """The pooled GLM at its estimate: ``beta`` and ``cov`` of the coefficients, and on
    the rows it used (``rows``, ``X``) the IRLS weights ``w`` and working response."""

    beta: np.ndarray
    cov: np.ndarray
    rows: np.ndarray
    X: np.ndarray
    w: np.ndarray
    working: np.ndarray


def pooled_glm(st: Structure, data: dict, loc: np.ndarray, scale: np.ndarray) -> PooledFit | None:
    """The model without its group effects, at its posterior mode under Normal(loc,
    scale) priors on the coefficients: iteratively reweighted least squares on the link
    scale (a few dozen (p, p) solves). None when it fails to give finite numbers: the
    chains then start at the priors' centres."""
    X = np.asarray(data["X"], dtype=np.float64)
    y = np.asarray(data["y"], dtype=np.float64)
    n = len(y)
    trials = None if data.get("trials") is None else np.asarray(data["trials"], np.float64)
    offset = np.zeros(n) if data.get("offset") is None else np.asarray(data["offset"], float)
    weight = np.ones(n) if data.get("weight") is None else np.asarray(data["weight"], float)
    if data.get("se") is not None:  # known sds of y: a weighted least-squares fit
        weight = weight / np.asarray(data["se"], dtype=np.float64) ** 2
    keep = weight > 0
    if FAMILIES[st.family].outcome == "nonnegative":  # a hurdle's zeros: not the mean's
        keep &= y > 0
    for arrays in data.get("impute") or ():  # rows with a sampled predictor: not yet known
        keep[np.asarray(arrays["missing"])] = False
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return None
    thinned = 1.0
    if len(rows) > GLM_MAX_ROWS:  # keep the data's weight against the prior's
        thinned = len(rows) / GLM_MAX_ROWS
        rows = rows[np.linspace(0, len(rows) - 1, GLM_MAX_ROWS).astype(int)]
    X, y, offset, weight = X[rows], y[rows], offset[rows], weight[rows] * thinned
    trials = None if trials is None else trials[rows]
    family, link = st.family, st.link
    if FAMILIES[family].log_response:  # log(y - shift) ~ Normal(eta, sigma)
        # shifted_lognormal: the shift's prior has its mean at 0.4 min(y); a hurdle's
        # zeros have their own model, so the mean's fit uses the positive values
        shift = np.min(y) / 2 if family == "shifted_lognormal" else 0.0
        y, family = np.log(np.maximum(y - shift, 1e-300)), "gaussian"
    penalty = 1.0 / scale**2

    def irls_terms(eta):
        """Working response (offset removed) and weights at a linear predictor."""
        mean, slope, variance = _moments(family, link, eta, trials)
        w = weight * slope**2 / variance
        if family not in ("poisson", "bernoulli", "binomial"):  # estimated dispersion
            residual = (y - mean) ** 2 / variance
            dispersion = float(np.sum(weight * residual) / max(np.sum(weight), 1e-300))
            w = w / max(dispersion, 1e-12)
        return eta - offset + (y - mean) / slope, w

    with np.errstate(all="ignore"):
        eta = _link_start(family, link, y, trials)
        beta = loc.copy()
        for _ in range(GLM_ITERATIONS):
            working, w = irls_terms(eta)
            precision = X.T @ (w[:, None] * X) + np.diag(penalty)
            new = np.linalg.solve(precision, X.T @ (w * working) + penalty * loc)
            if not np.all(np.isfinite(new)):
                return None
            change = np.max(np.abs(new - beta), initial=0.0)
            beta, eta = new, X @ new + offset
            if change < 1e-8 * (1.0 + np.max(np.abs(new), initial=0.0)):
                break
        working, w = irls_terms(eta)
        cov = np.linalg.inv(X.T @ (w[:, None] * X) + np.diag(penalty))
    finite = np.isfinite(working) & np.isfinite(w)
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(cov)) and finite.all()):
        return None
    return PooledFit(beta, cov, rows, X, w, working)


def _link_start(family: str, link: str, y: np.ndarray, trials) -> np.ndarray:
    """A linear predictor near the data, where IRLS starts: the link of each row's
    value, nudged inside the mean's range (``families.link_function``)."""
    fam = FAMILIES[family]
    if fam.binary or fam.outcome == "proportion":
        n = 1.0 if trials is None else trials
        p = (y + 0.5) / (n + 1.0) if fam.binary else np.clip(y, 1e-6, 1 - 1e-6)
        return link_function(link, p)
    if link == "identity" and not fam.positive_mean:
        return y.copy()
    if link == "log" or fam.counts:  # counts may be 0: half a count keeps log, 1/y finite
        return link_function(link, np.maximum(y, 0.0) + 0.5)
    return link_function(link, np.maximum(y, 1e-300))


def _moments(family: str, link: str, eta: np.ndarray, trials):
    """(mean, d mean / d eta, variance function) of each row, for IRLS, from the
    family's inverse link (``families.inverse_link`` and its slope). Variance
    functions: n p (1 - p) for successes and proportions, mu for counts (the negative
    binomial's too: its shape is unknown here), mu^2 for positive responses, 1 else."""
    fam = FAMILIES[family]
    if link == "log":
        eta = np.clip(eta, -700.0, 700.0)
    mean = inverse_link(link, eta)
    slope = inverse_link_slope(link, eta)
    slope = np.where(np.abs(slope) > 1e-300, slope, 1e-300)  # sqrt at eta = 0
    if fam.binary or fam.outcome == "proportion":
        n = 1.0 if trials is None else trials
        p = np.clip(mean, 1e-12, 1 - 1e-12)
        return n * p, np.maximum(n * slope, 1e-300), n * p * (1 - p)
    if fam.positive_mean:
        mu = np.maximum(mean, 1e-10)  # IRLS may step where eta <= 0 (identity, sqrt)
        variance = mu if fam.counts else mu**2
        return mu, slope, np.maximum(variance, 1e-300)
    return mean, slope, np.ones_like(eta)
