"""The pointwise log-likelihood: log p(y_i | draw) of every row under every posterior draw.

Computed from the named posterior in float64 with the family's own likelihood
(``Family.likelihood``) and the one linear predictor (``linear_predictor``), as one
compiled program per family, link and layout of linear predictors (op by op, each
operation would be a pass over memory), in batches of draws (bounded memory). ``Model.fit``
stores it in ``fit.idata.log_likelihood`` where that is cheap (``MAX_STORED_VALUES``);
LOO, WAIC, K-fold and ``ml.compare`` read it from there or compute it when asked, as
brms' ``loo`` does. ``Fit.save`` writes it with the draws (``MAX_SAVED_VALUES``): a saved
fit keeps no data to compute it from later.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from multilevel._arviz import az
from multilevel.errors import MultilevelError
from multilevel.families import get_family
from multilevel.inference.compile import jit
from multilevel.linear_predictor import (
    add_shift,
    dpar_values,
    fitted_eta_shift,
    layout_of,
    linear_predictors,
    named_draws,
    per_row,
    row_arrays,
)
from multilevel.program_cache import ProgramCache
from multilevel.shape_buckets import bucket, pad_groups

#: A fit stores its pointwise log-likelihood when chains x draws x rows is at most this
#: (80 MB). Storing is not free: on the 2-core benchmark machine, 4,000 draws x 20,000
#: rows (8e7 values, 640 MB) added 4.4 s to a 37 s bernoulli fit (most of it the
#: first touch of fresh memory), and 4,000 x 45,000 took a collapsed gaussian fit from
#: 4.8 to 10.7 s; below this it costs well under a second.
MAX_STORED_VALUES = 1e7
#: ``Fit.save`` writes it with the draws, if the fit does not hold it, up to this many.
MAX_SAVED_VALUES = 2e8
#: The note of ``fit.info["log_likelihood"]`` when the fit was asked not to keep it.
REFUSED = "not stored (log_likelihood=False)"
#: The note of a saved fit whose log-likelihood was computed as it was saved.
ADDED_WHEN_SAVED = "stored when the fit was saved (fit.save)"
BATCH_VALUES = 2**23  # draws x rows per batch of the log-likelihood computation


def log_likelihood_plan(
    in_memory: bool, n_rows: int, samples: int, wanted: bool | None
) -> tuple[bool, str]:
    """Whether ``Model.fit`` stores the pointwise log-likelihood, and the note for
    ``fit.info["log_likelihood"]``. ``samples`` is chains x draws; ``wanted`` is the
    ``log_likelihood`` argument (None: store unless it exceeds ``MAX_STORED_VALUES``)."""
    if wanted not in (None, True, False):
        raise MultilevelError(f"log_likelihood must be True, False or None, not {wanted!r}.")
    if not in_memory:
        if wanted:
            raise MultilevelError(
                "log_likelihood=True needs the data's rows, and this model was built from "
                "chunked statistics (Model.from_chunks): it holds per-group sums only."
            )
        return False, "not available: the model was built from chunked statistics (no rows)"
    values = samples * n_rows
    if wanted is False:
        return False, f"{REFUSED}: fit.loo() computes it when asked"
    if wanted is None and values > MAX_STORED_VALUES:
        return False, (
            f"not stored: {samples:,} draws x {n_rows:,} rows = {values:.2g} values "
            f"(> {MAX_STORED_VALUES:.0e}); fit.loo() and fit.waic() compute it when asked, "
            f"fit.save() writes it with the draws (up to {MAX_SAVED_VALUES:.0e} values), "
            "fit(log_likelihood=True) stores it"
        )
    return True, "stored"


def saved_with_log_likelihood(fit):
    """``(idata, info)`` that ``Fit.save`` writes: the fit's own, with the pointwise
    log-likelihood added where the fit does not hold it, was not made with
    ``log_likelihood=False``, still has its rows (not a fit read from a file, nor a
    model of chunked statistics) and it has at most ``MAX_SAVED_VALUES`` values. A
    saved fit keeps no data, so LOO and WAIC of the file read it from there."""
    idata, info = fit.idata.copy(), dict(fit.info)
    if "log_likelihood" in idata.groups() or str(info.get("log_likelihood", "")).startswith(
        REFUSED
    ):
        return idata, info
    try:  # ``Fit.rows``: the one answer to whether a fit still has its rows
        design, _ = fit.rows(what="Saving the pointwise log-likelihood")
    except MultilevelError:  # read from a file, or chunked statistics: nothing to compute
        return idata, info
    samples = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if samples * design.n > MAX_SAVED_VALUES:
        return idata, info
    add_log_likelihood(idata, fit.spec, design)
    info["log_likelihood"] = ADDED_WHEN_SAVED
    return idata, info


def add_log_likelihood(idata, spec, design) -> None:
    """Add the ``log_likelihood`` group (the response's name, dims chain, draw, obs)."""
    values = log_likelihood_values(spec, design, idata.posterior)
    idata.add_groups(
        log_likelihood={spec.response: values},
        coords={"obs": np.arange(design.n)},
        dims={spec.response: ["obs"]},
    )


def pointwise_log_likelihood(fit) -> np.ndarray:
    """Log-likelihood of every observation under every posterior draw of ``fit``.

    The values stored in ``fit.idata.log_likelihood`` when the fit has them; otherwise
    computed from the named posterior and the fitted rows (``fit.rows``). Probit
    probabilities are clipped at float64 precision here and at float32 precision in the
    sampler, which differ only for |eta| > 5.

    Returns
    -------
    numpy.ndarray
        Shape (chains, draws, rows).

    Examples
    --------
    >>> fit = ml.Model("log_radon ~ floor", radon).fit(seed=1)  # doctest: +SKIP
    >>> pointwise_log_likelihood(fit).shape  # doctest: +SKIP
    (4, 1000, 919)
    """
    if "log_likelihood" in fit.idata.groups():
        return np.asarray(fit.idata.log_likelihood[fit.spec.response].values)
    design, _ = fit.rows(what="The pointwise log-likelihood")
    return log_likelihood_values(fit.spec, design, fit.idata.posterior)


def log_likelihood_idata(fit, what: str):
    """InferenceData with posterior and log_likelihood: the fit's own, or one made now."""
    if "log_likelihood" in fit.idata.groups():
        return fit.idata
    design, _ = fit.rows(what=what)
    values = log_likelihood_values(fit.spec, design, fit.idata.posterior)
    ll = az.convert_to_dataset(
        {fit.spec.response: values},
        coords={"obs": np.arange(design.n)},
        dims={fit.spec.response: ["obs"]},
    )
    return az.InferenceData(posterior=fit.idata.posterior, log_likelihood=ll)


def log_likelihood_values(spec, design, posterior, rows=None) -> np.ndarray:
    """(chains, draws, rows) log p(y_i | draw) from a named posterior, in float64 and in
    batches of draws (bounded memory). ``rows`` (indices) restricts it to some rows."""
    if design.X.shape[1] != len(spec.mu_columns):
        raise MultilevelError("The fit and its model's design disagree; refit the model.")
    rows = np.arange(design.n) if rows is None else np.asarray(rows)
    n = len(rows)
    shift = fitted_eta_shift(spec, design, posterior, rows)  # imputed predictors' draws
    # rows and groups padded to their size bucket (``shape_buckets``), so that data of
    # another size in it reuse the compiled program: copies of the first row, cut off
    # below; groups with no rows (zero effects). Not with imputed predictors' draws.
    padded = shift is None and n > 0
    if padded:
        rows = np.concatenate([rows, np.full(bucket(n) - n, rows[0])])
    fixed = row_arrays(design, rows)
    beta, effects, aux = named_draws(spec, posterior)  # (C, D, p), [(C, D, L, q)], {(C, D)}
    if padded:
        effects = [pad_groups(e, axis=2) for e in effects]
    chains, draws = beta.shape[:2]
    out = np.empty((chains, draws, len(rows)))
    # with cs() every row has its own K - 1 thresholds: fewer draws per batch
    width = len(spec.threshold_names) if spec.cs_columns else 1
    step = max(1, BATCH_VALUES // max(len(rows) * width, 1))
    X_cs = fixed.pop("X_cs")  # (n, p_cs) or None: read by per_row, outside the program
    program = _program(spec.family, spec.link, layout_of(spec))
    with jax.enable_x64(True):
        fixed = jax.tree.map(lambda v: jnp.asarray(v, dtype=_dtype(v)), fixed)
        for c in range(chains):
            for start in range(0, draws, step):
                d = slice(start, start + step)
                draw = {
                    "beta": beta[c, d],
                    "effects": tuple(e[c, d] for e in effects),
                    # (D, 1); thresholds (D, 1, K - 1), per row (D, n, K - 1) with cs()
                    "aux": per_row({k: v[c, d] for k, v in aux.items()}, X_cs),
                }
                if shift is not None:  # dense per batch: (D, n), bounded like the rest
                    columns, values = shift
                    dense = np.zeros((values[c, d].shape[0], len(rows)))
                    draw["shift"] = add_shift(dense, columns, values[c, d])
                out[c, d] = np.asarray(program(jax.tree.map(jnp.asarray, draw), fixed))
    return out[..., :n]


def _dtype(v: np.ndarray):
    return jnp.int32 if np.issubdtype(np.asarray(v).dtype, np.integer) else jnp.float64


def family_log_density(family: str, link: str):
    """log p(y | eta, params) elementwise: the model's own likelihood (``Family.likelihood``)."""
    family_obj, link = get_family(family, link)

    def density(y, eta, aux, trials, se, bounds=None, weights=None):
        known = {} if se is None else {"se": se}  # known sds of a gaussian response
        law = family_obj.likelihood(eta, link, aux, trials, bounds=bounds, **known)
        # censored rows: log P(censored as observed); weights() multiply, as brms' log_lik
        values = law.log_prob(y)
        return values if weights is None else values * weights

    return density


# (family, link, layout) -> jitted log-likelihood of a batch of draws
_PROGRAMS: ProgramCache = ProgramCache()


def _program(family: str, link: str, layout):
    """Compiled (draws, rows) -> (D, n) log-likelihood, one per family, link and layout."""
    key = (family, link, layout)
    if key not in _PROGRAMS:
        density = family_log_density(family, link)

        def run(draw, data):
            etas = linear_predictors(layout, data, draw["beta"], draw["effects"])
            eta = etas["mu"]
            if "shift" in draw:  # imputed predictor values, per draw (missing="model")
                eta = eta + draw["shift"]
            aux = {**draw["aux"], **dpar_values(layout, etas)}  # (D, 1) or (D, n)
            return density(
                data["y"], eta, aux, data["trials"], data["se"], data["bounds"], data["weights"]
            )

        _PROGRAMS[key] = jit(run)  # with the package's XLA options
    return _PROGRAMS[key]


def log_density(
    family: str, link: str, y, eta, aux: dict, trials=None, se=None, bounds=None
) -> np.ndarray:
    """log p(y | eta) elementwise, broadcasting ``y`` (n,) against ``eta`` (..., n), in
    float64. ``se`` (n,): known standard errors of a gaussian response; ``bounds``:
    censoring and truncation arrays (``Design.bounds``)."""
    with jax.enable_x64(True):

        def f64(v):
            return None if v is None else jnp.asarray(v, dtype=jnp.float64)

        law = family_log_density(family, link)
        aux = {k: f64(v) for k, v in aux.items()}
        bounds = {k: jnp.asarray(v) if k == "cens" else f64(v) for k, v in (bounds or {}).items()}
        return np.asarray(law(f64(y), f64(eta), aux, f64(trials), f64(se), bounds or None))
