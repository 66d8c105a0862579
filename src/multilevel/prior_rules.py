"""Default priors, auto-scaled to the data, and the rules that apply a user's priors.

Defaults follow rstanarm's weakly-informative recipe, written for the parameters we
report (not for internally centred ones):

* slope of predictor x: Normal(0, 2.5 * s_y / sd(x));
* Intercept: Normal(m_y, 2.5 * s_y * sqrt(1 + sum_j (mean(x_j) / sd(x_j))^2)), the
  prior that rstanarm's Normal(m_y, 2.5 s_y) on the centred intercept implies for the
  intercept at x = 0, so predictors far from zero do not make it too narrow;
* sd of a varying coefficient: Exponential with mean s_y / sd(covariate) (s_y for an
  intercept);
* sigma: Exponential with mean s_y; correlations: LKJ(2);
* the dimensionless family parameters (``AUX_DEFAULTS``): nu of student_t ~ Gamma(2, 0.1);
  shape of negative_binomial and gamma, phi of beta ~ HalfStudentT(3, 10).

For the gaussian and student_t families s_y = sd(y) and m_y = mean(y); lognormal uses
the same on log(y). Other families work on the link scale with s_y = 1 and m_y = 0
(bernoulli, binomial), log(mean(y)) (poisson, negative_binomial, gamma) or
logit(mean(y)) (beta).
"""

from __future__ import annotations

import difflib

import numpy as np

from multilevel import priors as P
from multilevel.errors import DataError, PriorError
from multilevel.spec import TermSpec

CLASSES = {
    "Intercept": P.REAL,
    "b": P.REAL,
    "sd": P.POSITIVE,
    "cor": P.CORRELATION,
    "sigma": P.POSITIVE,
    "nu": P.POSITIVE,
    "shape": P.POSITIVE,
    "phi": P.POSITIVE,
}
AUX_CLASSES = ("sigma", "nu", "shape", "phi")  # family parameters: name = class
DEFAULT = "default (auto-scaled)"

# Defaults of the family parameters without units (sigma: Exponential(1 / s_y), above).
AUX_DEFAULTS = {
    # Student-t degrees of freedom: brms' default (Juarez & Steel 2010). Mode 10, 90% in
    # (3.6, 47): heavy tails where the data ask for them, P(nu < 1) = 0.5%.
    "nu": P.Gamma(2.0, 0.1),
    # Negative-binomial shape (var = mu + mu^2 / shape), gamma shape (1 / CV^2), beta
    # precision (var = mu (1 - mu) / (1 + phi)). Not brms' Gamma(0.01, 0.01), which puts
    # most of its mass at values below 1e-10, nor rstanarm's Exponential(1), which makes
    # shape > 5 (near-Poisson counts, CV < 45%, precise proportions) a priori unlikely
    # (0.7%) and pulls estimates down when data are few. HalfStudentT(3, 10): median 7.7,
    # P(< 1) = 7%, P(> 100) = 0.2%; its polynomial tail biases large values little, and
    # unlike a half-Cauchy it leaves the posterior a finite mean and sd when the data
    # cannot bound the parameter from above (e.g. Poisson-like counts). The likelihood
    # itself vanishes as any of them goes to 0, so the prior need not avoid 0.
    "shape": P.HalfStudentT(3.0, 10.0),
    "phi": P.HalfStudentT(3.0, 10.0),
}


def response_scale(design, family: str) -> tuple[float, float]:
    """(m_y, s_y): the location and scale the defaults are built from."""
    if family == "lognormal":  # location and scale of log(y): y > 0 is checked before
        log_y = np.log(design.y)
        mean, sd = float(np.mean(log_y)), float(np.std(log_y))
    else:
        mean, sd = _response_moments(design)
    if family in ("gaussian", "student_t", "lognormal"):
        if sd == 0:
            raise DataError("The response is constant; there is nothing to model.")
        return mean, sd
    if family in ("poisson", "negative_binomial", "gamma"):
        return (float(np.log(mean)) if mean > 0 else 0.0), 1.0
    if family == "beta":  # 0 < y < 1 is checked before
        return float(np.log(mean / (1.0 - mean))), 1.0
    return 0.0, 1.0


def _response_moments(design) -> tuple[float, float]:
    """Mean and sd of the response, from the rows or from a chunked ``DataSummary``."""
    if hasattr(design, "y"):
        return float(np.mean(design.y)), float(np.std(design.y))
    return float(design.y_mean), float(design.y_sd)


def _predictor_moments(design) -> tuple[np.ndarray, np.ndarray]:
    """(means, scales) of the population-level columns: scale = sd, or the root mean
    square for a constant column. From the rows, or from a chunked ``DataSummary``."""
    if hasattr(design, "X"):
        X = design.X
        means, sds, rms = X.mean(axis=0), X.std(axis=0), np.sqrt(np.mean(X**2, axis=0))
    else:
        means, sds, rms = design.x_mean, design.x_sd, design.x_rms
    return means, np.where(sds > 0, sds, rms)


def default_priors(design, terms: tuple[TermSpec, ...], family: str, aux) -> dict:
    """Every parameter's default prior, keyed by parameter name. ``design`` is a
    ``Design`` or a ``chunked.DataSummary`` (data summarised chunk by chunk)."""
    m_y, s_y = response_scale(design, family)
    means, scales = _predictor_moments(design)
    out: dict[str, P.Prior] = {}
    slopes = [j for j, c in enumerate(design.columns) if c != "Intercept"]
    for j in slopes:
        out[design.columns[j]] = P.Normal(0.0, 2.5 * s_y / scales[j])
    if design.has_intercept:
        spread = np.sqrt(1.0 + sum((means[j] / scales[j]) ** 2 for j in slopes))
        out = {"Intercept": P.Normal(m_y, 2.5 * s_y * spread), **out}
    for term, block in zip(terms, design.blocks):
        for name, scale in zip(term.sd_names, block.scales):
            out[name] = P.Exponential(scale / s_y)
    for term in terms:
        if term.has_correlation:
            out[term.cor_key] = P.LKJ(2.0)
    for name in aux:
        out[name] = AUX_DEFAULTS.get(name) or P.Exponential(1.0 / s_y)
    return out


def _class_of(name: str) -> str:
    if name == "Intercept" or name in AUX_CLASSES:
        return name
    if name.startswith("sd("):
        return "sd"
    if name.startswith("cor("):
        return "cor"
    return "b"


def resolve_priors(defaults: dict, user: dict | None, terms: tuple[TermSpec, ...]):
    """Apply user priors (by parameter name first, then by class) on top of defaults.

    Returns ``(priors, sources)``: name -> Prior and name -> where it came from.
    """
    user = dict(user or {})
    for key, prior in user.items():
        if isinstance(prior, str):
            user[key] = prior = P.parse_prior(prior)
        if not isinstance(prior, P.Prior):
            raise PriorError(
                f"The prior for {key!r} must be a multilevel prior such as "
                f"ml.Normal(0, 1), got {prior!r}."
            )
    _check_keys(user, defaults, terms)
    priors, sources = {}, {}
    for name, default in defaults.items():
        cls = _class_of(name)
        if name in user:
            prior, source = user[name], "set by name"
        elif cls in user:
            prior, source = user[cls], f"set by class '{cls}'"
        else:
            prior, source = default, DEFAULT
        _check_support(name, cls, prior)
        priors[name], sources[name] = prior, source
    return priors, sources


def _check_keys(user: dict, defaults: dict, terms: tuple[TermSpec, ...]) -> None:
    # Intercept and the family parameters are classes only where the model has them.
    known = list(defaults) + [
        c for c in CLASSES if c not in ("Intercept", *AUX_CLASSES) or c in defaults
    ]
    for key in user:
        if key in known:
            continue
        if key.startswith("cor(") and any(key in t.cor_names for t in terms):
            raise PriorError(
                f"{key!r} is one of several correlations of a term with more than two "
                "varying coefficients; an LKJ prior covers the whole matrix, so set it "
                f"with 'cor' or {next(t.cor_key for t in terms if key in t.cor_names)!r}."
            )
        close = difflib.get_close_matches(key, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise PriorError(
            f"No parameter or class named {key!r} in this model.{hint} Parameters: "
            f"{', '.join(defaults)}; classes: {', '.join(c for c in CLASSES if c in known)}."
        )


_SUPPORT_ADVICE = {
    P.REAL: "Normal or StudentT",
    P.POSITIVE: "HalfNormal, HalfCauchy, HalfStudentT, Exponential or Gamma",
    P.CORRELATION: "LKJ",
}


def _check_support(name: str, cls: str, prior: P.Prior) -> None:
    needed = CLASSES[cls]
    if prior.support != needed:
        raise PriorError(
            f"{prior} cannot be the prior of {name!r}: it needs a prior on "
            f"{needed} values ({_SUPPORT_ADVICE[needed]})."
        )
