"""Where a cold start's wall time goes: tracing, lowering and XLA compilation per program.

Run from the repository root::

    PYTHONPATH=src python benchmarks/compile_time.py                 # radon, sleepstudy, cbpp
    PYTHONPATH=src python benchmarks/compile_time.py --repeats 3     # min over 3 processes
    PYTHONPATH=src python benchmarks/compile_time.py --only radon --draws 500

Every run is a fresh interpreter with the persistent compilation cache off
(``MULTILEVEL_CACHE_DIR=off``), fitting the model once. JAX reports three durations per
compiled program through ``jax.monitoring``: tracing the Python function to a jaxpr,
lowering the jaxpr to an MLIR module, and XLA's backend compilation. They are summed per
program name (``jit(chunk)``, ``jit(postprocess)``, ...; one-off eager operations appear
under their primitive's name). With ``--repeats N`` each model runs in N processes and
every number is the minimum over them (the machine may be shared). The JSON (default
``benchmarks/results/compile_time.json``) keeps every run.
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
from core import CASES, machine, peak_rss_mib, sampler_parser, timed_fit  # noqa: E402

DEFAULT_JSON = HERE / "results" / "compile_time.json"
NAMES = ("radon", "sleepstudy", "cbpp")
EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "xla_s",
}


def child(name: str, args) -> dict:
    """One cold fit in this (fresh) process, with JAX's compile events recorded."""
    import jax.monitoring

    events = []

    def listener(event, duration, **kwargs):
        if event in EVENTS:
            events.append((EVENTS[event], kwargs.get("fun_name", "?"), duration))

    jax.monitoring.register_event_duration_secs_listener(listener)
    import multilevel as ml
    from multilevel.inference import collapsed, nuts

    if args.serial:  # each program compiles alone: its own compile time, not overlapped
        from concurrent.futures import Future

        def compile_now(lowered):
            future = Future()
            future.set_result(lowered.compile())
            return future

        nuts.compile_async = collapsed.compile_async = compile_now

    t_import = time.perf_counter() - T_START
    case = next(c for c in CASES if c.name == name)
    data = ml.datasets.load(case.dataset)
    fit, wall_s = timed_fit(case.formula, data, case.family, args)
    summary = fit.summary()
    programs: dict = defaultdict(lambda: {"trace_s": 0.0, "lower_s": 0.0, "xla_s": 0.0, "n": 0})
    for kind, fun, duration in events:
        programs[fun][kind] += duration
        programs[fun]["n"] += kind == "xla_s"
    return {
        "model": name,
        "import_s": t_import,
        "wall_s": wall_s,
        "compile_s": fit.timing["compile_s"],
        "sampling_s": fit.timing["sampling_s"],
        "min_ess_bulk": float(summary["ess_bulk"].min()),
        "trace_s": sum(d for k, _, d in events if k == "trace_s"),
        "lower_s": sum(d for k, _, d in events if k == "lower_s"),
        "xla_s": sum(d for k, _, d in events if k == "xla_s"),
        "n_xla": sum(1 for k, _, _ in events if k == "xla_s"),
        "programs": dict(programs),
        "machine": machine(),
        "peak_rss_mib": peak_rss_mib(),
        "process_s": time.perf_counter() - T_START,
    }


def run_cold(name: str, args) -> dict:
    env = {**os.environ, "MULTILEVEL_CACHE_DIR": "off"}
    flags = [f"--{k}={getattr(args, k)}" for k in ("chains", "warmup", "draws", "seed")]
    flags += ["--serial"] if args.serial else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, __file__, "--child", name, "--json", str(out), *flags]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())
    result["outer_process_s"] = time.perf_counter() - t0
    return result


def minimum(runs: list[dict]) -> dict:
    """Every number the smallest over the runs; per program, too."""
    best = {k: min(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], int | float)}
    best["model"] = runs[0]["model"]
    programs: dict = {}
    for r in runs:
        for fun, p in r["programs"].items():
            if fun not in programs:
                programs[fun] = dict(p)
            else:
                programs[fun] = {k: min(programs[fun][k], p[k]) for k in p}
    best["programs"] = programs
    return best


def print_report(best: list[dict], top: int) -> None:
    print(
        f"{'model':<11} {'import':>6} {'wall':>6} {'compile':>7} {'sampling':>8} "
        f"{'trace':>6} {'lower':>6} {'xla':>6} {'#xla':>5} {'min_ess':>7} {'process':>7}"
    )
    for b in best:
        print(
            f"{b['model']:<11} {b['import_s']:6.2f} {b['wall_s']:6.2f} {b['compile_s']:7.2f} "
            f"{b['sampling_s']:8.2f} {b['trace_s']:6.2f} {b['lower_s']:6.2f} {b['xla_s']:6.2f} "
            f"{b['n_xla']:5d} {b['min_ess_bulk']:7.0f} {b['outer_process_s']:7.2f}"
        )
    for b in best:
        print(f"\n{b['model']}: program                        trace_s lower_s   xla_s   n")
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


def main(argv=None) -> None:
    parser = sampler_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=1, help="processes per model (min)")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only NAME")
    parser.add_argument("--top", type=int, default=8, help="programs listed per model")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="compile in the calling thread (per-program times not inflated by overlap)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--child", choices=NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        args.json.write_text(json.dumps(child(args.child, args)))
        return
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {}
    for name in args.only or NAMES:
        for i in range(args.repeats):
            print(f"{name}: cold process {i + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
            runs.setdefault(name, []).append(run_cold(name, args))
    best = [minimum(r) for r in runs.values()]
    report = {
        "settings": {
            k: getattr(args, k) for k in ("chains", "warmup", "draws", "seed", "repeats", "serial")
        },
        "machine": {**next(iter(runs.values()))[0]["machine"], "load_avg_1m_before": load_before},
        "best": best,
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_report(best, args.top)
    print(f"\nload before {load_before:.1f}; wrote {args.json}")


if __name__ == "__main__":
    main()
