"""Hypotheses on posterior draws, as brms' ``hypothesis``: ``"floor < 0"``,
``"a - b = 0"``, ``"exp(x) + 2 * z > 1"``.

Each expression compares two sides with ``<``, ``>`` or ``=`` (``==`` reads as ``=``);
both sides are arithmetic on named draws, evaluated draw by draw, and the hypothesis is
about ``d = left - right``:

* ``estimate``: the posterior mean of d; ``sd``: its posterior sd;
* ``lower``, ``upper``: an interval of probability ``prob`` (default 0.9). As in brms,
  one-sided for a one-sided hypothesis (``<``: from -inf to the ``prob`` quantile;
  ``>``: from the ``1 - prob`` quantile to inf) and equal-tailed for ``=``;
* ``<`` and ``>``: ``post_prob``, the share of draws in which the inequality holds, and
  ``evid_ratio`` = post_prob / (1 - post_prob), the posterior odds of the hypothesis
  against its opposite; inf where no draw contradicts it (the odds then exceed
  draws - 1, more draws would say by how much);
* ``=``: the Savage-Dickey density ratio, ``evid_ratio`` = p(d = 0 | data) / p(d = 0),
  the Bayes factor of the point hypothesis against the model (brms' choice), with the
  two densities from Gaussian kernel density estimates (Silverman's bandwidth) of the
  posterior draws of d and of as many prior draws of d (``Model.draw``, the model's own
  priors), and ``post_prob`` = ER / (1 + ER) (even prior odds). It needs the Model that
  made the fit: a fit read with ``ml.load``, or named draws without a model, report
  NaN and say why (the interval stands). The Bayes factor depends on the priors, and
  the density estimates are poor far in a tail: trust it for proper, chosen priors and
  a point inside both clouds of draws.

Names: a fit's parameters as its summary names them (``Intercept``, ``floor``,
``sigma``, ``sd(Intercept|county)``, ``cor(Intercept,Days|Subject)``) and group effects
as ``summary(group_effects=True)`` does (``Intercept|county[AITKIN]``). A name that is
not a Python name goes in backticks: ``"`sd(Intercept|county)` > 0.2"``. Named draws of
anything else (``Effects.draws[:, j]``, a derived quantity) are passed as a mapping:
``hypothesis({"ame": effects.draws[:, 0]}, "ame > 0")``, or beside a fit's parameters
with ``draws=``.

Expressions are data, not code: each side is parsed with ``ast`` and only numbers,
names, ``+ - * / **``, unary minus, parentheses and the functions in ``FUNCTIONS`` are
evaluated, by this module; anything else (attributes, other calls, subscripts,
comparisons inside a side, strings) is refused with an error naming it. Nothing is
passed to ``eval``.

Examples
--------
>>> fit.hypothesis("Days > 0", "`sd(Days|Subject)` < 10")  # doctest: +SKIP
>>> hypothesis({"a": a_draws, "b": b_draws}, "a - b = 0")  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from multilevel.errors import MultilevelError

__all__ = ["FUNCTIONS", "Hypotheses", "hypothesis", "parse_hypothesis"]

#: The functions an expression may call, each of one argument.
FUNCTIONS = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "logit": lambda p: np.log(p) - np.log1p(-p),
    "inv_logit": lambda x: 1.0 / (1.0 + np.exp(-x)),
}
_OPERATORS = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}
MAX_LENGTH = 1000  # characters of one expression: deeper nesting is no hypothesis
# prior draws for a point hypothesis's density at 0: with 600, the Savage-Dickey ratio of
# sleepstudy's "Days = 8" (prior N(0, 20)) erred by sd 7% over 10 seeds; with 4000, by 3%
MIN_PRIOR_DRAWS = 4000
_QUOTED = re.compile(r"`([^`]*)`")
_PLACEHOLDER = "__name{}__"
_SIGNS = {"<": "<", ">": ">", "=": "=", "==": "="}


class Hypotheses:
    """The result of ``hypothesis``: ``table`` (a row per hypothesis: ``hypothesis``,
    ``estimate``, ``sd``, ``lower``, ``upper``, ``post_prob``, ``evid_ratio``), ``draws``
    ((draws, hypotheses) draws of left - right), ``prior_draws`` (the same from the
    prior for ``=`` hypotheses, else None per column: a list), ``prob`` and ``notes``
    (why an evidence ratio is inf or NaN)."""

    def __init__(self, table: pd.DataFrame, draws: np.ndarray, prior_draws, prob, notes):
        self.table, self.draws, self.prior_draws = table, draws, prior_draws
        self.prob, self.notes = prob, notes

    def summary(self) -> pd.DataFrame:
        return self.table.copy()

    def __repr__(self) -> str:
        lines = [
            f"Hypotheses on d = left - right ({self.draws.shape[0]} draws; estimate = mean "
            f"of d; {self.prob:.0%} interval, one-sided for < and >)",
            self.table.to_string(index=False, float_format=lambda x: f"{x:.4g}"),
        ]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- parsing
class Parsed:
    """One hypothesis: its text, ``sign`` (``<``, ``>`` or ``=``), the two sides as ast
    expressions and ``quoted`` (placeholder -> the backticked name)."""

    def __init__(self, text, sign, left, right, quoted):
        self.text, self.sign, self.left, self.right, self.quoted = text, sign, left, right, quoted

    @property
    def names(self) -> list[str]:
        """The parameter names it reads, in order of appearance."""
        found = []
        for side in (self.left, self.right):
            for node in ast.walk(side):
                if isinstance(node, ast.Name) and not _is_function(node, side):
                    found.append(self.quoted.get(node.id, node.id))
        return list(dict.fromkeys(found))


def _is_function(node: ast.Name, tree) -> bool:
    return any(isinstance(n, ast.Call) and n.func is node for n in ast.walk(tree))


def parse_hypothesis(text: str) -> Parsed:
    """Split ``text`` at its one comparison and parse both sides (checked node by node
    when evaluated). Raises ``MultilevelError`` naming what is wrong."""
    if not isinstance(text, str):
        raise MultilevelError(f"A hypothesis is a string such as 'floor < 0', not {text!r}.")
    if len(text) > MAX_LENGTH:
        raise MultilevelError(
            f"The hypothesis {text[:60]!r}... is {len(text)} characters long; at most {MAX_LENGTH}."
        )
    if text.count("`") % 2:
        raise MultilevelError(
            f"Unmatched backtick in the hypothesis {text!r}: put each name that is not a "
            "Python name between two backticks, e.g. `sd(Intercept|county)` > 0.2."
        )
    quoted: dict[str, str] = {}

    def hide(match):
        key = _PLACEHOLDER.format(len(quoted))
        quoted[key] = match.group(1)
        return f" {key} "

    plain = _QUOTED.sub(hide, text)
    signs = re.findall(r"[<>=!]=?", plain)
    wrong = [s for s in signs if s not in _SIGNS]
    if wrong:
        raise MultilevelError(
            f"The hypothesis {text!r} uses {wrong[0]!r}: compare the two sides with <, > "
            "or = (for continuous draws <= is the same as <)."
        )
    if len(signs) != 1:
        raise MultilevelError(
            f"The hypothesis {text!r} has {len(signs)} comparisons; write exactly one of "
            "<, > or =, e.g. 'floor < 0' or 'a - b = 0'."
        )
    left, _, right = re.split(r"(==|[<>=])", plain, maxsplit=1)
    sides = []
    for side, which in ((left, "left"), (right, "right")):
        if not side.strip():
            raise MultilevelError(f"The hypothesis {text!r} has nothing on its {which} side.")
        try:
            sides.append(ast.parse(side.strip(), mode="eval").body)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise MultilevelError(
                f"Cannot read the {which} side of the hypothesis {text!r}: "
                f"{_restore(side.strip(), quoted)!r} is not arithmetic on names and numbers "
                "(names that are not Python names go in backticks: `sd(Intercept|g)`)."
            ) from None
    return Parsed(text, _SIGNS[signs[0]], sides[0], sides[1], quoted)


def _restore(source: str, quoted: dict) -> str:
    for key, name in quoted.items():
        source = source.replace(f" {key} ", f"`{name}`").replace(key, f"`{name}`")
    return source


# --------------------------------------------------------------------------- evaluation
def evaluate(parsed: Parsed, side, lookup) -> np.ndarray | float:
    """The value of one side, walking a fixed table of ast nodes; ``lookup(name)`` gives
    a name's draws. Anything outside the table raises ``MultilevelError``."""

    def refuse(node, what: str):
        segment = _restore(ast.unparse(node), parsed.quoted)
        compact = segment.replace(" ", "")
        variable, level = _split_level(compact)
        known = {n.replace(" ", "") for n in getattr(lookup, "names", list)()}
        hint = ""
        if compact in known or (level is not None and f"{variable}[...]" in known):
            hint = f" Did you mean the name `{compact}`, in backticks?"
        raise MultilevelError(
            f"{what} in the hypothesis {parsed.text!r}: {segment!r}.{hint} A hypothesis may "
            "use numbers, parameter names (in backticks when they are not Python names), "
            f"+ - * / **, parentheses and the functions {', '.join(FUNCTIONS)}."
        )

    def walk(node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                refuse(node, f"A {type(node.value).__name__} value is not allowed")
            try:
                return np.float64(node.value)
            except OverflowError:
                refuse(node, "A number too large for a float")
        if isinstance(node, ast.Name):
            return lookup(parsed.quoted.get(node.id, node.id))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name not in FUNCTIONS:
                what = ast.unparse(node.func)
                refuse(node, f"Unknown function {what!r}")
            if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
                refuse(node, f"{name}() takes one argument")
            return FUNCTIONS[name](walk(node.args[0]))
        kinds = {
            ast.Attribute: "Attribute access is not allowed",
            ast.Subscript: "Subscripts are not allowed (a name like x[a] goes in backticks)",
            ast.Compare: "Only one comparison is allowed",
            ast.BinOp: "Only + - * / ** are allowed",
            ast.BoolOp: "and/or are not allowed",
        }
        refuse(node, kinds.get(type(node), f"{type(node).__name__} is not allowed"))

    with np.errstate(all="ignore"):
        return walk(side)


def difference(parsed: Parsed, lookup) -> np.ndarray:
    """Draws of left - right."""
    with np.errstate(all="ignore"):
        return np.subtract(
            evaluate(parsed, parsed.left, lookup), evaluate(parsed, parsed.right, lookup)
        )


# --------------------------------------------------------------------------- draws
class Source:
    """Named draws: a fit's posterior parameters (``name`` or ``name[level]``) and any
    extra named 1-D draws, all of one length; ``names()`` lists them for messages."""

    def __init__(self, fit=None, extra: Mapping | None = None):
        self.fit, self.extra = fit, {}
        self.n = None
        if fit is not None:
            sizes = fit.idata.posterior.sizes
            self.n = sizes["chain"] * sizes["draw"]
        for name, values in (extra or {}).items():
            array = np.asarray(values, dtype=float)
            if array.ndim == 2 and 1 in array.shape:
                array = array.ravel()
            if array.ndim != 1:
                raise MultilevelError(
                    f"The draws named {name!r} have shape {array.shape}; give one draw per "
                    "entry (a 1-D array, e.g. effects.draws[:, 0])."
                )
            if self.n is not None and len(array) != self.n:
                raise MultilevelError(
                    f"The draws named {name!r} number {len(array)}, the others {self.n}: "
                    "every name needs the same draws (chains stacked), one per posterior draw."
                )
            self.n = len(array)
            self.extra[str(name)] = array
        if self.n is None:
            raise MultilevelError("hypothesis needs a fit or named draws to test.")

    def __call__(self, name: str) -> np.ndarray:
        if name in self.extra:
            return self.extra[name]
        if self.fit is not None:
            posterior = self.fit.idata.posterior
            variable, level = _split_level(name)
            if variable in posterior.data_vars:
                values = posterior[variable]
                extra = [d for d in values.dims if d not in ("chain", "draw")]
                if not extra and level is None:
                    return np.asarray(values.values, dtype=float).reshape(-1)
                if len(extra) == 1 and level is not None:
                    labels = [str(v) for v in values[extra[0]].values]
                    if level in labels:
                        chosen = values.isel({extra[0]: labels.index(level)})
                        return np.asarray(chosen.values, dtype=float).reshape(-1)
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(self.names()[:12])
        raise MultilevelError(
            f"Unknown name {name!r} in a hypothesis.{hint} Names here: {shown}"
            + (", ..." if len(self.names()) > 12 else "")
            + " (group effects as 'Intercept|g[level]'; names that are not Python names "
            "go in backticks)."
        )

    def names(self) -> list[str]:
        out = list(self.extra)
        if self.fit is not None:
            posterior = self.fit.idata.posterior
            for name, values in posterior.data_vars.items():
                extra = [d for d in values.dims if d not in ("chain", "draw")]
                out.append(str(name) if not extra else f"{name}[...]")
        return out


def _split_level(name: str) -> tuple[str, str | None]:
    """``"Intercept|county[AITKIN]"`` -> (``"Intercept|county"``, ``"AITKIN"``)."""
    match = re.fullmatch(r"(.+)\[([^\[\]]+)\]", name)
    return (match.group(1), match.group(2)) if match else (name, None)


def _prior_lookup(fit, n: int, seed: int):
    """A lookup of ``n`` prior draws of the fit's parameters from the Model's priors
    (``Model.draw``), or None and the reason there are none."""
    if fit is None:
        return None, "no model, so no prior draws"
    if getattr(fit, "model", None) is None:
        return None, "a fit read with ml.load keeps no Model to draw its priors from"
    try:
        drawn = fit.model.draw(n, seed=seed)
    except MultilevelError as exc:
        return None, f"the prior could not be drawn ({exc})"
    posterior = fit.idata.posterior

    def lookup(name: str) -> np.ndarray:
        variable, level = _split_level(name)
        if name in drawn and np.ndim(drawn[name]) == 1:
            return np.asarray(drawn[name], dtype=float)
        if level is not None and variable in drawn:
            dim = [d for d in posterior[variable].dims if d not in ("chain", "draw")][0]
            labels = [str(v) for v in posterior[variable][dim].values]
            return np.asarray(drawn[variable], dtype=float)[:, labels.index(level)]
        raise KeyError(name)

    return lookup, None


# --------------------------------------------------------------------------- the test
def hypothesis(
    source, *expressions: str, prob: float = 0.9, draws: Mapping | None = None, seed: int = 0
) -> Hypotheses:
    """Test ``expressions`` on ``source``: a fit (its parameters, plus ``draws``: more
    named 1-D draws, e.g. of effects) or a mapping of names to 1-D draws. ``prob``: the
    interval's probability; ``seed``: the prior draws of ``=`` hypotheses. See the
    module doc for what each column means."""
    if not isinstance(prob, int | float) or not 0 < prob < 1:
        raise MultilevelError(f"prob must be a number between 0 and 1 (exclusive), not {prob!r}.")
    if not expressions:
        raise MultilevelError("Give one or more hypotheses, e.g. hypothesis(fit, 'floor < 0').")
    if isinstance(source, Mapping):
        fit, extra = None, {**source, **(draws or {})}
    elif hasattr(source, "idata"):
        fit, extra = source, draws
    else:
        raise MultilevelError(
            f"hypothesis tests a fit or a mapping of names to draws, not {type(source).__name__}."
        )
    lookup = Source(fit, extra)
    parsed = [parse_hypothesis(text) for text in expressions]
    rows, columns, prior_columns, notes = [], [], [], []
    prior = None
    for h in parsed:
        d = np.broadcast_to(difference(h, lookup), (lookup.n,)).astype(float)
        if not h.names:
            raise MultilevelError(
                f"The hypothesis {h.text!r} names no parameter: it compares numbers only."
            )
        if not np.all(np.isfinite(d)):
            bad = int((~np.isfinite(d)).sum())
            raise MultilevelError(
                f"The hypothesis {h.text!r} is not a finite number in {bad} of {len(d)} "
                "draws (a log or sqrt of a negative value, a division by zero?)."
            )
        row = {"hypothesis": h.text, "estimate": d.mean(), "sd": d.std(ddof=1)}
        prior_d = None
        if h.sign == "=":
            row["lower"], row["upper"] = np.quantile(d, [(1 - prob) / 2, (1 + prob) / 2])
            if prior is None:
                prior = _prior_lookup(fit, max(lookup.n, MIN_PRIOR_DRAWS), seed)
            er, prior_d, why = _savage_dickey(h, d, prior, lookup.extra)
            if why:
                notes.append(f"{h.text!r}: evidence ratio NaN: {why}.")
            row["post_prob"] = er / (1 + er) if np.isfinite(er) else np.nan
            row["evid_ratio"] = er
        else:
            holds = d < 0 if h.sign == "<" else d > 0
            p = float(holds.mean())
            if h.sign == "<":
                row["lower"], row["upper"] = -np.inf, np.quantile(d, prob)
            else:
                row["lower"], row["upper"] = np.quantile(d, 1 - prob), np.inf
            row["post_prob"] = p
            row["evid_ratio"] = np.inf if p == 1 else p / (1 - p)
            if p == 1:
                notes.append(
                    f"{h.text!r}: no draw contradicts it, so the evidence ratio is inf "
                    f"(more than {len(d) - 1} to 1; more draws would resolve it)."
                )
        rows.append(row)
        columns.append(d)
        prior_columns.append(prior_d)
    table = pd.DataFrame(
        rows, columns=["hypothesis", "estimate", "sd", "lower", "upper", "post_prob", "evid_ratio"]
    )
    return Hypotheses(table, np.column_stack(columns), prior_columns, prob, notes)


def _savage_dickey(h: Parsed, d: np.ndarray, prior, extra: dict):
    """(evidence ratio, prior draws of d or None, why it is NaN or None)."""
    lookup, why = prior
    if lookup is None:
        return np.nan, None, why
    if any(n in extra for n in h.names):
        return np.nan, None, "named draws given with draws= have no prior to compare with"
    try:
        with np.errstate(all="ignore"):
            prior_d = np.atleast_1d(difference(h, lookup)).astype(float)
    except KeyError as exc:
        return np.nan, None, f"the prior draws lack {exc.args[0]!r}"
    prior_d = prior_d[np.isfinite(prior_d)]
    if np.ptp(d) == 0 or len(prior_d) < 2 or np.ptp(prior_d) == 0:
        return np.nan, None, "the posterior or prior draws of d do not vary"
    from scipy.stats import gaussian_kde  # 0.3 s: imported for a Bayes factor only

    posterior_density = gaussian_kde(d, bw_method="silverman")(0.0)[0]
    prior_density = gaussian_kde(prior_d, bw_method="silverman")(0.0)[0]
    if prior_density <= 0:
        return np.nan, prior_d, "the prior puts no density at 0"
    return posterior_density / prior_density, prior_d, None
