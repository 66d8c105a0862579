"""Tests for multilevel.data_checks: columns that would silently mean something else are
refused before the design is built, in memory and chunk by chunk. Nothing here samples."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.chunked import chunked_statistics
from multilevel.data_checks import MOSTLY, check_text_values, predictor_uses
from multilevel.formula import parse_formula

FORMULA = "y ~ x + (1 | g)"


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n).round(3),
            "x": rng.normal(size=n).round(3),
            "g": np.repeat(list("abcdef"), 10),
        }
    )


def with_text_cell(frame: pd.DataFrame, column: str, row: int, text: str) -> pd.DataFrame:
    out = frame.astype({column: object})
    out.loc[row, column] = text
    return out


# --------------------------------------------------------------------------- duplicates


def test_duplicate_column_named_in_formula_is_refused(frame):
    data = pd.concat([frame, frame[["x"]]], axis=1)
    with pytest.raises(ml.DataError, match=r"more than one column named 'x' \(2 columns\)"):
        ml.Model(FORMULA, data)


@pytest.mark.parametrize("missing", ["drop", "model"])
def test_duplicate_column_refused_whatever_missing_says(frame, missing):
    data = pd.concat([frame, frame[["y"]]], axis=1)
    with pytest.raises(ml.DataError, match="more than one column named 'y'"):
        ml.Model(FORMULA, data, missing=missing)


def test_duplicate_column_the_formula_does_not_use_is_harmless(frame):
    data = pd.concat([frame, frame[["x"]].rename(columns={"x": "z"})], axis=1)
    data = pd.concat([data, data[["z"]]], axis=1)  # `z` twice, unused
    ml.Model(FORMULA, data)


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "values, kind",
    [
        (pd.date_range("2020-01-01", periods=60), "dates or times"),
        (pd.date_range("2020-01-01", periods=60, tz="UTC"), "dates or times"),
        (pd.period_range("2020-01", periods=60, freq="M"), "dates or times"),
        (pd.to_timedelta(np.arange(60), unit="D"), "durations"),
        ([datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(60)], "dates"),
    ],
    ids=["datetime64", "tz-aware", "period", "timedelta", "python-dates"],
)
def test_date_predictor_is_refused_with_advice(frame, values, kind):
    data = frame.assign(t=values)
    with pytest.raises(ml.DataError, match=f"Column 't' holds {kind}") as info:
        ml.Model("y ~ t + (1 | g)", data)
    advice = "total_seconds()" if kind == "durations" else "C(t)"
    assert advice in str(info.value)
    with pytest.raises(ml.DataError, match="Column 't'"):  # a group covariate, too
        ml.Model("y ~ 1 + (1 + t | g)", data)


def test_date_column_works_as_explicit_factor_and_as_grouping_factor(frame):
    data = frame.assign(t=pd.date_range("2020-01-01", periods=4).repeat(15))
    assert len(ml.Model("y ~ C(t) + (1 | g)", data).spec.columns) == 4
    assert len(ml.Model("y ~ x + (1 | t)", data).spec.terms[0].levels) == 4


def test_date_strings_are_refused_with_days_since_advice(frame):
    data = frame.assign(t=pd.date_range("2020-01-01", periods=60).strftime("%Y-%m-%d"))
    with pytest.raises(ml.DataError, match="Column 't' holds dates as text") as info:
        ml.Model("y ~ x + t + (1 | g)", data)
    message = str(info.value)
    assert "'2020-01-01'" in message and ".dt.days" in message and "C(t)" in message
    assert len(ml.Model("y ~ C(t) + (1 | g)", data).spec.columns) == 60


# --------------------------------------------------------------------------- text cells


def test_numeric_column_with_one_text_cell_names_the_cell(frame):
    data = with_text_cell(frame, "x", 7, "oops")
    with pytest.raises(ml.DataError) as info:
        ml.Model(FORMULA, data)
    message = str(info.value)
    assert "Column 'x' holds numbers" in message
    assert "1 of 60 cells (row 7: 'oops') is not a number" in message
    assert "factor with 60 levels" in message and "C(x)" in message


def test_text_cells_are_named_by_row_label_first_few_only(frame):
    data = frame.astype({"x": object}).set_axis([f"r{i}" for i in range(60)])
    for i in range(7):
        data.iloc[i, 1] = "."
    with pytest.raises(ml.DataError, match=r"7 of 60 cells \(row r0: '\.', .*row r4: '\.', "):
        ml.Model(FORMULA, data)
    with pytest.raises(ml.DataError, match=r"\.\.\. 2 more\)"):
        ml.Model(FORMULA, data)


@pytest.mark.parametrize(
    "formula", ["y ~ log(x + 10) + (1 | g)", "y ~ 1 + (1 + x | g)", "y ~ C(g) + g:x + (1 | g)"]
)
def test_text_cell_refused_wherever_the_column_is_used_as_a_number(frame, formula):
    with pytest.raises(ml.DataError, match="'oops'"):
        ml.Model(formula, with_text_cell(frame, "x", 3, "oops"))


def test_genuine_categories_still_work(frame):
    sex = np.where(np.arange(60) % 2, "female", "male")
    model = ml.Model("y ~ sex + (1 | g)", frame.assign(sex=sex))
    assert model.spec.columns == ("Intercept", "sex[T.male]")
    # numbers written as text are a factor on purpose (df["year"].astype(str))
    year = (2000 + np.arange(60) % 3).astype(str)
    assert len(ml.Model("y ~ year + (1 | g)", frame.assign(year=year)).spec.columns) == 3
    # numbers but for a few, as categories on purpose: C(x) or a pandas Categorical
    data = with_text_cell(frame, "x", 7, "oops")
    assert len(ml.Model("y ~ C(x) + (1 | g)", data).spec.columns) == 60
    assert len(ml.Model(FORMULA, data.astype({"x": "category"})).spec.columns) == 60


def test_the_eighty_percent_rule_on_distinct_values():
    # 4 of 5 distinct values are numbers (80%): a mistake, refused
    with pytest.raises(ml.DataError, match="the value 'x' is not a number"):
        check_text_values(pd.Series(["1", "2", "3", "4", "x"]), "v")
    # 2 of 3, 3 of 4: categories that happen to include numbers
    check_text_values(pd.Series(["1", "2", "x"]), "v")
    check_text_values(pd.Series(["1", "2", "3", "other"]), "v")
    assert MOSTLY == 0.8  # the documented rule
    # month names are not dates (dateutil would read them as such)
    check_text_values(pd.Series(["Jan", "Feb", "Mar"]), "v")


def test_predictor_uses_tells_explicit_categories_apart():
    parsed = parse_formula("y ~ x + C(g) + log(w) + C(z) + z + C(`a b`) + (1 + C(h) | k)")
    assert predictor_uses(parsed) == {
        "a b": True,
        "g": True,
        "h": True,
        "w": False,
        "x": False,
        "z": False,  # also used as itself
    }


# --------------------------------------------------------------------------- response


def test_response_with_a_text_cell_names_the_cell(frame):
    data = with_text_cell(frame, "y", 3, "oops")
    with pytest.raises(ml.DataError, match=r"The response `y` holds numbers, but 1 of 60 cells "):
        ml.Model(FORMULA, data)
    with pytest.raises(ml.DataError, match=r"row 3: 'oops'.*poisson family needs numbers"):
        ml.Model(FORMULA, data, family="poisson")


def test_text_response_gives_examples_and_what_to_do(frame):
    data = frame.assign(y=np.where(frame["y"] > 0, "high", "low"))
    with pytest.raises(ml.DataError, match=r"`y` holds text \('high', 'low'\).*bernoulli"):
        ml.Model(FORMULA, data)
    with pytest.raises(ml.DataError, match="numbers stored as text.*pd.to_numeric"):
        ml.Model(FORMULA, frame.assign(y=frame["y"].astype(str)))
    with pytest.raises(ml.DataError, match=r"`y` holds text \('high', 'low'\)"):
        ml.Model(FORMULA, data.astype({"y": "category"}))


def test_text_trials_column_is_refused(frame):
    data = frame.assign(k=np.arange(60) % 3, n=(np.arange(60) % 3 + 2).astype(str))
    with pytest.raises(ml.DataError, match="The trials column `n` holds numbers stored as text"):
        ml.Model("k | trials(n) ~ x + (1 | g)", data, family="binomial")


# --------------------------------------------------------------------------- chunked


def test_chunked_applies_the_same_rule_to_text_columns(frame, tmp_path):
    data = with_text_cell(frame, "x", 7, "oops")
    chunks = [data.iloc[:30], data.iloc[30:]]
    with pytest.raises(ml.DataError, match="Column 'x' holds numbers, but the value 'oops'"):
        chunked_statistics(FORMULA, chunks, chunk_rows=25)
    path = tmp_path / "oops.parquet"
    data.astype({"x": str}).to_parquet(path)
    with pytest.raises(ml.DataError, match="factor with 60 levels"):
        chunked_statistics(FORMULA, str(path), chunk_rows=25)
    summary, _ = chunked_statistics("y ~ C(x) + (1 | g)", chunks, chunk_rows=25)
    assert len(summary.columns) == 60  # categories on purpose


def test_chunked_refuses_dates(frame, tmp_path):
    stamps = frame.assign(x=pd.date_range("2020-01-01", periods=60))
    path = tmp_path / "dates.parquet"
    stamps.to_parquet(path)
    with pytest.raises(ml.DataError, match=r"Column 'x' holds dates or times \(timestamp"):
        chunked_statistics(FORMULA, str(path), chunk_rows=25)
    with pytest.raises(ml.DataError, match=r"Column 'x' holds dates or times \(datetime64"):
        chunked_statistics(FORMULA, [stamps], chunk_rows=25)
    text = frame.assign(x=pd.date_range("2020-01-01", periods=60).strftime("%Y-%m-%d"))
    with pytest.raises(ml.DataError, match="Column 'x' holds dates as text"):
        chunked_statistics(FORMULA, [text.iloc[:30], text.iloc[30:]], chunk_rows=25)


def test_chunked_genuine_categories_still_work(frame):
    data = frame.assign(x=np.where(frame["x"] > 0, "hi", "lo"))
    summary, _ = chunked_statistics(FORMULA, [data.iloc[:30], data.iloc[30:]], chunk_rows=25)
    assert summary.columns == ("Intercept", "x[T.lo]")
