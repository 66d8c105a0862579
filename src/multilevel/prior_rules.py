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
  shape of negative_binomial, gamma and weibull, phi of beta and the beta-binomials ~
  HalfStudentT(3, 10); skew_normal's alpha ~ Normal(0, 4); the others in units of y
  (``aux_default``).

For the gaussian and student_t families s_y = sd(y) and m_y = mean(y); lognormal uses
the same on log(y). Other families work on the link scale with s_y = 1 and m_y = 0
(bernoulli, binomial), log(mean(y)) (poisson, negative_binomial, gamma) or
logit(mean(y)) (beta); ``response_scale`` has every family and link.
"""

from __future__ import annotations

import difflib

import numpy as np

from multilevel import priors as P
from multilevel.errors import DataError, PriorError
from multilevel.families import FAMILIES, category_predictor, inverse_link_slope, link_function
from multilevel.spec import TermSpec, category_specific_names, linked_sets

CLASSES = {
    "Intercept": P.REAL,
    "b": P.REAL,
    "sd": P.POSITIVE,
    "cor": P.CORRELATION,
    "sigma": P.POSITIVE,
    "nu": P.POSITIVE,
    "shape": P.POSITIVE,
    "phi": P.POSITIVE,
    "alpha": P.REAL,
    "beta": P.POSITIVE,
    "ndt": P.POSITIVE,
}
AUX_CLASSES = ("sigma", "nu", "shape", "phi", "alpha", "beta", "ndt")  # name = class
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
    # skew_normal's skewness: brms' default. |alpha| < 1 is nearly symmetric; 90% of the
    # prior lies in (-6.6, 6.6), beyond which the shape barely changes (a half-normal
    # at infinity).
    "alpha": P.Normal(0.0, 4.0),
}


def response_scale(design, family: str, link: str | None = None) -> tuple[float, float]:
    """(m_y, s_y): the location and scale the defaults of the mean's coefficients are
    built from, on the scale of the linear predictor (``link``; default the family's).

    * log(y) families (``Family.log_response``): mean and sd of log(y), of its positive
      values for hurdle_lognormal, of log(y - min(y) / 2) for shifted_lognormal (the
      shift's default prior has its median near min(y) / 3, its mean at 0.4 min(y));
    * any number (gaussian, student_t, skew_normal, exgaussian): mean(y), sd(y) with the
      identity link, log(mean(y)) and 1 with the log link;
    * successes (bernoulli, binomial, ...): 0 and 1; proportions: logit(mean(y)) and 1;
    * positive means (counts, positive responses; the positive values of a hurdle):
      log(mean(y)) and 1 with the log link; with another link (identity, sqrt, inverse)
      the link of mean(y) and sd(y) times the link's slope there (the delta method):
      identity-link counts of mean 5 and sd 2 give Normal(5, 2.5 x 2) intercepts."""
    fam = FAMILIES[family]
    link = link or fam.links[0]
    if fam.log_response:  # y > 0 (y >= 0 for the hurdle) is checked before
        y = np.asarray(design.y, dtype=float)
        y = y[y > 0] if family == "hurdle_lognormal" else y
        shift = float(np.min(y)) / 2 if family == "shifted_lognormal" else 0.0
        log_y = np.log(y - shift)
        mean, sd = float(np.mean(log_y)), float(np.std(log_y))
        if sd == 0:
            raise DataError("The response is constant; there is nothing to model.")
        return mean, sd
    mean, sd = _response_moments(design)
    if fam.outcome == "real":
        if link == "log":
            return (float(np.log(mean)) if mean > 0 else 0.0), 1.0
        if sd == 0:
            raise DataError("The response is constant; there is nothing to model.")
        return mean, sd
    if fam.binary or fam.ordinal:  # the latent logistic (normal) scale: unit
        return 0.0, 1.0
    if fam.outcome == "proportion":  # 0 <= y <= 1 is checked before
        y = np.asarray(design.y, dtype=float)
        inside = y[(y > 0) & (y < 1)]
        mean = float(np.mean(inside)) if inside.size else 0.5
        return float(np.log(mean / (1.0 - mean))), 1.0
    if fam.outcome == "nonnegative":  # a hurdle's mean is that of its positive values
        y = np.asarray(design.y, dtype=float)
        positive = y[y > 0]
        if positive.size:
            mean, sd = float(np.mean(positive)), float(np.std(positive))
    if link == "log":
        return (float(np.log(mean)) if mean > 0 else 0.0), 1.0
    if not mean > 0:
        return 1.0, 1.0  # all zeros: nothing to centre on; the mean must stay positive
    centre = float(link_function(link, mean))
    slope = abs(float(inverse_link_slope(link, centre)))
    return centre, (sd / slope if sd > 0 else abs(centre))


def _response_moments(design) -> tuple[float, float]:
    """Mean and sd of the response, from the rows or from a chunked ``DataSummary``."""
    if hasattr(design, "y"):
        return float(np.mean(design.y)), float(np.std(design.y))
    return float(design.y_mean), float(design.y_sd)


def _predictor_moments(design) -> tuple[np.ndarray, np.ndarray]:
    """(means, scales) of the population-level columns: scale = sd, or the root mean
    square for a constant column. From the rows, or from a chunked ``DataSummary``."""
    if hasattr(design, "X"):
        return design.X.mean(axis=0), _column_scales(design.X)
    means, sds, rms = design.x_mean, design.x_sd, design.x_rms
    return means, np.where(sds > 0, sds, rms)


def _column_scales(X: np.ndarray) -> np.ndarray:
    """The sd of each column, or its root mean square where it is constant."""
    sds, rms = X.std(axis=0), np.sqrt(np.mean(X**2, axis=0))
    return np.where(sds > 0, sds, rms)


def default_priors(
    design, terms: tuple[TermSpec, ...], family: str, aux, link: str | None = None
) -> dict:
    """Every parameter's default prior, keyed by parameter name. ``design`` is a
    ``Design`` or a ``chunked.DataSummary`` (data summarised chunk by chunk); ``terms``
    are the mean's group terms; ``link`` the mean's (default: the family's first)."""
    m_y, s_y = response_scale(design, family, link)
    out = _linear_defaults(design, design.columns, terms, design.blocks, m_y, s_y)
    for name in aux:
        out[name] = aux_default(name, design, family)
    return out


def aux_default(name: str, design, family: str) -> P.Prior:
    """The default prior of a family parameter without a formula.

    ``AUX_DEFAULTS`` for the dimensionless ones (nu, shape, phi, alpha); in units of y:
    sigma ~ Exponential with mean ``residual_scale`` (sd(y), or sd(log y)); exgaussian's
    beta (the mean of its exponential part, at most sd(y)) the same with mean sd(y);
    inverse_gaussian's shape (units of y: CV^2 = mean / shape) HalfStudentT(3, 10
    mean(y)), the dimensionless HalfStudentT(3, 10) of the others times the mean;
    shifted_lognormal's ndt HalfNormal(min(y) / 2): the shift must stay below every y
    (brms: uniform on (0, min(y))); this prior has its mean at 0.4 min(y), puts 95% of
    its mass below min(y), and the likelihood is 0 above it. Its starting values,
    (0.3, 0.8) min(y), are valid: NumPyro's jitter of the prior's raw draw is
    exp(+-0.5)."""
    if name in AUX_DEFAULTS and not (name == "shape" and family == "inverse_gaussian"):
        return AUX_DEFAULTS[name]
    if name == "shape":  # inverse_gaussian
        return P.HalfStudentT(3.0, 10.0 * float(np.mean(design.y)))
    if name == "ndt":
        return P.HalfNormal(float(np.min(design.y)) / 2)
    if name == "beta":
        return P.Exponential(1.0 / float(np.std(design.y)))
    return P.Exponential(1.0 / residual_scale(design, family))


def residual_scale(design, family: str) -> float:
    """The scale sigma lives on: sd(y), or sd(log y) for ``Family.log_response`` (the
    same log values as ``response_scale``)."""
    if FAMILIES[family].log_response:
        return response_scale(design, family)[1]
    sd = _response_moments(design)[1]
    if sd == 0:
        raise DataError("The response is constant; there is nothing to model.")
    return sd


def _linear_defaults(design, names, terms, blocks, m: float, s: float) -> dict:
    """Defaults of one linear predictor's coefficients (named ``names``), sds and
    correlations: the rstanarm recipe above with location ``m`` and scale ``s``."""
    means, scales = _predictor_moments(design)
    columns = design.columns
    out: dict[str, P.Prior] = {}
    slopes = [j for j, c in enumerate(columns) if c != "Intercept"]
    for j in slopes:
        out[names[j]] = P.Normal(0.0, 2.5 * s / scales[j])
    if "Intercept" in columns:
        spread = np.sqrt(1.0 + sum((means[j] / scales[j]) ** 2 for j in slopes))
        out = {names[columns.index("Intercept")]: P.Normal(m, 2.5 * s * spread), **out}
    for term, block in zip(terms, blocks):
        for name, scale in zip(term.sd_names, block.scales):
            out[name] = P.Exponential(scale / s)
    for term in terms:
        if term.has_correlation:
            out[term.cor_key] = P.LKJ(2.0)
    return out


def linked_defaults(linked) -> dict:
    """LKJ(2) on the correlations of each set of terms linked by a brms ID (``|p|``), as
    on a correlated term's: class ``cor``."""
    return {each.cor_key: P.LKJ(2.0) for each in linked}


def dpar_centre(name: str, design, family: str) -> tuple[float, float]:
    """Location and scale of a family parameter's formula defaults, on its link scale.

    Location: sigma at log of the response's sd (of log(y) for lognormal); the
    probabilities zi and hu at the logit of the share of zeros (within 5-95%), an upper
    bound of zi and the maximum-likelihood value of hu; the
    dimensionless shape, phi and nu at log(10) (nu - 1 at log(9): the ``logm1`` link),
    near the median of their default priors (``AUX_DEFAULTS``). Scale s = 0.4 for sigma
    and 0.8 for the others, so that through the recipe (2.5 s) sigma's intercept is
    Normal(log s_y, 1): within a factor e^2 = 7.4 of the response's sd at 95% (a
    residual sd is rarely larger, seldom 7 times smaller), and a 1-sd change of a
    predictor scales sigma by e^1 at one prior sd. With the GLM scale s = 1 (2.5 per sd
    of x) the prior predictive check of a heteroscedastic model on simulated data put
    1% of outcomes beyond +-2,400 for a response of sd 1.

    The parameters brms adds: exgaussian's beta like sigma (at log sd(y), s = 0.4);
    skew_normal's alpha at 0 with s = 1.6 (its identity link: an intercept of Normal(0,
    4), brms' prior of one alpha); shifted_lognormal's ndt at log(min(y) / 4) with s =
    0.4, so that every chain's start lies below min(y); zoi at the logit of the share
    of 0s and 1s, coi at that of the 1s among them; inverse_gaussian's shape (units of
    y) at log(10 mean(y))."""
    if name == "shape" and family == "inverse_gaussian":
        return float(np.log(10.0 * np.mean(design.y))), 0.8
    if name == "sigma":
        return float(np.log(residual_scale(design, family))), 0.4
    if category_predictor(name):  # a category's log-odds against the reference
        return 0.0, 1.0
    if name == "beta":  # like sigma: the exponential part's mean, at most sd(y)
        return float(np.log(np.std(design.y))), 0.4
    if name == "alpha":  # identity link: 2.5 s = 4, brms' Normal(0, 4) for one alpha
        return 0.0, 1.6
    if name == "ndt":  # log link; a quarter of min(y), so starts stay below min(y)
        return float(np.log(np.min(design.y) / 4)), 0.4
    y = np.asarray(design.y)
    if name in ("zi", "hu", "zoi", "coi"):  # probabilities, on the logit scale
        if name in ("zi", "hu"):  # the share of zeros
            share = np.mean(y == 0)
        elif name == "zoi":  # the share of 0s and 1s
            share = np.mean((y == 0) | (y == 1))
        else:  # the share of 1s among them
            ends = (y == 0) | (y == 1)
            share = np.mean(y[ends] == 1) if ends.any() else 0.5
        share = float(np.clip(share, 0.05, 0.95))
        return float(np.log(share / (1.0 - share))), 0.8
    return float(np.log(9.0 if name == "nu" else 10.0)), 0.8


def dpar_defaults(dpar_design, terms: tuple[TermSpec, ...], centre: tuple[float, float]) -> dict:
    """Defaults of a family parameter's formula (``ml.bf(..., sigma="~ x + (1 | g)")``),
    by the recipe above on its link scale with ``centre`` = (m, s) from ``dpar_centre``:
    ``<dpar>_Intercept`` ~ Normal(m, 2.5 s x spread), slopes Normal(0, 2.5 s / sd(x)),
    sds Exponential with mean s / sd(covariate), LKJ(2)."""
    m, s = centre
    return _linear_defaults(dpar_design, dpar_design.names, terms, dpar_design.blocks, m, s)


def dpar_classes(dpar: str, columns, terms: tuple[TermSpec, ...]) -> dict[str, str]:
    """Prior class of each parameter of ``dpar``'s formula, as brms names them:
    ``sigma_Intercept``, ``sigma_b`` (its slopes), ``sigma_sd``, ``sigma_cor``."""
    out = {c: f"{dpar}_Intercept" if c == f"{dpar}_Intercept" else f"{dpar}_b" for c in columns}
    for term in terms:
        out.update({n: f"{dpar}_sd" for n in term.sd_names})
        if term.has_correlation:
            out[term.cor_key] = f"{dpar}_cor"
    return out


def _support(cls: str):
    """The values a prior of class ``cls`` must take (``sigma_sd``: as ``sd``)."""
    if cls in CLASSES:
        return CLASSES[cls]
    return CLASSES[cls.rsplit("_", 1)[1] if not cls.endswith("_Intercept") else "Intercept"]


def _class_of(name: str) -> str:
    if name == "Intercept" or name in AUX_CLASSES:
        return name
    if name.startswith("Intercept["):  # an ordinal model's thresholds
        return "Intercept"
    if name.startswith("sd("):
        return "sd"
    if name.startswith("cor("):
        return "cor"
    return "b"


def resolve_priors(
    defaults: dict, user: dict | None, terms: tuple[TermSpec, ...], classes: dict | None = None
):
    """Apply user priors (by parameter name first, then by class) on top of defaults.
    ``classes`` maps the parameters of family parameters' formulas to their classes
    (``dpar_classes``); the others' class follows from their names.

    Returns ``(priors, sources)``: name -> Prior and name -> where it came from.
    """
    classes = dict(classes or {})
    user = dict(user or {})
    for key, prior in user.items():
        if isinstance(prior, str):
            user[key] = prior = P.parse_prior(prior)
        if not isinstance(prior, P.Prior):
            raise PriorError(
                f"The prior for {key!r} must be a multilevel prior such as "
                f"ml.Normal(0, 1), got {prior!r}."
            )
    _check_keys(user, defaults, terms, set(classes.values()))
    priors, sources = {}, {}
    for name, default in defaults.items():
        cls = classes.get(name) or _class_of(name)
        if name in user:
            prior, source = user[name], "set by name"
        elif cls in user:
            prior, source = user[cls], f"set by class '{cls}'"
        else:
            prior, source = default, DEFAULT
        _check_support(name, cls, prior)
        priors[name], sources[name] = prior, source
    return priors, sources


def _check_keys(user: dict, defaults: dict, terms: tuple[TermSpec, ...], dpar_classes=()) -> None:
    # Intercept and the family parameters are classes only where the model has them.
    known = list(defaults) + [
        c for c in CLASSES if c not in ("Intercept", *AUX_CLASSES) or c in defaults
    ]
    known += sorted(set(dpar_classes) - set(known))
    for key in user:
        if key in known:
            continue
        owners = [*terms, *linked_sets(terms)]  # whatever has an LKJ matrix
        if key.startswith("cor(") and any(key in t.cor_names for t in owners):
            raise PriorError(
                f"{key!r} is one of several correlations of a term with more than two "
                "varying coefficients; an LKJ prior covers the whole matrix, so set it "
                f"with 'cor' or {next(t.cor_key for t in owners if key in t.cor_names)!r}."
            )
        close = difflib.get_close_matches(key, known, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise PriorError(
            f"No parameter or class named {key!r} in this model.{hint} Parameters: "
            f"{', '.join(defaults)}; classes: "
            f"{', '.join(dict.fromkeys(c for c in known if c in CLASSES or c in dpar_classes))}."
        )


_SUPPORT_ADVICE = {
    P.REAL: "Normal or StudentT",
    P.POSITIVE: "HalfNormal, HalfCauchy, HalfStudentT, Exponential or Gamma",
    P.CORRELATION: "LKJ",
}


def _check_support(name: str, cls: str, prior: P.Prior) -> None:
    needed = _support(cls)
    if prior.support != needed:
        raise PriorError(
            f"{prior} cannot be the prior of {name!r}: it needs a prior on "
            f"{needed} values ({_SUPPORT_ADVICE[needed]})."
        )


#: brms' default prior of an ordinal model's thresholds (class Intercept): on the latent
#: logistic (or normal) scale, 2.5 is wide: P(y <= k) from 0.2% to 99.8% within two of them.
THRESHOLD_DEFAULT = P.StudentT(3.0, 0.0, 2.5)


def threshold_defaults(names: tuple[str, ...]) -> dict:
    """Defaults of an ordinal model's thresholds (``THRESHOLD_DEFAULT`` each)."""
    return {name: THRESHOLD_DEFAULT for name in names}


def with_category_specific_defaults(defaults: dict, design, family: str, n_thresholds: int) -> dict:
    """``defaults`` with those of brms' category-specific coefficients ``z[1]`` ..
    ``z[K-1]`` (``ModelSpec.cs_names``) after the population ones: each the default of a
    population slope of its column, Normal(0, 2.5 / sd(z)) on the ordinal model's latent
    unit scale (class ``b``, so ``b`` or a name such as ``z[2]`` sets them)."""
    columns = getattr(design, "cs_columns", ())
    if not columns:
        return defaults
    scales = _column_scales(design.X_cs)
    _, s_y = response_scale(design, family)  # the latent scale: 1
    added = {}
    for column, scale in zip(columns, scales):
        for name in category_specific_names((column,), n_thresholds):
            added[name] = P.Normal(0.0, 2.5 * s_y / float(scale))
    population = [n for n in defaults if n in design.columns or n.startswith("Intercept[")]
    rest = {n: p for n, p in defaults.items() if n not in population}
    return {**{n: defaults[n] for n in population}, **added, **rest}
