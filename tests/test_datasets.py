"""Tests for multilevel.datasets: shapes, column meanings, cross-checks, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multilevel import datasets
from multilevel.errors import DataError

POSTERIORDB = Path("/work/shared/data/posteriordb")

EXPECTED_SHAPES = {
    "radon": (919, 5),
    "sleepstudy": (180, 3),
    "cbpp": (56, 4),
    "Penicillin": (144, 3),
    "Pastes": (60, 4),
    "InstEval": (73421, 7),
    "VerbAgg": (7584, 9),
    "eight_schools": (8, 3),
    "cafe": (200, 3),
}

GROUP_COLUMNS = {
    "radon": ["county"],
    "sleepstudy": ["Subject"],
    "cbpp": ["herd", "period"],
    "Penicillin": ["plate", "sample"],
    "Pastes": ["batch", "cask", "sample"],
    "InstEval": ["s", "d", "dept", "studage", "lectage"],
    "VerbAgg": ["id", "item"],
    "eight_schools": ["school"],
    "cafe": ["cafe"],
}


def _posteriordb(name: str) -> dict:
    path = POSTERIORDB / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


def test_names_match_registry() -> None:
    assert datasets.names() == sorted(EXPECTED_SHAPES)
    assert set(datasets.DATASETS) == set(EXPECTED_SHAPES)


@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_load_shape_and_documented_columns(name: str) -> None:
    df = datasets.load(name)
    assert df.shape == EXPECTED_SHAPES[name]
    # The registry documents every column, in the frame's order, and states the rows
    # (describe() and `multilevel datasets` show them without loading).
    assert list(df.columns) == list(datasets.DATASETS[name].columns)
    assert len(df) == datasets.DATASETS[name].rows
    assert "rownames" not in df.columns
    assert not df.isna().any().any()


@pytest.mark.parametrize("name", sorted(GROUP_COLUMNS))
def test_group_ids_are_strings(name: str) -> None:
    df = datasets.load(name)
    for col in GROUP_COLUMNS[name]:
        assert pd.api.types.is_string_dtype(df[col]), col
        assert all(isinstance(v, str) for v in df[col]), col


def test_numeric_columns_stay_numeric() -> None:
    inst = datasets.load("InstEval")
    assert pd.api.types.is_integer_dtype(inst["y"])
    assert set(inst["service"]) == {0, 1}
    assert pd.api.types.is_integer_dtype(inst["service"])
    assert set(inst["studage"]) == {"2", "4", "6", "8"}
    assert set(datasets.load("cbpp")["period"]) == {"1", "2", "3", "4"}
    assert datasets.load("sleepstudy")["Subject"].nunique() == 18


def test_verbagg_is_lme4s_crossed_design_with_a_0_1_response() -> None:
    df = datasets.load("VerbAgg")
    assert (df["id"].nunique(), df["item"].nunique()) == (316, 24)
    assert df.groupby(["id", "item"]).size().eq(1).all()  # fully crossed, once each
    assert pd.api.types.is_integer_dtype(df["r2"]) and set(df["r2"]) == {0, 1}
    # lme4's r2 is "Y" for the answers perhaps and yes
    assert (df["r2"] == df["resp"].isin(["perhaps", "yes"])).all()
    assert pd.api.types.is_integer_dtype(df["Anger"])
    assert set(df["btype"]) == {"curse", "scold", "shout"}
    assert set(df["situ"]) == {"other", "self"}


def test_load_returns_fresh_copy() -> None:
    for name in ["radon", "cafe", "eight_schools"]:
        df = datasets.load(name)
        first = df.columns[-1]  # a numeric column in all three
        df[first] = -999.0
        df["extra"] = 1
        again = datasets.load(name)
        assert (again[first] != -999.0).all()
        assert "extra" not in again.columns
    truth = datasets.load("cafe").attrs["truth"]
    truth["Intercept|cafe"].iloc[0] = 99.0
    assert datasets.load("cafe").attrs["truth"]["Intercept|cafe"].iloc[0] != 99.0


# --------------------------------------------------------------------------- radon


def test_radon_floor_is_the_floor_indicator() -> None:
    df = datasets.load("radon")
    assert set(df["floor"]) == {0, 1}
    means = df.groupby("floor")["log_radon"].mean()
    # Gelman & Hill's complete-pooling fit is log_radon = 1.33 - 0.61 * floor: the
    # basement (floor 0) reads higher. Were the column the "basement" flag it says
    # it is in HLMdiag, these two would be swapped.
    assert means[0] == pytest.approx(1.327, abs=0.01)
    assert means[1] == pytest.approx(0.713, abs=0.01)
    assert (df["floor"] == 1).sum() == 153


def test_radon_counties() -> None:
    df = datasets.load("radon")
    assert df["county"].nunique() == 85
    assert df.groupby("county")["county_id"].nunique().eq(1).all()
    assert df.loc[0, "county"] == "AITKIN"
    # log_uranium is a county-level predictor: one value per county.
    assert df.groupby("county")["log_uranium"].nunique().eq(1).all()


def test_radon_matches_posteriordb_radon_mn() -> None:
    pdb = _posteriordb("radon_mn")
    df = datasets.load("radon")
    assert pdb["N"] == len(df)
    assert pdb["J"] == df["county"].nunique()
    # Same county numbering (1..85) with the same number of homes in each.
    sizes = pd.Series(pdb["county_idx"]).value_counts().sort_index()
    assert sizes.to_list() == df["county_id"].value_counts().sort_index().to_list()
    # posteriordb takes log(x + 0.1) of radon and uranium, Gelman & Hill log(x) with a
    # radon reading of 0 set to 0.1. Redo Gelman & Hill's transform on posteriordb's
    # readings (this direction is unambiguous: a 0.1 here may have been a 0 there).
    reading = np.round(np.exp(pdb["log_radon"]) - 0.1, 6)
    their_log = np.log(np.where(reading == 0, 0.1, reading))
    np.testing.assert_allclose(
        np.sort(np.log(np.exp(pdb["log_uppm"]) - 0.1)),
        np.sort(df["log_uranium"]),
        rtol=1e-6,
    )
    # Rows come in another order, so compare the sorted (county, log radon, floor)
    # triples; posteriordb's floor_measure must equal our floor.
    ours = sorted(zip(df["county_id"], np.round(df["log_radon"], 6), df["floor"], strict=True))
    theirs = sorted(
        zip(pdb["county_idx"], np.round(their_log, 6), pdb["floor_measure"], strict=True)
    )
    assert ours == theirs
    # The posteriordb values give the 1.36 / 0.78 floor means, ours 1.33 / 0.71.
    q = pd.DataFrame({"floor": pdb["floor_measure"], "y": pdb["log_radon"]})
    assert q.groupby("floor")["y"].mean().to_numpy() == pytest.approx([1.36, 0.78], abs=0.01)


# --------------------------------------------------------------------------- eight schools


def test_eight_schools_matches_posteriordb() -> None:
    pdb = _posteriordb("eight_schools")
    df = datasets.load("eight_schools")
    assert list(df["school"]) == list("ABCDEFGH")
    np.testing.assert_array_equal(df["y"], pdb["y"])
    np.testing.assert_array_equal(df["se"], pdb["sigma"])
    assert pdb["J"] == len(df)


# --------------------------------------------------------------------------- cafe


def test_cafe_layout() -> None:
    df = datasets.load("cafe")
    assert df["cafe"].iloc[0] == "cafe01"
    assert sorted(df["cafe"].unique()) == [f"cafe{i:02d}" for i in range(1, 21)]
    assert df.groupby("cafe").size().eq(10).all()
    assert df.groupby("cafe")["afternoon"].sum().eq(5).all()
    assert list(df["afternoon"].iloc[:4]) == [0, 1, 0, 1]
    assert pd.api.types.is_integer_dtype(df["afternoon"])
    assert pd.api.types.is_float_dtype(df["wait"])


def test_cafe_reproducible_and_seed_dependent() -> None:
    pd.testing.assert_frame_equal(datasets.load("cafe"), datasets.simulate_cafe())
    pd.testing.assert_frame_equal(datasets.simulate_cafe(seed=3), datasets.simulate_cafe(seed=3))
    assert not datasets.simulate_cafe(seed=3).equals(datasets.simulate_cafe(seed=4))


def test_cafe_truth() -> None:
    truth = datasets.cafe_truth()
    expected = {
        "Intercept": 3.5,
        "afternoon": -1.0,
        "sd(Intercept|cafe)": 1.0,
        "sd(afternoon|cafe)": 0.5,
        "cor(Intercept,afternoon|cafe)": -0.7,
        "sigma": 0.5,
    }
    assert {k: truth[k] for k in expected} == expected
    a, b = truth["Intercept|cafe"], truth["afternoon|cafe"]
    assert list(a.index) == [f"cafe{i:02d}" for i in range(1, 21)]
    assert a.index.equals(b.index)
    assert a.corr(b) < 0
    df = datasets.load("cafe")
    assert set(df.attrs["truth"]) == set(truth)
    pd.testing.assert_series_equal(df.attrs["truth"]["Intercept|cafe"], a)
    # The waits are the cafe means plus noise of sd 0.5: the residuals say so.
    mu = (
        3.5
        + a.reindex(df["cafe"]).to_numpy()
        + (-1.0 + b.reindex(df["cafe"]).to_numpy()) * df["afternoon"].to_numpy()
    )
    assert np.std(df["wait"].to_numpy() - mu) == pytest.approx(0.5, abs=0.1)


def test_simulate_cafe_options() -> None:
    df = datasets.simulate_cafe(n_cafes=120, n_visits=4, seed=1, rho=0.5, sigma=0.1)
    assert df.shape == (480, 3)
    assert df["cafe"].iloc[0] == "cafe001"
    assert df.attrs["truth"]["cor(Intercept,afternoon|cafe)"] == 0.5
    assert df.attrs["truth"]["Intercept|cafe"].corr(df.attrs["truth"]["afternoon|cafe"]) > 0
    with pytest.raises(TypeError, match="rhoo"):
        datasets.simulate_cafe(rhoo=0.5)
    with pytest.raises(DataError, match="rho"):
        datasets.simulate_cafe(rho=1.0)
    with pytest.raises(DataError):
        datasets.simulate_cafe(sigma_b=0.0)


# --------------------------------------------------------------------------- errors and text


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(DataError, match="sleepstudy") as info:
        datasets.load("sleepstudyy")
    assert isinstance(info.value, ValueError)
    assert "Did you mean 'sleepstudy'" in str(info.value)
    with pytest.raises(DataError, match="Penicillin"):
        datasets.load("penicillin")
    with pytest.raises(DataError, match="Available: .*radon"):
        datasets.load("zzz")
    with pytest.raises(DataError):
        datasets.describe("nope")


@pytest.mark.parametrize("name", ["radon", "eight_schools", "cafe"])
def test_describe(name: str) -> None:
    text = datasets.describe(name)
    assert text.startswith(f"{name}: {EXPECTED_SHAPES[name][0]} rows")
    assert "Source:" in text
    for col in datasets.DATASETS[name].columns:
        assert f"  {col}: " in text
    assert "Gelman & Hill" in datasets.describe("radon")
