"""NUTS chains in worker processes, one per core, each process pinned to its core.

Why: every program of a process runs on one XLA CPU client, whose thread pool spreads a
large program's loops over every core. Chains side by side on threads (``nuts``) then
wait on each other's work in that pool. Bernoulli ``y ~ x + (1 + x | g)``, 200,000
rows, 1,000 groups, 4 chains x (60 + 40) on 2 cores: 55.9 s of sampling on threads in
one process, 18.1-19.3 s in two processes pinned one per core (3.0x; 5.5 ms of wall
time per gradient against 1.8). At 20,000 rows the two are alike (7.1 s and 6.4 s),
and starting a worker (importing JAX, about 2 s) costs more than it saves: by default
(``planned``) processes run the chains only where one gradient reads at least
``WORK_MIN`` numbers.

A worker is ``python -m multilevel.inference.chain_worker``, started with
``subprocess``: a ``multiprocessing`` child started by "spawn" imports the user's main
script again, which would run a script's top-level ``fit`` a second time unless it is
guarded by ``if __name__ == "__main__"``. The worker pins itself to its core before
JAX starts (its XLA client then sees one core and runs each program on one thread),
reads its job from stdin, runs ``nuts.sample`` for its share of the chains and writes
progress and its result to a pipe of its own (``chain_worker``). A chain starts where it
would among all the chains, so its draws do not depend on which process runs it.

Ctrl-C stops the workers (they are in a session of their own, so a terminal's Ctrl-C
reaches only this process, which ends them); a worker that fails or dies is reported
with the end of what it wrote to stderr.
"""

from __future__ import annotations

import collections
import os
import pickle
import queue
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from multilevel import interrupt
from multilevel.errors import MultilevelError
from multilevel.inference.compile import compiler_options
from multilevel.inference.nuts import ChainCost, NutsResult, NutsSettings
from multilevel.progress import progress_bar

#: Numbers one gradient pass reads (``placement.work_of``: the model's data) from which
#: the chains run in worker processes by default. Bernoulli ``(1 + x | g)``: 20,000 rows
#: are 120,000 numbers, 200,000 rows 1.2 million.
WORK_MIN = 500_000

# Lines of a failed worker's stderr kept for the error message.
STDERR_LINES = 40


def usable_cores() -> list[int]:
    """The cores this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(os.cpu_count() or 1))


def check_option(chain_processes) -> None:
    """``fit(chain_processes=...)`` must be None, True or False."""
    if chain_processes is not None and not isinstance(chain_processes, bool):
        raise MultilevelError(
            f"chain_processes={chain_processes!r}: use True (chains in worker processes, "
            "one per core), False (threads in this process) or None (processes for large "
            "data on CPU cores)."
        )


# A worker's pipe is handed over by file descriptor (``subprocess``'s ``pass_fds``): POSIX
# only. Pinning needs Linux's ``sched_setaffinity``: unpinned, two workers' thread pools
# each spread over both cores and wait on each other as threads do (200,000 rows: 15-16
# ms per chain-gradient unpinned, 3.2-3.3 pinned), so the default wants both.
CAN_START = os.name == "posix" and bool(sys.executable)
CAN_PIN = hasattr(os, "sched_setaffinity")


def planned(work: int, chains: int, chain_processes: bool | None) -> int:
    """How many worker processes run the chains: 0 for threads in this process.

    ``chain_processes`` True: one per core, at most one per chain; False: none; None
    (default): the same where JAX computes on CPU cores, there are at least two chains and
    two cores, one gradient reads at least ``WORK_MIN`` numbers and workers can be pinned
    to their cores (Linux)."""
    if chain_processes is False:
        return 0
    if not CAN_START:
        if chain_processes:
            raise MultilevelError(
                "chain_processes=True starts worker processes, which needs a POSIX system "
                "(Linux, macOS) and a Python executable: leave chain_processes unset."
            )
        return 0
    workers = max(1, min(chains, len(usable_cores())))
    if chain_processes:
        return workers
    if jax.default_backend() != "cpu" or workers < 2 or work < WORK_MIN or not CAN_PIN:
        return 0
    return workers


def sample(
    make_model: Callable,
    structure_key,
    model_args: tuple,
    settings: NutsSettings,
    seed: int,
    workers: int,
    dense_blocks: tuple[tuple[str, ...], ...] = (),
    progress: bool = True,
    regularize_mass: bool = True,
    start_mass: str = "identity",
    start: dict[str, np.ndarray] | None = None,
    quick_init: bool = False,
) -> NutsResult:
    """``nuts.sample``'s result, its chains shared round-robin among ``workers``
    processes (chain i in worker i mod workers). ``make_model()`` builds the NumPyro
    model in a worker, so it must pickle (a module-level function and plain data, e.g.
    ``functools.partial(backend.make_model, structure)``).

    ``compile_s`` runs until the slowest worker has compiled (its start, imports and
    compilation), ``sampling_s`` from there to the last result."""
    t0, wall0 = time.perf_counter(), time.time()
    cores = usable_cores()
    shares = [tuple(range(w, settings.chains, workers)) for w in range(workers)]
    job = {
        "make_model": make_model,
        "structure_key": structure_key,
        "model_args": jax.tree.map(np.asarray, model_args),
        "settings": settings,
        "seed": seed,
        "dense_blocks": tuple(map(tuple, dense_blocks)),
        "regularize_mass": regularize_mass,
        "start_mass": start_mass,
        "quick_init": quick_init,
        "start": start,
        "x64": bool(jax.config.jax_enable_x64),
        "compiler_options": compiler_options(),  # with any ``compile.options`` in force
    }
    total = (settings.warmup + settings.draws) * settings.chains
    bar = progress_bar(total, "NUTS", unit="it", show=progress)
    events: queue.Queue = queue.Queue()
    running: list[_Worker] = []
    results: dict[int, dict] = {}
    divergences = 0
    try:
        for w, share in enumerate(shares):
            core = cores[w % len(cores)]
            running.append(_Worker.start(w, core, {**job, "chain_ids": share}, events))
        while len(results) < workers:
            interrupt.check()
            try:
                w, message = events.get(timeout=0.25)
            except queue.Empty:
                continue
            kind = message[0]
            if kind == "progress":
                _, count, diverging = message
                divergences += diverging
                if diverging:
                    bar.set_postfix_str(f"{divergences} divergences", refresh=False)
                bar.update(count)
            elif kind == "result":
                results[w] = message[1]
            elif kind == "error":
                raise _worker_error(running[w], message[1], message[2])
            elif w not in results:  # "ended": the pipe closed before a result
                raise _worker_error(running[w], None, None)
    except BaseException:
        for worker in running:
            worker.stop()
        raise
    finally:
        bar.close()
    for worker in running:
        worker.wait()
    return _merged(results, shares, settings, t0, wall0)


def _merged(results, shares, settings, t0, wall0) -> NutsResult:
    """One ``NutsResult`` in chain order from the workers' results."""
    where = {chain: (w, i) for w, share in enumerate(shares) for i, chain in enumerate(share)}
    order = [where[c] for c in range(settings.chains)]

    def gathered(field):
        first = results[0][field]
        return {name: np.stack([results[w][field][name][i] for w, i in order]) for name in first}

    gradients = np.stack([results[w]["gradients"][i] for w, i in order])
    seconds = np.stack([results[w]["seconds"][i] for w, i in order])
    # a worker's compile ended its start (since wall0) plus its own compile time
    compiled = max(r["started"] - wall0 + r["compile_s"] for r in results.values())
    elapsed = time.perf_counter() - t0
    compile_s = min(max(compiled, 0.0), elapsed)
    cost = ChainCost(gradients, seconds, len(shares), processes=True)
    return NutsResult(
        gathered("samples"), gathered("stats"), compile_s, elapsed - compile_s, settings, None, cost
    )


def worker_environment() -> dict[str, str]:
    """A worker's environment: this one, computing on the CPU (a worker runs on its own
    core), with the folder this ``multilevel`` was imported from first on its path, so
    that it imports the same package (e.g. a source tree put on ``sys.path`` by hand)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    package_root = Path(__file__).resolve().parents[2]  # above multilevel/inference/
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if any(package_root == Path(folder).resolve() for folder in installed):
        return env  # site-packages first would put it ahead of the standard library
    path = [str(package_root), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


class _Worker:
    """One worker process: its pipe's reader thread forwards each message, tagged with
    the worker's number, to the shared queue, then ("ended",) when the pipe closes."""

    def __init__(
        self, number: int, core: int, process: subprocess.Popen, stderr: collections.deque
    ):
        self.number, self.core, self.process, self.stderr = number, core, process, stderr

    @classmethod
    def start(cls, number: int, core: int, job: dict, events: queue.Queue) -> _Worker:
        read_end, write_end = os.pipe()
        env = worker_environment()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "multilevel.inference.chain_worker",
                    str(core),
                    str(write_end),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
                env=env,
                start_new_session=True,  # Ctrl-C reaches the parent, which stops it
            )
        finally:
            os.close(write_end)
        stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        worker = cls(number, core, process, stderr)
        # the job is written on a thread: the pipe takes it only as fast as the worker
        # reads, after importing JAX (about 2 s), and the next worker starts meanwhile
        threading.Thread(target=worker._send, args=(job,), daemon=True).start()
        threading.Thread(target=worker._read, args=(read_end, events), daemon=True).start()
        worker.stderr_reader = threading.Thread(target=worker._keep_stderr, daemon=True)
        worker.stderr_reader.start()
        return worker

    def _send(self, job: dict) -> None:
        try:
            with self.process.stdin as stdin:
                pickle.dump(job, stdin, protocol=pickle.HIGHEST_PROTOCOL)
        except (BrokenPipeError, OSError):  # it died: its pipe says so ("ended")
            pass

    def _read(self, fd: int, events: queue.Queue) -> None:
        with os.fdopen(fd, "rb") as pipe:
            while True:
                try:
                    message = pickle.load(pipe)
                except (EOFError, pickle.UnpicklingError, OSError):
                    events.put((self.number, ("ended",)))
                    return
                events.put((self.number, message))

    def _keep_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def wait(self) -> None:
        self.process.wait()


def _worker_error(worker: _Worker, error, trace) -> BaseException:
    """The exception a worker raised (``error``, when it could be sent), or one saying
    how it ended, with the end of its stderr."""
    where = f"in the worker process running chains on core {worker.core}"
    advice = "fit(chain_processes=False) runs the chains on threads in this process."
    if isinstance(error, BaseException):
        error.add_note(f"(raised {where}; {advice})")
        return error
    worker.stop()
    worker.stderr_reader.join(timeout=2.0)  # the last lines it wrote before it ended
    tail = "".join(worker.stderr).strip()
    how = trace or f"it ended with exit code {worker.process.returncode}"
    return MultilevelError(
        f"the worker process running chains on core {worker.core} failed: {how}"
        + (f"\nits last output:\n{tail}" if tail else "")
        + f"\n{advice}"
    )
