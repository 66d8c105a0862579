"""multilevel against bambi (PyMC, nutpie, NumPyro samplers) and lme4: same models, seeds, draws.

Needs the ``bench`` extra in its own virtual environment; run from the repository root::

    python3 -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv-bench/bin/python benchmarks/peers.py                    # radon, sleepstudy, cbpp, synth100k
    .venv-bench/bin/python benchmarks/peers.py --all --warm-cache
    .venv-bench/bin/python benchmarks/peers.py --only radon --peers multilevel,bambi+nutpie
    .venv-bench/bin/python benchmarks/peers.py --glmm    # issue 16: GLMMs, crossed factors, lme4

Every (model, tool) pair is fitted in its own fresh subprocess of this interpreter, so each
figure is a cold start: the first fit in a new process. See benchmarks/README.md for the
columns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import core

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "peers.json"
DATA_SEED = 20261124  # the synthetic data sets are the same whatever --seed says

OURS, OURS_WARM = "multilevel", "multilevel-warm"
PEERS = {  # tool -> bambi inference_method
    "bambi+pymc": "pymc",
    "bambi+nutpie": "nutpie",
    "bambi+numpyro": "numpyro",
}
LME4 = "lme4"  # maximum likelihood (point estimates), R in a fresh process: no ESS
TOOLS = [OURS, *PEERS, LME4]
LABELS = {
    OURS: "multilevel (cold cache)",
    OURS_WARM: "multilevel (new process, warm cache)",
    **{t: t for t in PEERS},
    LME4: LME4,
}
LME4_SCRIPT = Path(__file__).resolve().parent / "lme4_fit.R"
LME4_MISSING = "skipped: R/lme4 not installed (install r-base-core r-cran-lme4)"
LME4_FUNCTIONS = {  # family -> lme4 function and its family argument
    "gaussian": ("lmer", "gaussian"),  # REML = FALSE: maximum likelihood, as glmer
    "bernoulli": ("glmer", "binomial"),  # Laplace (nAGQ = 1)
    "binomial": ("glmer", "binomial"),
    "poisson": ("glmer", "poisson"),
}


@dataclass(frozen=True)
class Case:
    name: str
    formula: str  # ours
    bambi_formula: str
    family: str = "gaussian"
    dataset: str | None = None  # ml.datasets name, else synthetic
    rows: int = 0  # synthetic only
    groups: int = 1000
    default: bool = False  # run without --all / --only
    correlated: bool = False  # bambi cannot fit it as written: it fits `||`
    truth: dict = field(default_factory=dict)
    items: int = 0  # synthetic ordinal only: a second grouping factor, crossed with `groups`
    lme4_formula: str | None = None  # where lme4's syntax differs from ours


SYNTH_TRUTH = {
    "Intercept": 1.0,
    "x": 0.5,
    "sd(Intercept|g)": 0.7,
    "sd(x|g)": 0.3,
    "cor(Intercept,x|g)": -0.4,
    "sigma": 1.0,
}
BERN_TRUTH = {"Intercept": -0.5, "x": 0.5, "sd(Intercept|g)": 0.7}
# Issue 16: bernoulli (logit) and Poisson (log) with a continuous x and correlated
# intercepts and slopes, x standard normal. Poisson's mean count is about 2.5
# (exp(0.5 + var(eta) / 2), var(eta) = 0.49 + 0.25 + 0.09).
GLMM_TRUTH = {
    "Intercept": -0.5,
    "x": 0.5,
    "sd(Intercept|g)": 0.7,
    "sd(x|g)": 0.3,
    "cor(Intercept,x|g)": -0.4,
}
POIS_TRUTH = {**GLMM_TRUTH, "Intercept": 0.5}
# Ordinal (cumulative logit, 5 categories): P(rating <= k) = logistic(Intercept[k] - eta).
# bambi calls the thresholds threshold[0..3] and the sds `1|rater_sigma`, `1|item_sigma`.
ORDINAL_TRUTH = {
    "Intercept[1]": -2.0,
    "Intercept[2]": -0.7,
    "Intercept[3]": 0.6,
    "Intercept[4]": 2.0,
    "x": 0.5,
    "sd(Intercept|rater)": 0.8,
    "sd(Intercept|item)": 0.5,
}
# Zero-inflated Poisson: zero with probability zi, else Poisson(exp(eta)). Ours samples
# zi_Intercept = logit(zi); bambi's `psi` is the probability of the count process, 1 - zi.
ZIP_ZI = 0.3
ZIP_TRUTH = {
    "Intercept": 0.5,
    "x": 0.3,
    "sd(Intercept|g)": 0.5,
    "zi_Intercept": math.log(ZIP_ZI / (1 - ZIP_ZI)),
}


def _core(name: str) -> core.Case:
    return next(c for c in core.CASES if c.name == name)


CASES = [
    Case(
        "radon",
        _core("radon").formula,
        _core("radon").formula,
        dataset="radon",
        default=True,
        correlated=True,
    ),
    Case(
        "radon_uncorr",
        _core("radon_uncorr").formula,
        "log_radon ~ floor + (1 + floor | county)",  # bambi's `|` is uncorrelated
        dataset="radon",
    ),
    Case(
        "sleepstudy",
        _core("sleepstudy").formula,
        _core("sleepstudy").formula,
        dataset="sleepstudy",
        default=True,
        correlated=True,
    ),
    Case(
        "cbpp",
        _core("cbpp").formula,
        "p(incidence, size) ~ period + (1 | herd)",
        family="binomial",
        dataset="cbpp",
        default=True,
        lme4_formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
    ),
    *[
        Case(
            name,
            "y ~ x + (1 + x | g)",
            "y ~ x + (1 + x | g)",
            rows=rows,
            default=name == "synth100k",
            correlated=True,
            truth=SYNTH_TRUTH,
        )
        for name, rows in [("synth100k", 100_000), ("synth1m", 10**6), ("synth10m", 10**7)]
    ],
    Case(
        "bern1m",
        "y ~ x + (1 | g)",
        "y ~ x + (1 | g)",
        family="bernoulli",
        rows=10**6,
        truth=BERN_TRUTH,
    ),
    Case(
        "InstEval",
        "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
        dataset="InstEval",
    ),
    # Issue 16: GLMMs with a continuous covariate, correlated `(1 + x | g)` (bambi's `|`
    # is uncorrelated: it fits `||`), and a crossed logistic model on real data.
    *[
        Case(
            name,
            "y ~ x + (1 + x | g)",
            "y ~ x + (1 + x | g)",
            family=family,
            rows=rows,
            groups=groups,
            correlated=True,
            truth=truth,
        )
        for family, truth, prefix in [
            ("bernoulli", GLMM_TRUTH, "bern"),
            ("poisson", POIS_TRUTH, "pois"),
        ]
        for name, rows, groups in [
            (f"{prefix}20k", 20_000, 200),
            (f"{prefix}200k", 200_000, 1000),
        ]
    ],
    Case(
        "VerbAgg",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        family="bernoulli",
        dataset="VerbAgg",
    ),
    Case(  # issue 13: ordinal responses, raters crossed with items
        "ordinal10k",
        "rating ~ x + (1 | rater) + (1 | item)",
        "rating ~ x + (1 | rater) + (1 | item)",
        family="cumulative",
        rows=10_000,
        groups=500,
        items=50,
        truth=ORDINAL_TRUTH,
    ),
    Case(  # issue 13: zero-inflated counts
        "zip100k",
        "y ~ x + (1 | g)",
        "y ~ x + (1 | g)",
        family="zero_inflated_poisson",
        rows=100_000,
        truth=ZIP_TRUTH,
    ),
]
BY_NAME = {c.name: c for c in CASES}
GLMM_CASES = ["bern20k", "bern200k", "pois20k", "pois200k", "VerbAgg", "InstEval"]  # issue 16


# ---------------------------------------------------------------- data


def make_data(case: Case, rows: int | None = None):
    """The case's data frame; synthetic ones are drawn from ``case.truth`` with DATA_SEED.

    ``rows`` (the hidden ``--rows``, for trying the script out) overrides the number of
    synthetic rows, and keeps only the first ``rows`` of a real data set."""
    import numpy as np
    import pandas as pd

    if case.dataset is not None:
        import multilevel as ml

        data = ml.datasets.load(case.dataset)
        return data if rows is None else data.head(rows).reset_index(drop=True)
    n, k, t = rows or case.rows, case.groups, case.truth
    rng = np.random.default_rng(DATA_SEED)
    if case.family == "cumulative":  # `rating` 1..5, an ordered categorical
        rater, item = rng.integers(0, k, n), rng.integers(0, case.items, n)
        u_rater = t["sd(Intercept|rater)"] * rng.standard_normal(k)
        u_item = t["sd(Intercept|item)"] * rng.standard_normal(case.items)
        x = rng.standard_normal(n)
        eta = t["x"] * x + u_rater[rater] + u_item[item]
        thresholds = np.array([t[f"Intercept[{j}]"] for j in range(1, 5)])
        # latent eta + standard logistic noise, cut at the thresholds
        rating = 1 + ((eta + rng.logistic(size=n))[:, None] > thresholds).sum(axis=1)
        levels = list(range(1, len(thresholds) + 2))
        return pd.DataFrame(
            {
                "rating": pd.Categorical(rating, categories=levels, ordered=True),
                "x": x,
                "rater": pd.Categorical.from_codes(rater, [f"r{i:03d}" for i in range(k)]),
                "item": pd.Categorical.from_codes(item, [f"i{i:02d}" for i in range(case.items)]),
            }
        )
    g = rng.integers(0, k, n)
    labels = pd.Categorical.from_codes(g, categories=[f"g{i:04d}" for i in range(k)])
    if "sd(x|g)" in t:  # correlated intercepts and slopes, x standard normal
        sd = np.array([t["sd(Intercept|g)"], t["sd(x|g)"]])
        r = t["cor(Intercept,x|g)"]
        cov = np.outer(sd, sd) * np.array([[1.0, r], [r, 1.0]])
        u = rng.multivariate_normal(np.zeros(2), cov, size=k)
        x = rng.standard_normal(n)
        mu = t["Intercept"] + u[g, 0] + (t["x"] + u[g, 1]) * x
        if case.family == "gaussian":
            y = mu + t["sigma"] * rng.standard_normal(n)
        elif case.family == "poisson":
            y = rng.poisson(np.exp(mu))
        else:  # bernoulli, logit link
            y = (rng.random(n) < 1 / (1 + np.exp(-mu))).astype(np.int64)
    elif case.family == "zero_inflated_poisson":
        u = t["sd(Intercept|g)"] * rng.standard_normal(k)
        x = rng.standard_normal(n)
        counts = rng.poisson(np.exp(t["Intercept"] + u[g] + t["x"] * x))
        y = np.where(rng.random(n) < ZIP_ZI, 0, counts)
    else:  # bernoulli, logit link, x a 0/1 covariate
        u = t["sd(Intercept|g)"] * rng.standard_normal(k)
        x = rng.integers(0, 2, n).astype(float)
        eta = t["Intercept"] + u[g] + t["x"] * x
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame({"y": y, "x": x, "g": labels})


# ---------------------------------------------------------------- child: one fit


def min_ess(posterior, names: list[str]) -> dict:
    """Smallest bulk ESS and largest R-hat over ``names`` (every element of each)."""
    import arviz as az
    import numpy as np

    sub = posterior[names]
    ess, rhat = az.ess(sub, method="bulk"), az.rhat(sub)
    best = (np.inf, "")
    for name in names:
        da = ess[name]
        values = np.asarray(da.values, dtype=float)
        if np.all(np.isnan(values)):
            continue
        i = np.unravel_index(int(np.nanargmin(values)), values.shape)
        if values[i] < best[0]:
            where = ",".join(str(da[d].values[j]) for d, j in zip(da.dims, i))
            best = (float(values[i]), f"{name}[{where}]" if where else name)
    return {
        "min_ess_bulk": best[0],
        "min_ess_bulk_param": best[1],
        "max_r_hat": max(float(np.nanmax(rhat[n].values)) for n in names),
        "n_params": sum(int(sub[n].isel(chain=0, draw=0).size) for n in names),
        "means": {  # posterior means, to check the synthetic cases against their truth
            (f"{n}[{','.join(str(c) for c in idx)}]" if idx else n): float(v)
            for n in names
            for idx, v in _items(sub[n].mean(("chain", "draw")))
        },
    }


def _items(da):
    """(coordinate values, value) for every element of a DataArray."""
    import numpy as np

    for i in np.ndindex(da.shape):
        yield tuple(da[d].values[j] for d, j in zip(da.dims, i)), da.values[i]


def fit_ours(case: Case, data, args) -> dict:
    # Our libraries are imported before the clock starts, as ``import bambi`` is before
    # bambi's and ``library(lme4)`` before lme4's: every row's ``wall_s`` times the
    # model's definition and fit alone (ours imports JAX, NumPyro and ArviZ on first use,
    # 3-4 s that the rows timed before 2026-12-08 counted for us only). The whole
    # process, imports included, is every row's ``process_wall_s``.
    import arviz  # noqa: F401

    import multilevel.model  # noqa: F401

    fit, wall_s = core.timed_fit(case.formula, data, case.family, args)
    return ours_result(fit, wall_s)


def ours_summarised(posterior) -> list[str]:
    """Our variables whose ESS a row reports: population effects, sd(...), cor(...),
    sigma; not the group effects (named `term|group`)."""
    return [v for v in posterior.data_vars if "|" not in v or v.startswith(("sd(", "cor("))]


def ours_result(fit, wall_s: float) -> dict:
    """The row of one fit of ours: timings, sampler, divergences, ESS and R-hat."""
    post = fit.idata.posterior
    names = ours_summarised(post)
    return {
        "wall_s": wall_s,
        "compile_s": fit.timing["compile_s"],
        "sampling_s": fit.timing["sampling_s"],
        "timing": fit.timing,  # with warmup's and sampling's seconds and gradients
        "divergences": int(fit.diagnostics.divergences),
        "sampler": fit.info["method"],
        # "NUTS, group effects integrated out (collapsed Gaussian)" -> "collapsed Gaussian"
        "note": (re.findall(r"\((.*)\)", fit.info["method"]) or ["joint NUTS"])[0],
        **min_ess(post, names),
    }


def fit_bambi(case: Case, data, args, method: str) -> dict:
    idata, wall_s = bambi_fit(case, data, args, method)
    return bambi_result(case, idata, wall_s, method)


def bambi_fit(case: Case, data, args, method: str):
    """``bmb.Model(...)`` and ``fit`` with the benchmark's settings: (idata, wall s)."""
    import bambi as bmb

    kwargs = {}
    if method == "nutpie":
        kwargs["nuts_sampler_kwargs"] = {"cores": args.cores}
    t0 = time.perf_counter()
    model = bmb.Model(case.bambi_formula, data, family=case.family)
    idata = model.fit(
        draws=args.draws,
        tune=args.warmup,
        chains=args.chains,
        cores=args.cores,
        random_seed=args.seed,
        progressbar=False,
        inference_method=method,
        **kwargs,
    )
    return idata, time.perf_counter() - t0


def bambi_names(posterior) -> list[str]:
    """The parameters whose ESS and R-hat count: not the group-level effects."""
    # Group-level effects have a `<group>__factor_dim` dimension; everything else is a
    # population effect, a group sd (`1|county_sigma`) or sigma, except the unconstrained
    # values that nutpie also returns (`1|county_sigma_log__`).
    return [
        v
        for v in posterior.data_vars
        if not v.endswith("__") and not any(d.endswith("__factor_dim") for d in posterior[v].dims)
    ]


def bambi_result(case: Case, idata, wall_s: float, method: str) -> dict:
    """The row of one bambi fit: timings, sampler, divergences, ESS and R-hat."""
    import pytensor

    post = idata.posterior
    names = bambi_names(post)
    sampling_s = post.attrs.get("sampling_time")
    return {
        "wall_s": wall_s,
        "compile_s": None,
        "sampling_s": None if sampling_s is None else float(sampling_s),
        "divergences": int(idata.sample_stats["diverging"].values.sum()),
        "sampler": f"{method} NUTS",
        # empty: PyTensor found no BLAS to link its C code against (usual for a pip install)
        "pytensor_blas_ldflags": pytensor.config.blas__ldflags,
        "note": "fits ||" if case.correlated else "",
        **min_ess(post, names),
    }


def read_data(case: Case, path):
    """The case's data frame as the parent wrote it (``make_data``) to Parquet."""
    import pandas as pd

    data = pd.read_parquet(path)
    if case.family == "cumulative":  # Parquet gives back the categories 1..5 as integers
        data["rating"] = pd.Categorical(data["rating"], ordered=True)
    return data


def child(args) -> None:
    """Fit one case with one tool; write the result to ``args.out``."""
    case = BY_NAME[args.child_case]
    data = read_data(case, args.data)
    tool = args.child_tool
    if tool in (OURS, OURS_WARM):
        result = fit_ours(case, data, args)
    else:
        result = fit_bambi(case, data, args, PEERS[tool])
    self_rss = core.peak_rss_mib()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # e.g. PyMC's workers
    kids_rss = kids / 2**20 if sys.platform == "darwin" else kids / 2**10
    result.update(peak_rss_mib=self_rss, peak_rss_children_mib=kids_rss)
    Path(args.out).write_text(json.dumps(result) + "\n")


# ---------------------------------------------------------------- lme4, in R


def factor_columns(data) -> list[str]:
    """The columns R must read as factors: group ids and text (not numbers, which
    ``read.csv`` would otherwise make numeric: cbpp's period 1..4 is a factor)."""
    import pandas as pd

    return [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]


def lme4_command(case: Case, csv_path: Path, factors: list[str], rscript: str) -> list[str]:
    """The command line that fits ``case`` with lme4 (``lme4_fit.R``); the case's family
    must be one of ``LME4_FUNCTIONS``."""
    function, family = LME4_FUNCTIONS[case.family]
    formula = case.lme4_formula or case.formula  # ours is lme4's syntax but for trials()
    return [
        rscript,
        "--vanilla",
        str(LME4_SCRIPT),
        str(csv_path),
        formula,
        function,
        family,
        ",".join(factors),
    ]


def _lme4_name(term: str) -> str:
    return "Intercept" if term == "(Intercept)" else term


def parse_lme4_output(text: str, function: str) -> dict:
    """The row of one lme4 fit from ``lme4_fit.R``'s tab-separated lines: ``wall_s`` is
    the fit alone; ``estimates`` under our names (``sd(x|g)``, ``cor(Intercept,x|g)``,
    ``sigma``) where lme4's can be mapped, else as lme4 names them (``GenderM``)."""
    out, estimates, warnings = {}, {}, []
    for line in text.splitlines():
        kind, *rest = line.split("\t")
        if kind == "version" and len(rest) == 2:
            out["r_version"], out["lme4_version"] = rest
        elif kind == "fit_s":
            out["wall_s"] = float(rest[0])
        elif kind == "fixef":
            estimates[_lme4_name(rest[0])] = float(rest[1])
        elif kind == "varcorr":
            group, first, second, value = rest
            if group == "Residual":
                name = "sigma"
            elif second == "NA":
                name = f"sd({_lme4_name(first)}|{group})"
            else:
                name = f"cor({_lme4_name(first)},{_lme4_name(second)}|{group})"
            estimates[name] = float(value)
        elif kind == "warning":
            warnings.append(rest[0])
    if "wall_s" not in out:
        raise ValueError(f"lme4_fit.R printed no fit time: {text[-200:]!r}")
    method = "lmer, ML (REML = FALSE)" if function == "lmer" else "glmer, Laplace (nAGQ = 1)"
    note = "ML point estimates" + (f"; warned: {warnings[0][:60]}" if warnings else "")
    return {
        **out,
        "compile_s": None,
        "sampling_s": None,
        "sampler": f"lme4 {method}",
        "estimates": estimates,
        "lme4_warnings": warnings,
        "note": note,
    }


def run_lme4(case: Case, data_path: Path, tmp: Path, args) -> dict:
    """Fit ``case`` with lme4 in a fresh ``Rscript`` process, reading a CSV of the data:
    the row has the fit's seconds (``wall_s``) and the whole process's
    (``process_wall_s``: R's start, loading lme4, reading the CSV, the fit). Where R or
    lme4 is missing, or lme4 has no such model, the row only says so."""
    if case.family not in LME4_FUNCTIONS:
        return {"status": f"skipped: lme4 has no {case.family} model"}
    rscript = shutil.which("Rscript")
    if rscript is None:
        return {"status": LME4_MISSING}
    data = read_data(case, data_path)
    csv_path = tmp / f"{case.name}.csv"
    data.to_csv(csv_path, index=False)
    cmd = lme4_command(case, csv_path, factor_columns(data), rscript)
    del data
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout (> {args.timeout:.0f} s)"}
    finally:
        csv_path.unlink()
    result = {"process_wall_s": time.perf_counter() - t0}
    if proc.returncode == 3:  # lme4_fit.R: no lme4
        return {"status": LME4_MISSING}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        status = f"failed: {lines[-1][:200] if lines else f'exit {proc.returncode}'}"
        return {**result, "status": status, "log_tail": (proc.stdout + proc.stderr)[-4000:]}
    function = LME4_FUNCTIONS[case.family][0]
    return {**result, **parse_lme4_output(proc.stdout, function), "status": "ok"}


# ---------------------------------------------------------------- parent: run and watch


def _tree_rss_mib(session: int) -> float:
    """Resident memory of every process in session ``session`` (Linux; 0 elsewhere)."""
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == session:  # fields[3] is the session id
                total += int(fields[21]) * page  # rss in pages
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def run_child(tool: str, case: Case, data_path: Path, tmp: Path, args, env: dict) -> dict:
    out, log = tmp / f"{case.name}.{tool}.json", tmp / f"{case.name}.{tool}.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--child-tool={tool}",
        f"--child-case={case.name}",
        f"--data={data_path}",
        f"--out={out}",
        *[
            f"--{k}={getattr(args, k)}"
            for k in ("chains", "warmup", "draws", "seed", "cores", "method")
        ],
    ]
    peak_tree, status = 0.0, "ok"
    t0 = time.perf_counter()
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        while proc.poll() is None:
            peak_tree = max(peak_tree, _tree_rss_mib(proc.pid))
            elapsed = time.perf_counter() - t0
            if elapsed > args.timeout:
                status = f"timeout (> {args.timeout:.0f} s)"
            elif args.max_rss_gib and peak_tree > args.max_rss_gib * 1024:
                status = f"out of memory (> {args.max_rss_gib:g} GiB)"
            if status != "ok":
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.25)
    process_wall_s = time.perf_counter() - t0
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stray workers of a child that exited
    except ProcessLookupError:
        pass
    result = {"process_wall_s": process_wall_s, "peak_tree_rss_mib": peak_tree}
    text = log.read_text(errors="replace")
    if status == "ok" and proc.returncode != 0:
        if "MemoryError" in text or "bad_alloc" in text or proc.returncode == -signal.SIGKILL:
            status = "out of memory"
        elif proc.returncode < 0:
            status = f"killed by signal {-proc.returncode}"
        else:
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            status = f"failed: {lines[-1][:200] if lines else f'exit {proc.returncode}'}"
    if status == "ok":
        result.update(json.loads(out.read_text()))
    else:
        result["log_tail"] = text[-4000:]
    result["status"] = status
    return result


def versions() -> dict:
    out = {}
    for name in ("bambi", "pymc", "pytensor", "nutpie", "numba", "numpyro", "jax", "arviz"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def child_base_env() -> dict:
    """This process's environment for a child: the working tree's multilevel first on
    PYTHONPATH, output unbuffered (a killed child's log is complete)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def peer_env(tool: str, folder: Path, args, base: dict) -> dict:
    """``base`` with what a peer's fit process needs: empty PyTensor and numba caches
    under ``folder`` (unless ``args.warm_peer_caches``), and one CPU device per chain
    for NumPyro."""
    env = dict(base)
    if not args.warm_peer_caches:  # PyTensor's compiled C and numba code, fresh
        flags = f"base_compiledir={folder / 'pytensor'}"
        env["PYTENSOR_FLAGS"] = ",".join(filter(None, [env.get("PYTENSOR_FLAGS"), flags]))
        env["NUMBA_CACHE_DIR"] = str(folder / "numba")
    if tool == "bambi+numpyro":  # one CPU device per chain, so chains run in parallel
        flag = f"--xla_force_host_platform_device_count={args.chains}"
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), flag]))
    return env


def run_case(case: Case, tools: list[str], args, tmp: Path) -> list[dict]:
    data = make_data(case, args.rows)
    data_path = tmp / f"{case.name}.parquet"
    data.to_parquet(data_path)
    n_rows = len(data)
    del data

    base = child_base_env()
    cache = tmp / f"{case.name}.multilevel-cache"  # fresh: ours starts truly cold

    runs = []
    for tool in tools:
        runs.append(tool)
        if tool == OURS and args.warm_cache:
            runs.append(OURS_WARM)
    rows = []
    for tool in runs:
        if tool in (OURS, OURS_WARM):
            env = {**base, "MULTILEVEL_CACHE_DIR": str(cache)}
        else:
            env = peer_env(tool, tmp / case.name / tool, args, base)
        print(f"{case.name}: {LABELS[tool]} ...", file=sys.stderr, flush=True)
        if tool == LME4:
            r = run_lme4(case, data_path, tmp, args)
        else:
            r = run_child(tool, case, data_path, tmp, args, env)
        if r.get("min_ess_bulk") is not None:
            r["ess_per_wall_s"] = r["min_ess_bulk"] / r["wall_s"]
            if r.get("process_wall_s"):
                r["ess_per_process_s"] = r["min_ess_bulk"] / r["process_wall_s"]
            if r.get("sampling_s"):
                r["ess_per_sampling_s"] = r["min_ess_bulk"] / r["sampling_s"]
        if r["status"] != "ok":
            r["note"] = r["status"]
        formula = case.bambi_formula if tool in PEERS else case.formula
        if tool == LME4:
            formula = case.lme4_formula or case.formula
        rows.append(
            {
                "model": case.name,
                "tool": LABELS[tool],
                "formula": formula,
                "family": case.family,
                "rows": n_rows,
                **r,
            }
        )
    data_path.unlink()
    compare(rows)
    return rows


def compare(rows: list[dict]) -> None:
    """Add the ratios to one case's rows: on each bambi row ours over its ESS/s
    (``ratio``, ``ours_ess_per_wall_ratio``); on ours, our ESS/s over the best bambi
    row's (``best_peer_ratio``, ``best_peer``) and our wall time over lme4's fit time
    (``lme4_time_ratio``: how many times lme4's time we take, for a full posterior).
    The same two per whole process, imports, data and start included
    (``best_peer_process_ratio`` over ESS per process second, ``lme4_process_ratio``)."""
    ours = {  # ESS/s of our cold and warm rows, where they ran
        key: row["ess_per_wall_s"]
        for key, label in (("cold", LABELS[OURS]), ("warm", LABELS[OURS_WARM]))
        for row in rows
        if row["tool"] == label and row.get("ess_per_wall_s")
    }
    peers = [row for row in rows if row["tool"] in PEERS and row.get("ess_per_wall_s")]
    for row in peers:
        ratios = {key: x / row["ess_per_wall_s"] for key, x in ours.items()}
        row["ours_ess_per_wall_ratio"] = ratios
        row["ratio"] = ratios.get("cold")
    best = max(peers, key=lambda row: row["ess_per_wall_s"], default=None)
    lme4 = next((r for r in rows if r["tool"] == LME4 and r.get("wall_s")), None)
    for row in rows:
        if row["tool"] not in (LABELS[OURS], LABELS[OURS_WARM]):
            continue
        if best is not None and row.get("ess_per_wall_s"):
            row["best_peer"] = best["tool"]
            row["best_peer_ratio"] = row["ess_per_wall_s"] / best["ess_per_wall_s"]
        if lme4 is not None and row.get("wall_s"):
            row["lme4_time_ratio"] = row["wall_s"] / lme4["wall_s"]
        by_process = [r for r in peers if r.get("ess_per_process_s")]
        if by_process and row.get("ess_per_process_s"):
            best_process = max(r["ess_per_process_s"] for r in by_process)
            row["best_peer_process_ratio"] = row["ess_per_process_s"] / best_process
        if lme4 is not None and lme4.get("process_wall_s") and row.get("process_wall_s"):
            row["lme4_process_ratio"] = row["process_wall_s"] / lme4["process_wall_s"]


COLUMNS = [  # (header, result key, format spec); text columns are left-aligned
    ("model", "model", ""),
    ("tool", "tool", ""),
    ("rows", "rows", "d"),
    ("wall_s", "wall_s", ".2f"),
    ("compile_s", "compile_s", ".2f"),
    ("sampling_s", "sampling_s", ".2f"),
    ("process_s", "process_wall_s", ".1f"),
    ("min_ess", "min_ess_bulk", ".0f"),
    ("ess/wall_s", "ess_per_wall_s", ".1f"),
    ("ours_x", "ratio", ".1f"),
    ("vs_best", "best_peer_ratio", ".1f"),
    ("t/lme4", "lme4_time_ratio", ".1f"),
    ("vs_best_proc", "best_peer_process_ratio", ".1f"),
    ("proc/lme4", "lme4_process_ratio", ".1f"),
    ("max_rhat", "max_r_hat", ".3f"),
    ("div", "divergences", "d"),
    ("rss_mib", "peak_rss_mib", ".0f"),
    ("tree_mib", "peak_tree_rss_mib", ".0f"),
    ("note", "note", ""),
]


def print_report(report: dict) -> None:
    results = report["results"]
    core.print_table(results, COLUMNS)
    m, s, v = report["machine"], report["settings"], report["versions"]
    print(
        f"\none fresh process per (model, tool); chains={s['chains']} warmup={s['warmup']} "
        f"draws={s['draws']} seed={s['seed']} cores={s['cores']}; PyTensor/numba caches "
        + ("as usual (warm)" if s["warm_peer_caches"] else "empty (cold)")
    )
    print(
        f"{m['platform']}, {m['cpu_count']} CPUs (load {m['load_avg_1m_before']:.1f} before), "
        f"python {m['python']}; " + ", ".join(f"{k} {x}" for k, x in v.items() if x)
    )
    if any(r.get("note") == "fits ||" for r in results):
        print(
            f"fits ||: bambi {v['bambi']} has no correlated group-level effects; "
            "`(1 + x | g)` gives independent intercepts and slopes"
        )
    for r in results:
        if r["status"] != "ok" and not r["status"].startswith(("failed", "skipped")):
            tail = [ln for ln in r.get("log_tail", "").splitlines() if ln.strip()][-1:]
            print(
                f"{r['model']} {r['tool']}: {r['status']}" + (f"; log: {tail[0]}" if tail else "")
            )


def parse_peers(text: str) -> list[str]:
    tools = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown tool(s) {unknown}; choose from {TOOLS}")
    return tools


def main(argv=None) -> None:
    parser = core.sampler_parser(__doc__)
    parser.add_argument(
        "--cores",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="PyMC's `cores`, nutpie's threads (default: min(4, CPUs))",
    )
    parser.add_argument("--all", action="store_true", help="every model")
    parser.add_argument(
        "--glmm", action="store_true", help=f"issue 16's models: {', '.join(GLMM_CASES)}"
    )
    parser.add_argument(
        "--only", action="append", choices=list(BY_NAME), help="run only NAME (repeatable)"
    )
    parser.add_argument(
        "--peers",
        type=parse_peers,
        default=TOOLS,
        help=f"comma-separated subset of {','.join(TOOLS)}",
    )
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="also run multilevel in a second new process with its compilation cache filled",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per fit process")
    parser.add_argument(
        "--max-rss-gib",
        type=float,
        default=round(0.75 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30),
        help="kill a fit process tree above this resident memory (0: never; default 75%% of RAM)",
    )
    parser.add_argument(
        "--warm-peer-caches",
        action="store_true",
        help="let PyTensor and numba use their usual on-disk caches (default: empty ones)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)  # smaller data, for trying out
    for hidden in ("--child-tool", "--child-case", "--data", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_tool:
        try:
            child(args)
        except MemoryError:
            traceback.print_exc()
            sys.exit(3)
        return

    if args.only:
        cases = [c for c in CASES if c.name in args.only]
    elif args.glmm:
        cases = [BY_NAME[name] for name in GLMM_CASES]
    else:
        cases = [c for c in CASES if args.all or c.default]
    sys.path.insert(0, str(SRC))  # the working tree's multilevel, as in the children
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        for case in cases:
            results += run_case(case, args.peers, args, Path(tmp))
    r_fit = next((r for r in results if r.get("lme4_version")), {})
    report = {
        "machine": {**core.machine(), "load_avg_1m_before": load_before},
        "versions": {**versions(), "R": r_fit.get("r_version"), "lme4": r_fit.get("lme4_version")},
        "settings": {
            **{
                k: getattr(args, k)
                for k in ("chains", "warmup", "draws", "seed", "cores", "method")
            },
            "timeout_s": args.timeout,
            "max_rss_gib": args.max_rss_gib,
            "warm_cache": args.warm_cache,
            "warm_peer_caches": args.warm_peer_caches,
            "rows_override": args.rows,
            "data_seed": DATA_SEED,
        },
        "truth": {c.name: c.truth for c in cases if c.truth},
        "results": results,
    }
    core.write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
