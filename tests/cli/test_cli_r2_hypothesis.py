"""``multilevel r2`` and ``multilevel hypothesis`` on a saved fit: the numbers printed
and written are the Python API's on the same file (``ml.load(path).r2(data=...)``,
``.hypothesis(...)``). One sleepstudy fit, saved by the CLI, shared by the module; the
statistics are tested in tests/test_r2.py and tests/test_hypothesis.py."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from cli_run import run_main

import multilevel as ml

FORMULA = "Reaction ~ Days + (Days | Subject)"
SMALL = ["--chains", "2", "--warmup", "300", "--draws", "300", "--seed", "1", "--quiet"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fits") / "sleep.nc"
    status, _, err = run_main(["fit", "sleepstudy", FORMULA, *SMALL, "--save", str(path)])
    assert status == 0, err
    return path


@pytest.mark.parametrize("extra", [[], ["--groups", "zero"], ["--loo", "--seed", "4"]])
def test_r2_prints_and_writes_the_api_numbers(saved, tmp_path, extra):
    json_path = tmp_path / "r2.json"
    argv = ["r2", str(saved), "--data", "sleepstudy", *extra, "--json", str(json_path)]
    status, out, err = run_main(argv)
    assert status == 0, err
    report = json.loads(json_path.read_text())
    fit, sleep = ml.load(saved), ml.datasets.load("sleepstudy")
    groups = "zero" if "zero" in extra else "fitted"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.LooWarning)
        if "--loo" in extra:
            expected = fit.loo_r2(groups=groups, seed=4, data=sleep)
        else:
            expected = fit.r2(groups=groups, data=sleep)
    assert report["method"] == expected.method and report["groups"] == groups
    assert report["n_draws"] == 600
    for column, value in expected.summary().iloc[0].items():
        assert report[column] == pytest.approx(value, rel=1e-12), column
    assert f"{report['estimate']:.4f}" in out
    assert out.startswith("LOO-adjusted R²" if "--loo" in extra else "Bayesian R²")


def test_hypothesis_prints_and_writes_the_api_numbers(saved, tmp_path):
    json_path = tmp_path / "h.json"
    hypotheses = ["Days > 8", "`sd(Days|Subject)` < 5", "Days = 10", "Days > -100"]
    argv = ["hypothesis", str(saved), *hypotheses, "--prob", "0.8", "--json", str(json_path)]
    status, out, err = run_main(argv)
    assert status == 0, err
    report = json.loads(json_path.read_text())
    expected = ml.load(saved).hypothesis(*hypotheses, prob=0.8)
    assert report["prob"] == 0.8 and report["notes"] == expected.notes
    for got, (_, want) in zip(report["hypotheses"], expected.table.iterrows(), strict=True):
        assert got["hypothesis"] == want["hypothesis"]
        for column in ("estimate", "sd", "lower", "upper", "post_prob", "evid_ratio"):
            if got[column] is None:  # JSON has no inf or NaN: null, and a note says why
                assert not abs(want[column]) < float("inf"), column
            else:
                assert got[column] == pytest.approx(want[column], rel=1e-12), column
    # a saved fit has no Model to draw its prior from: the point hypothesis says so
    assert report["hypotheses"][2]["evid_ratio"] is None
    assert "keeps no Model" in out and "no draw contradicts it" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["hypothesis", "{fit}", "__import__('os').system('ls') > 0"], "Unknown function"),
        (["hypothesis", "{fit}", "Dayz > 0"], "Unknown name 'Dayz'"),
        (["r2", "{fit}", "--data", "radon"], "radon"),
    ],
)
def test_bad_input_exits_2_with_one_line(saved, argv, message):
    status, out, err = run_main([a.format(fit=saved) for a in argv])
    assert status == 2, err
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
