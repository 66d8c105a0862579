"""Formula expressions: only columns, literals, arithmetic and listed transforms get through."""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.errors import FormulaError
from multilevel.formula import parse_formula
from multilevel.formula.expressions import check_expression, power_as_python


def _payloads(marker):
    command = f"touch {marker}"
    return [
        f"I(__import__('os').system('{command}'))",
        f"C(__import__('os').system('{command}'))",
        f"np.log(__import__('os').system('{command}'))",
        f"{{__import__('os').system('{command}')}}",
        f"np.os.system('{command}')",
        f"I(exec(\"open('{marker}', 'w')\"))",
        f"I(eval(\"open('{marker}', 'w')\"))",
        f"I(open('{marker}', 'w'))",
        f"I(getattr(np, 'os').system('{command}'))",
        "I(x.__class__)",
        "I(().__class__.__bases__[0].__subclasses__())",
        "I((lambda: 1)())",
        "I([v for v in x])",
        "I(x[0])",
        "I(x @ x)",
        "I(f'{x}')",
        "I(*x)",
        "bs(x, **{'df': 3})",
        "I(scale(x).values)",
        "I(x := 1)",
        "I({'a': x})",
    ]


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "y": rng.normal(size=40),
            "x": np.tile(np.arange(5.0), 8),
            "g": np.repeat(list("abcdefgh"), 5),
        }
    )


@pytest.mark.parametrize("where", ["population", "group covariate"])
@pytest.mark.parametrize("index", range(21))
def test_code_in_a_formula_is_refused_before_anything_runs(tmp_path, frame, where, index):
    marker = tmp_path / "MARKER"
    payload = _payloads(marker)[index]
    formula = f"y ~ x + {payload} + (1 | g)"
    if where == "group covariate":
        formula = f"y ~ x + (1 + {payload} | g)"
    with pytest.raises(FormulaError) as info:
        ml.Model(formula, frame)
    assert "refused" in str(info.value)
    assert not marker.exists()


def test_the_message_names_the_term_and_lists_what_is_allowed():
    with pytest.raises(FormulaError) as info:
        parse_formula("y ~ x + I(__import__('os').getcwd())")
    text = str(info.value)
    assert "I(__import__('os').getcwd())" in text
    assert "np.log()" in text and "poly()" in text and "C()" in text


@pytest.mark.parametrize(
    "term, hint",
    [
        ("s(x)", "bs(x, df=4)"),
        ("t2(x, z)", "spline basis"),
        ("mo(x)", "C(x)"),
        ("me(x, sdx)", "missing='model'"),
        ("mm(g1, g2)", "multi-membership"),
        ("gp(x)", "Gaussian processes"),
        ("ar(time = t)", "autocorrelation"),
        ("I(offset(t))", "term of its own"),
    ],
)
def test_brms_syntax_we_lack_is_named_not_called_a_missing_column(term, hint):
    with pytest.raises(FormulaError) as info:
        parse_formula(f"y ~ x + {term}")
    assert hint in str(info.value)
    assert "not in the data" not in str(info.value)


def test_cbind_with_other_failures_points_to_what_it_reads():
    with pytest.raises(FormulaError, match=r"must be a column or `n - k`"):
        parse_formula("cbind(k, n - 2 * k) ~ x + (1 | g)")


@pytest.mark.parametrize(
    "left, hint",
    [("subset(s)", "`subset()` is not supported"), ("mi()", "missing='model'")],
)
def test_brms_addition_terms_we_lack_are_named(left, hint):
    with pytest.raises(FormulaError) as info:
        parse_formula(f"y | {left} ~ x")
    assert hint in str(info.value)


@pytest.mark.parametrize(
    "expr, python",
    [
        ("I(x^2)", "I(x**2)"),
        ("x + I(x ^ 3):C(g)", "x + I(x ** 3):C(g)"),
        ("{x^2}", "{x**2}"),
        ("(a + b)^2", "(a + b)^2"),  # formula-level power: interactions, as in R
        ("Q('a^b')", "Q('a^b')"),  # quoted names are names
        ("np.log(x^2)", "np.log(x**2)"),
    ],
)
def test_caret_inside_an_expression_is_power(expr, python):
    assert power_as_python(expr) == python


def test_squares_are_squares_not_xor(frame):
    """`I(x^2)` as lme4/brms users write it: Python would give 2, 3, 0, 1, 6 for x = 0..4."""
    model = ml.Model("y ~ x + I(x^2) + (1 | g)", frame)
    column = model.spec.columns.index("I(x ** 2)")
    np.testing.assert_array_equal(model.design.X[:5, column], [0.0, 1.0, 4.0, 9.0, 16.0])


@pytest.mark.parametrize(
    "expr",
    [
        "x + I(x ** 2) + C(g, levels=['b', 'a']) + np.log1p(x) + log(x + 1) + sqrt(x)",
        "poly(x, 2) + center(x) + scale(x) + standardize(x) + abs(x - 2)",
        "bs(x, df=3) + I((x > 2) & (x < 4)) + C(g, Treatment('b')) + C(g, contr.sum)",
        "`x` + Q('x') + {x + 1} + I(-x) + np.exp(x / 10)",
    ],
)
def test_the_documented_transforms_pass(expr):
    assert check_expression(expr, f"y ~ {expr}")
