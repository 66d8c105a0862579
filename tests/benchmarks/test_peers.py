"""benchmarks/peers.py without fitting anything: the issue 16 cases' data, the lme4
column's command line, its skip path and the parsing of ``lme4_fit.R``'s output (R is
stood in for by a shell script printing what the R script prints), and the ratios."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import peers  # noqa: E402

ARGS = SimpleNamespace(timeout=60)
R_OUTPUT = (
    "version\tR version 4.3.3 (2024-02-29)\t1.1.35.1\n"
    "fit_s\t2.04\n"
    "fixef\t(Intercept)\t-0.49\n"
    "fixef\tx\t0.51\n"
    "varcorr\tg\t(Intercept)\tNA\t0.69\n"
    "varcorr\tg\tx\tNA\t0.31\n"
    "varcorr\tg\t(Intercept)\tx\t-0.38\n"
    "warning\tModel failed to converge with max|grad| = 0.003\n"
)


def test_glmm_cases_are_registered_with_their_designs():
    assert set(peers.GLMM_CASES) <= set(peers.BY_NAME)
    expected = {
        "bern20k": ("bernoulli", 20_000, 200, -0.5),
        "bern200k": ("bernoulli", 200_000, 1000, -0.5),
        "pois20k": ("poisson", 20_000, 200, 0.5),
        "pois200k": ("poisson", 200_000, 1000, 0.5),
    }
    for name, (family, rows, groups, intercept) in expected.items():
        case = peers.BY_NAME[name]
        assert (case.family, case.rows, case.groups) == (family, rows, groups)
        assert case.formula == "y ~ x + (1 + x | g)" and case.correlated
        assert case.truth["Intercept"] == intercept
        assert case.truth["cor(Intercept,x|g)"] == -0.4
    verbagg = peers.BY_NAME["VerbAgg"]
    assert (verbagg.dataset, verbagg.family) == ("VerbAgg", "bernoulli")


@pytest.mark.parametrize("name", ["bern20k", "pois20k"])
def test_glmm_data_follow_the_truth(name):
    case = peers.BY_NAME[name]
    data = peers.make_data(case)
    assert len(data) == 20_000 and data["g"].nunique() == 200
    # x standard normal: mean 0 +- 4 standard errors (1 / sqrt(20,000) = 0.007)
    assert abs(data["x"].mean()) < 0.03 and abs(data["x"].std() - 1) < 0.03
    y = data["y"].to_numpy()
    assert np.issubdtype(y.dtype, np.integer) and y.min() == 0
    if case.family == "bernoulli":
        assert set(np.unique(y)) == {0, 1}
        assert 0.3 < y.mean() < 0.5  # logistic(-0.5) = 0.38, shifted by the group effects
    else:  # moderate counts: mean exp(0.5 + 0.83 / 2) = 2.5
        assert 1.8 < y.mean() < 3.5 and y.max() < 1000
    # the same data every time (DATA_SEED), and --rows only changes the rows
    assert data.equals(peers.make_data(case))
    assert len(peers.make_data(case, rows=2000)) == 2000


def test_existing_synthetic_data_are_unchanged():
    """The new branch shares the gaussian draws: synth100k's data stay as they were
    (first values recorded before issue 16's cases were added)."""
    data = peers.make_data(peers.BY_NAME["synth100k"], rows=3)
    np.testing.assert_allclose(
        data["y"], [2.085455769083732, 0.3613164518437121, -0.6562255236042069], rtol=1e-12
    )


def test_lme4_command_per_family(tmp_path):
    csv = tmp_path / "d.csv"
    bern = peers.lme4_command(peers.BY_NAME["bern20k"], csv, ["g"], "/usr/bin/Rscript")
    assert bern == [
        "/usr/bin/Rscript",
        "--vanilla",
        str(peers.LME4_SCRIPT),
        str(csv),
        "y ~ x + (1 + x | g)",
        "glmer",
        "binomial",
        "g",
    ]
    assert peers.lme4_command(peers.BY_NAME["pois200k"], csv, ["g"], "R")[5:7] == [
        "glmer",
        "poisson",
    ]
    inst = peers.lme4_command(peers.BY_NAME["InstEval"], csv, ["s", "d", "dept"], "R")
    assert inst[4:] == [
        "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        "lmer",
        "gaussian",
        "s,d,dept",
    ]
    cbpp = peers.lme4_command(peers.BY_NAME["cbpp"], csv, ["herd", "period"], "R")
    assert cbpp[4] == "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    assert peers.LME4_SCRIPT.is_file()


def test_factor_columns_are_the_text_and_group_columns():
    verbagg = peers.make_data(peers.BY_NAME["VerbAgg"], rows=50)
    factors = peers.factor_columns(verbagg)
    assert {"id", "item", "Gender", "btype", "situ"} <= set(factors)
    assert "Anger" not in factors and "r2" not in factors
    assert peers.factor_columns(peers.make_data(peers.BY_NAME["bern20k"], rows=50)) == ["g"]


def _case_files(tmp_path, name="bern20k"):
    case = peers.BY_NAME[name]
    data_path = tmp_path / f"{name}.parquet"
    peers.make_data(case, rows=100).to_parquet(data_path)
    return case, data_path


def test_lme4_row_is_skipped_without_rscript(tmp_path, monkeypatch):
    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    case, data_path = _case_files(tmp_path)
    assert peers.run_lme4(case, data_path, tmp_path, ARGS) == {"status": peers.LME4_MISSING}
    assert peers.LME4_MISSING == "skipped: R/lme4 not installed (install r-base-core r-cran-lme4)"
    ordinal = peers.BY_NAME["ordinal10k"]
    status = peers.run_lme4(ordinal, data_path, tmp_path, ARGS)["status"]
    assert status == "skipped: lme4 has no cumulative model"


def _fake_rscript(tmp_path, monkeypatch, body: str) -> Path:
    """An ``Rscript`` on PATH that writes its arguments to args.txt, then runs ``body``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "Rscript"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args.txt\n{body}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path / "args.txt"


def test_lme4_row_is_skipped_without_lme4(tmp_path, monkeypatch):
    _fake_rscript(tmp_path, monkeypatch, "exit 3")  # lme4_fit.R's status without lme4
    case, data_path = _case_files(tmp_path)
    assert peers.run_lme4(case, data_path, tmp_path, ARGS) == {"status": peers.LME4_MISSING}


def test_lme4_row_from_the_scripts_output(tmp_path, monkeypatch):
    (tmp_path / "out.txt").write_text(R_OUTPUT)
    args_file = _fake_rscript(tmp_path, monkeypatch, f"cat {tmp_path}/out.txt")
    case, data_path = _case_files(tmp_path)
    row = peers.run_lme4(case, data_path, tmp_path, ARGS)
    assert row["status"] == "ok"
    assert row["wall_s"] == 2.04 and row["process_wall_s"] > 0
    assert row["estimates"] == {
        "Intercept": -0.49,
        "x": 0.51,
        "sd(Intercept|g)": 0.69,
        "sd(x|g)": 0.31,
        "cor(Intercept,x|g)": -0.38,
    }
    assert set(row["estimates"]) == set(case.truth)  # our names: comparable with the truth
    assert (row["r_version"], row["lme4_version"]) == ("R version 4.3.3 (2024-02-29)", "1.1.35.1")
    assert row["sampler"] == "lme4 glmer, Laplace (nAGQ = 1)"
    assert row["note"].startswith("ML point estimates; warned: Model failed to converge")
    assert row.get("min_ess_bulk") is None  # no ESS for point estimates
    # the command it ran, and the CSV it read (removed after the fit)
    ran = args_file.read_text().splitlines()
    assert ran[0] == "--vanilla" and ran[1] == str(peers.LME4_SCRIPT)
    assert ran[3:] == ["y ~ x + (1 + x | g)", "glmer", "binomial", "g"]
    assert not Path(ran[2]).exists()


def test_lme4_failure_is_a_row_note(tmp_path, monkeypatch):
    _fake_rscript(tmp_path, monkeypatch, 'echo "Error in glmer: bad formula" >&2; exit 1')
    case, data_path = _case_files(tmp_path)
    row = peers.run_lme4(case, data_path, tmp_path, ARGS)
    assert row["status"] == "failed: Error in glmer: bad formula"
    assert "bad formula" in row["log_tail"]


def test_lmer_sigma_is_named_as_ours():
    text = "fit_s\t1.5\nfixef\t(Intercept)\t3.2\nvarcorr\tResidual\tNA\tNA\t1.18\n"
    row = peers.parse_lme4_output(text, "lmer")
    assert row["estimates"] == {"Intercept": 3.2, "sigma": 1.18}
    assert row["sampler"] == "lme4 lmer, ML (REML = FALSE)"
    with pytest.raises(ValueError, match="no fit time"):
        peers.parse_lme4_output("Error: nothing\n", "lmer")


def test_ratios_to_the_best_peer_and_to_lme4():
    rows = [
        {"tool": peers.LABELS[peers.OURS], "ess_per_wall_s": 60.0, "wall_s": 20.0},
        {"tool": "bambi+nutpie", "ess_per_wall_s": 20.0, "wall_s": 30.0},
        {"tool": "bambi+numpyro", "ess_per_wall_s": 12.0, "wall_s": 50.0},
        {"tool": "bambi+pymc", "status": "timeout (> 1800 s)"},
        {"tool": "lme4", "wall_s": 2.0},
    ]
    peers.compare(rows)
    ours, nutpie, numpyro = rows[:3]
    assert ours["best_peer"] == "bambi+nutpie" and ours["best_peer_ratio"] == 3.0
    assert ours["lme4_time_ratio"] == 10.0
    assert (nutpie["ratio"], numpyro["ratio"]) == (3.0, 5.0)
    assert "ratio" not in rows[3] and "best_peer_ratio" not in rows[4]
    skipped = [rows[0].copy(), {"tool": "lme4", "status": peers.LME4_MISSING}]
    for key in ("best_peer", "best_peer_ratio", "lme4_time_ratio"):
        skipped[0].pop(key)
    peers.compare(skipped)
    assert "lme4_time_ratio" not in skipped[0] and "best_peer_ratio" not in skipped[0]


def test_ratios_per_whole_process():
    """Over whole processes the best peer may be another row than over fit times: here
    bambi + NumPyro's imports and start cost less than nutpie's."""
    rows = [
        {"tool": peers.LABELS[peers.OURS], "ess_per_process_s": 50.0, "process_wall_s": 24.0},
        {"tool": "bambi+nutpie", "ess_per_wall_s": 20.0, "ess_per_process_s": 8.0},
        {"tool": "bambi+numpyro", "ess_per_wall_s": 12.0, "ess_per_process_s": 10.0},
        {"tool": "lme4", "wall_s": 2.0, "process_wall_s": 4.0},
    ]
    peers.compare(rows)
    assert rows[0]["best_peer_process_ratio"] == 5.0
    assert rows[0]["lme4_process_ratio"] == 6.0
    assert "best_peer_process_ratio" not in rows[1]
