"""One chain's rows split across devices: seconds per gradient and sampling time.

Run from the repository root::

    PYTHONPATH=src python benchmarks/sharding.py                     # the full run
    PYTHONPATH=src python benchmarks/sharding.py --no-fits           # the gradient sweep only
    PYTHONPATH=src python benchmarks/sharding.py --rows 20000 --groups 200 --warmup 200 --draws 200

The process gets ``--devices`` CPU devices (default 2, one per core of the 2-core
machine: ``XLA_FLAGS=--xla_force_host_platform_device_count``, set here before JAX is
imported). Data: a bernoulli ``y ~ x + (1 + x | g)`` simulated from known values
(Intercept -0.5, x 0.5 standard normal, sds 0.7 and 0.3, correlation -0.4), the issue's
200,000 rows in 1,000 groups by default.

1. **Gradient sweep** (``--sweep``): seconds per log density + gradient of the joint
   sampler's model (padded as ``Model.fit`` pads it) on one device and with its rows split
   across every device, 200 of them in one compiled loop, the fastest of 10 loops (the
   placements' loops interleaved); for each row count, 1,000 groups (fewer for small
   data: rows / 20). ``cores``: CPU seconds of the process over wall seconds while each
   placement's loops ran (XLA's CPU backend runs one device's large loops on several
   threads, so one device can use both cores too).
2. **Fits** (unless ``--no-fits``): ``Model.fit(method="nuts")`` with 1 chain on one
   device (``shard_rows=False``), 1 chain sharded (``shard_rows=True``), 2 chains on
   one device each running on its own thread (today's path), and 2 chains each sharded
   (side by side on threads, each over every device). ``sampling_s`` is warmup plus
   draws; ``steps`` the mean leapfrog steps (gradients) per draw after warmup;
   ``gradients`` every chain's warmup and sampling gradients (``fit.timing``); ``wall
   ms/grad`` sampling_s over them (the run's throughput); ``chain ms/grad`` a chain's
   thread-seconds per gradient (``fit.timing["seconds_per_gradient"]``). The sharded and
   unsharded chains take different paths (sums over rows are rounded in another order,
   ``inference.sharding``) and so different numbers of gradients: compare per gradient.

JSON: ``benchmarks/results/sharding.json`` (``--json``), with the machine's load before
and after: on a shared machine every number is pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core import machine, print_table  # noqa: E402  (imports no JAX)

DEFAULT_JSON = HERE / "results" / "sharding.json"
SWEEP = (2_000, 10_000, 50_000, 200_000, 1_000_000)
GRADIENTS = 200  # per compiled loop
REPEATS = 10  # loops per placement, interleaved; the fastest counts
TRUTH = {"Intercept": -0.5, "x": 0.5, "sd_Intercept": 0.7, "sd_x": 0.3, "cor": -0.4}

SWEEP_COLUMNS = [
    ("rows", "rows", "d"),
    ("groups", "groups", "d"),
    ("values", "values", "d"),
    ("1 device ms/grad", "ms_per_gradient_one", ".3f"),
    ("sharded ms/grad", "ms_per_gradient_sharded", ".3f"),
    ("speed-up", "speedup", ".2f"),
    ("1 device cores", "cores_one", ".2f"),
    ("sharded cores", "cores_sharded", ".2f"),
]
FIT_COLUMNS = [
    ("fit", "fit", ""),
    ("chains", "chains", "d"),
    ("device", "device", ""),
    ("compile_s", "compile_s", ".1f"),
    ("sampling_s", "sampling_s", ".1f"),
    ("steps", "mean_steps", ".1f"),
    ("gradients", "gradients", "d"),
    ("wall ms/grad", "wall_ms_per_gradient", ".2f"),
    ("chain ms/grad", "chain_ms_per_gradient", ".2f"),
    ("min_ess", "min_ess_bulk", ".0f"),
    ("ess/samp_s", "ess_per_sampling_s", ".2f"),
    ("div", "divergences", "d"),
]


def simulated(rows: int, groups: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cov = np.array([[0.49, -0.4 * 0.7 * 0.3], [-0.4 * 0.7 * 0.3, 0.09]])
    effects = rng.multivariate_normal([0, 0], cov, size=groups)
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    eta = TRUTH["Intercept"] + effects[g, 0] + (TRUTH["x"] + effects[g, 1]) * x
    y = (rng.uniform(size=rows) < 1 / (1 + np.exp(-eta))).astype(np.int8)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def process_seconds() -> float:
    """CPU seconds this process has used, all threads: over wall seconds, the cores used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gradient_seconds(rows: int, groups: int, devices: int) -> dict:
    """Seconds per log density + gradient, one device and rows split across ``devices``."""
    import jax
    import numpy as np
    from jax.sharding import Mesh
    from numpyro import handlers
    from numpyro.infer.util import log_density

    import multilevel as ml
    from multilevel.backends import numpyro_model as backend
    from multilevel.backends import padding
    from multilevel.inference import sharding

    model = ml.Model("y ~ x + (1 + x | g)", simulated(rows, groups), family="bernoulli")
    st = model.structure
    data, prior = model.model_args()
    fn = backend.make_model(padding.padded_structure(st))
    args = (padding.pad_data(st, data, multiple=devices), prior)

    @jax.jit
    def draw(key, args):
        trace = handlers.trace(handlers.seed(fn, key)).get_trace(*args)
        return {
            k: s["value"]
            for k, s in trace.items()
            if s["type"] == "sample" and not s["is_observed"]
        }

    point = jax.tree.map(np.asarray, draw(jax.random.PRNGKey(0), args))

    def loop(point, args):
        def body(i, p):  # each gradient reads the last one: no work can be skipped
            g = jax.grad(lambda q: log_density(fn, args, {}, q)[0])(p)
            return jax.tree.map(lambda a, b: a + 1e-9 * b, p, g)

        return jax.lax.fori_loop(0, GRADIENTS, body, point)

    out = {
        "rows": rows,
        "groups": groups,
        "values": int(sum(np.size(x) for x in jax.tree.leaves(data))),
    }
    layouts = {
        "one": None,
        "sharded": sharding.RowSharding(Mesh(np.array(jax.devices()[:devices]), ("rows",))),
    }
    runs = {}
    for name, layout in layouts.items():
        placed = args if layout is None else layout.placed(args, padding.ROW_KEYS)
        start = point if layout is None else jax.device_put(point, layout.replicated)
        compiled = jax.jit(loop).lower(start, placed).compile()
        jax.block_until_ready(compiled(start, placed))
        runs[name] = (compiled, start, placed)
    best = dict.fromkeys(layouts, float("inf"))
    cpu = dict.fromkeys(layouts, 0.0)
    wall = dict.fromkeys(layouts, 0.0)
    for _ in range(REPEATS):  # interleaved: a busy spell of the machine hits both alike
        for name, (compiled, start, placed) in runs.items():
            used, t = process_seconds(), time.perf_counter()
            jax.block_until_ready(compiled(start, placed))
            seconds = time.perf_counter() - t
            best[name] = min(best[name], seconds)
            cpu[name] += process_seconds() - used
            wall[name] += seconds
    for name, seconds in best.items():
        out[f"ms_per_gradient_{name}"] = 1000 * seconds / GRADIENTS
        out[f"cores_{name}"] = cpu[name] / wall[name]
    out["speedup"] = out["ms_per_gradient_one"] / out["ms_per_gradient_sharded"]
    return out


def fit_row(name: str, model, chains: int, shard_rows: bool, args) -> dict:
    import arviz as az
    import numpy as np

    fit = model.fit(
        chains=chains, warmup=args.warmup, draws=args.draws, seed=args.seed, progress=False,
        warn=False, method="nuts", shard_rows=shard_rows,
    )  # fmt: skip
    names = list(fit.spec.hyper_names)
    ess = az.ess(fit.idata.posterior[names], method="bulk")
    min_ess = min(float(ess[n]) for n in names)
    timing = fit.timing
    gradients = sum(timing["gradients_warmup"]) + sum(timing["gradients_sampling"])
    return {
        "fit": name,
        "chains": chains,
        "shard_rows": shard_rows,
        "device": fit.info["device"],
        "compile_s": timing["compile_s"],
        "sampling_s": timing["sampling_s"],
        "mean_steps": float(np.mean(fit.idata.sample_stats["n_steps"].values)),
        "gradients": gradients,  # all chains, warmup and sampling
        "wall_ms_per_gradient": 1000 * timing["sampling_s"] / gradients,
        "chain_ms_per_gradient": 1000 * timing["seconds_per_gradient"],
        "min_ess_bulk": min_ess,
        "ess_per_sampling_s": min_ess / timing["sampling_s"],
        "divergences": int(fit.diagnostics.divergences),
        "means": {n: float(fit.idata.posterior[n].mean()) for n in names},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2, help="CPU devices (default 2)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sweep",
        default=",".join(map(str, SWEEP)),
        help="row counts, comma-separated ('' for none)",
    )
    parser.add_argument("--no-fits", action="store_true")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    flag = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    import multilevel as ml

    assert len(jax.devices()) == args.devices, "JAX was imported before XLA_FLAGS was set"
    load_before = os.getloadavg()[0]
    sweep = []
    for rows in [int(r) for r in args.sweep.split(",") if r]:
        sweep.append(gradient_seconds(rows, min(1_000, max(rows // 20, 2)), args.devices))
        r = sweep[-1]
        print(
            f"  {rows:,} rows: {r['ms_per_gradient_one']:.3f} vs {r['ms_per_gradient_sharded']:.3f} ms",
            flush=True,
        )
    fits = []
    if not args.no_fits:
        model = ml.Model(
            "y ~ x + (1 + x | g)", simulated(args.rows, args.groups, args.seed), family="bernoulli"
        )
        for name, chains, shard in (
            ("1 chain, one device", 1, False),
            ("1 chain, rows sharded", 1, True),
            ("2 chains, one device (threads)", 2, False),
            ("2 chains, each sharded", 2, True),
        ):
            fits.append(fit_row(name, model, chains, shard, args))
            print(f"  done: {name} ({fits[-1]['sampling_s']:.1f} s sampling)", flush=True)
    report = {
        "machine": {
            **machine(),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": os.getloadavg()[0],
        },
        "settings": vars(args) | {"json": str(args.json)},
        "truth": TRUTH,
        "sweep": sweep,
        "fits": fits,
    }
    print()
    if sweep:
        print(f"Seconds per log density + gradient, 1 device vs {args.devices} devices:")
        print_table(sweep, SWEEP_COLUMNS)
    if fits:
        print(
            f"\nFits: {args.rows:,} rows, {args.groups:,} groups, {args.warmup} + {args.draws} draws:"
        )
        print_table(fits, FIT_COLUMNS)
    m = report["machine"]
    print(
        f"\n{m['cpu_count']} CPUs, load {load_before:.1f} before, {m['load_avg_1m_after']:.1f} after"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
