"""ModelSpec + Design -> one plain NumPyro model function and its arguments.

The model function is built from a hashable ``Structure`` (family, link, how parameters
are grouped, numbers of coefficients and levels) and takes everything that depends on
the data as arguments: ``model(data, prior)``. Two data sets with the same structure and
shapes therefore share one compiled sampler (see ``inference.nuts``).

Sites (all on a unit scale; reported values are deterministic transforms):
  ``b_<family>``      standardised population coefficients, grouped by prior family
  ``bcs_<family>``    standardised category-specific coefficients (ordinal ``cs()``)
  ``sd_<family>``     standardised group-level sds, grouped by prior family
  ``aux_<family>``    standardised family parameters (sigma)
  ``L_<k>``           Cholesky factor of term k's correlation matrix (LKJ)
  ``z_<k>``           standard-normal group effects of term k (non-centred), or
  ``r_<k>``           the group effects themselves (centred)
Deterministics: ``beta`` (p,), ``sd`` (total q,), ``aux``, ``effects_<k>`` (L, q_k),
``beta_cs`` (p_cs * (K - 1),) with ``cs()`` (its columns are ``data["X_cs"]``).

A family parameter with a formula of its own (``ml.bf(..., sigma="~ x + (1 | g)")``)
adds its coefficients to ``beta`` and its terms to the terms; ``Structure.layout`` says
which are whose, ``data["X_dpars"]`` holds its design, and the likelihood gets the
parameter per row (its inverse link of its linear predictor) in place of one value.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import Predictive

from multilevel.backends.centring import level_values, parent_levels
from multilevel.design import Design
from multilevel.distributions import log_prob_kernel
from multilevel.errors import PriorError
from multilevel.families import FAMILIES
from multilevel.linear_predictor import (
    Layout,
    dpar_values,
    layout_of,
    linear_predictors,
    row_thresholds,
)
from multilevel.missing import predictor_column
from multilevel.ordinal import ThresholdPrior
from multilevel.population_average import correlation_matrix
from multilevel.priors import standard_distribution
from multilevel.program_cache import ProgramCache
from multilevel.spec import ModelSpec

# A block groups parameters of one kind by prior family: ((family, (indices...)), ...)
Groups = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class TermShape:
    """Static facts about one varying-effects term."""

    q: int
    n_levels: int
    correlated: bool  # has an LKJ-distributed correlation matrix
    sd_start: int
    columns: tuple[int, ...] = ()  # population column of each covariate (-1: none)
    centered: bool = False  # effects sampled as themselves, not as scaled standard normals
    parent: int = -1  # centred on this term's coefficients (nested in it); -1: none
    # population columns constant within each group, on whose coefficients its centred
    # intercepts (covariate 0) are centred too (``centring.level_predictors``)
    level_columns: tuple[int, ...] = ()
    # centred: how far per covariate (``centring.centring_weights``); () fully
    weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class ImputedShape:
    """Static facts about one predictor whose missing values are sampled."""

    n_missing: int
    n_levels: int  # levels of its varying intercept; 0 for none
    x_columns: tuple[int, ...]  # population-level design columns equal to it
    z_columns: tuple[tuple[int, int], ...]  # (term, covariate) columns equal to it
    centered: bool = False  # its varying intercepts hierarchically centred


@dataclass(frozen=True)
class Structure:
    """Everything static about a model: hashable, the key of its compiled sampler."""

    family: str
    link: str
    p: int
    coef_groups: Groups
    sd_groups: Groups
    aux_groups: Groups
    n_sd: int
    aux_names: tuple[str, ...]
    terms: tuple[TermShape, ...]
    has_trials: bool
    imputed: tuple[ImputedShape, ...] = ()
    # which coefficients and terms make the mean's and each family parameter's predictor
    layout: Layout | None = None
    fixed_names: tuple[str, ...] = ()  # family parameters fixed to a value (prior["fixed"])
    # an ordinal model's thresholds: one site "thresholds" (ordered for cumulative)
    n_thresholds: int = 0
    threshold_family: str = ""  # the prior family every threshold shares
    ordered_thresholds: bool = False
    # terms linked by a brms ID (``|p|``): each set's effects drawn jointly, one LKJ
    linked: tuple[tuple[int, ...], ...] = ()
    # brms' category-specific coefficients cs(): p_cs * (K - 1), grouped by prior family
    cs_groups: Groups = ()
    n_cs: int = 0

    @property
    def dense_sites(self) -> tuple[str, ...]:
        """Population coefficients (category-specific ones too) share one dense
        mass-matrix block: their posterior correlation (intercept vs slopes of uncentred
        predictors, a column's slopes across thresholds) is linear."""
        return tuple(f"b_{family}" for family, _ in self.coef_groups) + tuple(
            f"bcs_{family}" for family, _ in self.cs_groups
        )

    @property
    def joint_dense_blocks(self) -> tuple[tuple[str, ...], ...]:
        """The joint sampler's dense mass-matrix blocks: ``dense_sites``, and where a term
        has correlations, every sd and correlation site in a second block. A
        correlation's posterior leans on its term's sds. bern20k's smallest bulk ESS (the
        correlation's) over seeds 0-4: 2,288-2,864 (mean 2,605) -> 2,723-3,166 (2,939),
        at 15 gradients a draw either way. In one block with the population
        coefficients, VerbAgg's (no correlation) fell from 3,371 to 2,981."""
        if not any(t.correlated for t in self.terms):
            return (self.dense_sites,)
        scales = tuple(f"sd_{family}" for family, _ in self.sd_groups)
        correlations = tuple(f"L_{k}" for k, t in enumerate(self.terms) if t.correlated)
        return (self.dense_sites, scales + correlations)


def _group_by_family(names: tuple[str, ...], priors: dict) -> Groups:
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(priors[name].family, []).append(i)
    return tuple((family, tuple(idx)) for family, idx in groups.items())


def structure_of(spec: ModelSpec) -> Structure:
    priors = spec.prior_of
    terms, start = [], 0
    groups = [t.group for t in spec.terms]
    for term in spec.terms:
        q = len(term.coefs)
        columns = tuple(spec.columns.index(c) if c in spec.columns else -1 for c in term.coefs)
        parent = groups.index(term.nested_in) if term.nested_in else -1
        level_columns = tuple(spec.columns.index(c) for c in term.level_predictors)
        terms.append(
            TermShape(
                q, len(term.levels), term.has_correlation, start, columns, term.centered, parent,
                level_columns, term.centring_weights,
            )
        )  # fmt: skip
        start += q
    thresholds = spec.threshold_names
    threshold_families = {priors[n].family for n in thresholds}
    if len(threshold_families) > 1:
        raise PriorError(
            f"The thresholds {', '.join(thresholds)} share one site, so they need priors of "
            f"one kind; got {', '.join(sorted(threshold_families))}. Set them with the class "
            "'Intercept' or give each the same kind (their locations and scales may differ)."
        )
    return Structure(
        n_thresholds=len(thresholds),
        threshold_family=threshold_families.pop() if thresholds else "",
        ordered_thresholds=spec.family == "cumulative",
        cs_groups=_group_by_family(spec.cs_names, priors),
        n_cs=len(spec.cs_names),
        family=spec.family,
        link=spec.link,
        p=len(spec.columns),
        coef_groups=_group_by_family(spec.columns, priors),
        sd_groups=_group_by_family(spec.sd_names, priors),
        aux_groups=_group_by_family(spec.aux, priors),
        n_sd=start,
        aux_names=spec.aux,
        terms=tuple(terms),
        has_trials=spec.trials is not None,
        layout=layout_of(spec),
        fixed_names=tuple(spec.fixed_dpars),
        linked=tuple(each.terms for each in spec.linked_terms),
        imputed=tuple(
            ImputedShape(
                len(imp.positions),
                0 if imp.block is None else len(spec.terms[imp.block].levels),
                imp.x_columns,
                imp.z_columns,
                imp.centered,
            )
            for imp in spec.imputed
        ),
    )


def _block_arrays(names: tuple[str, ...], groups: Groups, priors: dict) -> dict:
    """Per prior family: loc, scale and shape parameters as float32 arrays."""
    out = {}
    for family, idx in groups:
        chosen = [priors[names[i]] for i in idx]
        arrays = {
            "loc": [p.loc_scale()[0] for p in chosen],
            "scale": [p.loc_scale()[1] for p in chosen],
        }
        for key in chosen[0].shape_params():
            arrays[key] = [p.shape_params()[key] for p in chosen]
        # NumPy: jnp.asarray of a list compiles a small program per call on a cold start
        out[family] = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    return out


def prior_arrays(spec: ModelSpec) -> dict:
    """The numbers of every prior, as model arguments (so changing them never recompiles)."""
    priors = spec.prior_of
    st = structure_of(spec)
    eta = tuple(
        np.asarray(priors[t.cor_key].eta if t.has_correlation else 1.0, dtype=np.float32)
        for t in spec.terms
    )
    return {
        "b": _block_arrays(spec.columns, st.coef_groups, priors),
        "b_cs": _block_arrays(spec.cs_names, st.cs_groups, priors),
        "sd": _block_arrays(spec.sd_names, st.sd_groups, priors),
        "aux": _block_arrays(spec.aux, st.aux_groups, priors),
        # one prior family for every threshold (structure_of checks it)
        "thresholds": _block_arrays(
            spec.threshold_names, _group_by_family(spec.threshold_names, priors), priors
        ),
        "eta": eta,
        "eta_linked": tuple(
            np.asarray(priors[each.cor_key].eta, dtype=np.float32) for each in spec.linked_terms
        ),
        "impute": tuple(_imputation_priors(imp) for imp in spec.imputed),
        # values of fixed family parameters (ml.bf(..., nu=4)): arguments, not constants
        "fixed": {n: np.float32(v) for n, v in spec.fixed_dpars.items()},
    }


def sample_thresholds(st: Structure, prior: dict) -> jnp.ndarray:
    """(K - 1,) thresholds of an ordinal model: each with its prior, increasing for the
    cumulative family (``ordinal.ThresholdPrior``)."""
    params = prior["thresholds"][st.threshold_family]
    base = dist.TransformedDistribution(
        standard_distribution(st.threshold_family, params).expand([st.n_thresholds]),
        dist.transforms.AffineTransform(params["loc"], params["scale"]),
    )
    law = ThresholdPrior(base, st.n_thresholds, st.ordered_thresholds)
    return numpyro.sample("thresholds", law)


def _imputation_priors(imp) -> dict:
    """Intercept ~ Normal(loc, scale); sd and sigma ~ Exponential(rate) (``missing``)."""
    intercept, *rest = (prior for _, prior in imp.priors)
    return {
        "loc": np.float32(intercept.mu),
        "scale": np.float32(intercept.sigma),
        "rate": np.asarray([p.rate for p in rest], dtype=np.float32),
    }


def data_arrays(
    design: Design, with_response: bool = True, offset=None, weight=None, imputed=(), st=None
) -> dict:
    """The design as device arrays; ``y`` is None when simulating from the model.
    ``imputed`` (``ModelSpec.imputed``) adds each imputed predictor's observed values
    and row indices as ``data["impute"]``.
    ``offset`` (n,), added to the linear predictor (with the design's own ``offset()``
    and ``rate()``), is None unless either is given. ``weight`` (n,), per-row likelihood
    weights (0 leaves a row out: K-fold refits keep every shape), times the design's
    ``weights()``, is added as ``data["weight"]`` only when either is given, so
    unweighted fits keep their compile keys; so is ``data["bounds"]`` (``cens()``,
    ``trunc()``).
    ``st`` (the Structure) adds, for terms centred on a parent, each level's parent level
    as ``data["parents"]``, and for terms centred on group-level predictors, each level's
    values of them as ``data["level_values"]`` ((L_k, m); None for other terms)."""
    out = {
        "X": _device(design.X, np.float32),
        "y": _device(design.y, np.float32) if with_response else None,
        # whole numbers: NumPyro draws binomial outcomes with integer trial counts
        "trials": None if design.trials is None else _device(design.trials, np.int32),
        "Z": tuple(_device(b.Z, np.float32) for b in design.all_blocks),
        "codes": tuple(_device(b.codes, np.int32) for b in design.all_blocks),
        "offset": _combined_offset(design, offset),
    }
    weight = _combined_weight(design, weight)
    if design.bounds:  # cens() and trunc(): data, so refits of the same shape reuse the program
        out["bounds"] = {
            k: _device(v, np.int32 if k == "cens" else np.float32) for k, v in design.bounds.items()
        }
    if getattr(design, "X_cs", None) is not None:  # cs() columns: data, not constants
        out["X_cs"] = _device(design.X_cs, np.float32)
    if getattr(design, "dpars", ()):  # family parameters' own formulas
        out["X_dpars"] = tuple(_device(d.X, np.float32) for d in design.dpars)
    if st is not None and any(t.parent >= 0 for t in st.terms):
        out["parents"] = tuple(
            None if t.parent < 0 else _device(parent_levels(design, k, t.parent), np.int32)
            for k, t in enumerate(st.terms)
        )
    if st is not None and any(t.level_columns for t in st.terms):
        out["level_values"] = tuple(
            None
            if not t.level_columns
            else _device(
                level_values(design, k, tuple(design.columns[c] for c in t.level_columns)),
                np.float32,
            )
            for k, t in enumerate(st.terms)
        )
    if getattr(design, "se", None) is not None:  # known sds of y (y | se(s) ~ ...): no sigma
        out["se"] = jnp.asarray(design.se, dtype=jnp.float32)
    if weight is not None:
        out["weight"] = jnp.asarray(weight, dtype=jnp.float32)
    if imputed:
        out["impute"] = tuple(_imputation_arrays(design, imp) for imp in imputed)
    return out


def _combined_offset(design: Design, offset) -> jax.Array | None:
    """The design's offset (``offset()`` terms, ``log(rate)``) plus ``offset`` (the log
    counts of pooled rows), or None."""
    parts = [o for o in (getattr(design, "offset", None), offset) if o is not None]
    return None if not parts else _device(sum(parts), np.float32)


def _combined_weight(design: Design, weight) -> np.ndarray | None:
    """The ``weights()`` of the design times ``weight`` (K-fold's 0/1), or None."""
    parts = [w for w in (getattr(design, "weights", None), weight) if w is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] * parts[1]


def _device(values, dtype) -> jax.Array:
    """``values`` as a device array of ``dtype``, converted by NumPy: ``jnp.asarray``
    with a dtype compiles a conversion per new shape, and JAX keeps each (about 6 MB
    resident per data size in a process fitting many sizes)."""
    return jax.device_put(np.asarray(values, dtype=dtype))


def _imputation_arrays(design: Design, imp) -> dict:
    """Observed values of an imputed predictor and where its missing values go."""
    values = predictor_column(design, imp)
    missing = np.asarray(imp.positions, dtype=np.int32)
    observed = np.setdiff1d(np.arange(design.n, dtype=np.int32), missing)
    codes = np.zeros(design.n, np.int32) if imp.block is None else design.blocks[imp.block].codes
    return {
        "x_observed": jnp.asarray(values[observed], dtype=jnp.float32),
        "codes_observed": jnp.asarray(codes[observed]),
        "missing": jnp.asarray(missing),
        "codes_missing": jnp.asarray(codes[missing]),
    }


def _sample_block(kind: str, groups: Groups, size: int, arrays: dict) -> jnp.ndarray:
    """Sample the standardised sites of one block and assemble the reported vector."""
    values = jnp.zeros(size)
    for family, idx in groups:
        params = arrays[family]
        base = standard_distribution(family, params).expand([len(idx)])
        raw = numpyro.sample(f"{kind}_{family}", base)
        values = values.at[np.asarray(idx)].set(params["loc"] + params["scale"] * raw)
    return values


def sample_hyperparameters(st: Structure, prior: dict):
    """Population coefficients, group sds and family parameters, as reported values."""
    beta = numpyro.deterministic("beta", _sample_block("b", st.coef_groups, st.p, prior["b"]))
    sd = numpyro.deterministic("sd", _sample_block("sd", st.sd_groups, st.n_sd, prior["sd"]))
    aux = _sample_block("aux", st.aux_groups, len(st.aux_names), prior["aux"])
    return beta, sd, numpyro.deterministic("aux", aux)


def term_scale_tril(k: int, term: TermShape, sd: jnp.ndarray, eta) -> jnp.ndarray:
    """(q, q) Cholesky factor diag(sd) L of term k's covariance; samples ``L_k`` ~ LKJ."""
    if term.correlated:
        chol = numpyro.sample(f"L_{k}", dist.LKJCholesky(term.q, eta))
        return sd[:, None] * chol  # (q, q): diag(sd) @ L
    return jnp.diag(sd)


def centring_columns(st: Structure, centred: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Hierarchical centring (Gelfand, Sahu & Carlin 1995): centred terms whose
    covariates have population coefficients are sampled as coefficients, ``r_k ~
    N(beta[columns], S)``, not as deviations from them. The likelihood then sees ``r_k``
    alone, and the population coefficient is informed through the groups' mean instead
    of riding a ridge with it (intercept ESS 93 on 1M bernoulli rows centred the plain
    way). Each population column serves one term: the centred one with most levels.
    Returns term -> column per covariate (-1: none), for terms with any.

    Callers use it for a lone sampled term only: with crossed or nested terms beside it
    their effects' common shift trades with the centred term's mean (InstEval, lecturers
    centred on the intercept beside departments: R-hat 2.7 after 50 + 50 draws)."""
    out, taken = {}, set()
    for k in sorted(centred, key=lambda k: -st.terms[k].n_levels):
        columns = tuple(c if c >= 0 and c not in taken else -1 for c in st.terms[k].columns)
        taken |= {c for c in columns if c >= 0}
        if any(c >= 0 for c in columns):
            out[k] = columns
    return out


def lone_term_centring(st: Structure) -> dict[int, tuple[int, ...]]:
    """The joint sampler's hierarchical centring: for a centred model's lone term only."""
    return centring_columns(st, (0,)) if len(st.terms) == 1 and st.terms[0].centered else {}


def population_means(columns: tuple[int, ...], beta: jnp.ndarray) -> jnp.ndarray:
    """(q,) the population coefficient of each covariate, 0 where it has none."""
    index = np.array([max(c, 0) for c in columns])
    return jnp.where(np.array(columns) >= 0, beta[index], 0.0)


def nesting_centring(st: Structure) -> dict[int, tuple[int, ...]]:
    """Terms sampled around the population coefficients in the joint sampler: a lone
    centred term (``lone_term_centring``) or the top of each nesting of centred terms."""
    if len(st.terms) == 1:
        return lone_term_centring(st)
    parents = {t.parent for t in st.terms if t.parent >= 0}
    return centring_columns(st, tuple(k for k in parents if st.terms[k].parent < 0))


def level_shift(st: Structure, level_values: tuple, beta) -> dict[int, jnp.ndarray]:
    """Term -> (L_k,) the group-level predictors' part of its centred intercepts' mean:
    each group's values of them (``data["level_values"]``) times their coefficients."""
    return {
        k: level_mean(level_values[k], t.level_columns, beta)
        for k, t in enumerate(st.terms)
        if t.level_columns
    }


def level_mean(values, columns: tuple[int, ...], beta):
    """(L,) each group's ``values`` (L, m) of the population ``columns`` times their
    coefficients in ``beta``: NumPy or JAX arrays."""
    return values @ beta[np.array(columns)]


def with_level_means(mean, level_mean, q: int):
    """(L, q): ``mean`` ((q,), a number, or None: zero) with ``level_mean`` (L,) added to
    covariate 0, the intercept (``centring.level_predictors`` centres only terms led by
    one). NumPy or JAX arrays."""
    base = 0.0 if mean is None else mean
    return base + level_mean[:, None] * (np.arange(q) == 0)


def parents_first(st: Structure) -> list[int]:
    """Term indices, each after the term it is centred on."""

    def depth(k):
        return 0 if st.terms[k].parent < 0 else 1 + depth(st.terms[k].parent)

    return sorted(range(len(st.terms)), key=depth)


def term_effects(
    st: Structure,
    order,
    centered: dict,
    parents: dict,
    centring: dict,
    beta,
    sd,
    prior,
    codes,
    counts=None,
    level_means=None,
) -> dict[int, jnp.ndarray]:
    """(L_k, q_k) effects of the terms in ``order`` (parents first). A term with a parent
    (``parents[k] >= 0``) is centred on the parent's coefficients at its levels' parent
    levels (``codes[k]``); a term in ``centring`` on the population coefficients; others
    on zero. ``counts`` (terms,), if given, are the true numbers of groups of inputs
    padded to their bucket (``backends.padding``). ``level_means`` (term -> (L_k,)): the
    part of a centred term's intercepts' mean from its group-level predictors
    (``level_shift``). Shared by the joint and the partially collapsed Gaussian model."""
    effects, coefficients = {}, {}  # parent term -> (L, q) its groups' coefficients
    linked = {k: i for i, members in enumerate(st.linked) for k in members}
    for k in order:
        term = st.terms[k]
        term_sd = sd[term.sd_start : term.sd_start + term.q]
        if parents[k] >= 0:
            mean = coefficients[parents[k]][codes[k]]  # (L_k, q)
        else:
            mean = population_means(centring[k], beta) if k in centring else None
        if level_means and k in level_means:
            mean = with_level_means(mean, level_means[k], term.q)
        if k in linked:  # non-centred, never centred on anything (Model refuses it)
            if k not in effects:
                i = linked[k]
                effects.update(linked_effects(i, st, sd, prior["eta_linked"][i]))
        else:
            count = None if counts is None else counts[k]
            effects[k] = group_effects(k, term, term_sd, prior["eta"][k], centered[k], mean, count)
        if k in parents.values():
            coefficients[k] = effects[k] + (0.0 if mean is None else mean)
        numpyro.deterministic(f"effects_{k}", effects[k])
    return effects


def linked_effects(i: int, st: Structure, sd: jnp.ndarray, eta) -> dict[int, jnp.ndarray]:
    """(L, q_k) effects of each term of linked set i (brms' ``|p|``): one draw from
    N(0, diag(sd) R diag(sd)) per level over all the set's covariates, with R ~ LKJ
    (site ``L_linked_<i>``), non-centred (``z_linked_<i>``), split back into terms."""
    members = st.linked[i]
    shapes = [st.terms[k] for k in members]
    set_sd = jnp.concatenate([sd[t.sd_start : t.sd_start + t.q] for t in shapes])
    size = sum(t.q for t in shapes)
    chol = numpyro.sample(f"L_linked_{i}", dist.LKJCholesky(size, eta))
    z = numpyro.sample(f"z_linked_{i}", dist.Normal(0.0, 1.0).expand([shapes[0].n_levels, size]))
    joint = z @ (set_sd[:, None] * chol).T  # (L, Q)
    starts = np.cumsum([0] + [t.q for t in shapes])
    return {k: joint[:, starts[j] : starts[j + 1]] for j, k in enumerate(members)}


def group_effects(
    k: int, term: TermShape, sd: jnp.ndarray, eta, centered: bool, mean=None, count=None
) -> jnp.ndarray:
    """(L, q) effects of term k with covariance diag(sd) R diag(sd). ``mean`` (q,), for a
    centred term: sample the coefficients ``mean + effects`` (hierarchical centring).
    ``count``: the true number of groups when L is padded (``backends.padding``); a
    centred term's padded groups are standard normal, apart from everything else (their
    effects are read by no row), so the term's own density counts its true groups only.
    A centred term with ``weights`` is centred partially (``centring.centring_weights``):
    the site is ``w mean + sd^w R^(1/2) z``, the coefficients ``mean + sd^(1 - w) (site -
    w mean)``."""
    if centered and term.weights:
        weights = jnp.asarray(term.weights, dtype=sd.dtype)
        loc = 0.0 if mean is None else mean
        site = group_effects(
            k, replace(term, weights=()), sd**weights, eta, True, weights * loc, count
        )
        return sd ** (1.0 - weights) * site
    scale_tril = term_scale_tril(k, term, sd, eta)
    if centered:
        loc = jnp.zeros(term.q) if mean is None else mean
        real = None if count is None else jnp.arange(term.n_levels) < count  # (L,)
        if term.correlated:
            # not validated: diag(sd) L is lower triangular by construction, and NumPyro's
            # check of it runs eagerly while tracing, compiling 21 tiny programs (0.9 s of
            # a cold bernoulli (1 + x | g) fit before its sampler's compile starts)
            law = dist.MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)
            law = law.expand([term.n_levels])
            mask = real
        else:
            law = dist.Normal(loc, sd).expand([term.n_levels, term.q])
            mask = None if real is None else real[:, None]
        with contextlib.nullcontext() if mask is None else numpyro.handlers.mask(mask=mask):
            r = numpyro.sample(f"r_{k}", law)
        if real is not None:
            numpyro.factor(f"padded_r_{k}", -0.5 * jnp.sum(jnp.where(real[:, None], 0.0, r**2)))
        return r if mean is None else r - mean
    z = numpyro.sample(f"z_{k}", dist.Normal(0.0, 1.0).expand([term.n_levels, term.q]))
    if term.correlated:
        return z @ scale_tril.T  # (L, q) @ (q, q) -> (L, q)
    return z * sd  # (L, q) * (q,) -> (L, q)


def make_model(st: Structure):
    """The NumPyro model function of a structure."""

    def model(data: dict, prior: dict):
        beta, sd, aux = sample_hyperparameters(st, prior)
        X, Z = impute_predictors(st, data, prior) if st.imputed else (data["X"], data["Z"])
        effects = term_effects(
            st,
            parents_first(st),
            {k: t.centered for k, t in enumerate(st.terms)},
            {k: t.parent for k, t in enumerate(st.terms)},
            nesting_centring(st),
            beta,
            sd,
            prior,
            data.get("parents") or {},
            data.get("level_counts"),
            level_shift(st, data["level_values"], beta) if data.get("level_values") else None,
        )
        aux_values = {name: aux[i] for i, name in enumerate(st.aux_names)}
        aux_values.update({name: prior["fixed"][name] for name in st.fixed_names})
        params = {"beta": beta, "effects": [effects[k] for k in range(len(st.terms))],
                  "aux": aux_values, "thresholds": None, "b_cs": None}  # fmt: skip
        if st.n_thresholds:
            params["thresholds"] = sample_thresholds(st, prior)
            if st.n_cs:
                b_cs = _sample_block("bcs", st.cs_groups, st.n_cs, prior["b_cs"])
                params["b_cs"] = numpyro.deterministic("beta_cs", b_cs)
        rows = {"X": X, "X_dpars": data.get("X_dpars"), "Z": Z, "codes": data["codes"],
                "offset": data.get("offset"), "trials": data["trials"], "se": data.get("se"),
                "bounds": data.get("bounds"), "X_cs": data.get("X_cs")}  # fmt: skip
        weight = data.get("weight")
        if weight is None:
            numpyro.sample("y", row_likelihood(st, params, rows), obs=data["y"])
            return
        # Each row's log-likelihood times its weight; weight 0 removes the row (K-fold's
        # held-out rows, padding's copies of the first row). Shapes stay those of the full
        # data, so every K-fold refit shares one program. Not NumPyro's mask handler: it
        # evaluates a masked row at a point of the support instead of its own value (0 for
        # a censored lognormal), where the gradient is nan (kidney: every draw divergent).
        # The rows here are data, so their own values are valid.
        rows.update(y=data["y"], weight=weight)
        # Summing the rows a block at a time inside the program (each block's passes on
        # data in cache, the gradient handed over as a custom derivative) was tried and
        # lost: 229,376 rows of a bernoulli (1 + x | g), 2.8 ms per gradient in one piece,
        # 6.7 ms in 28 blocks (one core).
        numpyro.factor("y", weighted_log_likelihood(st, params, rows))

    return model


def row_likelihood(st: Structure, params: dict, rows: dict):
    """The family's distribution of each of ``rows``' responses: the linear predictors
    of the mean and of predicted family parameters from ``params`` (``beta``, each
    term's ``effects``, the family's ``aux`` values, an ordinal model's shared
    ``thresholds`` and ``b_cs``) and the rows' predictors."""
    etas = linear_predictors(st.layout, rows, params["beta"], params["effects"])
    values = dict(params["aux"])
    values.update(dpar_values(st.layout, etas))  # (n,) per row
    if st.n_thresholds:  # (1, K - 1) shared by every row; (n, K - 1) with cs()
        values["thresholds"] = row_thresholds(params["thresholds"], rows["X_cs"], params["b_cs"])
    return FAMILIES[st.family].likelihood(
        etas["mu"], st.link, values, rows["trials"], se=rows["se"], bounds=rows["bounds"]
    )


def weighted_log_likelihood(st: Structure, params: dict, rows: dict) -> jnp.ndarray:
    """Sum over ``rows`` of each row's log-likelihood times its weight (weight 0: none),
    less the terms that depend on the data alone (``log_prob_kernel``): the sampler's."""
    log_lik = log_prob_kernel(row_likelihood(st, params, rows), rows["y"])
    weight = rows["weight"]
    return jnp.sum(jnp.where(weight > 0, weight * log_lik, 0.0))


def impute_predictors(st: Structure, data: dict, prior: dict):
    """X and Z with each imputed predictor's missing values sampled from its own model,
    ``x ~ Normal(intercept + u[group], sigma)``, fitted to its observed values as well
    (brms' ``mi()``). Every site is on a unit scale: ``mi_x_<j>`` are standard normal."""
    X, Z = data["X"], list(data["Z"])
    for j, shape in enumerate(st.imputed):
        arrays, law = data["impute"][j], prior["impute"][j]
        intercept = law["loc"] + law["scale"] * numpyro.sample(f"mi_b_{j}", dist.Normal())
        scales = numpyro.sample(f"mi_scale_{j}", dist.Exponential(1.0).expand([len(law["rate"])]))
        scales = scales / law["rate"]  # (sd,) sigma
        sigma = scales[-1]
        mean_observed = mean_missing = intercept
        if shape.n_levels:
            u = _predictor_intercepts(j, shape, intercept, scales[0], law)  # (L,)
            mean_observed = intercept + u[arrays["codes_observed"]]
            mean_missing = intercept + u[arrays["codes_missing"]]
        observed = dist.Normal(mean_observed, sigma)
        numpyro.sample(f"mi_observed_{j}", observed, obs=arrays["x_observed"])
        numpyro.deterministic(f"mi_params_{j}", jnp.concatenate([intercept[None], scales]))
        if not shape.n_missing:  # missing only where the response is missing too
            continue
        z_missing = numpyro.sample(f"mi_x_{j}", dist.Normal().expand([shape.n_missing]))
        values = numpyro.deterministic(f"mi_values_{j}", mean_missing + sigma * z_missing)
        for c in shape.x_columns:
            X = X.at[arrays["missing"], c].set(values)
        for k, c in shape.z_columns:
            Z[k] = Z[k].at[arrays["missing"], c].set(values)
    return X, tuple(Z)


def _predictor_intercepts(j: int, shape: ImputedShape, intercept, sd, law: dict):
    """Varying intercepts of an imputed predictor's model. Groups rich in observed
    values take them hierarchically centred (the group means are the sites, so the
    intercept does not ride a ridge with their mean); others non-centred."""
    if shape.centered:
        unit = law["scale"] / 2.5  # the observed sd: group means on a unit scale
        means = numpyro.sample(
            f"mi_m_{j}",
            dist.Normal((intercept - law["loc"]) / unit, sd / unit).expand([shape.n_levels]),
        )
        u = law["loc"] + unit * means - intercept
    else:
        u = sd * numpyro.sample(f"mi_z_{j}", dist.Normal().expand([shape.n_levels]))
    return numpyro.deterministic(f"mi_effects_{j}", u)


_SIMULATORS: ProgramCache = ProgramCache()  # (structure, n) -> compiled Predictive


def simulator(st: Structure, n: int):
    """NumPyro ``Predictive`` for ``n`` draws, compiled once per structure and ``n``:
    ``simulate(key, fixed, data, prior)`` with ``fixed`` site values (leading dim n) or
    None for draws from the priors. Eager ``Predictive`` runs op by op (seconds)."""
    if (st, n) not in _SIMULATORS:
        model = make_model(st)

        def simulate(key, fixed, data, prior):
            predictive = Predictive(model, posterior_samples=fixed, num_samples=n, parallel=True)
            return predictive(key, data, prior)

        _SIMULATORS[(st, n)] = jax.jit(simulate)
    return _SIMULATORS[(st, n)]


def named_posterior(spec: ModelSpec, samples: dict) -> tuple[dict, dict, dict]:
    """Backend draws (chains, draws, ...) -> user-facing variables, their dims and coords."""
    posterior, dims, coords = {}, {}, {}
    for j, name in enumerate(spec.threshold_names):
        posterior[name] = samples["thresholds"][..., j]
    for j, name in enumerate(spec.columns):
        posterior[name] = samples["beta"][..., j]
    for j, name in enumerate(spec.cs_names):
        posterior[name] = samples["beta_cs"][..., j]
    for j, name in enumerate(spec.sd_names):
        posterior[name] = samples["sd"][..., j]
    for k, term in enumerate(spec.terms):
        if term.has_correlation:
            chol = samples[f"L_{k}"]
            corr = chol @ np.swapaxes(chol, -1, -2)  # R = L L'
            for (i, j), name in zip(term.cor_pairs, term.cor_names):
                posterior[name] = corr[..., i, j]
        coords[term.group] = list(term.levels)
        for i, name in enumerate(term.effect_names):
            posterior[name] = samples[f"effects_{k}"][..., i]
            dims[name] = [term.group]
    for i, each in enumerate(spec.linked_terms):
        chol = samples[f"L_linked_{i}"]
        corr = chol @ np.swapaxes(chol, -1, -2)
        for (a, b), name in zip(each.cor_pairs, each.cor_names):
            posterior[name] = corr[..., a, b]
    for j, name in enumerate(spec.aux):
        posterior[name] = samples["aux"][..., j]
    for j, imp in enumerate(spec.imputed):
        for i, name in enumerate(imp.names):
            posterior[name] = samples[f"mi_params_{j}"][..., i]
        if imp.group is not None:
            posterior[imp.effect_name] = samples[f"mi_effects_{j}"]
            dims[imp.effect_name] = [imp.group]
        if imp.positions:
            posterior[imp.values_name] = samples[f"mi_values_{j}"]
            dims[imp.values_name] = [imp.dim]
            coords[imp.dim] = list(imp.rows)
    return posterior, dims, coords


def site_values(
    spec: ModelSpec, prior: dict, named: dict, parent_codes=None, level_values=None
) -> dict:
    """The inverse of ``named_posterior`` for one set of values: user-facing parameter
    values -> values of the model's sample sites (used to simulate with fixed parameters).

    ``named`` must hold every population effect, sd, cor and family parameter; group
    effects (``Intercept|g`` as arrays over levels) are optional: left out, they are drawn
    from their population distribution when simulating. ``parent_codes`` (the model
    data's ``parents``) is needed for the effects of a term centred on a parent term, and
    ``level_values`` (its ``level_values``) for those of a term centred on group-level
    predictors."""
    st = structure_of(spec)
    missing = [n for n in spec.hyper_names if n not in named]
    if missing:
        raise KeyError(f"values needed for {', '.join(missing)}")
    out = {}
    blocks = (
        ("b", spec.columns, st.coef_groups),
        ("bcs", spec.cs_names, st.cs_groups),
        ("sd", spec.sd_names, st.sd_groups),
        ("aux", spec.aux, st.aux_groups),
    )
    for kind, names, groups in blocks:
        for family, idx in groups:
            params = prior["b_cs" if kind == "bcs" else kind][family]
            values = np.array([named[names[i]] for i in idx], dtype=float)
            out[f"{kind}_{family}"] = (values - np.asarray(params["loc"])) / np.asarray(
                params["scale"]
            )
    if spec.threshold_names:
        out["thresholds"] = np.array([named[n] for n in spec.threshold_names], dtype=float)
    centring = nesting_centring(st)
    beta = np.array([named[c] for c in spec.columns], dtype=float)
    coefficients = {}  # parent term -> (L, q) its groups' coefficients, where given
    for k in parents_first(st):
        term, shape = spec.terms[k], st.terms[k]
        sd = np.array([named[n] for n in term.sd_names], dtype=float)
        chol = np.eye(len(term.coefs))
        if term.has_correlation:
            chol = np.linalg.cholesky(correlation_matrix(term, named.__getitem__))
            out[f"L_{k}"] = chol
        if term.id or not all(n in named for n in term.effect_names):
            continue  # linked terms: below
        effects = np.stack([np.asarray(named[n], dtype=float) for n in term.effect_names], -1)
        mean = np.asarray(population_means(centring[k], beta)) if k in centring else 0.0
        if shape.level_columns:
            if level_values is None:
                raise KeyError(
                    f"the values of {', '.join(term.level_predictors)} in each group of "
                    f"{term.group} (its effects are centred on them)"
                )
            levels = np.asarray(level_values[k])[: len(term.levels)]  # padded inputs
            shift = level_mean(levels, shape.level_columns, beta)
            mean = with_level_means(mean, shift, len(term.coefs))
        if shape.parent >= 0:
            if shape.parent not in coefficients or parent_codes is None:
                raise KeyError(
                    f"values needed for the effects of {spec.terms[shape.parent].group} "
                    f"(the effects of {term.group} are centred on them)"
                )
            mean = coefficients[shape.parent][np.asarray(parent_codes[k])]
        coefficients[k] = effects + mean
        if term.centered and term.centring_weights:  # site = w mean + effects / sd^(1 - w)
            weights = np.asarray(term.centring_weights)
            out[f"r_{k}"] = weights * mean + effects / sd ** (1.0 - weights)
        elif term.centered:  # coefficients, where centred
            out[f"r_{k}"] = effects + mean
        else:  # effects = z (diag(sd) L)'  =>  z = effects ((diag(sd) L)')^-1
            out[f"z_{k}"] = np.linalg.solve(sd[:, None] * chol, effects.T).T
    for i, each in enumerate(spec.linked_terms):
        chol = np.linalg.cholesky(correlation_matrix(each, named.__getitem__))
        out[f"L_linked_{i}"] = chol
        names = each.effect_names
        given = [n in named for n in names]
        if any(given) and not all(given):  # drawn jointly: all or none
            absent = [n for n, g in zip(names, given) if not g]
            raise KeyError(f"values needed for {', '.join(absent)} (linked by |{each.id}|)")
        if all(given):
            sd = np.array([named[n] for n in each.sd_names])
            effects = np.stack([np.asarray(named[n], dtype=float) for n in names], -1)
            out[f"z_linked_{i}"] = np.linalg.solve(sd[:, None] * chol, effects.T).T
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
