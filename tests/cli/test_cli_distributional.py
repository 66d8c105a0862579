"""`--formula-for PARAM=FORMULA`: a family parameter's own formula on the command line."""

import json

import pandas as pd
import pytest
from cli_run import run_main

import multilevel as ml
from multilevel.cli.io import CliError
from multilevel.cli.model_options import distributional_formula

FORMULA = "Reaction ~ Days + (1 | Subject)"


def test_describe_lists_the_parameters_formula():
    status, out, err = run_main(
        ["describe", "sleepstudy", FORMULA, "--formula-for", "sigma=~ Days"]
    )
    assert status == 0, err
    assert "sigma ~ Days (link: log)" in out
    assert "sigma_Days" in out and "sigma_Intercept" in out


def test_fit_with_a_sigma_formula_and_a_fixed_nu(tmp_path):
    report = tmp_path / "fit.json"
    argv = ["fit", "sleepstudy", FORMULA, "--family", "student_t",
            "--formula-for", "sigma ~ Days", "--formula-for", "nu=5",
            "--chains", "2", "--warmup", "200", "--draws", "200", "--quiet",
            "--json", str(report), "--allow-unconverged"]  # fmt: skip
    status, out, err = run_main(argv)
    assert status == 0, err
    assert "sigma ~ Days" in out and "nu = 5" in out
    parameters = json.loads(report.read_text())["parameters"]
    assert {"sigma_Intercept", "sigma_Days"} <= set(parameters) and "nu" not in parameters


@pytest.mark.parametrize(
    "items, message",
    [(["sigma"], "PARAM=FORMULA"), (["sigma=~ x", "sigma=~ z"], "twice"), (["=4"], "PARAM")],
)
def test_unreadable_items_are_refused(items, message):
    with pytest.raises(CliError, match=message):
        distributional_formula("y ~ x", items)


def test_items_become_bf():
    assert distributional_formula("y ~ x", ["sigma=~ x", "nu=4"]) == ml.bf(
        "y ~ x", sigma="~ x", nu=4
    )
    assert distributional_formula("y ~ x", None) == "y ~ x"


def test_a_bad_parameter_is_a_message_not_a_traceback():
    status, _, err = run_main(["describe", "sleepstudy", FORMULA, "--formula-for", "phi=~ Days"])
    assert status == 2 and "no parameter 'phi'" in err and "Traceback" not in err


def test_predict_a_parameter_from_a_saved_fit(tmp_path):
    saved = tmp_path / "fit.nc"
    argv = ["fit", "sleepstudy", FORMULA, "--formula-for", "sigma=~ Days",
            "--chains", "1", "--warmup", "150", "--draws", "100", "--quiet",
            "--save", str(saved), "--allow-unconverged"]  # fmt: skip
    status, _, err = run_main(argv)
    assert status == 0, err
    new = tmp_path / "new.csv"
    new.write_text("Days,Subject\n0,308\n9,308\n")
    out_csv = tmp_path / "sigma.csv"
    argv = ["predict", str(saved), str(new), "--data", "sleepstudy", "--dpar", "sigma",
            "--out", str(out_csv)]  # fmt: skip
    status, out, err = run_main(argv)
    assert status == 0, err
    table = pd.read_csv(out_csv)
    assert (table["mean"] > 0).all() and len(table) == 2
