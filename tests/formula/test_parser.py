"""The lme4 bar parser: what goes to formulaic, what becomes a group term, and errors."""

import pytest

from multilevel.errors import FormulaError
from multilevel.formula import GroupTerm, parse_formula


@pytest.mark.parametrize(
    "formula, fixed, groups",
    [
        ("y ~ x + (1 | g)", "x", [GroupTerm("1", ("g",), True)]),
        ("y ~ x + (1 + x | g)", "x", [GroupTerm("1 + x", ("g",), True)]),
        ("y ~ x + (1 + x || g)", "x", [GroupTerm("1 + x", ("g",), False)]),
        ("y ~ x + (0 + x | g)", "x", [GroupTerm("0 + x", ("g",), True)]),
        (
            "y ~ 1 + (1 | a/b)",
            "1",
            [GroupTerm("1", ("a",), True), GroupTerm("1", ("a", "b"), True)],
        ),
        (
            "y ~ (1 | a) + (1 | b)",
            "1",
            [GroupTerm("1", ("a",), True), GroupTerm("1", ("b",), True)],
        ),
        ("y ~ x - 1 + (1 | a:b)", "x - 1", [GroupTerm("1", ("a", "b"), True)]),
        (
            "y ~ 0 + x * C(z) + (1 | g) + (0 + x | g)",
            "0 + x * C(z)",
            [GroupTerm("1", ("g",), True), GroupTerm("0 + x", ("g",), True)],
        ),
        ("y ~ x", "x", []),
    ],
)
def test_splits_population_part_from_group_terms(formula, fixed, groups):
    parsed = parse_formula(formula)
    assert parsed.response == "y"
    assert parsed.fixed == fixed
    assert list(parsed.groups) == groups


def test_nested_three_levels_expand_to_prefixes():
    groups = parse_formula("y ~ 1 + (1 | a/b/c)").groups
    assert [g.group for g in groups] == ["a", "a:b", "a:b:c"]


def test_binomial_trials_on_the_left():
    parsed = parse_formula("incidence | trials(size) ~ period + (1 | herd)")
    assert (parsed.response, parsed.trials) == ("incidence", "size")
    assert parsed.columns == {"incidence", "size", "herd"}


@pytest.mark.parametrize(
    "formula, message, caret_at",
    [
        ("y ~ x + (1 | g", "unmatched `(`", 8),
        ("y ~ x + 1 | g)", "unmatched `)`", 13),
        ("y ~ x | g", "must be in parentheses", 6),
        ("y ~ x + ( | g)", "no covariates", 10),
        ("y ~ x + (1 ||| g)", "expected `|`, `||` or `|ID|`", None),
        ("log(y) ~ x", "must be a column name", 0),
        ("y | foo(w) ~ x", "unknown term; after `|` on the left write `trials()`", 4),
        ("y ~ x + (1 | g + h)", "not a column name", None),
        ("y ~ x ~ z", "exactly one `~`", 6),
    ],
)
def test_syntax_errors_point_at_the_problem(formula, message, caret_at):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    text = str(info.value)
    assert message in text
    assert formula in text
    if caret_at is not None:
        caret_line = text.splitlines()[-1]
        assert caret_line.index("^") - 2 == caret_at  # two spaces of indent


def test_missing_tilde():
    with pytest.raises(FormulaError, match="`~`"):
        parse_formula("y + x")


@pytest.mark.parametrize(
    "formula, response, fixed, factors",
    [
        ("`my y` ~ x + (1 | `my g`)", "my y", "x", ("my g",)),
        ("Q('my y') ~ x + (1 | Q('my g'))", "my y", "x", ("my g",)),
        ("δ ~ grp_é + (1 + grp_é | grp_é2)", "δ", "grp_é", ("grp_é2",)),
        ("y ~ x + (1 | `a|b`/`c (d)`)", "y", "x", ("a|b", "c (d)")),
        ("log.y ~ x + (1 | g)", "log.y", "x", ("g",)),
    ],
)
def test_one_rule_for_column_names_in_every_position(formula, response, fixed, factors):
    parsed = parse_formula(formula)
    assert parsed.response == response
    assert parsed.fixed == fixed
    assert parsed.groups[-1].factors == factors


def test_quoted_names_in_addition_terms():
    assert parse_formula("k | trials(`n total`) ~ 1").trials == "n total"
    assert parse_formula("y | se(Q('se y')) ~ 1 + (1 | study)").se == "se y"


def test_quoted_names_with_unicode_fit_a_model_end_to_end():
    """Backticks, Q() and non-ASCII names reach the same columns wherever they are written."""
    import numpy as np
    import pandas as pd

    import multilevel as ml

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "temps δ": rng.normal(size=30),
            "grp_é": np.repeat(["a", "b", "c"], 10),
            "my g": np.tile(["u", "v", "w"], 10),
            "réponse": rng.normal(size=30),
        }
    )
    model = ml.Model("réponse ~ `temps δ` + (1 + Q('temps δ') | `my g`) + (1 | grp_é)", frame)
    assert model.spec.columns == ("Intercept", "temps δ")
    assert [(t.group, t.coefs) for t in model.spec.terms] == [
        ("my g", ("Intercept", "Q('temps δ')")),
        ("grp_é", ("Intercept",)),
    ]


def test_brms_id_syntax_reads_the_id():
    (term,) = parse_formula("y ~ x + (1 + x |p| g)").groups
    assert (term.expr, term.group, term.correlated, term.id) == ("1 + x", "g", True, "p")
    assert parse_formula("y ~ (1 | g)").groups[0].id == ""
    with pytest.raises(FormulaError, match="not an ID"):
        parse_formula("y ~ x + (1 |p q| g)")
    with pytest.raises(FormulaError, match="`\\|\\|`"):
        parse_formula("y ~ x + (1 ||p|| g)")
