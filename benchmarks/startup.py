"""What a user waits for from a cold start, beside the best peer in the same run (issue 15).

Run from the repository root with the project's environment; the peer runs in the
``bench`` environment's interpreter (``--peer-python``, default ``.venv-bench/bin/python``
when it exists)::

    PYTHONPATH=src python benchmarks/startup.py                        # everything, 3 repeats
    PYTHONPATH=src python benchmarks/startup.py --quick                # 200 + 200 draws, 1 repeat
    PYTHONPATH=src python benchmarks/startup.py --only cli --only imports --repeats 10
    PYTHONPATH=src python benchmarks/startup.py --only radon --peer-python ../.venv-bench/bin/python

Every figure is a fresh process, repeated ``--repeats`` times (minimum and median):

1. ``multilevel --help``, ``--version``, ``datasets`` and an argument error: the whole
   process;
2. ``python -c pass`` and the imports (multilevel; jax + numpyro; bambi);
3. whole-process fits of radon, sleepstudy and cbpp (``peers.py``'s models, data, seeds and
   draws) with an empty compilation cache, with the cache a previous process filled on
   the same data, with the cache a previous process filled on *other* data of the same
   structure and a similar size ("bucket hit"), and the peer (bambi + nutpie), each
   broken down into interpreter start, imports, reading the data, compiling, sampling,
   the rest of the fit, and printing the result;
4. for radon, where the sampling time goes: gradients per transition in warmup and in
   sampling, seconds per gradient of the sampler's own potential, and the NUTS loop's
   cost beyond its gradients.

See benchmarks/README.md for the columns. The JSON (default
``benchmarks/results/startup.json``) keeps every run.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # a child's clock starts here: just after the interpreter's

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from importlib.util import find_spec  # noqa: E402
from pathlib import Path  # noqa: E402

import core  # noqa: E402
import peers  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "startup.json"
MODELS = ("radon", "sleepstudy", "cbpp")
SECTIONS = ("cli", "imports", *MODELS)
QUICK_DRAWS = 200  # --quick: warmup and draws each
GROUPS = {"radon": "county", "sleepstudy": "Subject", "cbpp": "herd"}  # each model's factor

# Our runs of each model: (key, label). The peer's row is labelled by its tool's name.
COLD, WARM, BUCKET, PEER = "cold", "warm", "bucket", "peer"
RUN_LABELS = {
    COLD: "multilevel, empty cache",
    WARM: "multilevel, cache from same data",
    BUCKET: "multilevel, cache from other data",
}

CLI_COMMANDS = [  # (arguments, the exit status that is right)
    (["--help"], 0),
    (["--version"], 0),
    (["datasets"], 0),
    (["fit", "--bogus"], 2),
]


# ---------------------------------------------------------------- data


def other_data(name: str, data):
    """Data of the same structure and another size in the same size bucket as ``data``
    (``multilevel.shape_buckets``: rows and each factor's groups), not the same rows:
    what a user fitted before, whose compiled programs the bucket shares."""
    from multilevel.shape_buckets import bucket

    if name == "radon":  # the smallest county left out: 84 counties, rows still > 896
        county = data["county"].value_counts().index[-1]
        other = data[data["county"] != county]
    elif name == "sleepstudy":  # one of the 18 subjects left out: 17 (bucket 20), 170 rows
        other = data[data["Subject"] != sorted(data["Subject"].unique())[0]]
    elif name == "cbpp":  # the last period of three herds left out: 53 rows, 15 herds
        last = data.groupby("herd", observed=True).tail(1).index[:3]
        other = data.drop(index=last)
    else:
        raise ValueError(name)
    sizes = [(len(data), len(other)), (data[GROUPS[name]].nunique(), other[GROUPS[name]].nunique())]
    if all(a == b for a, b in sizes) or any(bucket(a) != bucket(b) for a, b in sizes):
        raise AssertionError(f"{name}: other data's sizes {sizes} not other sizes in the buckets")
    return other.reset_index(drop=True)


# ---------------------------------------------------------------- children


class CompileEvents:
    """Programs XLA compiled or loaded in this process (count and seconds: JAX times a
    load from the persistent cache as a compile too), and the persistent cache's hits
    and misses (programs that compile in under ``MIN_COMPILE_TIME_S`` never go there)."""

    def __init__(self):
        import jax.monitoring

        self.programs, self.xla_s, self.hits, self.misses = 0, 0.0, 0, 0

        def on_duration(event, duration, **kwargs):
            if event == core.CompileCounter.EVENT:
                self.programs += 1
                self.xla_s += duration

        def on_event(event, **kwargs):
            self.hits += event == "/jax/compilation_cache/cache_hits"
            self.misses += event == "/jax/compilation_cache/cache_misses"

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)


def mean_steps(idata) -> float | None:
    """Mean leapfrog steps (gradients) per kept transition, where the sampler records it."""
    stats = idata.sample_stats
    return float(stats["n_steps"].mean()) if "n_steps" in stats else None


def phases(times: tuple, compile_s: float | None, sampling_s: float | None) -> dict:
    """A child's seconds by phase, from the clock readings ``times`` taken after this
    file's imports, the package's, reading the data, the fit and printing it."""
    t_script, t_import, t_data, t_fit, t_print = times
    return {
        "script_s": t_script - T_START,
        "import_s": t_import - t_script,
        "data_s": t_data - t_import,
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "fit_other_s": (t_fit - t_data) - (compile_s or 0.0) - (sampling_s or 0.0),
        "print_s": t_print - t_fit,
        "done_s": t_print - T_START,
    }


def child_ours(args) -> dict:
    """One user's script: import, read the data, fit, print the fit."""
    t_script = time.perf_counter()
    import multilevel as ml

    ml.Model, ml.Fit  # noqa: B018 - a lazy package imports them on first use
    t_import = time.perf_counter()
    case = peers.BY_NAME[args.child_case]
    data = peers.read_data(case, args.data)
    t_data = time.perf_counter()
    events = CompileEvents()  # imports jax here if `import multilevel` did not
    fit, wall_s = core.timed_fit(case.formula, data, case.family, args)
    t_fit = time.perf_counter()
    print(fit)
    t_print = time.perf_counter()

    return {
        **peers.ours_result(fit, wall_s),
        **phases(
            (t_script, t_import, t_data, t_fit, t_print),
            fit.timing["compile_s"],
            fit.timing["sampling_s"],
        ),
        "rows": fit.info["n_rows"],
        "xla_programs": events.programs,
        "xla_s": events.xla_s,
        "cache_hits": events.hits,
        "cache_misses": events.misses,
        "mean_steps": mean_steps(fit.idata),
    }


def child_peer(args) -> dict:
    """The same script with bambi: import, read, fit, print a summary of the same
    parameters whose ESS counts."""
    t_script = time.perf_counter()
    import arviz as az
    import bambi  # noqa: F401 - imported here to time it; bambi_fit uses it

    t_import = time.perf_counter()
    case = peers.BY_NAME[args.child_case]
    data = peers.read_data(case, args.data)
    t_data = time.perf_counter()
    method = peers.PEERS[args.peer]
    idata, wall_s = peers.bambi_fit(case, data, args, method)
    t_fit = time.perf_counter()
    print(az.summary(idata, var_names=peers.bambi_names(idata.posterior)))
    t_print = time.perf_counter()

    result = peers.bambi_result(case, idata, wall_s, method)
    # building the model and compiling it (PyTensor, numba) are in fit_other_s
    times = (t_script, t_import, t_data, t_fit, t_print)
    return {
        **result,
        **phases(times, compile_s=None, sampling_s=result["sampling_s"]),
        "versions": peers.versions(),
        "rows": len(data),
        "mean_steps": mean_steps(idata),
    }


def child_detail(args) -> dict:
    """Radon's sampling cost: gradients per transition (warmup and sampling), seconds
    per gradient of the potential the sampler runs, and the loop's cost beyond them.

    The sampler keeps no warmup statistics, so its chunk program is wrapped (in this
    process only) to record every call's leapfrog steps and wall time, per thread; and
    ``nuts.sample`` is wrapped to capture the model and arguments it is given (for
    radon the collapsed model, not ``Model.numpyro_model()``'s joint one)."""
    import jax
    import numpy as np

    import multilevel as ml
    from multilevel.inference import nuts

    captured: dict = {}
    calls: dict[int, list] = {}  # thread -> [(seconds, steps of each transition)]

    original_sample, original_run = nuts.sample, nuts._run_chunks

    def recording_sample(*a, **kw):
        captured.update(model=a[1], model_args=a[2], x64=bool(jax.config.jax_enable_x64))
        return original_sample(*a, **kw)

    def recording_run(executable, state, model_args, settings, progress):
        def timed(state, count, model_args):
            t0 = time.perf_counter()
            out = executable(state, count, model_args)
            steps = np.asarray(out[1][1][1])[: int(count)]  # (state, (values, statistics))
            calls.setdefault(threading.get_ident(), []).append((time.perf_counter() - t0, steps))
            return out

        return original_run(timed, state, model_args, settings, progress)

    nuts.sample, nuts._run_chunks = recording_sample, recording_run
    case = peers.BY_NAME[args.child_case]
    data = peers.read_data(case, args.data)
    fit, _ = core.timed_fit(case.formula, data, case.family, args)
    nuts.sample, nuts._run_chunks = original_sample, original_run

    # Each thread runs whole chains one after another: cut its calls into chains.
    total = args.warmup + args.draws
    chains = []
    for thread_calls in calls.values():
        steps, seconds = [], 0.0
        for elapsed, s in thread_calls:
            steps.append(s)
            seconds += elapsed
            if sum(len(x) for x in steps) == total:
                chains.append((np.concatenate(steps), seconds))
                steps, seconds = [], 0.0
    warmup_steps = np.concatenate([s[: args.warmup] for s, _ in chains])
    sampling_steps = np.concatenate([s[args.warmup :] for s, _ in chains])

    s_per_gradient = gradient_seconds(captured)
    grads_per_chain = float(np.mean([s.sum() for s, _ in chains]))
    loop_s_per_chain = float(np.mean([t for _, t in chains]))
    beyond_s = loop_s_per_chain - grads_per_chain * s_per_gradient
    try:
        threads = min(args.chains, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        threads = min(args.chains, os.cpu_count() or 1)
    return {
        "model": case.name,
        "sampler": fit.info["method"],
        "x64": captured["x64"],
        "chains_seen": len(chains),
        "threads": threads,
        "grads_per_draw_warmup": float(warmup_steps.mean()),
        "grads_per_draw_sampling": float(sampling_steps.mean()),
        "grads_per_draw_sampling_check": mean_steps(fit.idata),  # from fit.idata: the same
        "grads_per_chain": grads_per_chain,
        "s_per_gradient": s_per_gradient,
        "sampling_s": fit.timing["sampling_s"],
        "loop_s_per_chain": loop_s_per_chain,
        "gradient_s_per_chain": grads_per_chain * s_per_gradient,
        "beyond_gradients_s_per_chain": beyond_s,
        "beyond_gradients_us_per_transition": 1e6 * beyond_s / total,
        "beyond_gradients_us_per_gradient": 1e6 * beyond_s / grads_per_chain,
        "beyond_gradients_share": beyond_s / loop_s_per_chain,
        # what sampling_s holds besides the chains' loops (threads, draws of the
        # integrated effects, assembling the draws)
        "outside_loops_s": fit.timing["sampling_s"] - len(chains) * loop_s_per_chain / threads,
        "ml_version": ml.__version__,
    }


def gradient_seconds(captured: dict, steps: int = 2000, batches: int = 5) -> float:
    """Seconds per potential-energy value and gradient of the captured model on its
    data, as the sampler runs it: jitted with the data as arguments, ``steps`` of them
    in one compiled loop (a call per gradient would add 20-50 us of dispatch that the
    sampler's own loop does not pay); the fastest of ``batches`` loops."""
    import functools

    import jax
    from jax import lax
    from numpyro.infer.util import initialize_model

    with jax.enable_x64(captured["x64"]):
        model, model_args = captured["model"], captured["model_args"]
        info = initialize_model(
            jax.random.PRNGKey(0), model, model_args=model_args, dynamic_args=True
        )
        potential_gen, z = info.potential_fn, info.param_info.z

        @functools.partial(jax.jit, static_argnums=2)
        def gradients(z, model_args, n):
            potential = potential_gen(*model_args)

            def step(_, carry):
                z, total = carry
                value, grad = jax.value_and_grad(potential)(z)
                # each step starts where the last one's gradient moved it: no step can
                # be skipped or hoisted out of the loop
                return jax.tree.map(lambda a, b: a - 1e-9 * b, z, grad), total + value

            return lax.fori_loop(0, n, step, (z, 0.0))

        jax.block_until_ready(gradients(z, model_args, steps))  # compile
        best = float("inf")
        for _ in range(batches):
            t0 = time.perf_counter()
            jax.block_until_ready(gradients(z, model_args, steps))
            best = min(best, (time.perf_counter() - t0) / steps)
    return best


def child(args) -> None:
    run = {"ours": child_ours, "peer": child_peer, "detail": child_detail}[args.child]
    result = run(args)
    t0 = time.perf_counter()
    result["peak_rss_mib"] = core.peak_rss_mib()
    # this process's own analysis after the user's work (ESS, R-hat, this file): the
    # parent takes it off the process's wall time
    result["analysis_s"] = t0 - T_START - result.get("done_s", t0 - T_START)
    Path(args.out).write_text(json.dumps(result) + "\n")


# ---------------------------------------------------------------- parent


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "n": len(values)}


def time_command(cmd: list[str], env: dict, repeats: int, timeout: float) -> dict:
    """Wall time of ``cmd`` as a whole process, ``repeats`` times; output discarded."""
    walls, codes = [], set()
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
        )
        walls.append(time.perf_counter() - t0)
        codes.add(done.returncode)
    return {**spread(walls), "runs_s": walls, "exit_codes": sorted(codes)}


def cli_command() -> list[str]:
    """The installed ``multilevel`` script beside this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "multilevel"
    return [str(script)] if script.exists() else [sys.executable, "-m", "multilevel.cli"]


def run_cli(args, env) -> list[dict]:
    base = cli_command()
    rows = []
    for argv, expected in CLI_COMMANDS:
        print(f"cli: multilevel {' '.join(argv)} ...", file=sys.stderr, flush=True)
        r = time_command([*base, *argv], env, args.repeats, args.timeout)
        note = "" if r["exit_codes"] == [expected] else f"exit {r['exit_codes']}, not {expected}"
        rows.append({"command": "multilevel " + " ".join(argv), **r, "note": note})
    return rows


BARE, BARE_PEER = "python -c pass", "python -c pass (peer's python)"


def run_imports(args, env, peer_python: str | None, bare_only: bool) -> list[dict]:
    """Interpreter start (``python -c pass``) and the imports, each a whole process;
    ``bare_only``: the interpreters' start alone (the fits' breakdown needs it)."""
    ours = sys.executable
    ml_code = "import multilevel as ml; ml.Model, ml.Fit"
    todo = [(BARE, ours, "pass")]
    if not bare_only:
        todo += [(ml_code, ours, ml_code), ("import jax, numpyro", ours, "import jax, numpyro")]
    if peer_python:
        todo += [(BARE_PEER, peer_python, "pass")]
        todo += [] if bare_only else [("import bambi", peer_python, "import bambi")]
    rows = []
    for label, python, code in todo:
        print(f"imports: {label} ...", file=sys.stderr, flush=True)
        r = time_command([python, "-c", code], env, args.repeats, args.timeout)
        note = "" if r["exit_codes"] == [0] else f"exit {r['exit_codes']}"
        rows.append({"what": label, "python": python, **r, "note": note})
    return rows


def run_child(kind: str, case: str, data: Path, python: str, env: dict, args, tmp: Path) -> dict:
    """One fit process; its own JSON plus the wall time this process saw."""
    out = Path(tempfile.mkstemp(dir=tmp, suffix=".json")[1])
    log = out.with_suffix(".log")
    flags = [f"--{k}={getattr(args, k)}" for k in ("chains", "warmup", "draws", "seed", "cores")]
    cmd = [python, str(Path(__file__).resolve()), f"--child={kind}", f"--child-case={case}"]
    cmd += [f"--data={data}", f"--out={out}", f"--peer={args.peer}", *flags]
    t0 = time.perf_counter()
    try:
        with open(log, "w") as log_file:
            done = subprocess.run(
                cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=args.timeout
            )
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timeout (> {args.timeout:.0f} s)"
    process_s = time.perf_counter() - t0
    if status != "ok":
        return {"status": status, "process_s": process_s, "log_tail": log.read_text()[-3000:]}
    result = json.loads(out.read_text())
    result.update(status="ok", process_s=process_s, wait_s=process_s - result["analysis_s"])
    return result


def run_model(name: str, args, base_env: dict, peer_python: str | None, tmp: Path) -> dict:
    """Every repeat: a cold fit, a fit with the cache it filled, a fit with a cache
    filled on other data, and the peer; each a fresh process."""
    case = peers.BY_NAME[name]
    data = peers.make_data(case)
    same, other = tmp / f"{name}.parquet", tmp / f"{name}.other.parquet"
    data.to_parquet(same)
    other_rows = other_data(name, data)
    other_rows.to_parquet(other)
    runs: dict[str, list] = {COLD: [], WARM: [], BUCKET: [], PEER: []}
    fills = []  # the processes that filled a cache on the other data
    detail_cache = None
    for i in range(args.repeats):
        say = f"{name} {i + 1}/{args.repeats}:"
        cache, other_cache = tmp / f"{name}.cache.{i}", tmp / f"{name}.other-cache.{i}"
        ours_env = {**base_env, "MULTILEVEL_CACHE_DIR": str(cache)}
        other_env = {**base_env, "MULTILEVEL_CACHE_DIR": str(other_cache)}
        for key, env, path in ((COLD, ours_env, same), (WARM, ours_env, same)):
            print(f"{say} {RUN_LABELS[key]} ...", file=sys.stderr, flush=True)
            runs[key].append(run_child("ours", name, path, sys.executable, env, args, tmp))
        print(f"{say} filling a cache on other data ...", file=sys.stderr, flush=True)
        fill = run_child("ours", name, other, sys.executable, other_env, args, tmp)
        fills.append({k: fill.get(k) for k in ("status", "process_s", "rows")})
        print(f"{say} {RUN_LABELS[BUCKET]} ...", file=sys.stderr, flush=True)
        runs[BUCKET].append(run_child("ours", name, same, sys.executable, other_env, args, tmp))
        if peer_python:
            print(f"{say} {args.peer} ...", file=sys.stderr, flush=True)
            env = peers.peer_env(args.peer, tmp / f"{name}.peer.{i}", args, base_env)
            runs[PEER].append(run_child("peer", name, same, peer_python, env, args, tmp))
        detail_cache = cache
    detail = None
    if name == "radon":
        print(f"{name}: sampling cost detail ...", file=sys.stderr, flush=True)
        env = {**base_env, "MULTILEVEL_CACHE_DIR": str(detail_cache)}
        detail = run_child("detail", name, same, sys.executable, env, args, tmp)
    return {
        "model": name,
        "formula": case.formula,
        "peer_formula": case.bambi_formula,
        "family": case.family,
        "rows": len(data),
        "groups": int(data[GROUPS[name]].nunique()),
        "other_rows": len(other_rows),
        "other_groups": int(other_rows[GROUPS[name]].nunique()),
        "other_data_fills": fills,
        "runs": {k: v for k, v in runs.items() if v},
        "detail": detail,
    }


PHASES = ("import_s", "data_s", "compile_s", "sampling_s", "fit_other_s", "print_s")


def model_rows(model: dict, startup: dict, peer_label: str) -> list[dict]:
    """One table row per kind of run: process and wait times over the repeats, the
    phases of the run with the median wait, ESS per second of the shortest wait."""
    rows = []
    for key, runs in model["runs"].items():
        ok = [r for r in runs if r["status"] == "ok"]
        label = peer_label if key == PEER else RUN_LABELS[key]
        if not ok:
            rows.append({"model": model["model"], "run": label, "note": runs[0]["status"]})
            continue
        by_wait = sorted(ok, key=lambda r: r["wait_s"])
        middle = by_wait[(len(by_wait) - 1) // 2]
        start = startup["peer" if key == PEER else "ours"]
        phases = {p: middle.get(p) for p in PHASES}
        # the script's own imports (this file's: argparse, json, ...; 0.05 s) with the
        # package's, as in a user's script
        phases["import_s"] += middle["script_s"]
        # interpreter exit: what the process took after printing, less this benchmark's
        # own analysis (the child measures it); starting the process is in `start`
        exit_s = middle["wait_s"] - start - middle["done_s"]
        best_wait = by_wait[0]["wait_s"]
        rows.append(
            {
                "model": model["model"],
                "run": label,
                "key": key,
                "wait_min_s": best_wait,
                "wait_median_s": middle["wait_s"],
                "process_min_s": min(r["process_s"] for r in ok),
                "startup_s": start,
                **phases,
                "exit_s": exit_s,
                "xla_s": middle.get("xla_s"),
                "cache_hits": middle.get("cache_hits"),
                "cache_misses": middle.get("cache_misses"),
                "min_ess_bulk": middle["min_ess_bulk"],
                "min_ess_bulk_param": middle["min_ess_bulk_param"],
                "ess_per_wait_s": middle["min_ess_bulk"] / best_wait,
                "mean_steps": middle.get("mean_steps"),
                "divergences": middle.get("divergences"),
                "max_r_hat": middle.get("max_r_hat"),
                "note": middle.get("note", ""),
                "ok_runs": len(ok),
            }
        )
    peer = next((r for r in rows if r.get("key") == PEER and "ess_per_wait_s" in r), None)
    for r in rows:
        if peer is not None and r.get("key") != PEER and "ess_per_wait_s" in r:
            r["ours_over_peer"] = r["ess_per_wait_s"] / peer["ess_per_wait_s"]
    return rows


TIME_COLUMNS = [
    ("command", "command", ""),
    ("min_s", "min", ".3f"),
    ("median_s", "median", ".3f"),
    ("note", "note", ""),
]
IMPORT_COLUMNS = [("what", "what", ""), *TIME_COLUMNS[1:]]
FIT_COLUMNS = [
    ("model", "model", ""),
    ("run", "run", ""),
    ("wait_min", "wait_min_s", ".2f"),
    ("wait_med", "wait_median_s", ".2f"),
    ("start", "startup_s", ".2f"),
    ("import", "import_s", ".2f"),
    ("data", "data_s", ".2f"),
    ("compile", "compile_s", ".2f"),
    ("sampling", "sampling_s", ".2f"),
    ("fit_other", "fit_other_s", ".2f"),
    ("print", "print_s", ".2f"),
    ("exit", "exit_s", ".2f"),
    ("xla", "xla_s", ".2f"),
    ("hit", "cache_hits", "d"),
    ("miss", "cache_misses", "d"),
    ("min_ess", "min_ess_bulk", ".0f"),
    ("ess/s", "ess_per_wait_s", ".1f"),
    ("ours/peer", "ours_over_peer", ".2f"),
    ("steps", "mean_steps", ".1f"),
    ("note", "note", ""),
]


def print_detail(d: dict) -> None:
    print(
        f"\n{d['model']} sampling cost ({d['sampler']}; float{'64' if d['x64'] else '32'}; "
        f"{d['chains_seen']} chains on {d['threads']} threads):\n"
        f"  gradients per transition: warmup {d['grads_per_draw_warmup']:.1f}, "
        f"sampling {d['grads_per_draw_sampling']:.1f}; {d['grads_per_chain']:.0f} per chain\n"
        f"  one potential + gradient: {1e6 * d['s_per_gradient']:.1f} us "
        f"(in a compiled loop, alone on one thread)\n"
        f"  per chain: loop {d['loop_s_per_chain']:.3f} s = gradients "
        f"{d['gradient_s_per_chain']:.3f} s + the rest of NUTS "
        f"{d['beyond_gradients_s_per_chain']:.3f} s "
        f"({100 * d['beyond_gradients_share']:.0f}%, "
        f"{d['beyond_gradients_us_per_transition']:.0f} us per transition, "
        f"{d['beyond_gradients_us_per_gradient']:.1f} us per gradient)\n"
        f"  sampling_s {d['sampling_s']:.3f} s, of which outside the chains' loops "
        f"{d['outside_loops_s']:.3f} s"
    )


def print_report(report: dict) -> None:
    m, s = report["machine"], report["settings"]
    if report.get("cli"):
        print("command line (whole process; target < 0.3 s):")
        core.print_table(report["cli"], TIME_COLUMNS)
    if report.get("imports"):
        print("\nimports (whole process):")
        core.print_table(report["imports"], IMPORT_COLUMNS)
    if report.get("fit_rows"):
        print("\nfits (whole process; seconds; phases of the run with the median wait):")
        core.print_table(report["fit_rows"], FIT_COLUMNS)
    for model in report.get("models", []):
        print(
            f"{model['model']}: {model['rows']} rows, {model['groups']} groups; the other data "
            f"(cache from other data): {model['other_rows']} rows, {model['other_groups']} groups"
        )
    for model in report.get("models", []):
        d = model.get("detail")
        if d and d.get("status") == "ok":
            print_detail(d)
        elif d:
            print(f"\n{model['model']} sampling cost: {d['status']}")
    print(
        f"\n{s['repeats']} repeat(s) of each process; chains={s['chains']} warmup={s['warmup']} "
        f"draws={s['draws']} seed={s['seed']} cores={s['cores']}; peer {s['peer']} "
        f"({s['peer_python'] or 'not run'})"
    )
    for who, v in report["versions"].items():
        if v:
            print(f"{who}: " + ", ".join(f"{k} {x}" for k, x in v.items()))
    print(
        f"{m['platform']}, {m['cpu_count']} CPUs, python {m['python']}; "
        f"load average {m['load_avg_before']} before, {m['load_avg_after']} after"
    )


def default_peer_python() -> str | None:
    """``.venv-bench``'s interpreter in the repository, else this one if it has bambi."""
    bench = peers.ROOT / ".venv-bench" / "bin" / "python"
    if bench.exists():
        return str(bench)
    return sys.executable if find_spec("bambi") else None


def main(argv=None) -> None:
    parser = core.sampler_parser(__doc__)
    parser.add_argument("--repeats", type=int, help="processes per figure (default 3; --quick 1)")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this part (repeatable)"
    )
    parser.add_argument("--no-peers", action="store_true", help="leave the peer out")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK_DRAWS} warmup + {QUICK_DRAWS} draws, 1 repeat",
    )
    parser.add_argument("--peer", default="bambi+nutpie", choices=list(peers.PEERS))
    parser.add_argument("--peer-python", help="the interpreter with bambi (.venv-bench)")
    parser.add_argument("--cores", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument(
        "--warm-peer-caches",
        action="store_true",
        help="let PyTensor and numba use their usual caches (default: empty ones)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per process")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    for hidden in ("--child", "--child-case", "--data", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return

    if args.quick:
        args.warmup = args.draws = QUICK_DRAWS
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    only = args.only or list(SECTIONS)
    peer_python = None if args.no_peers else (args.peer_python or default_peer_python())
    if not args.no_peers and peer_python is None:
        print("no interpreter with bambi found: the peer is left out", file=sys.stderr)
    sys.path.insert(0, str(peers.SRC))  # the working tree's multilevel, as in the children
    env = peers.child_base_env()
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f"load average {load_before}", file=sys.stderr, flush=True)

    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp_name:
        tmp = Path(tmp_name)
        if "cli" in only:
            report["cli"] = run_cli(args, env)
        report["imports"] = run_imports(args, env, peer_python, "imports" not in only)
        bare = {r["what"]: r["min"] for r in report["imports"]}
        startup = {"ours": bare[BARE], "peer": bare.get(BARE_PEER)}
        models = [run_model(n, args, env, peer_python, tmp) for n in MODELS if n in only]
    fit_rows = [row for m in models for row in model_rows(m, startup, args.peer)]
    report.update(
        models=models,
        fit_rows=fit_rows,
        startup_s=startup,
        machine={
            **core.machine(),
            "load_avg_before": load_before,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        settings={
            **{k: getattr(args, k) for k in ("chains", "warmup", "draws", "seed", "cores")},
            **{k: getattr(args, k) for k in ("repeats", "peer", "quick", "warm_peer_caches")},
            "only": only,
            "peer_python": peer_python,
            "cli": cli_command(),
        },
        versions={
            "ours": {k: v for k, v in peers.versions().items() if v},
            "peer": next(
                (
                    r["versions"]
                    for m in models
                    for r in m["runs"].get(PEER, [])
                    if r["status"] == "ok"
                ),
                None,
            ),
        },
    )
    core.write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
