"""Shared by the tests of ``multilevel.chunked``: data, and the in-memory reference that
chunked statistics must equal."""

from functools import cache

import numpy as np
import pandas as pd

import multilevel as ml
from multilevel.backends.gaussian_collapsed import sufficient_statistics
from multilevel.chunked import DataSummary
from multilevel.design import build_design
from multilevel.families import get_family
from multilevel.formula import parse_formula

RADON = "log_radon ~ floor + (1 + floor | county)"
MIXED = "y ~ x * kind + C(k) + shade + (1 + x | g)"


@cache
def radon_frame() -> pd.DataFrame:
    return ml.datasets.load("radon")


@cache
def mixed_frame() -> pd.DataFrame:
    """Categorical fixed predictors whose levels the first rows do not show."""
    rng = np.random.default_rng(3)
    n = 600
    df = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "kind": rng.choice(["b", "c", "a", "d"], size=n),
            "k": rng.choice([3, 1, 2, 10], size=n),  # numbers made categorical by C(k)
            "shade": pd.Categorical(
                rng.choice(["zinc", "amber", "moss"], size=n),
                categories=["zinc", "amber", "moss"],  # not sorted: zinc is the base
            ),
            "g": rng.integers(0, 40, size=n) * 7 + 3,  # numeric labels: 10 sorts after 3
        }
    )
    df["y"] = 2 + df.x + (df.kind == "a") + 0.1 * df.k + rng.normal(size=n)
    # rows sorted so the first chunks hold only kind "d" (and "b"), never "a"
    order = np.argsort(df.kind.map({"d": 0, "b": 1, "c": 2, "a": 3}).to_numpy(), kind="stable")
    return df.iloc[order].reset_index(drop=True)


def small_frame() -> pd.DataFrame:
    """60 rows, 6 groups: for the messages about bad input."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "y": rng.normal(size=60),
            "x": rng.normal(size=60),
            "g": np.repeat(list("abcdef"), 10),
            "h": np.tile(list("uv"), 30),
        }
    )


def in_memory(formula, df):
    design = build_design(parse_formula(formula), df, get_family("gaussian")[0])
    return design, sufficient_statistics(design)


def assert_same(summary: DataSummary, stats: dict, design, ref: dict) -> None:
    assert set(stats) == set(ref)
    for key in ("beta0", "XtX", "ZtZ", "ZtX", "n"):
        np.testing.assert_allclose(stats[key], ref[key], rtol=1e-9, atol=1e-12, err_msg=key)
    # ee, Xe and Zte are sums of residuals e = y - X beta0. The in-memory beta0 comes from
    # lstsq on X, ours from the normal equations: both are the least-squares solution but
    # may differ in their last digits, and Z'e moves with beta0 to first order (X'e is zero
    # up to rounding on both sides). So: relative 1e-8, and an absolute tolerance at the
    # rounding level of the terms each sum cancels.
    np.testing.assert_allclose(stats["ee"], ref["ee"], rtol=1e-8)
    scale = np.sqrt(np.diag(ref["XtX"]) * ref["ee"])
    np.testing.assert_allclose(stats["Xe"], ref["Xe"], rtol=0, atol=1e-8 * scale.max())
    np.testing.assert_allclose(
        stats["Zte"], ref["Zte"], rtol=1e-8, atol=1e-10 * np.abs(ref["Zte"]).max()
    )
    # the summary: what build_design and the default priors see
    X = design.X
    assert summary.n == design.n
    assert summary.columns == design.columns
    assert summary.has_intercept == design.has_intercept
    np.testing.assert_allclose(summary.y_mean, np.mean(design.y), rtol=1e-12)
    np.testing.assert_allclose(summary.y_sd, np.std(design.y), rtol=1e-10)
    np.testing.assert_allclose(summary.x_mean, X.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(summary.x_sd, X.std(axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(summary.x_rms, np.sqrt(np.mean(X**2, axis=0)), rtol=1e-12)
    assert len(summary.blocks) == len(design.blocks)
    for mine, theirs in zip(summary.blocks, design.blocks):
        assert mine.term == theirs.term
        assert mine.coefs == theirs.coefs
        assert mine.levels == theirs.levels
        np.testing.assert_allclose(mine.scales, theirs.scales, rtol=1e-10)
