"""Time and peak memory of effects averaged over many rows (issue 14): a mixed logit
(2,000 rows, 50 groups) fitted with 4 chains x 1000 draws, then ``fit.predictions(at=
rows, by="arm")`` over ``--rows`` new rows with each row's own group (``fitted``) and
over ``--integrated-rows`` with the groups integrated out.

Run from the repository root::

    PYTHONPATH=src python benchmarks/effects_memory.py                       # 1M and 100k rows
    PYTHONPATH=src python benchmarks/effects_memory.py --rows 200000 --integrated-rows 20000

Peak memory is the process's maximum resident set (it includes the fit, measured first).
The JSON (default ``benchmarks/results/effects_memory.json``) keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core import machine, peak_rss_mib  # noqa: E402

import multilevel as ml  # noqa: E402

DEFAULT_JSON = HERE / "results" / "effects_memory.json"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--integrated-rows", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(50), 40)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.8 * x + rng.normal(0, 1, 50)[g]
    data = pd.DataFrame({"y": (rng.random(g.size) < special.expit(eta)).astype(int), "x": x,
                         "g": g, "arm": np.where(g % 2, "b", "a")})  # fmt: skip
    model = ml.Model("y ~ x + arm + (1 | g)", data, family="bernoulli")
    fit = model.fit(chains=4, warmup=500, draws=1000, seed=1, progress=False)
    results = [{"step": "fit", "rows": len(data), "seconds": None, "peak_mib": peak_rss_mib()}]
    for groups, n in (("fitted", args.rows), ("integrated", args.integrated_rows)):
        rows = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 50, n),
                             "arm": rng.choice(["a", "b"], n)})  # fmt: skip
        start = time.perf_counter()
        fit.predictions(at=rows, by="arm", groups=groups, progress=False)
        results.append({"step": f"predictions groups={groups}", "rows": n,
                        "seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib()})  # fmt: skip
    print(f"{'step':<34} {'rows':>10} {'seconds':>9} {'peak MiB':>9}")
    for r in results:
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        print(f"{r['step']:<34} {r['rows']:>10,} {seconds:>9} {r['peak_mib']:>9.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "draws": 4000, "results": results},
                                    indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
