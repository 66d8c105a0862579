"""Speed and sampling-efficiency benchmark of the core models.

Run from the repository root::

    PYTHONPATH=src python benchmarks/core.py            # radon + sleepstudy, one process
    PYTHONPATH=src python benchmarks/core.py --all      # + radon uncorrelated, cbpp
    PYTHONPATH=src python benchmarks/core.py --cold     # each model in a fresh process

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "core.json"


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str
    formula: str
    family: str = "gaussian"
    extra: bool = False  # only run with --all (or --only NAME)


CASES = [
    Case("radon", "radon", "log_radon ~ floor + (1 + floor | county)"),
    Case("sleepstudy", "sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    Case("radon_uncorr", "radon", "log_radon ~ floor + (1 + floor || county)", extra=True),
    Case(
        "cbpp",
        "cbpp",
        "incidence | trials(size) ~ period + (1 | herd)",
        family="binomial",
        extra=True,
    ),
]


class CompileCounter:
    """Counts XLA backend compilations (any jitted program, not only the sampler)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        import jax.monitoring

        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.count += 1


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def machine() -> dict:
    import jax
    import numpyro

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def sampler_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the sampler settings every benchmark takes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--method", default="auto", help="our fit's method (auto, nuts, collapsed, gibbs, laplace)"
    )
    return parser


def timed_fit(formula: str, data, family: str, args):
    """``Model(...)`` and ``fit`` with the benchmark's sampler settings: (fit, wall s)."""
    import multilevel as ml

    t0 = time.perf_counter()
    model = ml.Model(formula, data, family=family)
    fit = model.fit(
        chains=args.chains,
        warmup=args.warmup,
        draws=args.draws,
        seed=args.seed,
        method=getattr(args, "method", "auto"),
        progress=False,
        warn=False,
    )
    return fit, time.perf_counter() - t0


def run_case(case: Case, args, compiles: CompileCounter) -> dict:
    """Fit once cold (first fit of this structure in the process), then refit warm."""
    import multilevel as ml
    from multilevel.inference import nuts

    data = ml.datasets.load(case.dataset)
    fit, wall_s = timed_fit(case.formula, data, case.family, args)
    traces, n_compiles = sum(nuts.TRACE_COUNTS.values()), compiles.count
    warm_fit, warm_wall_s = timed_fit(case.formula, data, case.family, args)

    summary = fit.summary()  # population effects, sd(...), cor(...), sigma
    min_ess = float(summary["ess_bulk"].min())
    timing, diag = fit.timing, fit.diagnostics
    return {
        "model": case.name,
        "formula": case.formula,
        "family": case.family,
        "rows": fit.info["n_rows"],
        "n_params": len(summary),
        "compile_s": timing["compile_s"],
        "sampling_s": timing["sampling_s"],
        "wall_s": wall_s,
        "warm_wall_s": warm_wall_s,
        "warm_compile_s": warm_fit.timing["compile_s"],
        "warm_sampling_s": warm_fit.timing["sampling_s"],
        "warm_retraces": sum(nuts.TRACE_COUNTS.values()) - traces,
        "warm_xla_compiles": compiles.count - n_compiles,
        "min_ess_bulk": min_ess,
        "min_ess_bulk_param": str(summary["ess_bulk"].idxmin()),
        "ess_per_sampling_s": min_ess / timing["sampling_s"],
        "ess_per_wall_s": min_ess / wall_s,
        "max_r_hat": diag.max_r_hat,
        "divergences": diag.divergences,
        "problems": diag.problems(fit.spec.centered),
    }


def run_in_process(cases: list[Case], args) -> dict:
    compiles = CompileCounter()
    results = []
    for case in cases:
        print(f"fitting {case.name} ...", file=sys.stderr, flush=True)
        results.append(run_case(case, args, compiles))
    return {"machine": machine(), "peak_rss_mib": peak_rss_mib(), "results": results}


def run_cold(cases: list[Case], args) -> dict:
    """Each case in a fresh interpreter: its wall includes the imports and all compiling."""
    script = str(Path(__file__).resolve())
    flags = [f"--{k}={getattr(args, k)}" for k in ("chains", "warmup", "draws", "seed")]
    results, children = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            print(f"fitting {case.name} in a new process ...", file=sys.stderr, flush=True)
            out = Path(tmp) / f"{case.name}.json"
            cmd = [sys.executable, script, "--only", case.name, "--json", str(out), *flags]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            process_wall_s = time.perf_counter() - t0
            child = json.loads(out.read_text())
            children.append(child)
            for r in child["results"]:
                r.update(process_wall_s=process_wall_s, peak_rss_mib=child["peak_rss_mib"])
                results.append(r)
    return {
        "machine": children[0]["machine"],
        "peak_rss_mib": max(c["peak_rss_mib"] for c in children),
        "results": results,
    }


COLUMNS = [  # (header, result key, format spec)
    ("model", "model", ""),
    ("rows", "rows", "d"),
    ("compile_s", "compile_s", ".2f"),
    ("sampling_s", "sampling_s", ".2f"),
    ("wall_s", "wall_s", ".2f"),
    ("warm_wall_s", "warm_wall_s", ".2f"),
    ("min_ess", "min_ess_bulk", ".0f"),
    ("ess/samp_s", "ess_per_sampling_s", ".1f"),
    ("ess/wall_s", "ess_per_wall_s", ".1f"),
    ("max_rhat", "max_r_hat", ".3f"),
    ("div", "divergences", "d"),
    ("process_wall_s", "process_wall_s", ".2f"),  # --cold only
]


def print_table(results: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``results`` as aligned text, one row each; ``columns`` as in ``COLUMNS``.

    Text columns (empty format spec) are left-aligned, numbers right-aligned; a missing or
    None value prints as ``-``."""
    cells = [[h for h, _, _ in columns]]
    cells += [
        ["-" if r.get(key) is None else format(r[key], fmt) for _, key, fmt in columns]
        for r in results
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if not fmt else c.rjust(w)
                for c, w, (_, _, fmt) in zip(row, widths, columns, strict=True)
            ).rstrip()
        )
        if n == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))


def print_report(report: dict) -> None:
    results = report["results"]
    print_table(results, [c for c in COLUMNS if c[1] in results[0]])
    m, s = report["machine"], report["settings"]
    print(
        f"\n{s['mode']}; chains={s['chains']} warmup={s['warmup']} draws={s['draws']} "
        f"seed={s['seed']}; peak RSS {report['peak_rss_mib']:.0f} MiB"
    )
    print(
        f"{m['platform']}, {m['cpu_count']} CPUs (load {m['load_avg_1m_before']:.1f} before), "
        f"python {m['python']}, jax {m['jax']} ({m['jax_backend']}), numpyro {m['numpyro']}"
    )
    for r in results:
        if r["warm_retraces"] or r["warm_xla_compiles"]:
            print(
                f"{r['model']}: warm refit recompiled ({r['warm_retraces']} sampler retraces, "
                f"{r['warm_xla_compiles']} XLA compiles)"
            )
        for problem in r["problems"]:  # first clause only; the JSON has the full advice
            print(f"{r['model']}: {re.split(r'[.:] ', problem)[0]}")


def write_report(report: dict, path: Path, printer) -> None:
    """Write the JSON, print the table with ``printer``, say where the JSON went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    printer(report)
    print(f"\nwrote {path}")


def main(argv=None) -> None:
    parser = sampler_parser(__doc__)
    parser.add_argument("--all", action="store_true", help="also radon_uncorr and cbpp")
    parser.add_argument(
        "--only",
        action="append",
        choices=[c.name for c in CASES],
        help="run only NAME (repeatable)",
    )
    parser.add_argument("--cold", action="store_true", help="each model in a fresh process")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)

    if args.only:
        cases = [c for c in CASES if c.name in args.only]
    else:
        cases = [c for c in CASES if args.all or not c.extra]
    load_before = os.getloadavg()[0]  # other work on the machine skews the timings
    report = (run_cold if args.cold else run_in_process)(cases, args)
    report["machine"]["load_avg_1m_before"] = load_before
    report["settings"] = {
        "mode": "cold (one process per model)" if args.cold else "in-process",
        **{k: getattr(args, k) for k in ("chains", "warmup", "draws", "seed")},
    }
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
