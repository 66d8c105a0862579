"""ModelSpec: a plain, immutable, printable description of a model.

It names every parameter (see DESIGN.md for the conventions) and holds the resolved prior
of each. It holds no data arrays, so it is small, serialisable and safe to share.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from multilevel import priors as P
from multilevel.formula import parse_formula


@dataclass(frozen=True)
class TermSpec:
    """One varying-effects term as a user sees it."""

    group: str
    factors: tuple[str, ...]
    expr: str
    coefs: tuple[str, ...]
    correlated: bool
    levels: tuple[str, ...]

    @property
    def sd_names(self) -> tuple[str, ...]:
        return tuple(f"sd({c}|{self.group})" for c in self.coefs)

    @property
    def effect_names(self) -> tuple[str, ...]:
        return tuple(f"{c}|{self.group}" for c in self.coefs)

    @property
    def has_correlation(self) -> bool:
        return self.correlated and len(self.coefs) > 1

    @property
    def cor_pairs(self) -> tuple[tuple[int, int], ...]:
        q = len(self.coefs)
        return tuple((i, j) for i in range(q) for j in range(i + 1, q))

    @property
    def cor_names(self) -> tuple[str, ...]:
        if not self.has_correlation:
            return ()
        return tuple(
            f"cor({self.coefs[i]},{self.coefs[j]}|{self.group})" for i, j in self.cor_pairs
        )

    @property
    def cor_key(self) -> str:
        """Prior key of this term's LKJ: its one correlation name, or ``cor(|group)``."""
        return self.cor_names[0] if len(self.cor_names) == 1 else f"cor(|{self.group})"


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

    def __post_init__(self):
        # `y | se(s) ~ ...`: each row's sd is known, and the model has no sigma (Model
        # passes no family parameter then).
        object.__setattr__(self, "_se", parse_formula(self.formula).se)

    @property
    def se(self) -> str | None:
        """Column of known standard errors (``y | se(s) ~ ...``), or None."""
        return self._se

    @property
    def prior_of(self) -> dict[str, P.Prior]:
        return dict(self.priors)

    @property
    def sd_names(self) -> tuple[str, ...]:
        return tuple(n for t in self.terms for n in t.sd_names)

    @property
    def cor_names(self) -> tuple[str, ...]:
        return tuple(n for t in self.terms for n in t.cor_names)

    @property
    def hyper_names(self) -> tuple[str, ...]:
        """Population effects, group sd and cor, then auxiliary parameters, in lme4 order."""
        return (*self.columns, *self.sd_names, *self.cor_names, *self.aux)

    @property
    def imputation_names(self) -> tuple[str, ...]:
        """Parameters of the models of imputed predictors (``missing="model"``)."""
        return tuple(name for imp in self.imputed for name in imp.names)

    def describe(self) -> str:
        """Every parameter with its prior and where the prior came from."""
        lines = [
            f"Formula: {self.formula}",
            f"Family:  {self.family} (link: {self.link})"
            + (f", known standard errors `{self.se}` (no sigma)" if self.se else ""),
            "Parameterisation of group effects: " + ("centred" if self.centered else "non-centred"),
            "",
            f"{'parameter':<36} {'prior':<34} source",
        ]
        sources = dict(self.prior_sources)
        for name, prior in self.priors:
            lines.append(f"{name:<36} {str(prior):<34} {sources[name]}")
        for term in self.terms:
            lines.append(
                f"{', '.join(term.effect_names):<36} {'multivariate normal' if term.has_correlation else 'normal':<34} "
                f"{len(term.levels)} levels of {term.group}"
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
        data = json.loads(text)
        data["terms"] = tuple(
            TermSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in t.items()})
            for t in data["terms"]
        )
        data["priors"] = tuple((name, _prior_from_dict(p)) for name, p in data["priors"])
        for key in ("columns", "aux"):
            data[key] = tuple(data[key])
        data["prior_sources"] = tuple(tuple(x) for x in data["prior_sources"])
        data["imputed"] = tuple(_imputed_from_dict(d) for d in data.get("imputed", ()))
        return cls(**data)


DEFAULT_IMPUTATION = "default (scaled to the observed values)"


def _imputed_from_dict(data: dict) -> ImputedSpec:
    data = dict(data)
    data["priors"] = tuple((name, _prior_from_dict(p)) for name, p in data["priors"])
    data["z_columns"] = tuple(tuple(z) for z in data["z_columns"])
    for key in ("rows", "positions", "x_columns"):
        data[key] = tuple(data[key])
    return ImputedSpec(**data)


def _prior_to_dict(prior: P.Prior) -> dict:
    return {"type": type(prior).__name__, **{f.name: getattr(prior, f.name) for f in fields(prior)}}


def _prior_from_dict(data: dict) -> P.Prior:
    args = dict(data)
    return P.PRIORS[args.pop("type")](**args)
