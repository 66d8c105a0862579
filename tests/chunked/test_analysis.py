"""Formulas that cannot be read chunk by chunk are refused with the reason and the way out;
the dtypes formulaic encodes as categories are recognised in pandas and Arrow."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from chunked_checks import small_frame

import multilevel as ml
from multilevel.chunked import chunked_statistics
from multilevel.chunked.analysis import analyse_formula, is_plain_text, is_text
from multilevel.formula import parse_formula


@pytest.mark.parametrize(
    "formula, named",
    [
        ("y ~ center(x) + (1 | g)", "center(x)"),
        ("y ~ x + (1 + scale(x) | g)", "scale(x)"),
        ("y ~ poly(x, 2) + (1 | g)", "poly(x, 2)"),
    ],
)
def test_stateful_transforms_are_refused(formula, named):
    with pytest.raises(ml.FormulaError, match=r"Compute the column once") as info:
        chunked_statistics(formula, small_frame())
    assert f"`{named}`" in str(info.value)


def test_categories_of_an_expression_are_refused():
    with pytest.raises(ml.FormulaError, match=r"C\(x > 0\)"):
        chunked_statistics("y ~ C(x > 0) + (1 | g)", small_frame())


def test_categories_of_columns_and_given_levels_are_read():
    analysis = analyse_formula(parse_formula("y ~ C(h) + C(x > 0, levels=[False, True]) + (1 | g)"))
    assert analysis.c_vars == {"h"}  # given levels need no global ones
    assert analysis.c_factors == {"C(h)", "C(x > 0, levels=[False, True])"}
    assert analysis.variables == {"x", "h"}  # the right-hand side; the response apart


@pytest.mark.parametrize(
    "formula, family, named",
    [
        ("y ~ x + (1 | g)", "poisson", "poisson"),
        ("y ~ x + (1 | g/h)", "gaussian", "2 grouping factors (g, g:h)"),
        ("y ~ x + (1 | g) + (0 + x | h)", "gaussian", "2 grouping factors (g, h)"),
        ("y ~ x", "gaussian", "no group terms"),
    ],
)
def test_only_gaussian_with_one_grouping_factor(formula, family, named):
    with pytest.raises(ml.MultilevelError, match="one grouping factor") as info:
        chunked_statistics(formula, small_frame(), family=family)
    assert named in str(info.value) and "in memory" in str(info.value)


@pytest.mark.parametrize(
    "dtype, text, plain",
    [
        (np.dtype("O"), True, True),
        (np.dtype(float), False, False),
        (pd.StringDtype(), True, True),
        (pd.CategoricalDtype(["a", "b"]), True, False),
        (pa.string(), True, True),
        (pa.large_string(), True, True),
        (pa.dictionary(pa.int32(), pa.string()), True, False),
        (pa.float64(), False, False),
        (pa.timestamp("s"), False, False),
    ],
)
def test_text_dtypes(dtype, text, plain):
    assert is_text(dtype) is text
    assert is_plain_text(dtype) is plain
