"""A worker process of ``inference.chain_processes``: ``python -m
multilevel.inference.chain_worker CORE FD``.

It pins itself to CORE before JAX starts, reads one job (a pickled dict) from stdin,
runs ``nuts.sample`` for the job's ``chain_ids`` and writes pickled messages to the pipe
FD: ("progress", transitions, divergences) after each chunk of a chain, then ("result",
dict) or ("error", exception or None, traceback text). It ignores SIGINT (its parent
stops it) and ends when its parent is gone (a write to the closed pipe fails).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import traceback


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    core, fd = int(argv[0]), int(argv[1])
    if hasattr(os, "sched_setaffinity"):  # before JAX starts its thread pool
        os.sched_setaffinity(0, {core})
    with os.fdopen(fd, "wb") as pipe:

        def send(message) -> None:
            pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            pipe.flush()

        try:
            job = pickle.load(sys.stdin.buffer)
            send(("result", _run(job, send)))
        except BaseException as error:  # sent to the parent, which raises it
            trace = traceback.format_exc()
            try:
                send(("error", error, trace))
            except Exception:  # the exception does not pickle: its text does
                send(("error", None, trace))
            return 1
    return 0


def _run(job: dict, send) -> dict:
    import jax

    from multilevel.inference import nuts
    from multilevel.inference.compile import options

    def reporter(count: int, diverging: int) -> None:
        send(("progress", count, diverging))

    started = time.time()  # the parent counts this worker's start and imports as compiling
    with jax.enable_x64(job["x64"]), options(**job["compiler_options"]):
        result = nuts.sample(
            job["structure_key"],
            job["make_model"](),
            job["model_args"],
            job["settings"],
            seed=job["seed"],
            dense_blocks=job["dense_blocks"],
            progress=False,
            regularize_mass=job["regularize_mass"],
            start_mass=job["start_mass"],
            quick_init=job["quick_init"],
            start=job["start"],
            chain_ids=job["chain_ids"],
            reporter=reporter,
        )
    return {
        "samples": result.samples,
        "stats": result.stats,
        "gradients": result.cost.gradients,
        "seconds": result.cost.seconds,
        "compile_s": result.compile_s,
        "started": started,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
