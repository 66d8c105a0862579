"""Complete, no and partial pooling of one grouping factor, fitted side by side.

A varying-effects model sits between two extremes. *Complete pooling* ignores the groups
(one set of coefficients for everyone); *no pooling* gives every group its own
coefficients, estimated from that group's rows alone; *partial pooling* (the multilevel
model) gives every group its own coefficients but draws them from a population
distribution whose spread is learned from the data, so a group with few rows is pulled
toward the population mean and a group with many rows mostly keeps its own estimate.
:func:`compare_pooling` fits all three from one formula and lays the group estimates side
by side, with leave-one-out cross-validation of each fit.

Examples
--------
>>> import multilevel as ml
>>> radon = ml.datasets.load("radon")
>>> cmp = ml.compare_pooling("log_radon ~ floor + (1 | county)", radon, seed=1)  # doctest: +SKIP
>>> cmp.table.head()  # doctest: +SKIP
>>> cmp.loo  # doctest: +SKIP
>>> cmp.plot_shrinkage("shrinkage.png")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import formulaic
import numpy as np
import pandas as pd
from formulaic.errors import FormulaicError

from multilevel import tables
from multilevel.errors import FormulaError, MultilevelError
from multilevel.evaluation import LooWarning
from multilevel.families import FAMILIES
from multilevel.fit import Fit
from multilevel.formula import GroupTerm, ParsedFormula, parse_formula
from multilevel.loglik import pointwise_log_likelihood  # noqa: F401 (moved; kept importable)
from multilevel.model import Model
from multilevel.prior_rules import DEFAULT
from multilevel.workflow.shrinkage import plot_shrinkage

__all__ = ["PoolingComparison", "compare_pooling", "pointwise_log_likelihood"]

#: The three variants, in the order of least to most flexible per group.
VARIANTS = ("complete", "none", "partial")
_COLUMNS = {"complete": "complete_pooling", "none": "no_pooling", "partial": "partial_pooling"}


# --------------------------------------------------------------------------- formulas
@dataclass(frozen=True)
class _Plan:
    """What the three variants are: their formulas, the grouping factor and its terms."""

    formulas: dict[str, str]
    group: str
    coefs: tuple[str, ...]  # varying coefficients as the design names them: Intercept, x


DISTRIBUTIONAL = (
    "compare_pooling compares the group terms of the mean's formula, taken as text; a "
    "model whose family parameters have formulas or values of their own (ml.bf) is not "
    "supported: compare such fits with ml.compare."
)


def _plan(formula: str) -> _Plan:
    if not isinstance(formula, str):
        raise MultilevelError(DISTRIBUTIONAL)
    parsed = parse_formula(formula)
    if parsed.category_specific:
        raise FormulaError(
            "compare_pooling does not support category-specific effects cs(): its pooled "
            "and unpooled formulas are built from the population part alone. Compare such "
            "fits with ml.compare."
        )
    term = _single_term(parsed)
    coefs = _varying_coefs(term)
    lhs = parsed.response + (f" | trials({parsed.trials})" if parsed.trials else "")
    fixed_terms = _terms_of(parsed.fixed)
    has_intercept = "1" in fixed_terms
    factor = f"C({term.group})"
    # No pooling: per-group columns replace the population intercept and slopes that vary.
    absorbed = {"1" if c == "Intercept" else c for c in coefs}
    keep_intercept = has_intercept and "Intercept" not in coefs
    none_terms = ["1" if keep_intercept else "0"]
    none_terms += [factor if c == "Intercept" else f"{factor}:{c}" for c in coefs]
    none_terms += [t for t in fixed_terms if t not in absorbed and t != "1"]
    return _Plan(
        formulas={
            "complete": f"{lhs} ~ {parsed.fixed}",
            "none": f"{lhs} ~ {' + '.join(none_terms)}",
            "partial": formula,
        },
        group=term.group,
        coefs=coefs,
    )


def _single_term(parsed: ParsedFormula) -> GroupTerm:
    terms = parsed.groups
    if len(terms) != 1 or len(terms[0].factors) != 1:
        if not terms:
            found = "no group term"
        else:
            found = ", ".join(f"({t.expr} | {t.group})" for t in terms)
        raise FormulaError(
            "compare_pooling needs exactly one grouping factor in exactly one group term, "
            "e.g. `y ~ x + (1 | g)` or `y ~ x + (1 + x | g)`; nested (`a/b`), interaction "
            f"(`a:b`) and crossed (`(1 | a) + (1 | b)`) groupings are not supported. Found: {found}."
        )
    return terms[0]


def _terms_of(expr: str) -> list[str]:
    try:
        return [str(t) for t in formulaic.Formula(expr)]
    except FormulaicError as exc:  # the Model reports this better; keep the message short
        raise FormulaError(f"Cannot read `{expr}`: {exc}") from None


def _varying_coefs(term: GroupTerm) -> tuple[str, ...]:
    terms = _terms_of(term.expr)
    return tuple("Intercept" if t == "1" else t for t in terms)


def _check_coefs(plan: _Plan, model: Model) -> None:
    """The varying coefficients must be an intercept and numeric covariates: a
    categorical covariate inside the bar expands into several columns we cannot name."""
    block = model.design.blocks[0]
    if tuple(block.coefs) != plan.coefs:
        raise FormulaError(
            f"compare_pooling supports a varying intercept and slopes of numeric "
            f"covariates; `({block.term.expr} | {plan.group})` makes the columns "
            f"{', '.join(block.coefs)}. Make a numeric column for each and use those."
        )


def _none_column(group: str, level: str, coef: str) -> str:
    """The no-pooling design column of one group's coefficient (formulaic's naming)."""
    base = f"C({group})[{level}]"
    return base if coef == "Intercept" else f"{base}:{coef}"


def _carried_priors(partial: Model, exclude: set[str]) -> dict:
    """Priors the user set on the partial-pooling model that mean the same thing in the
    other variant: population coefficients it keeps and family parameters, by name.

    Class priors such as ``b`` are resolved by name, so they never reach the no-pooling
    per-group coefficients, which keep their auto-scaled defaults."""
    spec = partial.spec
    sources = dict(spec.prior_sources)
    names = [c for c in spec.columns if c not in exclude] + list(spec.aux)
    return {n: spec.prior_of[n] for n in names if sources[n] != DEFAULT}


# --------------------------------------------------------------------------- LOO
def _loo_row(fit: Fit) -> dict:
    """One row of ``PoolingComparison.loo``, from the fit's own PSIS-LOO (``fit.loo()``):
    ``pareto_k_bad`` counts its rows with Pareto k >= 0.7."""
    with warnings.catch_warnings():  # reported as the pareto_k_bad column instead
        warnings.simplefilter("ignore", LooWarning)
        result = fit.loo()
    return {
        "elpd": result.elpd,
        "se": result.se,
        "p_loo": result.p_loo,
        "pareto_k_bad": result.pareto_k["bad"],
    }


def _model_of(fit: Fit, what: str) -> Model:
    if fit.model is None:
        raise MultilevelError(
            f"{what} needs the Model (formula and data) that made this fit, and a fit read "
            "with ml.load does not keep it. Fit the model again in this session, e.g. "
            "fit = ml.Model(formula, data).fit(), then call it on that fit."
        )
    return fit.model


# --------------------------------------------------------------------------- the comparison
class PoolingComparison:
    """Complete, no and partial pooling fitted to the same data (see :func:`compare_pooling`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per group level and varying coefficient: ``group``, ``term``, ``n``,
        ``no_pooling``, ``partial_pooling``, ``complete_pooling`` (posterior means, each
        with ``_q5``/``_q95`` columns) and ``shrinkage``.
    fits : dict
        ``{"complete": Fit, "none": Fit, "partial": Fit}``.
    loo : pandas.DataFrame
        Indexed by variant: ``elpd``, ``se``, ``p_loo`` and ``pareto_k_bad``.
    formulas : dict
        The formula of each variant, keyed as ``fits``.
    group : str
        The grouping factor.
    terms : tuple of str
        The varying coefficients, e.g. ``("Intercept", "floor")``.
    """

    def __init__(self, formulas, group, terms, table, fits, loo):
        self.formulas = dict(formulas)
        self.group = group
        self.terms = tuple(terms)
        self.table = table
        self.fits = dict(fits)
        self.loo = loo

    @classmethod
    def from_fit(cls, fit: Fit, **fit_kwargs) -> PoolingComparison:
        """The comparison for an existing partial-pooling fit, which is reused as is.

        The other two variants are fitted with the same sampler settings and seed as
        ``fit`` unless ``fit_kwargs`` say otherwise; priors the user set on population
        coefficients and family parameters carry over."""
        model = _model_of(fit, "Comparing pooling")
        if fit.spec.dpars:
            raise MultilevelError(DISTRIBUTIONAL)
        info = fit.info
        settings = {**info["settings"], "seed": info["seed"], **fit_kwargs}
        spec = fit.spec
        return compare_pooling(
            spec.formula,
            model.data,
            spec.family,
            spec.link,
            partial=fit,
            missing=model.missing.mode,
            **settings,
        )

    def population(self) -> pd.Series:
        """Posterior means of the partial-pooling fit's population distribution:
        coefficient means (0 where a coefficient has no population term), sds and, for
        two correlated coefficients, their correlation."""
        summary = self.fits["partial"].summary()["mean"]
        spec = self.fits["partial"].spec
        term = spec.terms[0]
        out = {c: float(summary.get(c, 0.0)) for c in self.terms}
        out.update({n: float(summary[n]) for n in term.sd_names})
        out.update({n: float(summary[n]) for n in term.cor_names})
        return pd.Series(out)

    def plot_shrinkage(self, path=None, kind: str = "auto"):
        """Plot each group's no-pooling and partial-pooling estimates; see
        :func:`multilevel.workflow.shrinkage.plot_shrinkage`."""
        return plot_shrinkage(self, path=path, kind=kind)

    def __repr__(self) -> str:
        shown = ["group", "term", "n", "no_pooling", "partial_pooling", "complete_pooling"]
        top = self.table.sort_values("shrinkage", ascending=False, na_position="last").head(10)
        lines = [
            f"Pooling comparison: {len(self.table)} rows, {self.group} x {', '.join(self.terms)}"
        ]
        lines += [f"  {k:<9} {self.formulas[k]}" for k in VARIANTS]
        lines += [
            "",
            "Groups shrunk most (shrinkage = (no_pooling - partial_pooling) / "
            "(no_pooling - population mean)):",
            tables.plain_numbers(top[[*shown, "shrinkage"]]).to_string(index=False),
            "",
            "Leave-one-out cross-validation (higher elpd predicts new rows better; "
            "p_loo = effective number of parameters):",
            tables.plain_numbers(self.loo).to_string(),
        ]
        return "\n".join(lines)


def compare_pooling(
    formula: str,
    data: pd.DataFrame,
    family: str = "gaussian",
    link: str | None = None,
    priors: dict | None = None,
    *,
    partial: Fit | None = None,
    missing: str = "error",
    **fit_kwargs,
) -> PoolingComparison:
    """Fit complete, no and partial pooling of one grouping factor and compare them.

    From one partial-pooling formula such as ``y ~ x + (1 + x | g)`` three models are
    fitted with ``Model(...).fit(**fit_kwargs)``:

    * ``"complete"``: the group term dropped, ``y ~ x``: one set of coefficients for all.
    * ``"none"``: every group its own intercept and slopes, with independent priors and
      no population distribution: ``y ~ 0 + C(g) + C(g):x`` (the population intercept and
      ``x`` are absorbed; other population predictors stay). These per-group coefficients
      get the model's auto-scaled default priors, ``Normal(0, 2.5 sd(y) / sd(column))``,
      which are wide (for a group with 1 row of 919 about 60 sd(y)): they do not pool.
    * ``"partial"``: the formula as written (or the fit given as ``partial``).

    Parameters
    ----------
    formula : str
        A formula with exactly one group term and one grouping factor whose varying
        coefficients are an intercept and/or numeric covariates: ``(1 | g)``,
        ``(0 + x | g)``, ``(1 + x | g)``, ``(1 + x || g)``.
    data : pandas.DataFrame
    family, link : str
        As for :class:`multilevel.Model`.
    priors : dict, optional
        Priors of the partial-pooling model. Those it sets on population coefficients
        that the other variants keep, and on family parameters (``sigma``), carry over to
        them by name; ``sd``/``cor`` priors have no counterpart there.
    partial : Fit, optional
        An existing fit of ``formula`` to ``data`` (made in this session): reused, not
        refitted. ``priors`` is then ignored in favour of that fit's own.
    missing : {"error", "drop", "model"}
        Missing values, handled alike in all three models (see :class:`multilevel.Model`).
    **fit_kwargs
        Passed to ``Model.fit`` (``chains``, ``warmup``, ``draws``, ``seed``, ``progress``...).

    Returns
    -------
    PoolingComparison
        ``.table``: a row per group level and varying coefficient with columns
        ``group``, ``term``, ``n`` (rows in the group), ``no_pooling``,
        ``partial_pooling``, ``complete_pooling`` (posterior means of the group's
        coefficient on one scale: for partial pooling the population coefficient plus
        the group's deviation, per draw; for complete pooling the population coefficient,
        the same for every group), each with ``_q5`` and ``_q95`` columns (90% interval),
        and ``shrinkage = (no_pooling - partial_pooling) / (no_pooling - population)``
        with ``population`` the posterior mean of the partial-pooling fit's population
        coefficient: the fraction of the way from the group's own estimate to the
        population mean that partial pooling moved it (0: not at all, 1: all the way).
        It is NaN where ``no_pooling == population`` exactly (nothing to shrink).
        ``.fits``: ``{"complete": Fit, "none": Fit, "partial": Fit}``.
        ``.loo``: ``elpd``, ``se``, ``p_loo`` and ``pareto_k_bad`` (observations with
        Pareto k >= 0.7, where the PSIS-LOO estimate is unreliable) per variant, from each
        fit's ``fit.loo()``.
        ``.plot_shrinkage(path)`` draws the estimates.

    Raises
    ------
    FormulaError
        If the formula has no group term, several, or a nested, interaction or crossed
        grouping; or a categorical covariate varies.

    Examples
    --------
    >>> import multilevel as ml
    >>> radon = ml.datasets.load("radon")
    >>> cmp = ml.compare_pooling("log_radon ~ floor + (1 | county)", radon,
    ...                          chains=4, draws=1000, seed=1)  # doctest: +SKIP
    >>> cmp.loo["p_loo"]  # doctest: +SKIP
    variant
    complete     3.8
    none        86.4
    partial     49.4
    """
    if FAMILIES.get(family) is not None and FAMILIES[family].category_logits:
        raise MultilevelError(
            f"compare_pooling compares one linear predictor's group effects, and a {family} "
            "model has one per category but the first (its mean's formula is `~ 0`): fit "
            "the variants yourself and compare them with ml.compare."
        )
    plan = _plan(formula)
    if partial is not None:
        model = _model_of(partial, "compare_pooling(partial=...)")
        _check_same(plan, model, data, family, link)
    else:
        model = Model(formula, data, family=family, link=link, priors=priors, missing=missing)
    _check_coefs(plan, model)
    family, link = model.spec.family, model.spec.link
    absorbed = set(plan.coefs)
    models = {
        "complete": Model(
            plan.formulas["complete"],
            data,
            family=family,
            link=link,
            priors=_carried_priors(model, set()),
            missing=missing,
        ),
        "none": Model(
            plan.formulas["none"],
            data,
            family=family,
            link=link,
            priors=_carried_priors(model, absorbed),
            missing=missing,
        ),
    }
    fits = {name: m.fit(**fit_kwargs) for name, m in models.items()}
    fits["partial"] = partial if partial is not None else model.fit(**fit_kwargs)
    fits = {k: fits[k] for k in VARIANTS}
    table = _table(plan, fits)
    loo = pd.DataFrame.from_dict({k: _loo_row(f) for k, f in fits.items()}, orient="index")
    loo.index.name = "variant"
    loo = tables.table(loo, precision=dict.fromkeys(["elpd", "se", "p_loo"], 1))
    return PoolingComparison(plan.formulas, plan.group, plan.coefs, table, fits, loo)


def _check_same(plan: _Plan, model: Model, data: pd.DataFrame, family: str, link) -> None:
    spec = model.spec
    same = (
        parse_formula(spec.formula).groups == parse_formula(plan.formulas["partial"]).groups
        and parse_formula(spec.formula).fixed == parse_formula(plan.formulas["partial"]).fixed
        and spec.family == family
        and (link is None or spec.link == link)
        and len(model.data) == len(data)
    )
    if not same:
        raise MultilevelError(
            f"The partial-pooling fit given is of `{spec.formula}` ({spec.family}, "
            f"{len(model.data)} rows), not of `{plan.formulas['partial']}` ({family}, "
            f"{len(data)} rows): pass the fit of this formula to this data."
        )


def _table(plan: _Plan, fits: dict[str, Fit]) -> pd.DataFrame:
    model = fits["partial"].model
    block = model.design.blocks[0]
    levels = block.levels
    sizes = np.bincount(block.codes, minlength=len(levels))
    posts = {k: f.idata.posterior for k, f in fits.items()}
    none_vars = set(posts["none"].data_vars)

    def flat(values) -> np.ndarray:  # (chain, draw, ...) -> (samples, ...)
        values = np.asarray(values, dtype=float)
        return values.reshape(-1, *values.shape[2:])

    def population(kind: str, coef: str) -> np.ndarray:
        post = posts[kind]
        return flat(post[coef].values) if coef in post.data_vars else np.zeros(1)

    frames = []
    for coef in plan.coefs:
        names = [_none_column(plan.group, level, coef) for level in levels]
        missing = [n for n in names if n not in none_vars]
        if missing:
            raise MultilevelError(
                f"Internal: the no-pooling fit has no column {missing[0]!r}; its columns "
                f"are {', '.join(list(posts['none'].data_vars)[:5])}, ..."
            )
        draws = {
            "none": np.stack([flat(posts["none"][n].values) for n in names], axis=-1),
            "partial": population("partial", coef)[:, None]
            + flat(posts["partial"][f"{coef}|{plan.group}"].values),
            "complete": np.repeat(population("complete", coef)[:, None], len(levels), axis=1),
        }
        frame = {"group": list(levels), "term": coef, "n": sizes}
        for kind in ("none", "partial", "complete"):
            col = _COLUMNS[kind]
            frame[col] = draws[kind].mean(axis=0)
            frame[f"{col}_q5"] = np.quantile(draws[kind], 0.05, axis=0)
            frame[f"{col}_q95"] = np.quantile(draws[kind], 0.95, axis=0)
        pop = float(population("partial", coef).mean())
        distance = frame["no_pooling"] - pop
        moved = frame["no_pooling"] - frame["partial_pooling"]
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["shrinkage"] = np.where(distance != 0, moved / distance, np.nan)
        frames.append(pd.DataFrame(frame))
    table = pd.concat(frames, ignore_index=True)
    order = {c: i for i, c in enumerate(plan.coefs)}
    table["_level"] = table["group"].map({lvl: i for i, lvl in enumerate(levels)})
    table["_term"] = table["term"].map(order)
    table = table.sort_values(["_level", "_term"], kind="stable").drop(columns=["_level", "_term"])
    # One number of decimals for every estimate, from the typical partial-pooling sd (the
    # 90% interval's width / 3.29), so each shows what its uncertainty supports.
    width = table["partial_pooling_q95"] - table["partial_pooling_q5"]
    decimals = tables.decimals_for(float(np.nanmedian(width)) / 3.29)
    estimates = [c for c in table.columns if c.startswith(tuple(_COLUMNS.values()))]
    return tables.table(
        table.reset_index(drop=True),
        precision={**dict.fromkeys(estimates, decimals), "shrinkage": 2},
        caption=f"Per level of {plan.group}: posterior means, each with its central 90% "
        "interval [_q5, _q95]",
    )
