"""Split an lme4/brms formula into its response, population part and group terms.

Only the lme4 extensions are parsed here: the bars `(expr | g)` / `(expr || g)`, the
grouping factors `a`, `a:b`, `a/b`, and the brms response additions `y | trials(n)`
(binomial totals) and `y | se(s)` (known standard errors, meta-analysis).
Everything else (the population-level part and the covariate expression inside a bar)
is handed to formulaic, so interactions, `C(x)`, `0 +` and `- 1` mean exactly what they
mean there, after ``expressions.check_expression`` has refused any Python code that is
not a column, a literal, arithmetic or an allowed transform (and turned `^` inside
expressions into `**`, as R reads it).

A column is named the same way everywhere (response, addition terms, population terms,
group covariates, grouping factors): a Python-style name (letters of any alphabet,
digits, `_` and `.`), or any text in backticks (`` `my column` ``) or in ``Q("...")``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from multilevel.errors import FormulaError
from multilevel.formula.expressions import UNSUPPORTED, check_expression

SUPPORTED = (
    "Supported: `y ~ x + (1 | g)`, `(1 + x | g)` (correlated), `(1 + x || g)` "
    "(uncorrelated), `(0 + x | g)`, nested `(1 | a/b)`, interactions `(1 | a:b)`, crossed "
    "`(1 | a) + (1 | b)`, `successes | trials(n) ~ ...` for binomial responses and "
    "`y | se(s) ~ ...` for responses with known standard errors."
)

_NAME = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$")
_BACKTICKED = re.compile(r"^`([^`]+)`$")
_QUOTED = re.compile(r"""^Q\(\s*(['"])(.+)\1\s*\)$""")
_ADDITION = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)
# brms addition terms on the left of `~` that are not ours yet
_PLANNED_ADDITIONS = ("weights", "cens", "trunc", "rate", "subset", "thres", "cat", "dec")


def column_name(text: str) -> str | None:
    """The column that ``text`` names, or None when it is not a column name.

    >>> column_name("log_radon"), column_name("`my g`"), column_name("Q('grp é')")
    ('log_radon', 'my g', 'grp é')
    """
    text = text.strip()
    if _NAME.match(text) and "__" not in text:
        return text
    if match := _BACKTICKED.match(text):
        return match.group(1)
    if match := _QUOTED.match(text):
        return match.group(2)
    return None


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
    """Parse an lme4-style formula and check every expression in it (nothing is run).

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
    return _parse(formula)


@functools.lru_cache(maxsize=256)
def _parse(formula: str) -> ParsedFormula:
    """``parse_formula`` of a string, once per distinct string: the spec, prediction,
    the log-likelihood and the CLI each ask for the same formula's parts, and the result
    is immutable. A refused formula raises each time (exceptions are not cached)."""
    # structure is read from a copy whose quoted text is blanked, so a column named
    # `a|b` or Q("x (cm)") cannot look like a bar or a parenthesis
    masked = _mask_quoted(formula)
    _check_parentheses(formula, masked)
    tilde = _top_level_positions(masked, "~")
    if len(tilde) != 1:
        raise _syntax_error(formula, tilde[1] if tilde else 0, "expected exactly one `~`")
    lhs = formula[: tilde[0]]
    response, trials, se = _parse_response(formula, lhs, masked[: tilde[0]])
    fixed_parts, groups = [], []
    offset = tilde[0] + 1
    masked_rhs = masked[offset:]
    for start, stop in _split_top_level(masked_rhs, "+"):
        part, masked_part = formula[offset + start : offset + stop], masked_rhs[start:stop]
        stripped, masked_stripped = part.strip(), masked_part.strip()
        position = offset + start + (len(part) - len(part.lstrip()))
        bars = _top_level_positions(masked_stripped, "|")
        if _is_wrapped(masked_stripped) and "|" in masked_stripped:
            groups.extend(_parse_bar(formula, stripped[1:-1], masked_stripped[1:-1], position + 1))
        elif bars:
            raise _syntax_error(
                formula,
                position + bars[0],
                "a group term must be in parentheses, e.g. `(1 + x | g)`",
            )
        else:
            fixed_parts.append(stripped)
    if any(not p for p in fixed_parts):
        raise _syntax_error(
            formula, offset + len(masked_rhs) - len(masked_rhs.lstrip()), "empty term"
        )
    fixed = check_expression(" + ".join(fixed_parts) if fixed_parts else "1", formula)
    return ParsedFormula(formula, response, trials, fixed, tuple(groups), se)


def _parse_response(formula: str, lhs: str, masked: str) -> tuple[str, str | None, str | None]:
    """(response, trials column, se column) of the left-hand side."""
    bars = _top_level_positions(masked, "|")
    left = lhs[: bars[0]] if bars else lhs
    if not left.strip():
        raise _syntax_error(formula, 0, "the response is missing before `~`")
    response = column_name(left)
    if response is None:
        at = len(left) - len(left.lstrip())
        if left.strip().startswith("cbind("):
            raise _syntax_error(formula, at, UNSUPPORTED["cbind"])
        raise _syntax_error(
            formula,
            at,
            "the response must be a column name (`quoted` with backticks if it is not a "
            "Python name); make a new column for a transformed response",
        )
    if not bars:
        return response, None, None
    text = lhs[bars[0] + 1 :]
    addition = text.strip()
    at = bars[0] + 1 + (len(text) - len(text.lstrip()))
    if len(bars) > 1 or _top_level_positions(_mask_quoted(addition), "+"):
        raise _syntax_error(
            formula, at, "one addition term after `|` is supported: `trials(n)` or `se(s)`"
        )
    match = _ADDITION.match(addition)
    name, inside = (match.group(1), match.group(2)) if match else ("", "")
    if name in ("trials", "se"):
        column = column_name(inside)
        if column is None:
            if name == "se" and "," in _mask_quoted(inside):
                raise _syntax_error(
                    formula,
                    at,
                    "`se(s)` takes one column of standard errors; options such as "
                    "`se(s, sigma = TRUE)` (an extra residual sd) are not supported",
                )
            raise _syntax_error(formula, at, f"`{name}()` takes one column name")
        return (response, column, None) if name == "trials" else (response, None, column)
    if name in _PLANNED_ADDITIONS:
        raise _syntax_error(
            formula,
            at,
            f"the addition term `{name}()` is planned (the brms model language issue) but "
            "not supported yet; after `|` on the left only `trials(n)` (binomial responses) "
            "or `se(s)` (known standard errors) is supported",
        )
    if name == "mi":
        raise _syntax_error(formula, at, UNSUPPORTED["mi"])
    raise _syntax_error(
        formula,
        at,
        "after `|` on the left only `trials(n)` (binomial responses) or `se(s)` "
        "(known standard errors) is supported",
    )


def _parse_bar(formula: str, inner: str, masked: str, position: int) -> list[GroupTerm]:
    """Parse the inside of ``( expr | factor )`` into one term per (nested) factor."""
    bars = _top_level_positions(masked, "|")
    correlated = True
    if len(bars) == 2 and bars[1] == bars[0] + 1:
        correlated = False
    elif len(bars) != 1:
        raise _syntax_error(formula, position + bars[-1], "expected `|` or `||`")
    expr = inner[: bars[0]].strip()
    factor_text, masked_factor = inner[bars[-1] + 1 :], masked[bars[-1] + 1 :]
    if not expr:
        raise _syntax_error(
            formula, position + bars[0], "no covariates before `|`; write `1` for an intercept"
        )
    expr = check_expression(expr, formula)
    group_at = position + bars[-1] + 1 + (len(factor_text) - len(factor_text.lstrip()))
    terms = []
    prefix: list[str] = []
    for start, stop in _split_top_level(masked_factor, "/"):
        names = []
        for a, b in _split_top_level(masked_factor[start:stop], ":"):
            name = column_name(factor_text[start + a : start + b])
            if name is None:
                raise _syntax_error(
                    formula,
                    group_at,
                    f"grouping factor `{factor_text.strip()}` is not a column name, `a:b` or "
                    f"`a/b` (quote a name with backticks: `my group`). {SUPPORTED}",
                )
            names.append(name)
        prefix = prefix + names
        terms.append(GroupTerm(expr, tuple(prefix), correlated))
    return terms


def _mask_quoted(text: str) -> str:
    """``text`` with every character inside backticks or quotes replaced by ``_``."""
    out, quote = [], None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
                out.append(ch)
            else:
                out.append("_")
        else:
            quote = ch if ch in "`'\"" else None
            out.append(ch)
    return "".join(out)


def _check_parentheses(formula: str, masked: str) -> None:
    depth = 0
    for i, ch in enumerate(masked):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _syntax_error(formula, i, "unmatched `)`")
    if depth:
        raise _syntax_error(formula, masked.rindex("("), "unmatched `(`")


def _top_level_positions(text: str, char: str) -> list[int]:
    depth, out = 0, []
    for i, ch in enumerate(text):
        depth += ch in "({["
        depth -= ch in ")}]"
        if ch == char and depth == 0:
            out.append(i)
    return out


def _split_top_level(text: str, char: str) -> list[tuple[int, int]]:
    """(start, stop) of each piece of ``text`` between top-level ``char``."""
    cuts = [-1, *_top_level_positions(text, char), len(text)]
    return [(a + 1, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _is_wrapped(text: str) -> bool:
    """True when the opening parenthesis at 0 closes at the very end."""
    if not text.startswith("("):
        return False
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
