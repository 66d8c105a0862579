"""Split an lme4/brms formula into its response, population part and group terms.

Only the lme4 extensions are parsed here: the bars `(expr | g)` / `(expr || g)`, the
grouping factors `a`, `a:b`, `a/b`, and the brms response additions `y | trials(n)`
(binomial totals) and `y | se(s)` (known standard errors, meta-analysis).
Everything else (the population-level part and the covariate expression inside a bar)
is handed to formulaic unchanged, so interactions, `C(x)`, `0 +` and `- 1` mean
exactly what they mean there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multilevel.errors import FormulaError

SUPPORTED = (
    "Supported: `y ~ x + (1 | g)`, `(1 + x | g)` (correlated), `(1 + x || g)` "
    "(uncorrelated), `(0 + x | g)`, nested `(1 | a/b)`, interactions `(1 | a:b)`, crossed "
    "`(1 | a) + (1 | b)`, `successes | trials(n) ~ ...` for binomial responses and "
    "`y | se(s) ~ ...` for responses with known standard errors."
)

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_TRIALS = re.compile(r"^trials\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*\)$")
_SE = re.compile(r"^se\(\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*\)$")


@dataclass(frozen=True)
class GroupTerm:
    """One varying-effects term: covariate expression, grouping factor, correlation.

    ``factors`` holds the columns whose interaction defines the groups: ``("county",)``
    or, for the second term of ``(1 | state/city)``, ``("state", "city")``.
    """

    expr: str
    factors: tuple[str, ...]
    correlated: bool

    @property
    def group(self) -> str:
        """Name of the grouping factor as users see it, e.g. ``state:city``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula taken apart: what formulaic builds and what we build ourselves."""

    formula: str
    response: str
    trials: str | None
    fixed: str
    groups: tuple[GroupTerm, ...]
    se: str | None = None  # column of known standard errors: `y | se(s) ~ ...`

    @property
    def columns(self) -> set[str]:
        """Columns named outside the formulaic parts (response, trials, se, group factors)."""
        cols = {self.response}
        if self.trials:
            cols.add(self.trials)
        if self.se:
            cols.add(self.se)
        for term in self.groups:
            cols.update(term.factors)
        return cols


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4-style formula.

    Examples
    --------
    >>> p = parse_formula("y ~ x + (1 + x | g)")
    >>> p.fixed, p.groups[0].expr, p.groups[0].group, p.groups[0].correlated
    ('x', '1 + x', 'g', True)
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(
            f"A formula needs a response and a `~`, e.g. `y ~ x + (1 | g)`; got {formula!r}."
        )
    _check_parentheses(formula)
    tilde = _top_level_positions(formula, "~")
    if len(tilde) != 1:
        raise _syntax_error(formula, tilde[1] if tilde else 0, "expected exactly one `~`")
    lhs, rhs = formula[: tilde[0]], formula[tilde[0] + 1 :]
    response, trials, se = _parse_response(formula, lhs)
    fixed_parts, groups = [], []
    offset = tilde[0] + 1
    for part, start in _split_top_level(rhs, "+"):
        stripped = part.strip()
        position = offset + start + (len(part) - len(part.lstrip()))
        if stripped.startswith("(") and _is_wrapped(stripped) and "|" in stripped:
            groups.extend(_parse_bar(formula, stripped[1:-1], position + 1))
        elif _top_level_positions(stripped, "|"):
            at = position + _top_level_positions(stripped, "|")[0]
            raise _syntax_error(
                formula, at, "a group term must be in parentheses, e.g. `(1 + x | g)`"
            )
        else:
            fixed_parts.append(stripped)
    if any(not p for p in fixed_parts):
        raise _syntax_error(formula, offset + len(rhs) - len(rhs.lstrip()), "empty term")
    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    return ParsedFormula(formula, response, trials, fixed, tuple(groups), se)


def _parse_response(formula: str, lhs: str) -> tuple[str, str | None, str | None]:
    """(response, trials column, se column) of the left-hand side."""
    bars = _top_level_positions(lhs, "|")
    left = lhs[: bars[0]] if bars else lhs
    response = left.strip()
    if not response:
        raise _syntax_error(formula, 0, "the response is missing before `~`")
    if not _NAME.match(response):
        raise _syntax_error(
            formula,
            lhs.index(response),
            "the response must be a column name; make a new column for a transformed response",
        )
    if not bars:
        return response, None, None
    addition = lhs[bars[0] + 1 :].strip()
    if match := _TRIALS.match(addition):
        return response, match.group(1), None
    if match := _SE.match(addition):
        return response, None, match.group(1)
    at = bars[0] + 1 + (len(lhs[bars[0] + 1 :]) - len(lhs[bars[0] + 1 :].lstrip()))
    if addition.startswith("se(") and "," in addition:
        raise _syntax_error(
            formula,
            at,
            "`se(s)` takes one column of standard errors; options such as "
            "`se(s, sigma = TRUE)` (an extra residual sd) are not supported",
        )
    raise _syntax_error(
        formula,
        at,
        "after `|` on the left only `trials(n)` (binomial responses) or `se(s)` "
        "(known standard errors) is supported",
    )


def _parse_bar(formula: str, inner: str, position: int) -> list[GroupTerm]:
    """Parse the inside of ``( expr | factor )`` into one term per (nested) factor."""
    bars = _top_level_positions(inner, "|")
    correlated = True
    if len(bars) == 2 and bars[1] == bars[0] + 1:
        correlated = False
    elif len(bars) != 1:
        raise _syntax_error(formula, position + bars[-1], "expected `|` or `||`")
    expr = inner[: bars[0]].strip()
    factor_text = inner[bars[-1] + 1 :]
    if not expr:
        raise _syntax_error(
            formula, position + bars[0], "no covariates before `|`; write `1` for an intercept"
        )
    group = factor_text.strip()
    group_at = position + bars[-1] + 1 + (len(factor_text) - len(factor_text.lstrip()))
    nested = [g.strip() for g in group.split("/")]
    for piece in nested:
        for name in piece.split(":"):
            if not _NAME.match(name.strip()):
                raise _syntax_error(
                    formula,
                    group_at,
                    f"grouping factor `{group}` is not a column name, `a:b` or `a/b`. {SUPPORTED}",
                )
    terms = []
    prefix: list[str] = []
    for piece in nested:
        prefix = prefix + [n.strip() for n in piece.split(":")]
        terms.append(GroupTerm(expr, tuple(prefix), correlated))
    return terms


def _check_parentheses(formula: str) -> None:
    depth = 0
    for i, ch in enumerate(formula):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _syntax_error(formula, i, "unmatched `)`")
    if depth:
        raise _syntax_error(formula, formula.rindex("("), "unmatched `(`")


def _top_level_positions(text: str, char: str) -> list[int]:
    depth, out = 0, []
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == char and depth == 0:
            out.append(i)
    return out


def _split_top_level(text: str, char: str) -> list[tuple[str, int]]:
    """Split at top-level ``char``; return each piece with its start offset."""
    cuts = [-1, *_top_level_positions(text, char), len(text)]
    return [(text[a + 1 : b], a + 1) for a, b in zip(cuts[:-1], cuts[1:])]


def _is_wrapped(text: str) -> bool:
    """True when the opening parenthesis at 0 closes at the very end."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i == len(text) - 1
    return False


def _syntax_error(formula: str, position: int, message: str) -> FormulaError:
    caret = " " * max(position, 0) + "^"
    stop = "" if message.endswith(".") else "."
    return FormulaError(f"Cannot read the formula: {message}{stop}\n  {formula}\n  {caret}")
