"""Prior distributions a user can set, each meaning what it says on the data's scale.

Every scalar prior here is a location-scale family: ``value = loc + scale * raw`` with
``raw`` drawn from a standard member of the family. The sampler works on ``raw`` (all
parameters then live on a unit scale, which NUTS adapts to quickly) and the model
reports ``value``. This is a change of variables, so the stated prior holds exactly.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import numpyro.distributions as dist

from multilevel.errors import PriorError

REAL = "real"
POSITIVE = "positive"
CORRELATION = "correlation"


@dataclass(frozen=True)
class Prior:
    """Base class. Subclasses declare ``support`` and how they standardise."""

    support: ClassVar[str]
    family: ClassVar[str]

    def loc_scale(self) -> tuple[float, float]:
        """Location and scale mapping the standard member onto this prior."""
        raise NotImplementedError

    def shape_params(self) -> dict[str, float]:
        """Parameters of the standard member (e.g. degrees of freedom)."""
        return {}

    def to_numpyro(self) -> dist.Distribution:
        """The prior as a NumPyro distribution on the data's scale."""
        loc, scale = self.loc_scale()
        base = standard_distribution(self.family, self.shape_params())
        if loc == 0.0 and scale == 1.0:
            return base
        return dist.TransformedDistribution(base, dist.transforms.AffineTransform(loc, scale))

    def __str__(self) -> str:
        args = ", ".join(_fmt(getattr(self, f.name)) for f in fields(self))
        return f"{type(self).__name__}({args})"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _finite(name: str, **values: float) -> None:
    """Each parameter a finite real number: an infinite or NaN one would be accepted by
    the sampler and end the fit in NaN warnings."""
    for key, value in values.items():
        number = None
        if not isinstance(value, str | bool | np.bool_):
            try:
                number = float(value)
            except (TypeError, ValueError):
                pass
        if number is None:
            raise PriorError(f"{name}: `{key}` must be a number, got {value!r}.")
        if not math.isfinite(number):
            hint = _FINITE_HINTS.get(key, "")
            raise PriorError(f"{name}: `{key}` must be a finite number, got {value!r}.{hint}")


_FINITE_HINTS = {
    "sigma": " A wide prior is a large finite scale, e.g. 100 (on the data's scale).",
    "rate": " A wide prior is a small positive rate, e.g. 0.01.",
    "df": " Infinite degrees of freedom are the normal distribution: use Normal or HalfNormal.",
}


def _positive(name: str, **values: float) -> None:
    _finite(name, **values)
    for key, value in values.items():
        if not float(value) > 0:
            raise PriorError(f"{name}: `{key}` must be positive, got {value!r}.")


@dataclass(frozen=True, repr=False)
class Normal(Prior):
    """Normal(mu, sigma) on a real-valued parameter."""

    mu: float = 0.0
    sigma: float = 1.0
    support: ClassVar[str] = REAL
    family: ClassVar[str] = "normal"

    def __post_init__(self):
        _finite("Normal", mu=self.mu)
        _positive("Normal", sigma=self.sigma)

    def loc_scale(self):
        return float(self.mu), float(self.sigma)


@dataclass(frozen=True, repr=False)
class StudentT(Prior):
    """Student-t(df, mu, sigma) on a real-valued parameter."""

    df: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0
    support: ClassVar[str] = REAL
    family: ClassVar[str] = "student_t"

    def __post_init__(self):
        _finite("StudentT", mu=self.mu)
        _positive("StudentT", df=self.df, sigma=self.sigma)

    def loc_scale(self):
        return float(self.mu), float(self.sigma)

    def shape_params(self):
        return {"df": float(self.df)}


@dataclass(frozen=True, repr=False)
class HalfNormal(Prior):
    """Half-normal with scale sigma, on a positive parameter."""

    sigma: float = 1.0
    support: ClassVar[str] = POSITIVE
    family: ClassVar[str] = "half_normal"

    def __post_init__(self):
        _positive("HalfNormal", sigma=self.sigma)

    def loc_scale(self):
        return 0.0, float(self.sigma)


@dataclass(frozen=True, repr=False)
class HalfCauchy(Prior):
    """Half-Cauchy with scale sigma, on a positive parameter."""

    sigma: float = 1.0
    support: ClassVar[str] = POSITIVE
    family: ClassVar[str] = "half_cauchy"

    def __post_init__(self):
        _positive("HalfCauchy", sigma=self.sigma)

    def loc_scale(self):
        return 0.0, float(self.sigma)


@dataclass(frozen=True, repr=False)
class HalfStudentT(Prior):
    """Half-Student-t(df, sigma) on a positive parameter."""

    df: float = 3.0
    sigma: float = 1.0
    support: ClassVar[str] = POSITIVE
    family: ClassVar[str] = "half_student_t"

    def __post_init__(self):
        _positive("HalfStudentT", df=self.df, sigma=self.sigma)

    def loc_scale(self):
        return 0.0, float(self.sigma)

    def shape_params(self):
        return {"df": float(self.df)}


@dataclass(frozen=True, repr=False)
class Exponential(Prior):
    """Exponential with the given rate (mean 1/rate), on a positive parameter."""

    rate: float = 1.0
    support: ClassVar[str] = POSITIVE
    family: ClassVar[str] = "exponential"

    def __post_init__(self):
        _positive("Exponential", rate=self.rate)

    def loc_scale(self):
        return 0.0, 1.0 / float(self.rate)


@dataclass(frozen=True, repr=False)
class Gamma(Prior):
    """Gamma with the given shape and rate (mean shape/rate), on a positive parameter.

    A scale family: ``value = raw / rate`` with ``raw ~ Gamma(shape, 1)``, so it
    standardises exactly like the others (location 0, scale 1/rate)."""

    shape: float = 2.0
    rate: float = 0.1
    support: ClassVar[str] = POSITIVE
    family: ClassVar[str] = "gamma"

    def __post_init__(self):
        _positive("Gamma", shape=self.shape, rate=self.rate)

    def loc_scale(self):
        return 0.0, 1.0 / float(self.rate)

    def shape_params(self):
        return {"concentration": float(self.shape)}


@dataclass(frozen=True, repr=False)
class LKJ(Prior):
    """LKJ(eta) on a correlation matrix: eta = 1 is uniform, larger eta shrinks to 0."""

    eta: float = 2.0
    support: ClassVar[str] = CORRELATION
    family: ClassVar[str] = "lkj"

    def __post_init__(self):
        _positive("LKJ", eta=self.eta)

    def loc_scale(self):
        raise PriorError("LKJ is a prior on a whole correlation matrix, not a scalar.")


def InverseWishart(*args, **kwargs):  # noqa: N802 - named like the priors a user asks for
    """Refuse, on purpose, and say what to use instead."""
    raise PriorError(
        "InverseWishart is not offered: it ties the standard deviations and the "
        "correlations of varying effects together, so neither can get its own prior and "
        "small standard deviations drag correlations towards zero. Set them separately: "
        "priors={'sd': HalfNormal(1), 'cor': LKJ(2)}."
    )


_STANDARD: dict[str, Callable[[dict], dist.Distribution]] = {
    "normal": lambda p: dist.Normal(0.0, 1.0),
    "student_t": lambda p: dist.StudentT(p["df"], 0.0, 1.0),
    "half_normal": lambda p: dist.HalfNormal(1.0),
    "half_cauchy": lambda p: dist.HalfCauchy(1.0),
    "half_student_t": lambda p: dist.FoldedDistribution(dist.StudentT(p["df"], 0.0, 1.0)),
    "exponential": lambda p: dist.Exponential(1.0),
    "gamma": lambda p: dist.Gamma(p["concentration"], 1.0),
}


def standard_distribution(family: str, shape_params: dict) -> dist.Distribution:
    """The standard member of a family; ``shape_params`` may hold arrays (batched)."""
    return _STANDARD[family](shape_params)


PRIORS: dict[str, Callable[..., Prior]] = {
    "Normal": Normal,
    "StudentT": StudentT,
    "HalfNormal": HalfNormal,
    "HalfCauchy": HalfCauchy,
    "HalfStudentT": HalfStudentT,
    "Exponential": Exponential,
    "Gamma": Gamma,
    "LKJ": LKJ,
    "InverseWishart": InverseWishart,
}

_CALL = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$")


def parse_prior(text: str) -> Prior:
    """Read a prior written as in Python, e.g. ``"HalfNormal(1)"`` or ``"StudentT(3, 0, 2.5)"``.

    Examples
    --------
    >>> parse_prior("Normal(0, 10)")
    Normal(0, 10)
    """
    match = _CALL.match(text)
    if not match:
        raise PriorError(f"Cannot read prior {text!r}; write it like `Normal(0, 10)`.")
    name, args = match.groups()
    if name not in PRIORS:
        close = difflib.get_close_matches(name, PRIORS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise PriorError(f"Unknown prior {name!r}.{hint} Available: {', '.join(PRIORS)}.")
    try:
        call = ast.parse(f"f({args})", mode="eval").body
        pos = [ast.literal_eval(a) for a in call.args]
        kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        return PRIORS[name](*pos, **kw)
    except PriorError:
        raise
    except (ValueError, SyntaxError, TypeError) as exc:
        raise PriorError(f"Cannot read prior {text!r}: {exc}.") from None


Prior.__repr__ = Prior.__str__  # type: ignore[method-assign]
