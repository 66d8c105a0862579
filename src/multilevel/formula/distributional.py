"""Distributional formulas: a formula for the mean and one for any family parameter.

``bf("y ~ x + (1 | g)", sigma="~ x + (1 | g)")`` is brms' ``bf(y ~ x + (1 | g), sigma ~
x + (1 | g))`` and bambi's ``bmb.Formula("y ~ x + (1 | g)", "sigma ~ x + (1 | g)")``: the
family parameter ``sigma`` gets its own linear predictor, on its natural link scale
(``families.DPAR_LINKS``: log for the positive parameters). A number instead of a
formula fixes the parameter (brms' ``bf(y ~ x, nu = 4)``). The right-hand sides are
parsed with the same rules as the main formula: data, never code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from multilevel.errors import FormulaError
from multilevel.formula.parser import ParsedFormula, parse_formula

#: The name brms gives the mean's linear predictor; never a key of ``dpars``.
MU = "mu"
_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*~")


@dataclass(frozen=True)
class DistributionalFormula:
    """A main formula and, per family parameter, a right-hand side (``"~ x + (1 | g)"``)
    or a fixed value. Build it with :func:`bf`."""

    formula: str
    dpars: tuple[tuple[str, str | float], ...] = ()

    @property
    def predicted(self) -> dict[str, str]:
        """Parameter -> its right-hand side (``"~ x + (1 | g)"``), for predicted ones."""
        return {name: rhs for name, rhs in self.dpars if isinstance(rhs, str)}

    @property
    def fixed(self) -> dict[str, float]:
        """Parameter -> its fixed value."""
        return {name: float(v) for name, v in self.dpars if not isinstance(v, str)}

    def __str__(self) -> str:
        parts = [self.formula]
        parts += [
            f"{n} {rhs}" if isinstance(rhs, str) else f"{n} = {rhs:g}" for n, rhs in self.dpars
        ]
        return ", ".join(parts)


def bf(formula: str, **dpars: str | float) -> DistributionalFormula:
    """A distributional formula: ``formula`` for the mean, a formula (or a fixed value)
    for each named family parameter.

    Parameters
    ----------
    formula : str
        The main formula, e.g. ``"y ~ x + (1 | g)"``.
    **dpars : str or float
        ``sigma="~ x + (1 | g)"`` (also written ``"sigma ~ x + (1 | g)"``) gives sigma
        its own linear predictor on the log scale; ``nu=4`` fixes student_t's degrees of
        freedom at 4. Which parameters a family has is checked when the model is built.

    Examples
    --------
    >>> f = bf("y ~ x + (1 | g)", sigma="~ x + (1 | g)")
    >>> f.predicted
    {'sigma': '~ x + (1 | g)'}
    >>> bf("y ~ x", nu=4).fixed
    {'nu': 4.0}
    """
    if not isinstance(formula, str):
        raise FormulaError(f"bf() takes the main formula as text first, got {formula!r}.")
    parse_formula(formula)
    out = []
    for name, value in dpars.items():
        if name == MU:
            raise FormulaError("The mean's formula is bf()'s first argument, not mu=.")
        out.append((name, _checked(name, value)))
    return DistributionalFormula(formula, tuple(out))


def _checked(name: str, value) -> str | float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FormulaError(
            f"{name}= takes a formula such as '~ x + (1 | g)' or a number, got {value!r}."
        )
    if not isinstance(value, str):
        if not math.isfinite(value):
            raise FormulaError(f"{name}= must be a finite number, got {value!r}.")
        return float(value)
    text = value.strip()
    named = _NAME.match(text)
    if named:  # "sigma ~ x": the name must be the parameter's own
        if named.group(1) != name:
            raise FormulaError(
                f"The formula given for {name} starts with {named.group(1)!r}: write "
                f"{name}='~ ...' (or '{name} ~ ...')."
            )
        text = text[named.end() - 1 :]
    if not text.startswith("~"):
        text = "~ " + text
    rhs = text[1:].strip()
    if not rhs:
        raise FormulaError(f"The formula for {name} is empty: write e.g. {name}='~ 1 + x'.")
    parse_dpar(name, f"~ {rhs}", "y")
    return f"~ {rhs}"


def parse_dpar(name: str, rhs: str, response: str) -> ParsedFormula:
    """The right-hand side ``rhs`` (``"~ x + (1 | g)"``) of parameter ``name``, parsed
    as the formula ``response ~ x + (1 | g)`` is (the response is only a placeholder)."""
    try:
        parsed = parse_formula(f"{_quoted(response)} {rhs}")
    except FormulaError as exc:
        raise FormulaError(f"In the formula for {name} ({rhs!r}): {exc}") from None
    return parsed


def _quoted(column: str) -> str:
    return column if column.isidentifier() else "`" + column.replace("`", "") + "`"


def as_distributional(formula) -> DistributionalFormula:
    """A plain formula string as a distributional formula without parameter formulas."""
    if isinstance(formula, DistributionalFormula):
        return formula
    if not isinstance(formula, str):
        raise FormulaError(
            f"The formula must be text such as 'y ~ x + (1 | g)' or ml.bf(...), got "
            f"{type(formula).__name__}."
        )
    return DistributionalFormula(formula)
