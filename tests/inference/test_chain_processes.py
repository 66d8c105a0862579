"""Chains in worker processes (``inference.chain_processes``): the same draws as threads,
failures and Ctrl-C reported and the workers gone afterwards.

Why the draws can be asked to be identical (unlike sharded rows, test_sharding): a
worker runs the same compiled program from the same start and key as a thread would; only
XLA's split of a large loop across threads could reorder a sum, and a model of 600 rows
is not split. Measured: every draw equal to the last bit."""

import functools
import os
import signal
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.errors import MultilevelError, OptionError
from multilevel.inference import chain_processes, nuts
from multilevel.inference import compile as compiling

SETTINGS = dict(chains=3, warmup=150, draws=100, seed=4, progress=False, warn=False)


def _bernoulli_rows(n: int = 600, groups: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    g = rng.integers(0, groups, n)
    x = rng.standard_normal(n)
    eta = -0.3 + rng.normal(0, 0.7, groups)[g] + (0.5 + rng.normal(0, 0.3, groups)[g]) * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


@pytest.fixture(scope="module")
def model():
    return ml.Model("y ~ x + (1 + x | g)", _bernoulli_rows(), family="bernoulli")


@pytest.fixture(scope="module")
def fits(model):
    return {cp: model.fit(chain_processes=cp, **SETTINGS) for cp in (False, True)}


def test_processes_give_the_threads_draws(fits):
    threads, processes = fits[False].idata.posterior, fits[True].idata.posterior
    assert set(threads.data_vars) == set(processes.data_vars)
    for name in threads.data_vars:
        np.testing.assert_array_equal(processes[name].values, threads[name].values, err_msg=name)
    stats = fits[True].idata.sample_stats
    np.testing.assert_array_equal(
        stats["n_steps"].values, fits[False].idata.sample_stats["n_steps"].values
    )


def test_workers_compile_with_the_parents_xla_options(model, monkeypatch):
    """Over many rows the chains compile with XLA's fusion emitters
    (``compile.row_pass_options``); a worker compiles with the options in force in the
    parent, so its draws are still the threads'. (Compiled without them, the draws of
    this model differ from the first one.)"""
    monkeypatch.setattr(compiling, "ROW_PASS_MIN_WORK", 0)  # this small model counts as large
    short = {**SETTINGS, "chains": 2, "warmup": 30, "draws": 20}
    threads, processes = (model.fit(chain_processes=cp, **short) for cp in (False, True))
    for name in ("x", "sd(x|g)"):
        np.testing.assert_array_equal(
            processes.idata.posterior[name].values, threads.idata.posterior[name].values
        )


def test_timing_says_how_the_chains_ran(fits):
    processes, threads = fits[True].info["timing"], fits[False].info["timing"]
    assert processes["chain_processes"] == min(3, len(chain_processes.usable_cores()))
    assert threads["chain_processes"] == 0
    # every chain's gradients are counted, in chain order (the same as on threads)
    assert processes["gradients_warmup"] == threads["gradients_warmup"]
    assert processes["gradients_sampling"] == threads["gradients_sampling"]
    assert processes["compile_s"] > 0 and processes["sampling_s"] > 0


def test_default_is_threads_for_small_data_and_processes_for_large(monkeypatch):
    monkeypatch.setattr(chain_processes, "usable_cores", lambda: [0, 1])
    large = chain_processes.WORK_MIN
    assert chain_processes.planned(large - 1, 4, None) == 0
    assert chain_processes.planned(large, 4, None) == 2
    assert chain_processes.planned(large, 1, None) == 0  # one chain: nothing to share
    assert chain_processes.planned(large, 4, False) == 0
    assert chain_processes.planned(10, 4, True) == 2
    assert chain_processes.planned(10, 1, True) == 1
    monkeypatch.setattr(chain_processes, "usable_cores", lambda: [0])
    assert chain_processes.planned(large, 4, None) == 0  # one core: threads


def test_default_is_threads_where_workers_cannot_be_pinned_or_started(monkeypatch):
    monkeypatch.setattr(chain_processes, "usable_cores", lambda: [0, 1])
    large = chain_processes.WORK_MIN
    monkeypatch.setattr(chain_processes, "CAN_PIN", False)  # e.g. macOS
    assert chain_processes.planned(large, 4, None) == 0
    assert chain_processes.planned(large, 4, True) == 2  # asked for: unpinned
    monkeypatch.setattr(chain_processes, "CAN_START", False)  # e.g. Windows
    assert chain_processes.planned(large, 4, None) == 0
    with pytest.raises(MultilevelError, match="needs a POSIX system"):
        chain_processes.planned(large, 4, True)


def test_option_must_be_a_bool_or_none(model):
    with pytest.raises(MultilevelError, match="chain_processes='yes'"):
        model.fit(chain_processes="yes", **SETTINGS)


def _run_workers(make_model):
    settings = nuts.NutsSettings(chains=2, warmup=10, draws=10)
    return chain_processes.sample(
        make_model, "key", ({},), settings, seed=0, workers=2, progress=False
    )


def test_an_exception_in_a_worker_is_raised_here():
    # make_model() raises in the worker: int("not a number")
    with pytest.raises(ValueError, match="not a number") as raised:
        _run_workers(functools.partial(int, "not a number"))
    assert "raised in the worker process" in raised.value.__notes__[0]
    assert _workers() == []


def test_a_worker_that_dies_is_reported_with_its_exit_code():
    with pytest.raises(MultilevelError, match="(?s)exit code 3.*chain_processes=False"):
        _run_workers(functools.partial(os._exit, 3))
    assert _workers() == []


def _workers() -> list[int]:
    """This process's live ``chain_worker`` children (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # ended while we looked
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == os.getpid() and b"chain_worker" in command and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="SIGINT does not raise KeyboardInterrupt here",
)
def test_ctrl_c_stops_the_workers(model):
    seen, expected = [], min(3, len(chain_processes.usable_cores()))

    def interrupt_once_sampling():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_workers()) < expected:
            time.sleep(0.05)
        seen.append(len(_workers()))
        time.sleep(1.0)  # the workers are compiling or sampling
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=interrupt_once_sampling, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        model.fit(chain_processes=True, **{**SETTINGS, "warmup": 100_000, "draws": 100_000})
    assert seen == [expected]  # every worker had started
    assert time.monotonic() - started < 60  # a full run would take hours
    assert _workers() == []


def test_samplers_without_worker_processes_refuse_the_option():
    data = _bernoulli_rows(60, 6).assign(y=lambda d: d["x"] * 2.0)
    gaussian = ml.Model("y ~ x + (1 | g)", data)  # group effects integrated out
    with pytest.raises(OptionError, match="chain_processes=True .* integrates group effects out"):
        gaussian.fit(chain_processes=True, **SETTINGS)


def test_workers_import_this_multilevel_and_compute_on_the_cpu(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    env = chain_processes.worker_environment()
    assert env["JAX_PLATFORMS"] == "cpu"
    root = Path(ml.__file__).resolve().parents[1]
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    if root in installed:  # an installed package: the path is left as it was
        assert env["PYTHONPATH"] == "elsewhere"
    else:  # a source tree (an editable install, or sys.path by hand): it goes first
        assert env["PYTHONPATH"].split(os.pathsep) == [str(root), "elsewhere"]
