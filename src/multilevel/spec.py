"""ModelSpec: a plain, immutable, printable description of a model.

It names every parameter (see DESIGN.md for the conventions) and holds the resolved prior
of each. It holds no data arrays, so it is small, serialisable and safe to share.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass, replace

from multilevel import priors as P
from multilevel.errors import FitFileError, FormulaError, PriorError
from multilevel.families import FAMILIES, dpar_link
from multilevel.formula import parse_dpar, parse_formula
from multilevel.formula.distributional import MU
from multilevel.formula.expressions import required_columns


@dataclass(frozen=True)
class TermSpec:
    """One varying-effects term as a user sees it."""

    group: str
    factors: tuple[str, ...]
    expr: str
    coefs: tuple[str, ...]
    correlated: bool
    levels: tuple[str, ...]
    # effects sampled as themselves (centred) rather than as scaled standard normals
    centered: bool = False
    # centred: how far, per coefficient (``centring.centring_weights``; 1 fully, 0 not at
    # all); () centres every coefficient fully
    centring_weights: tuple[float, ...] = ()
    # centred on the coefficients of this coarser term, in whose groups its groups nest
    nested_in: str | None = None
    # centred: population columns constant within each group, on whose coefficients its
    # varying intercepts are centred too (``centring.level_predictors``)
    level_predictors: tuple[str, ...] = ()
    # the distributional parameter whose linear predictor it enters (``mu``: the mean)
    dpar: str = MU
    # brms' ID (``|p|``), set only when terms of the same grouping factor in other
    # parameters' formulas share it: their effects are then correlated with these, and
    # the correlations are the ``LinkedTerms``' (see ``link_terms``)
    id: str = ""

    @property
    def sd_names(self) -> tuple[str, ...]:
        return sd_names(self.coefs, self.group)

    @property
    def effect_names(self) -> tuple[str, ...]:
        return effect_names(self.coefs, self.group)

    @property
    def has_correlation(self) -> bool:
        """Whether the term has an LKJ correlation matrix of its own (a linked term's
        correlations are its ``LinkedTerms``')."""
        return self.correlated and len(self.coefs) > 1 and not self.id

    @property
    def cor_pairs(self) -> tuple[tuple[int, int], ...]:
        return correlation_pairs(len(self.coefs))

    @property
    def cor_names(self) -> tuple[str, ...]:
        if not self.has_correlation:
            return ()
        return correlation_names(self.coefs, self.group)

    @property
    def cor_key(self) -> str:
        """Prior key of this term's LKJ: its one correlation name, or ``cor(|group)``."""
        return self.cor_names[0] if len(self.cor_names) == 1 else f"cor(|{self.group})"


def sd_names(coefs: tuple[str, ...], group: str) -> tuple[str, ...]:
    """``sd(c|g)`` for each covariate ``c`` of a term (or linked set) of group ``g``."""
    return tuple(f"sd({c}|{group})" for c in coefs)


def effect_names(coefs: tuple[str, ...], group: str) -> tuple[str, ...]:
    """``c|g``: the group effects of each covariate ``c`` over the levels of ``g``."""
    return tuple(f"{c}|{group}" for c in coefs)


def correlation_pairs(q: int) -> tuple[tuple[int, int], ...]:
    """(i, j), i < j: the entries of a q x q correlation matrix, row by row."""
    return tuple((i, j) for i in range(q) for j in range(i + 1, q))


def correlation_names(coefs: tuple[str, ...], group: str) -> tuple[str, ...]:
    """``cor(a,b|g)`` for each pair of ``correlation_pairs``."""
    return tuple(f"cor({coefs[i]},{coefs[j]}|{group})" for i, j in correlation_pairs(len(coefs)))


@dataclass(frozen=True)
class LinkedTerms:
    """Group terms of one grouping factor that share a brms ID (``(1 |p| g)`` in the
    formulas of several parameters or categories): their effects are drawn from one
    multivariate normal, with one LKJ correlation matrix over all their covariates."""

    group: str
    id: str
    terms: tuple[int, ...]  # indices into ``ModelSpec.terms``, in order
    coefs: tuple[str, ...]  # every term's covariates, as their effects are named

    @property
    def sd_names(self) -> tuple[str, ...]:
        """Every linked term's sds, in order (each term keeps its own)."""
        return sd_names(self.coefs, self.group)

    @property
    def effect_names(self) -> tuple[str, ...]:
        """Every linked term's group effects, in order: drawn jointly, given all or none."""
        return effect_names(self.coefs, self.group)

    @property
    def cor_pairs(self) -> tuple[tuple[int, int], ...]:
        return correlation_pairs(len(self.coefs))

    @property
    def cor_names(self) -> tuple[str, ...]:
        return correlation_names(self.coefs, self.group)

    @property
    def cor_key(self) -> str:
        """Prior key of the LKJ: its one correlation name, or ``cor(|p|group)``."""
        return self.cor_names[0] if len(self.cor_names) == 1 else f"cor(|{self.id}|{self.group})"


def linked_sets(terms: tuple[TermSpec, ...]) -> tuple[LinkedTerms, ...]:
    """The sets of ``terms`` (after ``link_terms``) that share a brms ID."""
    sets: dict[tuple[str, str], list[int]] = {}
    for k, t in enumerate(terms):
        if t.id:
            sets.setdefault((t.group, t.id), []).append(k)
    return tuple(
        LinkedTerms(group, term_id, tuple(ks), tuple(c for k in ks for c in terms[k].coefs))
        for (group, term_id), ks in sets.items()
    )


def shared_ids(written) -> set[tuple[str, str]]:
    """The (group, ID) pairs that link terms: brms IDs (``|p|``) written for one grouping
    factor in more than one term. ``written``: (group, ID) of each term, "" for none."""
    counts: dict[tuple[str, str], int] = {}
    for group, term_id in written:
        if term_id:
            counts[(group, term_id)] = counts.get((group, term_id), 0) + 1
    return {key for key, count in counts.items() if count > 1}


def link_terms(terms: tuple[TermSpec, ...]) -> tuple[TermSpec, ...]:
    """The terms with each brms ID kept where it links terms (``shared_ids``) and cleared
    elsewhere (``(1 |p| g)`` in one formula alone is ``(1 | g)``). Refuses an ID shared
    within one formula, by terms of one factor with different levels, or with ``||``."""
    shared = shared_ids((t.group, t.id) for t in terms)
    for group, term_id in shared:
        members = [t for t in terms if (t.group, t.id) == (group, term_id)]
        dpars = [t.dpar for t in members]
        if len(set(dpars)) < len(dpars):
            twice = next(d for d in dpars if dpars.count(d) > 1)
            raise FormulaError(
                f"The ID `|{term_id}|` appears twice for {group!r} in the formula of "
                f"{twice}: within one formula, write the covariates in one term, "
                f"`(1 + x |{term_id}| {group})`."
            )
        if len({t.levels for t in members}) > 1:
            raise FormulaError(
                f"The terms of {group!r} with the ID `|{term_id}|` see different levels of "
                f"{group!r}; linked effects need the same groups in every formula."
            )
        if not all(t.correlated for t in members):
            raise FormulaError(
                f"The terms of {group!r} with the ID `|{term_id}|` mix `|` and `||`; "
                "linked effects are correlated: write each with `|`."
            )
    return tuple(t if (t.group, t.id) in shared else replace(t, id="") for t in terms)


@dataclass(frozen=True)
class ImputedSpec:
    """A predictor with missing values modelled as ``x ~ Normal(Intercept + u[group],
    sigma)`` and its missing values sampled (``missing="model"``)."""

    column: str
    group: str | None  # grouping factor of the varying intercept, if any
    block: int | None  # index of that factor's term in ModelSpec.terms
    rows: tuple  # data index labels of the rows whose value is missing
    positions: tuple[int, ...]  # those rows' positions among the fitted rows
    x_columns: tuple[int, ...]  # population-level design columns that are the predictor
    z_columns: tuple[tuple[int, int], ...]  # (term, covariate) columns that are it
    priors: tuple[tuple[str, P.Prior], ...]  # Intercept, (sd,) sigma of its model
    centered: bool = False  # varying intercepts hierarchically centred (data-rich groups)

    @staticmethod
    def parameter_names(column: str, group: str | None) -> tuple[str, ...]:
        sd = () if group is None else (f"sd(Intercept|{group})[mi({column})]",)
        return (f"Intercept[mi({column})]", *sd, f"sigma[mi({column})]")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.priors)

    @property
    def values_name(self) -> str:
        """The posterior variable of the imputed values, e.g. ``mi(uranium)``."""
        return f"mi({self.column})"

    @property
    def effect_name(self) -> str:
        """Its model's varying intercepts, e.g. ``Intercept|county[mi(uranium)]``."""
        return f"Intercept|{self.group}[mi({self.column})]"

    @property
    def dim(self) -> str:
        return f"mi({self.column})_row"


@dataclass(frozen=True)
class DparSpec:
    """A family parameter with a formula of its own (``ml.bf(..., sigma="~ x")``) or a
    fixed value (``ml.bf(..., nu=4)``).

    A predicted parameter's population coefficients are named as brms names them,
    ``sigma_Intercept``, ``sigma_x`` (listed in ``columns``, which are also among
    ``ModelSpec.columns``), and its group terms are among ``ModelSpec.terms`` with
    ``dpar`` set (``sd(sigma_Intercept|g)``, ``sigma_Intercept|g``)."""

    name: str
    link: str
    formula: str = ""  # the right-hand side, "~ x + (1 | g)"; "" for a fixed value
    columns: tuple[str, ...] = ()
    value: float | None = None

    @property
    def predicted(self) -> bool:
        return self.value is None

    @property
    def text(self) -> str:
        """As ``bf()`` reads it: ``sigma ~ x + (1 | g)`` or ``nu = 4``."""
        return f"{self.name} {self.formula}" if self.predicted else f"{self.name} = {self.value:g}"


def threshold_names(levels: tuple[str, ...]) -> tuple[str, ...]:
    """brms' names of the K - 1 thresholds between K ordered categories."""
    return tuple(f"Intercept[{k}]" for k in range(1, len(levels)))


def category_specific_names(columns: tuple[str, ...], n_thresholds: int) -> tuple[str, ...]:
    """Names of brms' category-specific coefficients (``cs()``): ``z[1]`` .. ``z[K-1]``
    for each design column ``z`` in turn (brms: ``bcs_z[k]``)."""
    return tuple(f"{c}[{k}]" for c in columns for k in range(1, n_thresholds + 1))


@dataclass(frozen=True)
class ModelSpec:
    """Family, link, terms and resolved priors of a model."""

    formula: str
    family: str
    link: str
    response: str
    trials: str | None
    columns: tuple[str, ...]
    terms: tuple[TermSpec, ...]
    aux: tuple[str, ...]
    priors: tuple[tuple[str, P.Prior], ...]
    prior_sources: tuple[tuple[str, str], ...]
    centered: bool = False
    imputed: tuple[ImputedSpec, ...] = ()  # predictors with missing values, modelled
    # column of known standard errors (`y | se(s) ~ ...`): each row's sd is known, and
    # the model has no sigma
    se: str | None = None
    dpars: tuple[DparSpec, ...] = ()  # family parameters with a formula or a fixed value
    se_sigma: bool = False  # `se(s, sigma = TRUE)`: a residual sigma beside the known sds
    # (failure, success) levels of a bernoulli response stored as two-level text; an
    # ordinal or categorical response's categories, in order (categorical: the first is
    # the reference); a multinomial's count columns, the first the reference
    response_levels: tuple[str, ...] | None = None
    # design columns of brms' category-specific effects `cs(z)` (sratio, cratio, acat):
    # each has one coefficient per threshold, ``cs_names``
    cs_columns: tuple[str, ...] = ()

    @property
    def cs_names(self) -> tuple[str, ...]:
        """The category-specific coefficients, ``z[1]`` .. ``z[K-1]`` for each column of
        ``cs_columns`` in turn (brms' ``bcs_z[k]``): column j's coefficient of threshold k
        is entry ``j * (K - 1) + k - 1``."""
        return category_specific_names(self.cs_columns, len(self.threshold_names))

    @property
    def predicted_dpars(self) -> tuple[DparSpec, ...]:
        return tuple(d for d in self.dpars if d.predicted)

    @property
    def fixed_dpars(self) -> dict[str, float]:
        """Family parameters fixed to a value (``ml.bf(..., nu=4)``)."""
        return {d.name: d.value for d in self.dpars if not d.predicted}

    @property
    def mu_columns(self) -> tuple[str, ...]:
        """Population coefficients of the mean's linear predictor."""
        others = {c for d in self.dpars for c in d.columns}
        return tuple(c for c in self.columns if c not in others)

    def terms_of(self, dpar: str) -> tuple[int, ...]:
        """Indices into ``terms`` of the group terms of ``dpar``'s linear predictor."""
        return tuple(k for k, t in enumerate(self.terms) if t.dpar == dpar)

    @property
    def full_formula(self) -> str:
        """The formula with every parameter's, as ``bf()`` takes them."""
        parts = [self.formula]
        for d in self.dpars:
            parts.append(d.text)
        return ", ".join(parts)

    @property
    def predictor_columns(self) -> set[str]:
        """The data columns that the right-hand sides read: population and ``cs()``
        expressions, group covariates and grouping factors, offsets, of every formula
        (the mean's, each family parameter's or category's)."""
        parsed = parse_formula(self.formula)
        formulas = [
            parsed,
            *(parse_dpar(d.name, d.formula, self.response) for d in self.predicted_dpars),
        ]
        out: set[str] = set()
        for each in formulas:
            out |= {f for t in each.groups for f in t.factors}
            for expr in (*each.expressions, *each.offsets):
                out |= required_columns(expr)
        if parsed.rate is not None:  # the exposure enters the mean as log(rate)
            out.add(parsed.rate)
        return out

    @property
    def prior_of(self) -> dict[str, P.Prior]:
        return dict(self.priors)

    @property
    def sd_names(self) -> tuple[str, ...]:
        return tuple(n for t in self.terms for n in t.sd_names)

    @property
    def linked_terms(self) -> tuple[LinkedTerms, ...]:
        """Terms linked by a brms ID (``|p|``), with their shared correlations."""
        return linked_sets(self.terms)

    @property
    def cor_names(self) -> tuple[str, ...]:
        """Every correlation: each term's own, then each linked set's."""
        own = (n for t in self.terms for n in t.cor_names)
        return (*own, *(n for linked in self.linked_terms for n in linked.cor_names))

    @property
    def levels_text(self) -> str:
        """How the response's levels are read, for the model's and the fit's printouts:
        the success level of a bernoulli response stored as text, the ordered or
        unordered categories; "" otherwise."""
        levels = self.response_levels
        if not levels:
            return ""
        if self.family == "bernoulli":
            return f", success = {self.response!r} is {levels[1]!r} (against {levels[0]!r})"
        if FAMILIES[self.family].multivariate_response:
            return (
                f", counts of the categories {', '.join(map(repr, levels))} (its columns; "
                "the first is the reference)"
            )
        if FAMILIES[self.family].categorical:
            return f", categories {', '.join(map(repr, levels))} (the first is the reference)"
        return f", categories {' < '.join(map(repr, levels))}"

    @property
    def threshold_names(self) -> tuple[str, ...]:
        """An ordinal model's thresholds, as brms names them: ``Intercept[1]`` ..
        ``Intercept[K-1]`` between its K categories (``response_levels``); else ()."""
        if self.response_levels is None or not FAMILIES[self.family].ordinal:
            return ()
        return threshold_names(self.response_levels)

    @property
    def hyper_names(self) -> tuple[str, ...]:
        """Thresholds (ordinal), population effects, category-specific effects, group sd
        and cor, then auxiliary parameters, in lme4 order."""
        return (
            *self.threshold_names, *self.columns, *self.cs_names, *self.sd_names,
            *self.cor_names, *self.aux,
        )  # fmt: skip

    @property
    def imputation_names(self) -> tuple[str, ...]:
        """Parameters of the models of imputed predictors (``missing="model"``)."""
        return tuple(name for imp in self.imputed for name in imp.names)

    def describe(self) -> str:
        """Every parameter with its prior and where the prior came from."""
        lines = [
            f"Formula: {self.formula}",
            *(
                f"         {d.text} " + (f"(link: {d.link})" if d.predicted else "(fixed)")
                for d in self.dpars
            ),
            f"Family:  {self.family} (link: {self.link}){self.levels_text}"
            + (
                f", known standard errors `{self.se}`"
                + (" plus a residual sigma" if self.se_sigma else " (no sigma)")
                if self.se
                else ""
            ),
            "Parameterisation of group effects: " + _parameterisation(self.terms),
            "",
            f"{'parameter':<36} {'prior':<34} source",
        ]
        sources = dict(self.prior_sources)
        for name, prior in self.priors:
            lines.append(f"{name:<36} {str(prior):<34} {sources[name]}")
        for term in self.terms:
            lines.append(
                f"{', '.join(term.effect_names):<36} "
                f"{'multivariate normal' if term.has_correlation or term.id else 'normal':<34} "
                f"{len(term.levels)} levels of {term.group}"
                + (f", correlated with the other terms of ID |{term.id}|" if term.id else "")
            )
        for imp in self.imputed:
            lines.append(f"{imp.values_name} ({len(imp.rows)} missing values of {imp.column}):")
            for name, prior in imp.priors:
                lines.append(f"  {name:<34} {str(prior):<34} {DEFAULT_IMPUTATION}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """Lossless JSON (priors with full-precision arguments)."""
        data = asdict(self)
        data["priors"] = [[name, _prior_to_dict(p)] for name, p in self.priors]
        for imp, out in zip(self.imputed, data["imputed"]):
            out["priors"] = [[name, _prior_to_dict(p)] for name, p in imp.priors]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Read ``to_json``'s text back, trusting none of it.

        The text may come from a file someone edited, so every field is checked against
        its declared type (no unknown or missing keys; lists of the right items), prior
        names against ``priors.PRIORS``, the family and link against ``FAMILIES``, the
        formula by ``parse_formula`` (which refuses any expression that is not data
        before anything is evaluated) and the terms, response and indices against that
        formula and each other. Anything wrong raises ``FitFileError`` saying what.
        """
        if not isinstance(text, str):
            raise FitFileError(f"the model spec must be JSON text, got {type(text).__name__}.")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FitFileError(f"the model spec is not valid JSON ({exc}).") from None
        formula = data.get("formula") if isinstance(data, dict) else None
        if isinstance(formula, str):
            # the formula first: a crafted one is refused before any other field is read
            try:
                parsed = parse_formula(formula)
            except FormulaError as exc:
                raise FitFileError(f"its formula is refused: {_one_line(exc)}") from None
            if "se" not in data:  # written when `se` was read from the formula
                data["se"] = parsed.se
            data.setdefault("se_sigma", parsed.se_sigma)
        spec = _decode(data, cls, "spec")
        _check_consistent(spec)
        return spec


DEFAULT_IMPUTATION = "default (scaled to the observed values)"


def _centred_on(term: TermSpec) -> str:
    """`` (on school)`` for a term centred on a parent's effects, `` (on Gender, Anger)``
    for one centred on group-level predictors, `` (x 0.57 of the way)`` for slopes
    centred partially (``centring_weights``); empty otherwise."""
    on = ([term.nested_in] if term.nested_in else []) + list(term.level_predictors)
    notes = [f"on {', '.join(on)}"] if on else []
    notes += [f"{c} {w:.2f} of the way" for c, w in zip(term.coefs, term.centring_weights) if w < 1]
    return f" ({'; '.join(notes)})" if notes else ""


def _parameterisation(terms: tuple[TermSpec, ...]) -> str:
    """``centred``, ``non-centred`` or, when terms differ or are centred on something,
    which is which."""
    centred = [t.group + _centred_on(t) for t in terms if t.centered]
    if not centred:
        return "non-centred"
    if len(centred) == len(terms) and not any(map(_centred_on, terms)):
        return "centred"
    others = [t.group for t in terms if not t.centered]
    return f"centred for {', '.join(centred)}" + (
        f"; non-centred for {', '.join(others)}" if others else ""
    )


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _decode(value, hint, where: str):
    """``value`` (parsed JSON) as the type ``hint`` of a spec field, or ``FitFileError``.

    Driven by the dataclasses' own annotations, so a field added to a spec class is
    checked without a second list to keep in step."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(value, inner, where)
    if hint is tuple or origin is tuple:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        if hint is tuple:  # data index labels (ImputedSpec.rows): whole numbers or text
            for i, v in enumerate(value):
                if not isinstance(v, int | str) or isinstance(v, bool):
                    raise _wrong(f"{where}[{i}]", "a row label (a whole number or text)", v)
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(v, args[0]) for v in value]
        elif len(value) != len(args):
            raise _wrong(where, f"a list of {len(args)} items", value)
        else:
            items = list(zip(value, args))
        return tuple(_decode(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(items))
    if hint is str:
        if not isinstance(value, str):
            raise _wrong(where, "text", value)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _wrong(where, "true or false", value)
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _wrong(where, "a whole number >= 0", value)
        return value
    if hint is float:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise _wrong(where, "a finite number", value)
        return float(value)
    if isinstance(hint, type) and issubclass(hint, P.Prior):
        return _prior_from_dict(value, where)
    if is_dataclass(hint):
        return _decode_dataclass(value, hint, where)
    raise FitFileError(f"the model spec field `{where}` has a type this version cannot read.")


def _decode_dataclass(value, cls, where: str):
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    declared = {f.name: f for f in fields(cls)}
    unknown = sorted(set(value) - set(declared))
    if unknown:
        raise FitFileError(
            f"the model spec has unknown keys in `{where}`: {', '.join(map(repr, unknown))}."
        )
    hints = typing.get_type_hints(cls)
    out = {}
    for name, f in declared.items():
        if name not in value:
            if f.default is MISSING and f.default_factory is MISSING:
                raise FitFileError(f"the model spec lacks the key `{where}.{name}`.")
            continue  # written before the field existed: its default holds
        out[name] = _decode(value[name], hints[name], f"{where}.{name}")
    try:
        return cls(**out)
    except (PriorError, FormulaError) as exc:
        raise FitFileError(f"the model spec's `{where}` is refused: {_one_line(exc)}") from None


def _wrong(where: str, expected: str, value) -> FitFileError:
    shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
    return FitFileError(f"the model spec's `{where}` must be {expected}, got {shown}.")


def _check_consistent(spec: ModelSpec) -> None:
    """What the types alone do not say: names that exist, indices in range, terms that
    are the formula's own."""

    def refuse(what: str) -> FitFileError:
        return FitFileError(f"the model spec does not hold together: {what}.")

    family = FAMILIES.get(spec.family)
    if family is None:
        raise refuse(f"unknown family {spec.family!r} (known: {', '.join(FAMILIES)})")
    if spec.link not in family.links:
        raise refuse(f"the {spec.family} family takes no {spec.link!r} link")
    if not set(spec.aux) <= set(family.aux):
        raise refuse(f"parameters {spec.aux} are not the {spec.family} family's {family.aux}")
    parsed = parse_formula(spec.formula)
    response = parsed.count_response if family.multivariate_response else parsed.response
    if (spec.response, spec.trials, spec.se, spec.se_sigma) != (
        response, parsed.trials, parsed.se, parsed.se_sigma
    ):  # fmt: skip
        raise refuse(f"response {spec.response!r} is not the formula's {response!r}")
    if family.multivariate_response and spec.response_levels != parsed.response_columns:
        raise refuse(
            f"the categories {spec.response_levels} are not the formula's count columns "
            f"{parsed.response_columns}"
        )
    formulas = {MU: parsed}
    for d in spec.dpars:
        if not family.takes_dpar(d.name) or d.name in spec.aux or d.name in formulas:
            raise refuse(f"{d.name!r} is not a free parameter of the {spec.family} family")
        if d.predicted:
            if d.link != dpar_link(d.name) or any(
                not c.startswith(f"{d.name}_") or c not in spec.columns for c in d.columns
            ):
                raise refuse(f"the formula of {d.name} has other columns or link")
            try:
                formulas[d.name] = parse_dpar(d.name, d.formula, spec.response)
            except FormulaError as exc:
                raise refuse(_one_line(exc)) from None
    if bool(spec.cs_columns) != bool(parsed.category_specific) or (
        spec.cs_columns and not (family.category_specific and spec.threshold_names)
    ):
        raise refuse(
            f"its category-specific columns {spec.cs_columns} do not match the formula's "
            f"cs() terms {parsed.category_specific} of a {spec.family} model"
        )
    written_ids = {}  # term index -> the ID its formula writes
    for dpar, formula in formulas.items():
        own = [k for k, t in enumerate(spec.terms) if t.dpar == dpar]
        terms = tuple(
            (spec.terms[k].factors, spec.terms[k].expr, spec.terms[k].correlated) for k in own
        )
        if terms != tuple((g.factors, g.expr, g.correlated) for g in formula.groups):
            raise refuse(f"its group terms are not the formula's ({dpar})")
        written_ids.update({k: g.id for k, g in zip(own, formula.groups)})
    if any(t.dpar not in formulas for t in spec.terms):
        raise refuse("a group term belongs to no formula")
    try:
        linked = link_terms(tuple(replace(t, id=written_ids[k]) for k, t in enumerate(spec.terms)))
    except FormulaError as exc:
        raise refuse(_one_line(exc)) from None
    if tuple(t.id for t in linked) != tuple(t.id for t in spec.terms):
        raise refuse("its terms' IDs (`|p|`) are not the formulas'")
    names = [*spec.hyper_names, *(n for t in spec.terms for n in t.effect_names)]
    if len(set(names)) != len(names):
        raise refuse("a parameter name appears twice")
    for t in spec.terms:
        if not t.coefs or len(set(t.levels)) != len(t.levels):
            raise refuse(f"the term of {t.group} has no covariates or repeated levels")
        weights = t.centring_weights
        if weights and (
            not t.centered or len(weights) != len(t.coefs) or not all(0 < w <= 1 for w in weights)
        ):
            raise refuse(
                f"the term of {t.group} has centring weights {weights}: one per covariate, "
                "each in (0, 1], and only for a centred term"
            )
    for imp in spec.imputed:
        if any(c >= len(spec.columns) for c in imp.x_columns) or any(
            k >= len(spec.terms) or j >= len(spec.terms[k].coefs) for k, j in imp.z_columns
        ):
            raise refuse(f"the imputed predictor {imp.column!r} points past the design")
        if (imp.block is None) != (imp.group is None) or (
            imp.block is not None
            and (imp.block >= len(spec.terms) or spec.terms[imp.block].group != imp.group)
        ):
            raise refuse(f"the imputed predictor {imp.column!r} names another group term")
        if len(imp.rows) != len(imp.positions) or len(imp.priors) != len(
            ImputedSpec.parameter_names(imp.column, imp.group)
        ):
            raise refuse(f"the imputed predictor {imp.column!r} has inconsistent parts")


def _prior_to_dict(prior: P.Prior) -> dict:
    return {"type": type(prior).__name__, **{f.name: getattr(prior, f.name) for f in fields(prior)}}


def _prior_from_dict(data, where: str = "prior") -> P.Prior:
    """A prior from ``{"type": "Normal", "mu": 0, "sigma": 1}``, checked: a known prior
    class, its own parameter names only, finite numbers."""
    if not isinstance(data, dict):
        raise _wrong(where, "an object like {'type': 'Normal', 'mu': 0, 'sigma': 1}", data)
    args = dict(data)
    kind = args.pop("type", None)
    known = {n: c for n, c in P.PRIORS.items() if isinstance(c, type) and issubclass(c, P.Prior)}
    if kind not in known:
        raise FitFileError(
            f"the model spec's `{where}` names the prior {kind!r}; known: {', '.join(known)}."
        )
    allowed = {f.name for f in fields(known[kind])}
    for name, value in args.items():
        if name not in allowed:
            raise FitFileError(f"the model spec's `{where}`: {kind} has no parameter {name!r}.")
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise _wrong(f"{where}.{name}", "a finite number", value)
    try:
        return known[kind](**args)
    except PriorError as exc:
        raise FitFileError(f"the model spec's `{where}` is refused: {_one_line(exc)}") from None
