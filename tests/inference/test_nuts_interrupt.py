"""Ctrl-C: the chains stop between chunks, and the CLI exits 130 with one line."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from multilevel.inference import nuts

pytestmark = pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="SIGINT does not raise KeyboardInterrupt here",
)


def _chain_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("multilevel-chain")]


class FakeLoop:
    """Stands in for the compiled sampler loop: each call takes a little while, and the
    ``trigger``-th call (counted over all chains) sends Ctrl-C to the main thread or
    fails. More than ``cap`` calls means the chains ran on: it fails the test instead of
    running the settings' million transitions."""

    def __init__(self, trigger: int, fail: bool = False, cap: int = 200):
        self.trigger, self.fail, self.cap = trigger, fail, cap
        self.calls = 0
        self.after = None  # calls started after the trigger
        self.lock = threading.Lock()

    def __call__(self, state, count, model_args):
        with self.lock:
            self.calls += 1
            calls = self.calls
            if self.after is not None:
                self.after += 1
        if calls > self.cap:
            raise RuntimeError("the chains ran on after the interrupt")
        time.sleep(0.02)
        if calls == self.trigger:
            self.after = 0
            if self.fail:
                raise ValueError("a chain failed")
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        length = 100
        values = {"mu": np.zeros(length, np.float32)}
        stats = (np.zeros(length, bool), *(np.zeros(length, np.float32) for _ in range(5)))
        return state, (values, stats)


SETTINGS = nuts.NutsSettings(chains=2, warmup=1_000_000, draws=1_000_000)
RAN_ON = 20  # at most this many chunks start after the interrupt (see below)
STATE = {"z": np.zeros((2, 3), np.float32)}  # one row per chain


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_every_chain_after_its_current_chunk(monkeypatch, workers):
    monkeypatch.setattr(nuts, "_chain_workers", lambda chains: workers)
    loop = FakeLoop(trigger=5)
    with pytest.raises(KeyboardInterrupt):
        nuts._run_chunks(loop, STATE, (), SETTINGS, progress=False)
    # Each chain finishes the chunk it is in. A chain may start a few more 20 ms chunks
    # before the main thread wakes and sets the stop flag (a busy machine): the bound
    # allows that; without the flag the chains run on to the cap (200 calls).
    assert loop.after <= RAN_ON, f"{loop.after} chunks ran after Ctrl-C"
    assert _chain_threads() == [], "chain threads still running after Ctrl-C"


def test_a_failing_chain_stops_the_others(monkeypatch):
    monkeypatch.setattr(nuts, "_chain_workers", lambda chains: 2)
    loop = FakeLoop(trigger=5, fail=True)
    with pytest.raises(ValueError, match="a chain failed"):
        nuts._run_chunks(loop, STATE, (), SETTINGS, progress=False)
    assert loop.after <= RAN_ON
    assert _chain_threads() == []


def test_chunk_counts_follow_the_time_a_chunk_takes():
    # 5 transitions took 1 ms: the next call may only double (warmup trajectories grow).
    assert nuts._next_count(5, 0.001, 100) == 10
    # 100 transitions took 2 s: the next takes ~CHUNK_SECONDS.
    assert nuts._next_count(100, 2.0, 100) == int(100 * nuts.CHUNK_SECONDS / 2.0)
    assert nuts._next_count(50, 0.001, 100) == 100  # never more than the buffer
    assert nuts._next_count(1, 30.0, 100) == 1  # never fewer than one


def _tiny_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_draws_do_not_depend_on_how_transitions_are_split_into_chunks(monkeypatch):
    """The compiled loop runs a count of transitions given per call; a skipped row must
    leave the chain's state alone, so the draws are the same for any split."""
    y = np.linspace(-1.0, 3.0, 20).astype(np.float32)
    settings = nuts.NutsSettings(chains=1, warmup=40, draws=30)

    def run(count: int) -> dict:
        monkeypatch.setattr(nuts, "FIRST_CHUNK", count)
        monkeypatch.setattr(nuts, "_next_count", lambda *args: count)
        result = nuts.sample("test-interrupt-tiny", _tiny_model, (y,), settings, 3, progress=False)
        return result.samples

    one, seven = run(1), run(7)  # the same compiled program: shapes and settings agree
    assert one["mu"].shape == (1, 30)
    np.testing.assert_array_equal(one["mu"], seven["mu"])
    np.testing.assert_array_equal(one["sigma"], seven["sigma"])
    assert np.unique(one["mu"]).size > 10  # the chain moved


# The CLI in a subprocess, told apart from an in-process call: a marker on stderr says
# when the stage to interrupt has begun.
CHILD = """
import sys
from multilevel.inference import nuts
stage = sys.argv[1]
name = "_run_chunks" if stage == "sampling" else "compile_async"
original = getattr(nuts, name)
def marked(*args, **kwargs):
    print("test-marker " + stage, file=sys.stderr, flush=True)
    return original(*args, **kwargs)
setattr(nuts, name, marked)
from multilevel.cli import run
sys.argv = sys.argv[1:]  # as the `multilevel` command sees them
run()
"""


def _interrupt_cli(stage: str, folder, env: dict) -> tuple[int, list[str]]:
    args = ["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--quiet"]
    args += ["--warmup", "1000", "--draws", "1000000", "--chains", "2"]
    args += ["--json", str(folder / "fit.json"), "--save", str(folder / "fit.nc")]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, stage, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in child.stderr))
    reader.start()
    try:
        deadline = time.monotonic() + 240  # importing and compiling on a busy machine
        while f"test-marker {stage}" not in lines:
            assert child.poll() is None, f"ended before {stage}: {lines}"
            assert time.monotonic() < deadline, f"no {stage} after 240 s: {lines}"
            time.sleep(0.05)
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)  # a functional bound, not a speed test
    finally:
        if child.poll() is None:
            child.kill()
        reader.join()
    return child.returncode, [line for line in lines if not line.startswith("test-marker")]


@pytest.mark.parametrize("stage", ["compiling", "sampling"])
def test_cli_ctrl_c_prints_one_line_writes_nothing_and_exits_130(tmp_path, stage):
    # While compiling: no compilation cache, so that the compile takes its seconds.
    env = {"MULTILEVEL_CACHE_DIR": "off"} if stage == "compiling" else {}
    status, stderr = _interrupt_cli(stage, tmp_path, env)
    assert status == 130, stderr
    assert stderr == ["error: interrupted"], stderr
    assert os.listdir(tmp_path) == [], "an output file (or a temporary one) was left"
