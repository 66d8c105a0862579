"""What an expression inside a formula may contain, checked before anything is evaluated.

formulaic evaluates the Python code of a formula (``I(...)``, ``np.log(x)``, ``{x + 1}``)
with ``eval``. A formula is user input, often read from a shared file, so every piece of
Python code in it is parsed here with ``ast`` and refused unless it is built from:

* column names (plain, `` `quoted with backticks` `` or ``Q("quoted")``) and numeric or
  string literals, lists and tuples of them;
* arithmetic (``+ - * / // % **``), comparison and element-wise logic (``& | ~``);
* calls to the transforms in ``TRANSFORMS`` and ``np.<f>`` for ``f`` in
  ``NUMPY_FUNCTIONS``, with literal or column arguments.

Attribute access beyond ``np.<f>`` and ``contr.<coding>``, subscripts, lambdas,
comprehensions, names with double underscores, ``*args``/``**kwargs`` and every other call
are refused with a ``FormulaError`` that names the term and lists what is allowed. The
design is then built in a context that holds only those transforms
(``evaluation_context``), so the check and the evaluation agree.

``^`` inside an expression means power, as in R: ``I(Days^2)`` is ``I(Days ** 2)``
(Python would read it as bitwise XOR). Outside an expression it stays formulaic's
interaction operator: ``(a + b)^2`` is ``a + b + a:b``.
"""

from __future__ import annotations

import ast
import functools
import re
from types import MappingProxyType, SimpleNamespace

import numpy as np

from multilevel.errors import FormulaError

# formulaic (45 ms) is imported by the functions that use it: importing multilevel.Model
# costs none of it until a formula is read.

# name -> what it does (shown in messages and the README's formula table)
TRANSFORMS = MappingProxyType(
    {
        "I": "arithmetic as written, e.g. I(x ** 2), I(x / 1000)",
        "C": "categorical encoding, e.g. C(x), C(x, levels=['lo', 'hi'])",
        "Treatment": "treatment contrasts with a reference level, Treatment('b')",
        "Sum": "sum-to-zero contrasts",
        "Helmert": "Helmert contrasts",
        "Diff": "successive-difference contrasts",
        "Poly": "orthogonal polynomial contrasts",
        "Q": "a column by name, Q('my column')",
        "log": "natural logarithm",
        "log1p": "log(1 + x)",
        "log2": "base-2 logarithm",
        "log10": "base-10 logarithm",
        "exp": "exponential",
        "sqrt": "square root",
        "abs": "absolute value",
        "center": "subtract the mean of the fitted data",
        "scale": "centre and divide by the sd of the fitted data",
        "standardize": "the same as scale",
        "poly": "orthogonal polynomial basis, poly(x, 2)",
        "bs": "B-spline basis, bs(x, df=4)",
        "cr": "natural cubic regression spline basis, cr(x, df=4, constraints='center')",
        "cs": "cubic regression spline basis (as cr in formulaic), cs(x, df=4)",
        "cc": "cyclic cubic spline basis, cc(x, df=4)",
    }
)
NUMPY_FUNCTIONS = ("log", "log1p", "log2", "log10", "exp", "expm1", "sqrt", "abs", "square")
CONTRASTS = ("treatment", "sum", "helmert", "diff", "poly")

# brms / mgcv / lme4 syntax that is not (yet) ours: what to write instead.
UNSUPPORTED = MappingProxyType(
    {
        "s": "smooth terms `s()` (mgcv/brms) are not supported (no penalised smooths yet); "
        "for a fixed-df regression spline write `bs(x, df=4)` or "
        "`cr(x, df=4, constraints='center')`",
        "t2": "tensor-product smooths `t2()` are not supported; a spline basis of each "
        "variable (`cr(x, df=4) + cr(z, df=4)`) or their interaction is the nearest",
        "te": "tensor-product smooths `te()` are not supported; a spline basis of each "
        "variable (`cr(x, df=4) + cr(z, df=4)`) is the nearest",
        "mo": "monotonic effects `mo()` are not supported; use `C(x)` for an ordered "
        "predictor as categories, or `x` as a number",
        "me": "measurement error in predictors `me()` is not supported; missing values "
        "of a predictor can be modelled with missing='model'",
        "mi": "`mi()` is not written in the formula here: pass missing='model' to model "
        "missing responses and predictors",
        "mm": "multi-membership terms `mm()` are not supported",
        "gp": "Gaussian processes `gp()` are not supported",
        "ar": "autocorrelation terms `ar()` are not supported; a varying intercept by "
        "time or by unit is the nearest",
        "arma": "autocorrelation terms `arma()` are not supported",
        "ma": "autocorrelation terms `ma()` are not supported",
        "cosy": "autocorrelation terms `cosy()` are not supported",
        "car": "spatial terms `car()` are not supported",
        "offset": "`offset()` is a term of its own on the right of `~` (`y ~ x + "
        "offset(np.log(t))`), not part of another expression",
        "cbind": "`cbind(successes, failures)` is the response, on the left of `~`",
        "lag": "`lag()` is not supported; make a lagged column in the data",
        "hashed": "`hashed()` is not supported; use `C(x)`",
    }
)

_DUNDER = re.compile(r"__")
_BACKTICKED = re.compile(r"`[^`]*`")
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_LOGIC = (ast.BitAnd, ast.BitOr)
_UNARY = (ast.UAdd, ast.USub, ast.Not, ast.Invert)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def allowed_text() -> str:
    """One sentence listing what an expression may contain (for messages and docs)."""
    return (
        "A formula expression may hold column names (`quoted` with backticks or Q('...') "
        "when they are not Python names), numbers, arithmetic (+ - * / ** ^), comparisons, "
        "& | ~, and calls to "
        + ", ".join(f"{name}()" for name in TRANSFORMS)
        + " and "
        + ", ".join(f"np.{f}()" for f in NUMPY_FUNCTIONS)
        + "."
    )


@functools.cache
def _formulaic_parser():
    from formulaic.parser import DefaultFormulaParser

    return DefaultFormulaParser()


def check_expression(expr: str, formula: str) -> str:
    """Check the formulaic part ``expr`` of ``formula``; return it with ``^`` inside
    Python code written as ``**``. Raises ``FormulaError`` naming the offending term.

    >>> check_expression("x + I(x^2)", "y ~ x + I(x^2)")
    'x + I(x**2)'
    """
    from formulaic.errors import FormulaicError

    rewritten = power_as_python(expr)
    try:
        tokens = _formulaic_parser().get_tokens(rewritten)
    except FormulaicError as exc:
        raise FormulaError(f"Cannot read `{expr}` in `{formula}`: {exc}") from None
    for token in tokens:
        kind = getattr(token.kind, "value", token.kind)
        text = str(token.token)
        if kind == "python":
            _check_python(text, formula)
        elif kind == "name" and _DUNDER.search(text):
            raise _refused(text, formula, "names with double underscores are not columns")
    return rewritten


def power_as_python(expr: str) -> str:
    """``^`` inside Python code (a call's parentheses, ``{...}``) becomes ``**``; at the
    formula level it stays formulaic's interaction power. Quoted text is left alone."""
    out = []
    # one entry per open bracket: True when the bracket opened Python code
    stack: list[bool] = []
    quote = None
    for i, ch in enumerate(expr):
        if quote:
            quote = None if ch == quote else quote
            out.append(ch)
            continue
        in_python = bool(stack) and stack[-1]
        if ch in "`'\"":
            quote = ch
        elif ch == "(":
            # a name right before `(` makes a call, whose arguments are Python code
            before = expr[:i].rstrip()
            call = bool(before) and (before[-1].isalnum() or before[-1] in "_.")
            stack.append(in_python or call)
        elif ch in "{[":
            stack.append(True)
        elif ch in ")}]" and stack:
            stack.pop()
        elif ch == "^" and in_python:
            out.append("**")
            continue
        out.append(ch)
    return "".join(out)


def evaluation_context() -> dict:
    """The names formulaic may evaluate beyond the data: our transforms that formulaic
    lacks, and ``np`` reduced to ``NUMPY_FUNCTIONS`` (formulaic's own ``np`` is the
    whole module; this layer comes before it)."""
    return {
        "np": SimpleNamespace(**{f: getattr(np, f) for f in NUMPY_FUNCTIONS}),
        "numpy": SimpleNamespace(**{f: getattr(np, f) for f in NUMPY_FUNCTIONS}),
        "log1p": np.log1p,
        "sqrt": np.sqrt,
        "abs": np.abs,
    }


def required_columns(expr: str) -> set[str]:
    """Columns that the (checked) formulaic part ``expr`` reads from the data.

    formulaic counts every free name it does not know as a variable; our own
    transforms (``sqrt``, ``log1p``, ``abs``) are not data.

    >>> sorted(required_columns("sqrt(x) + C(g) + `my z`"))
    ['g', 'my z', 'x']
    """
    import formulaic
    from formulaic.errors import FormulaicError

    try:
        variables = set(formulaic.Formula(expr).required_variables)
    except FormulaicError as exc:
        raise FormulaError(f"Cannot read `{expr}`: {exc}") from None
    return variables - set(evaluation_context())


def _check_python(code: str, formula: str) -> None:
    # formulaic quotes names with backticks inside Python code too; any quoted text is a
    # column name, so stand in a plain name for it before parsing
    plain = _BACKTICKED.sub("_quoted_column", code)
    try:
        tree = ast.parse(plain.strip(), mode="eval")
    except SyntaxError:
        raise _refused(code, formula, "it is not a valid expression") from None
    for node in ast.walk(tree):
        problem = _problem(node)
        if problem:
            raise _refused(code, formula, problem)


def _problem(node: ast.AST) -> str | None:
    """Why ``node`` may not appear in a formula expression, or None when it may."""
    if isinstance(node, ast.Expression | ast.Load | ast.keyword):
        if isinstance(node, ast.keyword) and node.arg is None:
            return "`**` unpacking of arguments is not allowed"
        return None
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool | int | float | str) or node.value is None:
            return None
        return f"the literal {node.value!r} is not allowed"
    if isinstance(node, ast.Name):
        if _DUNDER.search(node.id):
            return f"`{node.id}`: names with double underscores are not allowed"
        return None
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, _ARITHMETIC + _LOGIC):
            return None
        return f"the operator `{_operator(node.op)}` is not allowed"
    if isinstance(node, ast.UnaryOp | ast.BoolOp):
        return None
    if isinstance(node, ast.Compare):
        bad = [op for op in node.ops if not isinstance(op, _COMPARISONS)]
        return f"the comparison `{_operator(bad[0])}` is not allowed" if bad else None
    if isinstance(node, ast.List | ast.Tuple):
        return None
    if isinstance(node, ast.Call):
        return _call_problem(node)
    if isinstance(node, ast.Attribute):
        if _allowed_attribute(node):
            return None
        return (
            f"attribute access `{ast.unparse(node)}` is not allowed (only "
            + ", ".join(f"np.{f}" for f in NUMPY_FUNCTIONS)
            + ")"
        )
    if isinstance(node, ast.operator | ast.unaryop | ast.boolop | ast.cmpop):
        return None  # operators are judged with their expression above
    what = {
        ast.Subscript: "subscripts `[...]`",
        ast.Lambda: "lambdas",
        ast.Starred: "`*` unpacking",
        ast.NamedExpr: "assignments `:=`",
        ast.Dict: "dictionaries",
        ast.Set: "sets",
    }.get(type(node))
    if what is None and isinstance(
        node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
    ):
        what = "comprehensions"
    return f"{what or type(node).__name__ + ' expressions'} are not allowed"


def _call_problem(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        name = func.id
        if name in TRANSFORMS:
            return None
        advice = UNSUPPORTED.get(name)
        if advice:
            return advice
        return f"`{name}()` is not a transform this package allows"
    if isinstance(func, ast.Attribute) and _allowed_attribute(func):
        return None
    return f"the call `{ast.unparse(func)}(...)` is not allowed"


def _allowed_attribute(node: ast.Attribute) -> bool:
    base = node.value
    if not isinstance(base, ast.Name):
        return False
    if base.id in ("np", "numpy"):
        return node.attr in NUMPY_FUNCTIONS
    return base.id == "contr" and node.attr in CONTRASTS


def _operator(op: ast.AST) -> str:
    symbols = {
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
    }
    return symbols.get(type(op), type(op).__name__)


def _refused(term: str, formula: str, why: str) -> FormulaError:
    # syntax we know from brms/mgcv gets its own advice, not the list of transforms
    advice = "" if why in UNSUPPORTED.values() else f" {allowed_text()}"
    return FormulaError(f"The formula term `{term}` in `{formula}` is refused: {why}.{advice}")
