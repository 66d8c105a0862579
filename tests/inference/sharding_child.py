"""Run by test_sharding.py in processes of their own.

``python sharding_child.py``: one process with two CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2, read when JAX is imported) fits
each model unsharded and sharded over both devices, and prints one JSON line of what the
test checks.

``python sharding_child.py hosts PORT PROCESS``: one of two processes joined by
``jax.distributed`` on this machine (one CPU device each, collectives over gloo) fits a
small model with its rows split across both processes' devices; ``python
sharding_child.py devices``: the same fit in one process with two CPU devices. Each
prints one JSON line: the device label and the draws."""

import json
import sys

import arviz as az
import jax
import numpy as np
import pandas as pd
from jax.sharding import PartitionSpec
from numpyro import handlers
from numpyro.infer.util import log_density

import multilevel as ml
from multilevel.backends import padding
from multilevel.inference import nuts, sharding

# Two chains each (sharded: side by side on threads, each over both devices): with one
# chain of 500 draws, arviz's MCSE of the bernoulli intercept was half the spread of its
# means over 8 seeds; with these settings the spread over 8 seeds was 0.66-1.39 times
# the MCSE for every parameter of either model (docs: tests/inference/test_sharding.py).
KW = dict(chains=2, warmup=500, draws=1000, progress=False, warn=False, method="nuts")
# ``quick`` (the default test run): fits only to place and capture the sampler's inputs;
# the log density and gradient then compare exactly, the posteriors in the slow run
QUICK = dict(KW, warmup=20, draws=20)


def data(family: str, n: int = 2000, groups: int = 25, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    eta = -0.5 + rng.normal(0, 0.7, groups)[g] + (0.5 + rng.normal(0, 0.3, groups)[g]) * x
    if family == "bernoulli":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    else:
        y = eta + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


CASES = {
    "bernoulli": ("y ~ x + (1 + x | g)", "bernoulli"),
    "gaussian": ("y ~ x + (1 | g)", "gaussian"),
}

captured = []
original_sample = nuts.sample


def recording_sample(*args, **kwargs):
    captured.append((args[1], args[2], kwargs.get("sharding")))  # model, model_args, sharding
    return original_sample(*args, **kwargs)


nuts.sample = recording_sample  # Model.fit calls nuts.sample through the module


def placement_report(model_args) -> dict:
    """Per data leaf: whether its rows are split across both devices, else replicated."""
    split, replicated, wrong = [], [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(model_args[0])[0]:
        name = jax.tree_util.keystr(path)
        key = path[0].key
        shards = leaf.addressable_shards
        if key in padding.ROW_KEYS:
            ok = (
                leaf.sharding.spec == PartitionSpec("rows")
                and {s.device.id for s in shards} == {0, 1}
                and all(s.data.shape[0] * 2 == leaf.shape[0] for s in shards)
            )
            (split if ok else wrong).append(name)
        else:
            (replicated if leaf.sharding.is_fully_replicated else wrong).append(name)
    prior_whole = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(model_args[1]))
    return {"split": split, "replicated": replicated, "wrong": wrong, "prior": prior_whole}


def log_densities(model, model_args, points) -> list:
    """Log density and its gradient at each point (constrained site values)."""

    @jax.jit
    def value_and_grad(point, model_args):
        return jax.value_and_grad(lambda p: log_density(model, model_args, {}, p)[0])(point)

    out = []
    for point in points:
        value, grad = value_and_grad(point, model_args)
        out.append([float(value), np.concatenate([np.ravel(g) for g in jax.tree.leaves(grad)])])
    return out


def prior_points(model, model_args, count: int = 3) -> list:
    """Latent sites' values drawn from the prior (same points for either placement)."""

    @jax.jit
    def draw(key, model_args):
        trace = handlers.trace(handlers.seed(model, key)).get_trace(*model_args)
        return {
            k: s["value"]
            for k, s in trace.items()
            if s["type"] == "sample" and not s["is_observed"]
        }

    return [jax.tree.map(np.asarray, draw(jax.random.PRNGKey(i), model_args)) for i in range(count)]


def summary(fit) -> dict:
    names = list(fit.spec.hyper_names)
    posterior = fit.idata.posterior[names]
    means = posterior.mean(("chain", "draw"))
    mcse = az.mcse(posterior, method="mean")
    return {n: [float(means[n]), float(mcse[n])] for n in names}


def main(settings: dict) -> None:
    assert len(jax.devices()) == 2, jax.devices()
    big = sharding.SHARD_MIN_VALUES["cpu"]
    out = {
        "auto": {  # Model.fit(shard_rows=None): sharded or not, by chains and numbers
            "one chain, large data": sharding.plan(big, chains=1) is not None,
            "one chain, small data": sharding.plan(big - 1, chains=1) is not None,
            "two chains, large data": sharding.plan(big, chains=2) is not None,
            "asked, small data": sharding.plan(10, chains=4, shard_rows=True) is not None,
            "refused, large data": sharding.plan(big, chains=1, shard_rows=False) is not None,
        }
    }
    for name, (formula, family) in CASES.items():
        model = ml.Model(formula, data(family), family=family)
        captured.clear()
        whole = model.fit(seed=1, shard_rows=False, **settings)
        split = model.fit(seed=2, shard_rows=True, **settings)
        (fn, whole_args, none), (_, split_args, layout) = captured
        points = prior_points(fn, whole_args)
        whole_ld = log_densities(fn, whole_args, points)
        split_ld = log_densities(fn, split_args, points)
        out[name] = {
            "devices": [whole.info["device"], split.info["device"]],
            "sharding_passed": [none is not None, layout is not None],
            "placement": placement_report(split_args),
            "log_density": [[w[0], s[0]] for w, s in zip(whole_ld, split_ld)],
            "gradient": [[w[1].tolist(), s[1].tolist()] for w, s in zip(whole_ld, split_ld)],
            "whole": summary(whole),
            "split": summary(split),
            "divergences": [whole.diagnostics.divergences, split.diagnostics.divergences],
        }
    print(json.dumps(out))


def small_fit() -> dict:
    """One chain, few draws: the multi-process collectives are slow (TCP on one machine)."""
    model = ml.Model("y ~ x + (1 + x | g)", data("bernoulli", n=400, groups=10), family="bernoulli")
    fit = model.fit(
        chains=1, warmup=40, draws=40, seed=3, progress=False, warn=False, shard_rows=True
    )
    draws = {n: fit.draws(n).tolist() for n in fit.spec.hyper_names}
    return {"device": fit.info["device"], "draws": draws}


if __name__ == "__main__":
    if sys.argv[1:2] == ["hosts"]:
        port, process = sys.argv[2:4]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(process))
        print(json.dumps(small_fit()))
    elif sys.argv[1:2] == ["devices"]:
        print(json.dumps(small_fit()))
    else:
        sys.exit(main(QUICK if sys.argv[1:2] == ["quick"] else KW))
