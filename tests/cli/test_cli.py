"""Tests for the ``multilevel`` command line (multilevel.cli).

JIT compilation dominates the cost of a fit, so the whole file fits only twice, with tiny
settings: once from the built-in ``sleepstudy`` set (shared by a module-scoped fixture)
and once from a CSV file of the same data, which has the same shapes and settings and so
reuses the compiled program. Every error test stops before sampling.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run_main

import multilevel as ml
from multilevel import cli
from multilevel.backends import gaussian_collapsed as gc
from multilevel.inference import collapsed

FORMULA = "Reaction ~ Days + (Days | Subject)"
TINY = ["--chains", "2", "--warmup", "100", "--draws", "100", "--seed", "1", "--quiet"]
PARAMETERS = [
    "Intercept",
    "Days",
    "sd(Intercept|Subject)",
    "sd(Days|Subject)",
    "cor(Intercept,Days|Subject)",
    "sigma",
]
SUMMARY_KEYS = {"mean", "sd", "q5", "q95", "r_hat", "ess_bulk", "ess_tail"}
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def sleepstudy_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sleepstudy.csv"
    ml.datasets.load("sleepstudy").to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def builtin_fit(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("fit")
    json_path, save_path = folder / "fit.json", folder / "fit.nc"
    status, out, err = run_main(
        ["fit", "sleepstudy", FORMULA, *TINY, "--json", str(json_path), "--save", str(save_path)]
    )
    return {"status": status, "out": out, "err": err, "json": json_path, "save": save_path}


# --------------------------------------------------------------------------- fit


def test_fit_prints_lme4_like_summary(builtin_fit):
    assert builtin_fit["status"] == 0, builtin_fit["err"]
    out = builtin_fit["out"]
    assert "Population-level effects" in out
    assert "Group-level effects" in out
    assert f"Formula: {FORMULA}" in out


def test_fit_json_has_exactly_the_documented_structure(builtin_fit):
    report = json.loads(builtin_fit["json"].read_text())
    assert set(report) == {"parameters", "diagnostics", "timing", "model"}
    assert list(report["parameters"]) == PARAMETERS
    for name, row in report["parameters"].items():
        assert set(row) == SUMMARY_KEYS, name
        assert all(isinstance(v, float) and math.isfinite(v) for v in row.values()), name
        assert row["q5"] <= row["mean"] <= row["q95"], name
    diag = report["diagnostics"]
    assert set(diag) == {"converged", "divergences", "max_r_hat", "min_ess_bulk"}
    assert diag["converged"] is True  # the verdict behind exit code 3
    assert isinstance(diag["divergences"], int) and diag["divergences"] >= 0
    assert math.isfinite(diag["max_r_hat"]) and math.isfinite(diag["min_ess_bulk"])
    timing = report["timing"]
    assert set(timing) == {"compile_s", "sampling_s", "total_s"}
    assert all(math.isfinite(v) and v >= 0 for v in timing.values())
    assert report["model"] == {
        "formula": FORMULA,
        "family": "gaussian",
        "link": "identity",
        "method": collapsed.method_name(
            gc.Plan((0,))
        ),  # gaussian, one grouping factor: integrated out
    }
    # Sleep deprivation slows reactions by roughly 10 ms a day (lme4: 10.47).
    assert 5 < report["parameters"]["Days"]["mean"] < 16


def test_saved_fit_loads_and_matches_json(builtin_fit):
    fit = ml.load(builtin_fit["save"])
    report = json.loads(builtin_fit["json"].read_text())
    summary = fit.summary()
    assert list(summary.index) == PARAMETERS
    for name in PARAMETERS:
        assert summary.loc[name, "mean"] == pytest.approx(report["parameters"][name]["mean"])
    assert fit.info["settings"]["chains"] == 2
    assert fit.info["settings"]["draws"] == 100
    assert fit.info["seed"] == 1


def test_convergence_problems_are_printed_once_as_warning_lines(builtin_fit):
    fit = ml.load(builtin_fit["save"])
    out, err = builtin_fit["out"], builtin_fit["err"]
    for problem in fit.diagnostics.problems(centered=False):
        # in the printed summary, and not again on stderr (issue 11: printed twice)
        assert f"  Warning: {problem}" in out.splitlines()
        assert (out + err).count(problem) == 1
    # Not Python's default format ("file.py:12: ConvergenceWarning: ...").
    assert "ConvergenceWarning" not in err


def test_unconverged_fit_exits_3_after_writing_its_outputs(builtin_fit, monkeypatch, tmp_path):
    """The status follows ``fit.diagnostics.converged``; here a saved fit made to fail
    R-hat stands in for the sampler (no sampling)."""
    import dataclasses
    import functools

    stand_in = ml.load(builtin_fit["save"])
    stand_in.diagnostics = dataclasses.replace(stand_in.diagnostics, max_r_hat=1.5)

    @functools.wraps(ml.Model.fit)  # the CLI reads the defaults from its signature
    def fit(self, **options):
        return stand_in

    monkeypatch.setattr(ml.Model, "fit", fit)
    json_path, save_path = tmp_path / "fit.json", tmp_path / "fit.nc"
    argv = ["fit", "sleepstudy", FORMULA, *TINY, "--json", str(json_path), "--save", str(save_path)]
    status, out, err = run_main(argv)
    assert status == cli.EXIT_NOT_CONVERGED == 3
    assert out.startswith("The fit did NOT converge; do not use its estimates: R-hat 1.5")
    assert "--allow-unconverged" in err.splitlines()[-1]
    assert json.loads(json_path.read_text())["diagnostics"]["max_r_hat"] == 1.5
    assert ml.load(save_path).summary().equals(stand_in.summary())
    assert run_main([*argv, "--allow-unconverged"])[0] == 0


def test_fit_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 the fit did not converge" in text and "2 bad input" in text
    assert "--allow-unconverged" in text


def test_fit_from_csv_path_with_prior(sleepstudy_csv, tmp_path):
    json_path = tmp_path / "csv.json"
    status, out, err = run_main(
        [
            "fit",
            str(sleepstudy_csv),
            FORMULA,
            *TINY,
            "--prior",
            "sd=Exponential(0.02)",
            "--json",
            str(json_path),
        ]
    )
    assert status == 0, err
    assert "Population-level effects" in out
    assert "Data:    180 rows; Subject: 18 groups" in out
    report = json.loads(json_path.read_text())
    assert list(report["parameters"]) == PARAMETERS
    assert 5 < report["parameters"]["Days"]["mean"] < 16


def test_unwritable_output_fails_before_sampling(tmp_path):
    status, out, err = run_main(
        ["fit", "sleepstudy", FORMULA, *TINY, "--json", str(tmp_path / "no" / "such" / "f.json")]
    )
    assert status == 2
    assert err.startswith("error:") and "does not exist" in err
    assert out == ""


# --------------------------------------------------------------------------- describe


def test_describe_prints_priors_without_fitting(capsys):
    assert cli.main(["describe", "sleepstudy", FORMULA, "--prior", "sd=HalfNormal(50)"]) == 0
    out = capsys.readouterr().out
    for name in PARAMETERS:
        assert name in out
    assert "HalfNormal(50)" in out and "set by class 'sd'" in out
    assert "LKJ(2)" in out


def test_describe_reads_parquet_and_family_options(tmp_path, capsys):
    path = tmp_path / "cbpp.parquet"
    ml.datasets.load("cbpp").to_parquet(path)
    argv = ["describe", str(path), "incidence | trials(size) ~ period + (1 | herd)"]
    assert cli.main([*argv, "--family", "binomial", "--centered"]) == 0
    out = capsys.readouterr().out
    assert "Family:  binomial (link: logit)" in out
    assert "centred" in out and "non-centred" not in out


def test_missing_values_refused_dropped_or_modelled(tmp_path, capsys):
    data = ml.datasets.load("sleepstudy")
    data.loc[[3, 50, 51], "Days"] = None
    data.loc[[7], "Reaction"] = None
    path = tmp_path / "gappy.csv"
    data.to_csv(path, index=False)
    argv = ["describe", str(path), FORMULA]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "'Days' (3 missing)" in err and "missing='drop'" in err and "Traceback" not in err
    assert cli.main([*argv, "--missing", "drop"]) == 0
    captured = capsys.readouterr()
    assert "Dropped 4 of 180 rows" in captured.err
    assert (
        "Missing data: 4 rows with missing values dropped: Days (3), Reaction (1)" in captured.out
    )
    assert cli.main([*argv, "--missing", "model"]) == 0
    out = capsys.readouterr().out
    assert "mi(Days) (3 missing values of Days)" in out and "sigma[mi(Days)]" in out


def test_prior_with_keyword_arguments_and_parameter_key(capsys):
    argv = ["describe", "sleepstudy", FORMULA, "--prior", "Days=Normal(mu=0, sigma=10)"]
    assert cli.main(argv) == 0
    assert "Normal(0, 10)" in capsys.readouterr().out


def test_design_warning_printed_as_warning_line(tmp_path, capsys):
    path = tmp_path / "one_group.csv"
    ml.datasets.load("sleepstudy").assign(g="a").to_csv(path, index=False)
    assert cli.main(["describe", str(path), "Reaction ~ Days + (1 | g)"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("Warning: The grouping factor `g` has a single level")
    assert "DesignWarning" not in err


# --------------------------------------------------------------------------- errors


def expect_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ")
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return captured.err


def test_unknown_column_names_it_and_suggests_close_match(capsys):
    err = expect_error(capsys, ["describe", "sleepstudy", "Reaction ~ Dayz + (1 | Subject)"])
    assert "'Dayz'" in err and "'Days'" in err


def test_bad_formula_syntax_shows_caret(capsys):
    formula = "Reaction ~ Days + (1 | Subject"
    err = expect_error(capsys, ["describe", "sleepstudy", formula])
    lines = err.splitlines()
    assert formula in lines[1]
    assert lines[2].strip() == "^"
    # The caret sits under the unmatched parenthesis.
    assert lines[2].index("^") - lines[1].index(formula) == formula.index("(")


def test_unknown_data_path(capsys):
    err = expect_error(capsys, ["fit", "no_such_file.csv", FORMULA])
    assert "no_such_file.csv" in err and "sleepstudy" in err


def test_misspelled_data_set_suggests_name(capsys):
    err = expect_error(capsys, ["describe", "slepstudy", FORMULA])
    assert "Did you mean 'sleepstudy'?" in err


def test_unreadable_data_file(tmp_path, capsys):
    path = tmp_path / "broken.parquet"
    path.write_text("not parquet at all")
    err = expect_error(capsys, ["describe", str(path), FORMULA])
    assert "broken.parquet" in err


def test_directory_as_data(tmp_path, capsys):
    err = expect_error(capsys, ["describe", str(tmp_path), FORMULA])
    assert "not a file" in err


def test_misspelled_prior(capsys):
    err = expect_error(capsys, ["describe", "sleepstudy", FORMULA, "--prior", "sd=HalfNormall(1)"])
    assert "HalfNormal" in err


def test_inverse_wishart_is_refused_with_explanation(capsys):
    argv = ["describe", "sleepstudy", FORMULA, "--prior", "sd=InverseWishart(3)"]
    err = expect_error(capsys, argv)
    assert "InverseWishart is not offered" in err and "LKJ" in err


@pytest.mark.parametrize("item", ["HalfNormal(1)", "=HalfNormal(1)", "sd=", "Normal(mu=0)"])
def test_prior_without_key(capsys, item):
    err = expect_error(capsys, ["describe", "sleepstudy", FORMULA, "--prior", item])
    assert "KEY=PRIOR" in err


def test_prior_given_twice(capsys):
    argv = ["describe", "sleepstudy", FORMULA, "--prior", "sd=HalfNormal(1)"]
    err = expect_error(capsys, [*argv, "--prior", "sd=HalfNormal(2)"])
    assert "twice" in err


def test_unknown_family(capsys):
    err = expect_error(capsys, ["describe", "sleepstudy", FORMULA, "--family", "weibul"])
    assert "gaussian" in err and "weibull" in err  # the list of families, with the near miss


def test_bad_sampler_option_is_an_error_not_a_traceback(capsys):
    err = expect_error(capsys, ["fit", "sleepstudy", FORMULA, "--target-accept", "1.5"])
    assert "target_accept" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "sleepstudy"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "sleepstudy", FORMULA, "--chains", "two"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- datasets


def test_datasets_lists_every_built_in_set(capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line and line[0] != " "]
    for name in ml.datasets.names():
        assert name in listed
    assert any(line.startswith("radon") and "919 rows" in line for line in out.splitlines())


def test_datasets_name_prints_full_description(capsys):
    assert cli.main(["datasets", "radon"]) == 0
    assert capsys.readouterr().out.strip() == ml.datasets.describe("radon")


def test_datasets_unknown_name(capsys):
    err = expect_error(capsys, ["datasets", "radom"])
    assert "'radon'" in err


def test_module_entry_point_runs():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "multilevel.cli", "datasets"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "radon" in result.stdout
