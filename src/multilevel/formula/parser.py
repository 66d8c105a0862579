"""Split an lme4/brms formula into its response, population part and group terms.

Only the lme4 extensions are parsed here: the bars `(expr | g)` / `(expr || g)`, the
grouping factors `a`, `a:b`, `a/b`, offsets `offset(expr)` on the right, and brms'
addition terms on the left (`y | trials(n)`, `se(s)`, `weights(w)`, `rate(t)`,
`cens(c)`, `cens(c, y2)`, `trunc(lb = 0, ub = 10)`, several joined by `+`), lme4's
`cbind(successes, failures)`, a multinomial's count columns `cbind(a, b, c)`, and brms'
category-specific effects `cs(expr)` of ordinal models (a term of its own on the right,
one expression inside; formulaic's cubic spline `cs(x, df=4)` takes more than one
argument and stays formulaic's).
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

import numpy as np

from multilevel.errors import FormulaError
from multilevel.formula.expressions import UNSUPPORTED, check_expression

SUPPORTED = (
    "Supported: `y ~ x + (1 | g)`, `(1 + x | g)` (correlated), `(1 + x || g)` "
    "(uncorrelated), `(1 + x |p| g)` (correlated across parameters or categories), `(0 + x | g)`, nested `(1 | a/b)`, interactions `(1 | a:b)`, crossed "
    "`(1 | a) + (1 | b)`, `offset(np.log(t))`, and on the left `successes | trials(n)` or "
    "`cbind(successes, failures)` for binomial responses, `cbind(a, b, c)` for multinomial "
    "counts, `y | se(s)` (known standard "
    "errors), `weights(w)`, `rate(t)`, `cens(c)`, `cens(c, y2)`, `trunc(lb = 0, ub = 10)`."
)

_NAME = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$")
_BACKTICKED = re.compile(r"^`([^`]+)`$")
_QUOTED = re.compile(r"""^Q\(\s*(['"])(.+)\1\s*\)$""")
_ADDITION = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)
_ID = re.compile(r"^\w+$")  # brms' IDs of `|p|`: letters, digits, `_`
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
# the addition terms we read, with their arguments (positional, then by name)
ADDITIONS = {
    "trials": ("n",),
    "se": ("s", "sigma"),
    "weights": ("w",),
    "rate": ("t",),
    "cens": ("c", "y2"),
    "trunc": ("lb", "ub"),
}
# brms addition terms on the left of `~` that are not ours
_OTHER_ADDITIONS = ("subset", "thres", "cat", "dec", "vint", "vreal", "index")


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
    # brms' ID (`(1 + x |p| g)`): terms of one grouping factor with the same ID, in the
    # formulas of different parameters or categories, have correlated effects
    id: str = ""

    @property
    def group(self) -> str:
        """Name of the grouping factor as users see it, e.g. ``state:city``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula taken apart: what formulaic builds and what we build ourselves.

    The addition terms name columns of the data: ``trials`` (binomial totals, from
    ``trials(n)`` or ``cbind(k, n - k)``; ``failures`` for ``cbind(k, f)``, where the
    totals are ``k + f``; a multinomial's totals, which must be its rows' sums), ``se`` (known standard errors; ``se_sigma`` keeps a residual
    sd beside them, ``se(s, sigma = TRUE)``), ``weights``, ``rate`` (exposure: the mean
    is ``rate`` times the rate per unit), ``cens`` and ``cens_upper`` (censoring
    indicator and the upper end of interval-censored rows), ``trunc_lower`` and
    ``trunc_upper`` (a column or a number, as written). ``offsets`` are the expressions
    of ``offset(...)`` terms on the right, checked like every expression."""

    formula: str
    response: str
    trials: str | None
    fixed: str
    groups: tuple[GroupTerm, ...]
    se: str | None = None  # column of known standard errors: `y | se(s) ~ ...`
    se_sigma: bool = False
    failures: str | None = None
    weights: str | None = None
    rate: str | None = None
    cens: str | None = None
    cens_upper: str | None = None
    trunc_lower: str | None = None
    trunc_upper: str | None = None
    offsets: tuple[str, ...] = ()
    category_specific: tuple[str, ...] = ()
    # every column of a `cbind(a, b, ...)` of column names: the count columns of a
    # multinomial response (its categories); `cbind(k, f)` is also binomial's k and f
    response_columns: tuple[str, ...] = ()

    @property
    def expressions(self) -> tuple[str, ...]:
        """The formulaic parts: the population part, the ``cs()`` expressions and each
        group term's covariates."""
        return (self.fixed, *self.category_specific, *(t.expr for t in self.groups))

    @property
    def columns(self) -> set[str]:
        """Columns named outside the formulaic parts (response, addition terms, group
        factors; a truncation bound that is a number is not a column)."""
        cols = set(self.response_columns) or {self.response}
        named = (self.trials, self.se, self.failures, self.weights, self.rate, self.cens,
                 self.cens_upper)  # fmt: skip
        cols.update(c for c in named if c)
        cols.update(b for b in self.trunc_bounds if b is not None and bound_value(b) is None)
        for term in self.groups:
            cols.update(term.factors)
        return cols

    @property
    def trunc_bounds(self) -> tuple[str | None, str | None]:
        return self.trunc_lower, self.trunc_upper

    @property
    def has_additions(self) -> bool:
        """Offsets, weights, an exposure, censoring or truncation (``Design.has_additions``
        for the arrays they become)."""
        named = (self.weights, self.rate, self.cens, *self.trunc_bounds)
        return bool(self.offsets) or any(n is not None for n in named)

    @property
    def count_response(self) -> str:
        """The name of a multinomial response, its count columns as written in
        ``cbind(a, b, c)`` (``response`` itself from three columns on; two columns are
        also binomial's successes and failures, whose ``response`` is the first)."""
        return f"cbind({', '.join(self.response_columns)})"


def bound_value(text: str) -> float | None:
    """The number a truncation bound writes (``0``, ``-Inf``), or None for a column."""
    text = text.strip()
    if text.lstrip("+-").lower() in ("inf", "infinity"):
        return -np.inf if text.startswith("-") else np.inf
    return float(text) if _NUMBER.match(text) else None


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
    response, additions = _parse_response(formula, lhs, masked[: tilde[0]])
    fixed_parts, groups, offsets, category_specific = [], [], [], []
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
        elif (match := _ADDITION.match(stripped)) and match.group(1) == "offset":
            inner = match.group(2).strip()
            if not inner:
                raise _syntax_error(formula, position, "`offset()` needs an expression")
            offsets.append(check_expression(inner, formula))
        elif (
            stripped.startswith("cs")
            and _is_wrapped(masked_stripped[2:])
            and (not _top_level_positions(masked_stripped[3:-1], ","))
        ):  # brms' cs(expr); formulaic's spline cs(x, df=4) has more arguments
            inner = stripped[3:-1].strip()
            if not inner:
                raise _syntax_error(formula, position, "`cs()` needs an expression, e.g. cs(x)")
            category_specific.append(check_expression(inner, formula))
        else:
            if category_specific_calls(masked_stripped):
                raise _syntax_error(formula, position, CS_ALONE)
            fixed_parts.append(stripped)
    if any(not p for p in fixed_parts):
        raise _syntax_error(
            formula, offset + len(masked_rhs) - len(masked_rhs.lstrip()), "empty term"
        )
    fixed = check_expression(" + ".join(fixed_parts) if fixed_parts else "1", formula)
    trials = additions.pop("trials", None)
    return ParsedFormula(
        formula, response, trials, fixed, tuple(groups), offsets=tuple(offsets),
        category_specific=tuple(category_specific), **additions,
    )  # fmt: skip


CS_ALONE = (
    "brms' category-specific effect `cs(expr)` is a term of its own (`y ~ x + cs(z)`); "
    "put interactions inside it (`cs(z:w)`). For formulaic's cubic spline basis give its "
    "degrees of freedom, `cs(x, df=4)`"
)
CS_CALL = re.compile(r"(?<![\w.])cs\(")  # a call of `cs`, brms' or formulaic's


def category_specific_calls(masked: str) -> list[int]:
    """Positions of brms-style ``cs(expr)`` calls (one argument) in ``masked`` (quoted
    text blanked), at any depth; formulaic's spline ``cs(x, df=4)`` is not one."""
    out = []
    for match in CS_CALL.finditer(masked):
        start, depth = match.end() - 1, 0
        for i in range(start, len(masked)):
            depth += masked[i] == "("
            depth -= masked[i] == ")"
            if depth == 0:
                if not _top_level_positions(masked[start + 1 : i], ","):
                    out.append(match.start())
                break
    return out


def _parse_response(formula: str, lhs: str, masked: str) -> tuple[str, dict]:
    """(response, addition terms as ``ParsedFormula`` fields) of the left-hand side."""
    bars = _top_level_positions(masked, "|")
    left = lhs[: bars[0]] if bars else lhs
    if not left.strip():
        raise _syntax_error(formula, 0, "the response is missing before `~`")
    at = len(left) - len(left.lstrip())
    additions: dict = {}
    response = column_name(left)
    if response is None and left.strip().startswith("cbind("):
        response, additions = _parse_cbind(formula, left.strip(), at)
    elif response is None:
        raise _syntax_error(
            formula,
            at,
            "the response must be a column name (`quoted` with backticks if it is not a "
            "Python name); make a new column for a transformed response",
        )
    if not bars:
        return response, additions
    if len(bars) > 1:
        raise _syntax_error(
            formula, bars[1], "join several addition terms with `+`: `y | cens(c) + weights(w)`"
        )
    text = lhs[bars[0] + 1 :]
    masked_text = masked[bars[0] + 1 :]
    if not text.strip():
        raise _syntax_error(formula, bars[0] + 1, "an addition term is missing after `|`")
    for start, stop in _split_top_level(masked_text, "+"):
        piece = text[start:stop]
        where = bars[0] + 1 + start + (len(piece) - len(piece.lstrip()))
        name, values = _parse_addition(formula, piece.strip(), where)
        if name in additions or (name == "trials" and "failures" in additions):
            raise _syntax_error(formula, where, f"`{name}()` is given twice")
        additions.update(values)
    return response, additions


def _parse_addition(formula: str, text: str, at: int) -> tuple[str, dict]:
    """One addition term ``name(args)`` as (name, ``ParsedFormula`` fields)."""
    match = _ADDITION.match(text)
    name, inside = (match.group(1), match.group(2)) if match else ("", "")
    if name == "mi":
        raise _syntax_error(formula, at, UNSUPPORTED["mi"])
    if name not in ADDITIONS:
        what = f"`{name}()` is not supported" if name in _OTHER_ADDITIONS else "unknown term"
        raise _syntax_error(
            formula,
            at,
            f"{what}; after `|` on the left write {', '.join(f'`{a}()`' for a in ADDITIONS)}, "
            "joined by `+`",
        )
    args = _arguments(formula, name, inside, at)
    if name == "se":
        flag = args.get("sigma", "FALSE").strip().upper()
        if flag not in ("TRUE", "FALSE", "T", "F"):
            raise _syntax_error(formula, at, "`se(s, sigma = TRUE)` takes TRUE or FALSE")
        return name, {"se": _column_arg(formula, name, args, "s", at),
                      "se_sigma": flag in ("TRUE", "T")}  # fmt: skip
    if name == "trunc":
        if not args:
            raise _syntax_error(formula, at, "`trunc()` needs `lb =` or `ub =`, e.g. trunc(lb = 0)")
        bounds = {}
        for key in ("lb", "ub"):
            if key in args and bound_value(args[key]) is None and column_name(args[key]) is None:
                raise _syntax_error(
                    formula, at, f"`trunc({key} = ...)` takes a number or a column name"
                )
            bounds["trunc_lower" if key == "lb" else "trunc_upper"] = args.get(key)
        return name, bounds
    if name == "cens":
        upper = args.get("y2")
        if upper is not None and column_name(upper) is None:
            raise _syntax_error(formula, at, "`cens(c, y2)`: y2 must be a column name")
        return name, {"cens": _column_arg(formula, name, args, "c", at),
                      "cens_upper": None if upper is None else column_name(upper)}  # fmt: skip
    first = ADDITIONS[name][0]
    return name, {name: _column_arg(formula, name, args, first, at)}


def _arguments(formula: str, name: str, inside: str, at: int) -> dict[str, str]:
    """``inside`` of ``name(...)`` by argument name: positional ones in ``ADDITIONS``
    order, ``key = value`` by key."""
    known = ADDITIONS[name]
    out: dict[str, str] = {}
    masked = _mask_quoted(inside)
    pieces = [inside[a:b] for a, b in _split_top_level(masked, ",")] if inside.strip() else []
    for position, piece in enumerate(pieces):
        key, value = None, piece.strip()
        equals = _top_level_positions(_mask_quoted(piece), "=")
        if equals:
            key, value = piece[: equals[0]].strip(), piece[equals[0] + 1 :].strip()
        elif position < len(known):
            key = known[position]
        if key not in known or key in out or not value:
            raise _syntax_error(
                formula,
                at,
                f"`{name}()` takes {', '.join(known)}; cannot read `{piece.strip()}`",
            )
        out[key] = value
    return out


def _column_arg(formula: str, name: str, args: dict, key: str, at: int) -> str:
    column = column_name(args.get(key, ""))
    if column is None:
        raise _syntax_error(formula, at, f"`{name}()` takes a column name")
    return column


def _parse_cbind(formula: str, text: str, at: int) -> tuple[str, dict]:
    """lme4's ``cbind(successes, failures)``: the response and, as ``trials``, the
    column of totals when written ``cbind(k, n - k)``, or ``failures`` otherwise; every
    column of a ``cbind()`` of column names is also kept as ``response_columns`` (the
    count columns of a multinomial response, which may have more than two)."""
    inside = _ADDITION.match(text).group(2)
    pieces = [inside[a:b].strip() for a, b in _split_top_level(_mask_quoted(inside), ",")]
    names = tuple(column_name(piece) for piece in pieces)
    if len(pieces) > 2 and None not in names:  # multinomial counts, one column per category
        return f"cbind({', '.join(names)})", {"response_columns": names}
    successes = column_name(pieces[0]) if len(pieces) == 2 else None
    if successes is None:
        raise _syntax_error(
            formula,
            at,
            "`cbind(successes, failures)` takes two columns (or `n - successes`); a "
            "multinomial response `cbind(a, b, c)` takes column names only",
        )
    second = pieces[1]
    if (column := column_name(second)) is not None:
        return successes, {"failures": column, "response_columns": names}
    minus = _top_level_positions(_mask_quoted(second), "-")
    if len(minus) == 1 and column_name(second[minus[0] + 1 :]) == successes:
        total = column_name(second[: minus[0]])
        if total is not None:
            return successes, {"trials": total}
    raise _syntax_error(
        formula,
        at,
        f"the failures in `cbind({pieces[0]}, {second})` must be a column or "
        f"`n - {successes}` with `n` a column of totals",
    )


def _parse_bar(formula: str, inner: str, masked: str, position: int) -> list[GroupTerm]:
    """Parse the inside of ``( expr | factor )`` into one term per (nested) factor."""
    bars = _top_level_positions(masked, "|")
    correlated, term_id = True, ""
    if len(bars) == 2 and bars[1] == bars[0] + 1:
        correlated = False
    elif len(bars) == 2:
        term_id = inner[bars[0] + 1 : bars[1]].strip()
        if not _ID.match(term_id):
            raise _syntax_error(
                formula,
                position + bars[0],
                f"`|{term_id}|` is not an ID: brms' ID syntax `(1 + x |p| g)` takes a name "
                "of letters, digits and `_` between the bars",
            )
    elif len(bars) == 4 and bars[1] == bars[0] + 1 and bars[3] == bars[2] + 1:
        raise _syntax_error(
            formula,
            position + bars[0],
            "an ID between `||` bars would correlate effects that `||` keeps uncorrelated; "
            "write `(1 + x |p| g)` (correlated across parameters) or `(1 + x || g)`",
        )
    elif len(bars) != 1:
        raise _syntax_error(formula, position + bars[-1], "expected `|`, `||` or `|ID|`")
    expr = inner[: bars[0]].strip()
    factor_text, masked_factor = inner[bars[-1] + 1 :], masked[bars[-1] + 1 :]
    if not expr:
        raise _syntax_error(
            formula, position + bars[0], "no covariates before `|`; write `1` for an intercept"
        )
    if calls := category_specific_calls(masked[: bars[0]]):
        raise _syntax_error(
            formula,
            position + calls[0],
            "category-specific group effects `(cs(1) | g)` (brms) are not supported; "
            "write `(1 | g)`: the group effects then shift every threshold alike",
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
        terms.append(GroupTerm(expr, tuple(prefix), correlated, term_id))
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
