"""Which formulas can be read chunk by chunk, and which columns need global levels.

A chunk sees only its own rows. A formula is accepted when every chunk, encoded on its
own, gives the columns and values the whole data would: Gaussian, one grouping factor,
no transform whose value depends on the rows it sees (``center(x)``, ``scale(x)``...),
and categories only of columns (whose levels pass one collects over the whole data).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from multilevel.design import plain_error
from multilevel.errors import FormulaError, MultilevelError
from multilevel.families import get_family
from multilevel.formula import ParsedFormula
from multilevel.formula.expressions import required_columns

IN_MEMORY = "load the data in memory (a pandas DataFrame) and use ml.Model instead"


@functools.cache
def _stateful_transforms() -> frozenset[str]:
    """formulaic transforms whose value depends on the rows they see (a chunk, not the
    data). Read from formulaic when first needed: importing it costs 45 ms."""
    import formulaic

    return frozenset(
        name
        for name, fn in formulaic.transforms.TRANSFORMS.items()
        if getattr(fn, "__is_stateful_transform__", False) and name != "Q"  # Q: by name
    ) | {"lag"}


def check_model(parsed: ParsedFormula, family: str) -> None:
    """Refuse what has no per-group sufficient statistics: a family other than Gaussian,
    other than exactly one grouping factor, binomial trials.

    Raises
    ------
    MultilevelError, FormulaError
        Naming the reason and the in-memory alternative.
    """
    get_family(family)  # unknown names get the usual message
    groups = sorted({t.group for t in parsed.groups})
    if family != "gaussian" or len(groups) != 1:
        if family != "gaussian":
            why = f"the {family} family has no closed-form marginal likelihood"
        elif groups:
            why = f"this formula has {len(groups)} grouping factors ({', '.join(groups)})"
        else:
            why = "this formula has no group terms"
        raise MultilevelError(
            "Chunked statistics need a gaussian model with exactly one grouping factor "
            f"(all group terms `(... | g)` with the same g); {why}. Otherwise {IN_MEMORY}."
        )
    if parsed.trials is not None:
        raise FormulaError(
            f"`| trials({parsed.trials})` is only meaningful for family='binomial', not 'gaussian'."
        )


@dataclass(frozen=True)
class Analysis:
    """What the formulaic parts of a formula read from the data."""

    variables: frozenset[str]  # columns the formulaic parts use
    c_vars: frozenset[str]  # columns named in C(column): categorical whatever their dtype
    c_factors: frozenset[str]  # factor expressions that are C(...) calls we can encode
    lookups: dict  # factor expression -> column, for plain column look-ups


def analyse_formula(parsed: ParsedFormula) -> Analysis:
    """The columns the formula's fixed part and group terms use, and how.

    Raises
    ------
    FormulaError
        For a stateful transform, or categories of an expression without given levels.
    """
    import formulaic
    from formulaic.errors import FormulaicError

    variables: set[str] = set()
    c_vars: set[str] = set()
    c_factors: set[str] = set()
    lookups: dict[str, str] = {}
    for expr in [parsed.fixed, *(t.expr for t in parsed.groups)]:
        try:
            spec = formulaic.Formula(expr)
        except FormulaicError as exc:
            raise FormulaError(f"Cannot read `{expr}`: {plain_error(exc)}") from None
        variables |= required_columns(expr)
        for term in spec:
            for factor in term.factors:
                method = getattr(factor.eval_method, "value", factor.eval_method)
                if method == "lookup":
                    lookups[factor.expr] = factor.expr
                elif method == "python":
                    c_vars |= _check_calls(factor.expr, str(term), c_factors)
    return Analysis(frozenset(variables), frozenset(c_vars), frozenset(c_factors), lookups)


def _check_calls(expr: str, term: str, c_factors: set[str]) -> set[str]:
    """Refuse stateful transforms; return the columns that C(column) makes categorical."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return set()  # formulaic parses its own dialect; nothing we can check
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        if name in _stateful_transforms():
            raise FormulaError(
                f"`{ast.unparse(node)}` (in the term `{term}`) is computed from the rows it "
                "sees, which chunk by chunk would be each chunk on its own, not the whole "
                "data. Compute the column once on the whole data, add it to the data under "
                f"a new name and use that name in the formula; or {IN_MEMORY}."
            )
        if name == "C":
            has_levels = any(k.arg == "levels" for k in node.keywords)
            if node.args and isinstance(node.args[0], ast.Name):
                if not has_levels:
                    out.add(node.args[0].id)
                if node is tree.body:
                    c_factors.add(expr)
            elif not has_levels:
                raise FormulaError(
                    f"`{ast.unparse(node)}` (in the term `{term}`) makes categories of an "
                    "expression, whose levels chunk by chunk could differ. Add the "
                    "expression to the data as a column and write `C(column)`, or give the "
                    "levels: `C(..., levels=[...])`."
                )
            elif node is tree.body:
                c_factors.add(expr)
    return out


def is_text(dtype) -> bool:
    """Does formulaic encode a column of this (pandas or Arrow) dtype as categories?

    Examples
    --------
    >>> is_text(np.dtype("O")), is_text(np.dtype(float))
    (True, False)
    """
    if isinstance(dtype, pd.CategoricalDtype | pd.StringDtype):
        return True
    if isinstance(dtype, np.dtype | pd.api.extensions.ExtensionDtype):
        return dtype == np.dtype("O")
    import pyarrow as pa

    return (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_dictionary(dtype)
        or getattr(pa.types, "is_string_view", lambda _: False)(dtype)
    )


def is_plain_text(dtype) -> bool:
    """Text, not categorical on purpose (a pandas Categorical, an Arrow dictionary).

    Examples
    --------
    >>> is_plain_text(np.dtype("O")), is_plain_text(pd.CategoricalDtype(["a"]))
    (True, False)
    """
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    if isinstance(dtype, np.dtype | pd.api.extensions.ExtensionDtype):
        return is_text(dtype)
    import pyarrow as pa

    return is_text(dtype) and not pa.types.is_dictionary(dtype)
