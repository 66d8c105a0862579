"""Memory of one process that fits data of many sizes: does it stay bounded?

Run from the repository root::

    PYTHONPATH=src python benchmarks/soak.py                  # 40 sizes, 150 to 3000 rows
    PYTHONPATH=src python benchmarks/soak.py --sizes 10 --draws 100

One process fits a Poisson model with a correlated varying intercept and slope,
``y ~ x + (1 + x | g)`` (the joint sampler: the largest compiled programs), to simulated
data of ``--sizes`` different sizes, geometrically spaced from ``--smallest`` to
``--largest`` rows with a group per 10 rows, in a shuffled order. After each fit it
records the resident memory (``/proc/self/statm``), the process's peak, how many times
the sampler was traced and how many programs XLA compiled. Sizes that share a size bucket
(``multilevel.shape_buckets``) share compiled programs; the number of shapes kept per
model is bounded (``nuts.MAX_SHAPES``) as are the caches of other programs
(``program_cache.MAX_PROGRAMS``). The JSON (default ``benchmarks/results/soak.json``)
keeps every fit's row. The issue's target: the last fit's resident memory within 1.5x
the first's.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core import CompileCounter, machine, peak_rss_mib, print_table, sampler_parser  # noqa: E402

DEFAULT_JSON = HERE / "results" / "soak.json"
COLUMNS = [
    ("fit", "fit", "d"),
    ("rows", "rows", "d"),
    ("groups", "groups", "d"),
    ("row bucket", "row_bucket", "d"),
    ("wall s", "wall_s", ".2f"),
    ("traces", "traces", "d"),
    ("XLA compiles", "xla_compiles", "d"),
    ("RSS MiB", "rss_mib", ".0f"),
    ("peak MiB", "peak_rss_mib", ".0f"),
]


def resident_mib() -> float:
    """Resident memory now (not the peak): pages in /proc/self/statm."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def simulated(rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    groups = max(3, rows // 10)
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    intercepts, slopes = rng.normal(0, 0.5, groups), rng.normal(0, 0.2, groups)
    y = rng.poisson(np.exp(0.5 + intercepts[g] + (0.3 + slopes[g]) * x))
    return pd.DataFrame({"y": y, "x": x, "g": g})


def main(argv=None) -> None:
    parser = sampler_parser(__doc__)
    parser.set_defaults(chains=2, warmup=200, draws=200)
    parser.add_argument("--sizes", type=int, default=40)
    parser.add_argument("--smallest", type=int, default=150)
    parser.add_argument("--largest", type=int, default=3000)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--clear", action="store_true", help="ml.clear_compiled() after each fit (a control)"
    )
    args = parser.parse_args(argv)

    import numpy as np

    import multilevel as ml
    from multilevel.inference import nuts
    from multilevel.program_cache import clear_compiled
    from multilevel.shape_buckets import bucket

    compiles = CompileCounter()
    sizes = np.unique(np.geomspace(args.smallest, args.largest, args.sizes).astype(int))
    np.random.default_rng(args.seed).shuffle(sizes)
    rows_out = []
    for i, rows in enumerate(sizes):
        data = simulated(int(rows), seed=i)
        traces, xla = sum(nuts.TRACE_COUNTS.values()), compiles.count
        t0 = time.perf_counter()
        ml.Model("y ~ x + (1 + x | g)", data, family="poisson").fit(
            chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed,
            progress=False, warn=False,
        )  # fmt: skip
        if args.clear:
            clear_compiled()
        rows_out.append(
            {
                "fit": i + 1,
                "rows": int(rows),
                "groups": int(data["g"].nunique()),
                "row_bucket": bucket(int(rows)),
                "wall_s": time.perf_counter() - t0,
                "traces": sum(nuts.TRACE_COUNTS.values()) - traces,
                "xla_compiles": compiles.count - xla,
                "rss_mib": resident_mib(),
                "peak_rss_mib": peak_rss_mib(),
            }
        )
        if i == 0:  # the header, then a line per fit as it ends (the table needs them all)
            print_table(rows_out, COLUMNS)
        else:
            print("  ".join(format(rows_out[-1][k], f) for _, k, f in COLUMNS))
    first, last = rows_out[0]["rss_mib"], rows_out[-1]["rss_mib"]
    report = {
        "settings": vars(args) | {"json": str(args.json)},
        "machine": machine() | {"load_avg_1m_before": os.getloadavg()[0]},
        "fits": rows_out,
        "distinct_row_buckets": len({r["row_bucket"] for r in rows_out}),
        "rss_last_over_first": last / first,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{len(rows_out)} sizes in {report['distinct_row_buckets']} row buckets; resident "
        f"memory {first:.0f} MiB after the first fit, {last:.0f} MiB after the last "
        f"({last / first:.2f}x; peak {rows_out[-1]['peak_rss_mib']:.0f} MiB)"
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
