"""benchmarks/glmm_time.py's arithmetic, on a made-up fit row (nothing is fitted)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import glmm_time  # noqa: E402
import peers  # noqa: E402


def test_group_sizes_read_the_formulas_grouping_factors():
    verbagg = peers.BY_NAME["VerbAgg"]
    data = peers.make_data(verbagg)
    assert glmm_time.group_sizes(verbagg, data) == {"id": 316, "item": 24}
    bern = peers.BY_NAME["bern20k"]
    assert glmm_time.group_sizes(bern, peers.make_data(bern, rows=5000)) == {"g": 200}


def test_measures_from_a_fit_row():
    args = SimpleNamespace(chains=2, warmup=100, draws=50)
    row = {
        "min_ess_bulk": 90.0,
        "process_wall_s": 30.0,
        "timing": {
            "compile_s": 8.0,
            "sampling_s": 12.5,
            "warmup_s": 9.0,
            "draws_s": 3.0,
            "gradients_warmup": [1500, 1700],
            "gradients_sampling": [700, 800],
            "chain_workers": 2,
            "seconds_per_gradient": 24.0 / 4700,
        },
    }
    m = glmm_time.measures(row, args)
    assert m["warmup_share"] == pytest.approx(0.75)
    assert m["gradients_per_warmup_draw"] == pytest.approx(3200 / 200)
    assert m["gradients_per_draw"] == pytest.approx(1500 / 100)
    assert m["us_per_gradient"] == pytest.approx(1e6 * 24 / 4700)
    assert m["ess_per_process_s"] == pytest.approx(3.0)
    assert (
        glmm_time.measures(row, SimpleNamespace(chains=2, warmup=0, draws=50))[
            "gradients_per_warmup_draw"
        ]
        is None
    )


def test_measures_from_a_gibbs_fit_row():
    row = {
        "min_ess_bulk": 1800.0,
        "process_wall_s": 24.0,
        "timing": {
            "compile_s": 6.0,
            "sampling_s": 16.0,
            "warmup_s": 8.0,
            "draws_s": 8.0,
            "sweeps_per_chain": 2000,
            "seconds_per_sweep": 16.0 / 2000,
        },
    }
    m = glmm_time.measures(row, SimpleNamespace(chains=4, warmup=1000, draws=1000))
    assert m["warmup_share"] == pytest.approx(0.5)
    assert m["us_per_sweep"] == pytest.approx(8000.0)
    assert m["ess_per_process_s"] == pytest.approx(75.0)
    assert "us_per_gradient" not in m
