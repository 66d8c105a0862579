"""One chain's rows split across devices (``inference.sharding``) samples the same
posterior as one device.

The sharded fits run in a child process with two CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``: read when JAX is imported, and
this process has imported it with one device); ``sharding_child.py`` fits a bernoulli
``y ~ x + (1 + x | g)`` and a gaussian ``y ~ x + (1 | g)`` (method="nuts") to 2,000
simulated rows, unsharded and sharded, 2 chains of 500 + 1,000 each.

What is compared, and why not the draws: a device adds its half of the rows, then an
all-reduce adds the halves, so sums over rows are rounded in another order. Measured:
the log densities agree exactly at three prior draws, the gradients to 1e-6 of their
largest component (float32's rounding is 6e-8 per addition). NUTS amplifies such
differences: with the same seed, the draws after 20 warmup transitions already differ
(by 0.04 in the intercept, 1/3 of its posterior sd), so identical draws cannot be asked
for. Hence (1) the log density and gradient the sampler follows, to 1e-5 and 1e-4
relative (a lost half of the rows would be off by tens of percent), and (2) the
posterior means of every hyper-parameter from independent seeds, within 5 Monte Carlo
standard errors of their difference (MCSE from arviz, 2 chains each; over 8 seeds the
spread of the means was 0.66-1.39 times the MCSE, so 5 is at least 3.6 real standard
errors for each of the 9 parameters; half the rows lost would move a mean by about 10).

Runs in about 60 s on 2 busy cores (four samplers compiled, most of it).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.backends import padding
from multilevel.backends.numpyro_model import data_arrays
from multilevel.errors import OptionError
from multilevel.inference import sharding

CHILD = Path(__file__).with_name("sharding_child.py")
MODELS = ("bernoulli", "gaussian")


def _env(devices: int) -> dict:
    src = Path(ml.__file__).resolve().parents[1]
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _child(*argv: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(CHILD), *argv],
        capture_output=True,
        text=True,
        env=_env(2),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _last_json(result.stdout)


@pytest.fixture(scope="module")
def sharded():
    """Placement, log densities and gradients: short fits (about 35 s, mostly compiling)."""
    return _child("quick")


@pytest.fixture(scope="module")
def sharded_posteriors():
    """Both placements' posteriors: 2 x (500 + 1000) per fit (about 95 s in all)."""
    return _child()


def test_default_shards_one_chain_of_large_data_only(sharded):
    assert sharded["auto"] == {
        "one chain, large data": True,
        "one chain, small data": False,
        "two chains, large data": False,
        "asked, small data": True,
        "refused, large data": False,
    }


@pytest.mark.parametrize("model", MODELS)
def test_rows_are_split_across_both_devices_and_the_rest_replicated(sharded, model):
    out = sharded[model]
    assert out["devices"] == ["cpu", "cpu x2 (rows sharded)"]
    assert out["sharding_passed"] == [False, True]
    placed = out["placement"]
    assert placed["wrong"] == []
    assert {"['X']", "['y']", "['weight']", "['Z'][0]", "['codes'][0]"} <= set(placed["split"])
    assert "['level_counts']" in placed["replicated"]
    assert placed["prior"]


@pytest.mark.parametrize("model", MODELS)
def test_sharded_log_density_and_gradient_match_to_rounding(sharded, model):
    for whole, split in sharded[model]["log_density"]:
        assert split == pytest.approx(whole, rel=1e-5)
    for whole, split in sharded[model]["gradient"]:
        whole, split = np.array(whole), np.array(split)
        np.testing.assert_allclose(split, whole, rtol=0, atol=1e-4 * np.abs(whole).max())


@pytest.mark.slow  # the log density and gradient above pin the sharded sampler by default
@pytest.mark.parametrize("model", MODELS)
def test_sharded_posterior_matches_within_monte_carlo_error(sharded_posteriors, model):
    out = sharded_posteriors[model]
    assert out["divergences"] == [0, 0]
    for name, (mean, mcse) in out["whole"].items():
        split_mean, split_mcse = out["split"][name]
        z = abs(split_mean - mean) / np.hypot(mcse, split_mcse)
        assert z < 5, f"{name}: {mean:.4f} unsharded, {split_mean:.4f} sharded (z = {z:.1f})"


# In this process (one CPU device): the option's checks and the padding.


def test_shard_rows_is_none_true_or_false():
    with pytest.raises(OptionError, match="shard_rows must be None"):
        sharding.plan(10, chains=1, shard_rows="yes")


def test_one_device_shards_nothing_and_says_how_to_get_more():
    assert sharding.plan(10**9, chains=1) is None
    with pytest.raises(OptionError, match="xla_force_host_platform_device_count"):
        sharding.plan(10, chains=1, shard_rows=True)


def test_shard_rows_is_refused_where_rows_are_not_sampled(radon):
    model = ml.Model("log_radon ~ floor + (1 | county)", radon)  # collapsed: per-group sums
    with pytest.raises(OptionError, match="integrates group effects out"):
        model.fit(chains=1, warmup=10, draws=10, shard_rows=True, progress=False)


def test_rows_padded_to_a_multiple_of_the_devices():
    df = pd.DataFrame({"y": np.arange(7.0), "x": np.arange(7.0) % 3})
    model = ml.Model("y ~ x", df)
    data = data_arrays(model.design)
    assert padding.pad_data(model.structure, data)["X"].shape[0] == 7  # its own bucket
    padded = padding.pad_data(model.structure, data, multiple=4)
    assert padded["X"].shape[0] == padded["y"].shape[0] == 8
    np.testing.assert_array_equal(padded["weight"], [1] * 7 + [0])


@pytest.mark.slow
def test_two_processes_joined_by_jax_distributed_draw_what_two_devices_draw():
    """The several-hosts path on one machine: two processes, one CPU device each, joined
    by ``jax.distributed`` (collectives over gloo, TCP), split the rows across both and
    draw exactly what one process with two devices draws: the same partial sums added
    in the same order. About 65 s on 2 busy cores: every gradient's all-reduce goes
    through TCP."""
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("localhost", 0))
        port = str(probe.getsockname()[1])
    hosts = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "hosts", port, str(process)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(1),
        )
        for process in (0, 1)
    ]
    try:
        outputs = [host.communicate(timeout=600) for host in hosts]
    finally:
        for host in hosts:
            if host.poll() is None:
                host.kill()
    for host, (_, err) in zip(hosts, outputs):
        assert host.returncode == 0, err[-3000:]
    one = subprocess.run(
        [sys.executable, str(CHILD), "devices"],
        capture_output=True,
        text=True,
        env=_env(2),
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    first, second = (_last_json(out) for out, _ in outputs)
    reference = _last_json(one.stdout)
    assert first["device"] == second["device"] == "cpu x2 on 2 hosts (rows sharded)"
    assert reference["device"] == "cpu x2 (rows sharded)"
    assert first["draws"] == second["draws"] == reference["draws"]
    assert len(set(first["draws"]["Intercept"])) > 10  # the chain moved
