"""The evaluation commands of the CLI: ``multilevel loo`` and ``multilevel compare``.

They read saved fits, so the file fits only once: two radon models (with and without
county intercepts) saved by ``multilevel fit --save`` in a module-scoped fixture. The
other inputs (a fit saved without its log-likelihood, a fit of other data) are edited
copies of those files. The statistics are tested in tests/test_evaluation.py; these check
the wiring: the numbers printed and written are the API's, and bad inputs exit 2 with a
one-line message.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from cli_run import run_main

import multilevel as ml
from multilevel._arviz import az

FORMULAS = {"partial": "log_radon ~ floor + (1 | county)", "complete": "log_radon ~ floor"}
SMALL = ["--chains", "2", "--warmup", "200", "--draws", "200", "--seed", "1", "--quiet"]
COMPARE_COLUMNS = ["rank", "elpd", "se", "p", "n_params", "elpd_diff", "se_diff", "weight"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """{"partial": path, "complete": path}: the two radon fits, saved by the CLI."""
    folder = tmp_path_factory.mktemp("fits")
    paths = {}
    for name, formula in FORMULAS.items():
        paths[name] = folder / f"{name}.nc"
        status, _, err = run_main(["fit", "radon", formula, *SMALL, "--save", str(paths[name])])
        assert status == 0, err
    return paths


@pytest.fixture(scope="module")
def without_log_likelihood(saved, tmp_path_factory) -> Path:
    """The partial-pooling fit saved again without its log_likelihood group."""
    fit = ml.load(saved["partial"])
    groups = [g for g in fit.idata.groups() if g != "log_likelihood"]
    fit.idata = az.InferenceData(**{g: getattr(fit.idata, g) for g in groups})
    return fit.save(tmp_path_factory.mktemp("no_ll") / "no_ll.nc")


@pytest.fixture(scope="module")
def other_data(saved, tmp_path_factory) -> Path:
    """The complete-pooling fit with other observed values: a fit of other data."""
    fit = ml.load(saved["complete"])
    fit.idata.observed_data["log_radon"] = fit.idata.observed_data["log_radon"] + 1.0
    return fit.save(tmp_path_factory.mktemp("other") / "other.nc")


def api(path: Path, method: str = "loo"):
    """``ml.load(path).loo()`` (or ``.waic()``), the Python API's answer; its LooWarning
    is the CLI tests' business, not this call's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.LooWarning)
        return getattr(ml.load(path), method)()


def expect_error(argv: list[str]) -> str:
    """Exit status 2, nothing on stdout, one ``error:`` line and no traceback."""
    status, out, err = run_main(argv)
    assert status == 2, err
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- loo


def test_loo_prints_result_and_json_has_the_api_numbers(saved, tmp_path):
    json_path = tmp_path / "loo.json"
    status, out, err = run_main(["loo", str(saved["partial"]), "--json", str(json_path)])
    assert status == 0, err
    assert out.startswith("PSIS-LOO cross-validation: 919 observations, 400 posterior draws")
    assert "nominal count 89" in out and "Pareto k:" in out
    report = json.loads(json_path.read_text())
    expected = api(saved["partial"])
    assert report["method"] == "loo"
    assert report["elpd"] == pytest.approx(expected.elpd_loo, rel=1e-12)
    assert report["se"] == pytest.approx(expected.se, rel=1e-12)
    assert report["p"] == pytest.approx(expected.p_loo, rel=1e-12)
    assert (report["n_params"], report["n_obs"], report["n_samples"]) == (89, 919, 400)
    assert report["pareto_k"] == expected.pareto_k
    assert sum(report["pareto_k"].values()) == 919
    assert f"{expected.elpd_loo:10.1f}" in out
    # Partial pooling: far fewer effective parameters than the 85 county intercepts.
    assert 20 < report["p"] < 70


def test_loo_warning_is_printed_exactly_when_pareto_k_is_bad(saved, tmp_path):
    json_path = tmp_path / "loo.json"
    status, out, err = run_main(["loo", str(saved["partial"]), "--json", str(json_path)])
    assert status == 0
    report = json.loads(json_path.read_text())
    bad = report["pareto_k"]["bad"] > 0
    assert ("PSIS-LOO is unreliable" in out) == bad
    assert (report["warning"] is not None) == bad
    if bad:  # printed once, with the result (issue 11: it was repeated on stderr)
        assert f"  Warning: {report['warning']}" in out.splitlines()
        assert (out + err).count(report["warning"]) == 1
        assert "LooWarning" not in err  # our format, not Python's


def test_waic_flag(saved, tmp_path):
    json_path = tmp_path / "waic.json"
    status, out, err = run_main(["loo", str(saved["complete"]), "--waic", "--json", str(json_path)])
    assert status == 0, err
    assert out.startswith("WAIC: 919 observations")
    assert "p_waic" in out and "Pareto k" not in out
    report = json.loads(json_path.read_text())
    assert report["method"] == "waic" and "pareto_k" not in report
    assert report["elpd"] == pytest.approx(api(saved["complete"], "waic").elpd_waic, rel=1e-12)
    assert report["n_params"] == 3  # Intercept, floor, sigma


def test_loo_without_log_likelihood_says_why_and_what_to_do(without_log_likelihood):
    err = expect_error(["loo", str(without_log_likelihood)])
    assert "no pointwise log-likelihood" in err
    assert "no_ll.nc" in err
    # The refit command names the fit's own formula.
    assert "multilevel fit DATA 'log_radon ~ floor + (1 | county)' --save FILE" in err
    assert "log_likelihood=True" in err


def test_loo_missing_file(tmp_path):
    err = expect_error(["loo", str(tmp_path / "nope.nc")])
    assert "No saved fit at" in err and "nope.nc" in err


def test_loo_unreadable_file_and_directory(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_text("not netCDF")
    assert "Cannot read the saved fit" in expect_error(["loo", str(junk)])
    assert "is a directory" in expect_error(["loo", str(tmp_path)])


def test_loo_unwritable_json_fails_before_reading(saved, tmp_path):
    err = expect_error(["loo", str(saved["partial"]), "--json", str(tmp_path / "no" / "x.json")])
    assert "--json" in err and "does not exist" in err


# --------------------------------------------------------------------------- compare


def test_compare_ranks_partial_pooling_first_and_writes_table_and_plot(saved, tmp_path):
    table_path, plot_path = tmp_path / "compare.csv", tmp_path / "compare.png"
    argv = [f"{name}={saved[name]}" for name in ("complete", "partial")]  # worst first
    status, out, err = run_main(
        ["compare", *argv, "--csv", str(table_path), "--plot", str(plot_path)]
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Fits ranked by PSIS-LOO")
    rows = [line.split()[0] for line in lines if line.split()[:1] in (["partial"], ["complete"])]
    assert rows == ["partial", "complete"]
    table = pd.read_csv(table_path, index_col="model")
    assert list(table.index) == ["partial", "complete"]
    assert list(table.columns) == [*COMPARE_COLUMNS, "warning", "pareto_k_bad"]
    assert list(table["rank"]) == [0, 1]
    assert table.loc["partial", "elpd_diff"] == 0
    assert table.loc["complete", "elpd_diff"] > 2 * table.loc["complete", "se_diff"]
    assert table.loc["partial", "elpd"] == pytest.approx(api(saved["partial"]).elpd_loo, rel=1e-12)
    assert f"{table.loc['complete', 'elpd_diff']:.2f}" in out
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Plot written to {plot_path}" in out


def test_compare_waic(saved, tmp_path):
    table_path = tmp_path / "waic.csv"
    argv = [f"{name}={path}" for name, path in saved.items()]
    status, out, err = run_main(["compare", *argv, "--ic", "waic", "--csv", str(table_path)])
    assert status == 0, err
    assert out.startswith("Fits ranked by WAIC")
    table = pd.read_csv(table_path, index_col="model")
    assert list(table.columns) == [*COMPARE_COLUMNS, "warning"]
    assert table.index[0] == "partial"
    assert table.loc["complete", "elpd"] == pytest.approx(
        api(saved["complete"], "waic").elpd_waic, rel=1e-12
    )


@pytest.mark.parametrize("item", ["partial.nc", "=partial.nc", "partial="])
def test_compare_bad_name_path_syntax(saved, item):
    err = expect_error(["compare", f"complete={saved['complete']}", item])
    assert repr(item) in err and "NAME=PATH" in err


def test_compare_needs_two_fits(saved):
    err = expect_error(["compare", f"partial={saved['partial']}"])
    assert "two or more fits" in err and "partial=" in err


def test_compare_name_given_twice(saved):
    err = expect_error(["compare", f"a={saved['partial']}", f"a={saved['complete']}"])
    assert "'a' is given twice" in err


def test_compare_missing_file_names_the_argument(saved, tmp_path):
    missing = tmp_path / "nope.nc"
    err = expect_error(["compare", f"partial={saved['partial']}", f"other={missing}"])
    assert err.startswith(f"error: other={missing}: No saved fit at")


def test_compare_fit_without_log_likelihood_names_the_argument(saved, without_log_likelihood):
    item = f"noll={without_log_likelihood}"
    err = expect_error(["compare", f"complete={saved['complete']}", item])
    assert err.startswith(f"error: {item}: ") and "no pointwise log-likelihood" in err


def test_compare_fits_of_different_data(saved, other_data):
    err = expect_error(["compare", f"partial={saved['partial']}", f"other={other_data}"])
    assert "same rows" in err and "'other'" in err


def test_compare_unwritable_table_fails_before_reading(saved, tmp_path):
    argv = [f"{name}={path}" for name, path in saved.items()]
    err = expect_error(["compare", *argv, "--csv", str(tmp_path / "no" / "t.csv")])
    assert "--csv" in err and "does not exist" in err
