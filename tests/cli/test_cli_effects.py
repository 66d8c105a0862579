"""``multilevel effects`` on a saved fit gives the numbers ``fit.predictions`` /
``comparisons`` / ``slopes`` give in Python (the same draws, so equal to float
rounding), and refuses bad --at and --plot requests with a message."""

import json

import numpy as np
import pytest
from cli_run import run_main

import multilevel as ml

SETTINGS = dict(chains=2, warmup=200, draws=150, seed=1, progress=False, warn=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cbpp = ml.datasets.load("cbpp")
    model = ml.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial")
    fit = model.fit(**SETTINGS)
    path = tmp_path_factory.mktemp("effects") / "cbpp.nc"
    fit.save(path)
    return fit, cbpp, path


def _rows(path):
    return json.loads(path.read_text())["rows"]


def test_predictions_match_python(saved, tmp_path):
    fit, cbpp, path = saved
    out = tmp_path / "p.json"
    argv = ["effects", str(path), "--data", "cbpp", "--at", "period=1,4", "--groups",
            "integrated", "--json", str(out)]  # fmt: skip
    status, printed, _ = run_main(argv)
    assert status == 0 and "groups='integrated'" in printed
    expected = fit.predictions(at={"period": ["1", "4"]}, groups="integrated").summary()
    got = _rows(out)
    assert [str(r["period"]) for r in got] == ["1", "4"]  # read as numbers, matched as text
    np.testing.assert_allclose([r["estimate"] for r in got], expected["estimate"], rtol=1e-9)
    np.testing.assert_allclose([r["q95"] for r in got], expected["q95"], rtol=1e-9)


def test_comparisons_and_slopes_match_python(saved, tmp_path):
    fit, cbpp, path = saved
    out = tmp_path / "c.json"
    argv = ["effects", str(path), "--data", "cbpp", "--compare", "period", "--by", "all",
            "--groups", "integrated", "--comparison", "ratio", "--json", str(out)]  # fmt: skip
    assert run_main(argv)[0] == 0
    expected = fit.comparisons("period", by=True, groups="integrated", comparison="ratio")
    np.testing.assert_allclose(
        [r["estimate"] for r in _rows(out)], expected.summary()["estimate"], rtol=1e-9
    )
    assert [r["contrast"] for r in _rows(out)] == ["2 / 1", "3 / 1", "4 / 1"]


def test_plot_and_bad_requests(saved, tmp_path):
    _, _, path = saved
    figure = tmp_path / "e.png"
    argv = ["effects", str(path), "--data", "cbpp", "--at", "period=1,2,3,4", "--groups",
            "zero", "--plot", str(figure)]  # fmt: skip
    status, printed, _ = run_main(argv)
    assert status == 0 and figure.stat().st_size > 0 and "Plot written" in printed
    status, _, err = run_main(["effects", str(path), "--data", "cbpp", "--at", "period"])
    assert status != 0 and "COLUMN=VALUES" in err and "Traceback" not in err
    status, _, err = run_main(["effects", str(path), "--data", "cbpp", "--plot", str(figure)])
    assert status != 0 and "give --at" in err
