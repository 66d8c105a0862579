"""lme4-style formula parsing: response, population-level part and group terms;
distributional formulas (one per family parameter)."""

from multilevel.formula.distributional import (
    DistributionalFormula,
    as_distributional,
    bf,
    parse_dpar,
)
from multilevel.formula.parser import GroupTerm, ParsedFormula, parse_formula

__all__ = [
    "DistributionalFormula",
    "GroupTerm",
    "ParsedFormula",
    "as_distributional",
    "bf",
    "parse_dpar",
    "parse_formula",
]
