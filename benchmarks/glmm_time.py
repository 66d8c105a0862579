"""Where a GLMM fit's time goes (issue 16): compile, warmup, sampling and gradients.

Fits each of issue 16's models (``peers.GLMM_CASES``: the cases and data of peers.py) with
multilevel once, with the default sampler settings, each in a fresh process with an empty
compilation cache, as ``peers.py`` runs ours. Run from the repository root::

    PYTHONPATH=src python benchmarks/glmm_time.py
    PYTHONPATH=src python benchmarks/glmm_time.py --only bern20k --only VerbAgg
    PYTHONPATH=src python benchmarks/glmm_time.py --rows 2000 --warmup 100 --draws 100  # a try

See benchmarks/README.md for the columns.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import tempfile
from pathlib import Path

import core
import peers

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "glmm_time.json"


def group_sizes(case: peers.Case, data) -> dict[str, int]:
    """Levels of each grouping factor in the case's formula (``| g)``)."""
    factors = dict.fromkeys(re.findall(r"\|\s*(\w+)\s*\)", case.formula))
    return {name: int(data[name].nunique()) for name in factors}


def measures(result: dict, args) -> dict:
    """The table's figures from one fit's row (``peers.ours_result`` in the child, with
    ``fit.timing``: see ``nuts.ChainCost``)."""
    timing = result["timing"]
    if "sweeps_per_chain" in timing:  # the Gibbs sampler (gaussian crossed intercepts)
        return gibbs_measures(result)
    warmup_gradients = sum(timing["gradients_warmup"])
    sampling_gradients = sum(timing["gradients_sampling"])
    return {
        **phases(result),
        "gradients_warmup": warmup_gradients,
        "gradients_sampling": sampling_gradients,
        "gradients_per_warmup_draw": warmup_gradients / (args.chains * args.warmup)
        if args.warmup
        else None,
        "gradients_per_draw": sampling_gradients / (args.chains * args.draws),
        "us_per_gradient": 1e6 * timing["seconds_per_gradient"],
        "chain_workers": timing["chain_workers"],
        "chain_processes": timing.get("chain_processes", 0),
    }


def phases(result: dict) -> dict:
    """Compile, warmup and draws seconds, warmup's share, ESS per process second."""
    timing = result["timing"]
    loop_s = timing["warmup_s"] + timing["draws_s"]
    return {
        "compile_s": timing["compile_s"],
        "warmup_s": timing["warmup_s"],
        "draws_s": timing["draws_s"],
        "warmup_share": timing["warmup_s"] / loop_s if loop_s > 0 else None,
        "ess_per_process_s": result["min_ess_bulk"] / result["process_wall_s"],
    }


def gibbs_measures(result: dict) -> dict:
    """The table's figures for a Gibbs fit: no gradients; the time per sweep of every
    chain side by side in the us/grad column's place (``us_per_sweep``)."""
    return {**phases(result), "us_per_sweep": 1e6 * result["timing"]["seconds_per_sweep"]}


def run(case: peers.Case, args, tmp: Path) -> dict:
    data = peers.make_data(case, args.rows)
    data_path = tmp / f"{case.name}.parquet"
    data.to_parquet(data_path)
    row = {"model": case.name, "formula": case.formula, "family": case.family, "rows": len(data)}
    row["groups"] = group_sizes(case, data)
    row["groups_text"] = "+".join(str(n) for n in row["groups"].values())
    del data
    env = {**peers.child_base_env(), "MULTILEVEL_CACHE_DIR": str(tmp / f"{case.name}.cache")}
    print(f"{case.name} ...", file=sys.stderr, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = peers.run_child(peers.OURS, case, data_path, tmp, args, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data_path.unlink()
    row.update(result)
    # CPU seconds of the fit process: on a busy machine far below process_s x the
    # chains running at once, i.e. the chains waited for a core (and every wall figure
    # is pessimistic)
    row["cpu_s"] = sum(getattr(after, k) - getattr(before, k) for k in ("ru_utime", "ru_stime"))
    if result["status"] == "ok":
        row.update(measures(result, args))
        row["note"] = result["note"]
    else:
        row["note"] = result["status"]
    return row


COLUMNS = [  # (header, result key, format spec); text columns are left-aligned
    ("model", "model", ""),
    ("rows", "rows", "d"),
    ("groups", "groups_text", ""),
    ("compile_s", "compile_s", ".1f"),
    ("warmup_s", "warmup_s", ".1f"),
    ("draws_s", "draws_s", ".1f"),
    ("warm_%", "warmup_share", ".0%"),
    ("grad/warm", "gradients_per_warmup_draw", ".1f"),
    ("grad/draw", "gradients_per_draw", ".1f"),
    ("us/grad", "us_per_gradient", ".0f"),
    ("us/sweep", "us_per_sweep", ".0f"),
    ("min_ess", "min_ess_bulk", ".0f"),
    ("ess/proc_s", "ess_per_process_s", ".1f"),
    ("process_s", "process_wall_s", ".1f"),
    ("cpu_s", "cpu_s", ".1f"),
    ("div", "divergences", "d"),
    ("note", "note", ""),
]


def print_report(report: dict) -> None:
    core.print_table(report["results"], COLUMNS)
    m, s = report["machine"], report["settings"]
    print(
        f"\none fresh process per model, empty compilation cache; chains={s['chains']} "
        f"warmup={s['warmup']} draws={s['draws']} seed={s['seed']} "
        f"method={s.get('method', 'auto')}"
        + (f"; rows cut to {s['rows_override']}" if s["rows_override"] else "")
    )
    print(
        f"{m['platform']}, {m['cpu_count']} CPUs (load {m['load_avg_1m_before']:.1f} before), "
        f"python {m['python']}, jax {m.get('jax')}"
    )


def main(argv=None) -> None:
    parser = core.sampler_parser(__doc__)
    parser.add_argument(
        "--only", action="append", choices=peers.GLMM_CASES, help="run only NAME (repeatable)"
    )
    parser.add_argument("--rows", type=int, help="fewer rows (synthetic) or the first rows (real)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per fit process")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    args.cores = min(4, os.cpu_count() or 1)  # what peers.run_child passes on (unused by ours)
    args.max_rss_gib = 0.75 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30

    cases = [peers.BY_NAME[name] for name in peers.GLMM_CASES if not args.only or name in args.only]
    sys.path.insert(0, str(peers.SRC))  # the working tree's multilevel, as in the children
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="glmm-time-") as tmp:
        results = [run(case, args, Path(tmp)) for case in cases]
    report = {
        "machine": {**core.machine(), "load_avg_1m_before": load_before},
        "settings": {
            **{k: getattr(args, k) for k in ("chains", "warmup", "draws", "seed", "method")},
            "rows_override": args.rows,
            "data_seed": peers.DATA_SEED,
        },
        "results": results,
    }
    core.write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
