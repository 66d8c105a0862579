"""lme4-style formula parsing: response, population-level part and group terms."""

from multilevel.formula.parser import GroupTerm, ParsedFormula, parse_formula

__all__ = ["GroupTerm", "ParsedFormula", "parse_formula"]
