"""The command line on bad inputs (issue 11): one ``error:`` line and exit status 2, never a
traceback; warnings printed once; help texts as written; ``--version`` as a status (what
these import: test_cli_imports.py). Nothing here samples: every error is raised before."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from cli_run import run_main

from multilevel import cli

FORMULA = "y ~ x + (1 | g)"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n).round(3),
            "x": rng.normal(size=n).round(3),
            "g": np.repeat(list("abcdef"), 10),
        }
    )


@pytest.fixture
def csv(tmp_path):
    def write(frame: pd.DataFrame, name: str = "data.csv") -> str:
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return str(path)

    return write


def one_error(argv: list[str]) -> str:
    """Run the CLI; it must fail with status 2 and exactly one `error:` line."""
    status, out, err = run_main(argv)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_text_cell_in_a_numeric_csv_column_is_refused(frame, csv):
    data = frame.astype({"x": object})
    data.loc[7, "x"] = "oops"
    path = csv(data)
    for command in ("describe", "fit"):
        line = one_error([command, path, FORMULA])
        assert "Column 'x'" in line and "row 7: 'oops'" in line


def test_date_strings_in_a_csv_are_refused(frame, csv):
    path = csv(frame.assign(t=pd.date_range("2020-01-01", periods=60).strftime("%Y-%m-%d")))
    line = one_error(["fit", path, "y ~ t + (1 | g)"])
    assert "Column 't' holds dates as text" in line and ".dt.days" in line


def test_dates_in_a_parquet_file_are_refused(frame, tmp_path):
    path = tmp_path / "dates.parquet"
    frame.assign(t=pd.date_range("2020-01-01", periods=60)).to_parquet(path)
    assert "Column 't' holds dates or times" in one_error(["fit", str(path), "y ~ t + (1 | g)"])


def test_text_response_from_a_csv_is_refused(frame, csv):
    data = frame.astype({"y": object})
    data.loc[3, "y"] = "oops"
    line = one_error(["fit", csv(data), FORMULA])
    assert "The response `y`" in line and "row 3: 'oops'" in line


def test_repeated_csv_header_is_refused(frame, tmp_path):
    # read_csv would rename the second `x` to `x.1`, and `x` would mean the first
    path = tmp_path / "twice.csv"
    frame.assign(x2=frame["x"] + 1).to_csv(path, index=False, header=["y", "x", "g", "x"])
    line = one_error(["describe", str(path), FORMULA])
    assert "more than one column named 'x' (columns 2, 4)" in line
    # a column that is really called `x.1` is left alone
    frame.rename(columns={"x": "x.1"}).to_csv(path, index=False)
    assert list(cli.read_data(str(path)).columns) == ["y", "x.1", "g"]


@pytest.mark.parametrize(
    "flags, name",
    [
        (["--seed", "-1"], "seed"),
        (["--max-tree-depth", "0"], "max_tree_depth"),
        (["--max-tree-depth", "-2"], "max_tree_depth"),
        (["--target-accept", "1.5"], "target_accept"),
        (["--chains", "0"], "chains"),
    ],
)
def test_bad_sampler_options_are_one_error_line(frame, csv, flags, name):
    assert f"error: {name} must be" in one_error(["fit", csv(frame), FORMULA, *flags])


def test_bad_seed_for_prior_check_is_one_error_line(frame, csv):
    assert "seed must be" in one_error(["prior-check", csv(frame), FORMULA, "--seed", "-1"])


def test_infinite_prior_scale_is_one_error_line(frame, csv):
    line = one_error(["describe", csv(frame), FORMULA, "--prior", "sd=HalfNormal(1e400)"])
    assert "HalfNormal: `sigma` must be a finite number" in line


# --------------------------------------------------------------------------- output


def test_a_warning_the_output_showed_is_not_printed_again(capsys):
    with cli.reported_warnings():
        print("Diagnostics:\n  Warning: the chains disagree")
        warnings.warn("the chains disagree", UserWarning, stacklevel=1)
        warnings.warn("another problem", UserWarning, stacklevel=1)
    captured = capsys.readouterr()
    assert captured.out.count("the chains disagree") == 1
    assert "the chains disagree" not in captured.err
    assert captured.err == "Warning: another problem\n"


def test_help_texts_show_percent_signs_as_written():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    texts = {name: sub.format_help() for name, sub in commands.items()}
    assert "90% intervals" in " ".join(texts["recover"].split())
    assert "5/50/95% quantiles" in " ".join(texts["predict"].split())
    assert not [name for name, text in texts.items() if "%%" in text]


def test_family_help_names_every_family():
    # The help is written by hand (with words on ordered and unordered categories), not
    # read from multilevel.families, which imports JAX; this keeps it complete.
    from multilevel.families import FAMILIES

    parser = cli.build_parser()
    fit = next(a for a in parser._actions if a.dest == "command").choices["fit"]
    text = next(a for a in fit._actions if a.dest == "family").help
    assert [name for name in FAMILIES if not re.search(rf"\b{name}\b", text)] == []


def test_help_shows_the_chains_each_command_uses():
    """fit uses Model.fit's 4 chains, sbc ml.sbc's 2 (the help said 4 for sbc too)."""
    import inspect

    from multilevel.model import Model
    from multilevel.workflow.sbc import sbc

    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    chains = {
        name: next(a for a in commands[name]._actions if a.dest == "chains").help
        for name in ("fit", "sbc")
    }
    assert chains["fit"] == f"default {inspect.signature(Model.fit).parameters['chains'].default}"
    assert chains["sbc"] == f"default {inspect.signature(sbc).parameters['chains'].default}"
    assert chains == {"fit": "default 4", "sbc": "default 2"}


def test_version_is_printed_and_returned_as_a_status(capsys):
    assert cli.main(["--version"]) == 0  # not argparse's SystemExit
    assert capsys.readouterr().out.startswith("multilevel ")
