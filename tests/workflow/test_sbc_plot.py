"""The SBC ECDF-difference plot, on synthetic ranks (no sampler)."""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.workflow import sbc_plot
from multilevel.workflow.sbc import SBCResult
from multilevel.workflow.sbc_plot import plot_ecdf_difference


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    ranks = pd.DataFrame(
        {
            "uniform": rng.integers(0, 100, 200),
            "low": np.floor(rng.beta(1, 3, 200) * 100).astype(int),  # truths sit low
            "third": rng.integers(0, 100, 200),
            "fourth": rng.integers(0, 100, 200),
        }
    )
    return SBCResult(ranks, n_draws=99, formula="y ~ 1 + (1 | g)")


def test_one_panel_per_parameter_with_points_outside_the_band(result, tmp_path):
    fig = plot_ecdf_difference(result, tmp_path / "sbc.svg", ncols=3)
    assert (tmp_path / "sbc.svg").stat().st_size > 10_000
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4 and len(fig.axes) == 6  # 2 rows of 3, two hidden
    titles = [ax.get_title().split("\n")[0] for ax in panels]
    assert titles == ["uniform", "low", "third", "fourth"]
    marked = {
        t: any(line.get_label() == "outside" for line in ax.lines) for t, ax in zip(titles, panels)
    }
    assert marked["low"] and not marked["uniform"]
    # The ECDF of low ranks rises early: its difference from the uniform CDF is positive.
    low = panels[1].lines[1].get_ydata()
    assert np.max(low) > 0.2


def test_bad_image_name_fails_before_drawing(result, tmp_path, monkeypatch):
    def drawn(*args, **kwargs):
        raise AssertionError("a figure was made before the name was checked")

    monkeypatch.setattr(sbc_plot, "new_figure", drawn)
    with pytest.raises(ml.MultilevelError, match="image format"):
        result.plot(tmp_path / "sbc.jpg")
    assert not (tmp_path / "sbc.jpg").exists()
