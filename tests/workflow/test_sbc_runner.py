"""Running SBC simulations, the parts that need no sampler: seeds, settings, the model
rebuilt in workers, and the store that lets a run resume. The runs themselves (processes,
Dask, resuming) are tested through ``sbc`` in test_sbc.py."""

import dataclasses
import json
import pickle

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.workflow.sbc_runner import (
    FORMAT_VERSION,
    ModelRecipe,
    SBCSettings,
    SimulationStore,
    sim_seeds,
)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(5), 4)
    data = pd.DataFrame({"y": rng.normal(size=g.size), "x": rng.normal(size=g.size), "g": g})
    data["g"] = "g" + data["g"].astype(str)
    return ml.Model("y ~ x + (1 | g)", data, priors={"sd": ml.HalfNormal(2)})


def test_seeds_depend_on_seed_and_index_only():
    seeds = [sim_seeds(0, i) for i in range(200)]
    assert seeds[7] == sim_seeds(0, 7)  # however the work was split
    assert len(set(seeds)) == 200 and sim_seeds(1, 7) != seeds[7]
    # The first two go to jax.random.PRNGKey, which takes non-negative 31-bit integers.
    assert all(0 <= s < 2**31 for draw, fit, _ in seeds for s in (draw, fit))


def test_settings_count_the_kept_draws():
    assert SBCSettings().n_ranks == 99
    assert SBCSettings(chains=2, draws=100, thin=10).n_ranks == 20
    with pytest.raises(ml.MultilevelError, match="thin"):
        _ = SBCSettings(draws=10, thin=11).n_ranks


def test_recipe_rebuilds_the_same_model(model):
    recipe = ModelRecipe.of(model)
    again = pickle.loads(pickle.dumps(recipe))  # what a worker process receives
    built = again.build().spec
    # Every prior is passed by name, so only the record of where each came from differs.
    assert built.priors == model.spec.priors
    assert dataclasses.replace(built, prior_sources=model.spec.prior_sources) == model.spec
    assert again.token == recipe.token == ModelRecipe.of(model).token
    other = model.data.assign(x=model.data["x"] + 1)
    assert ModelRecipe.of(ml.Model(model.spec.formula, other)).token != recipe.token


def test_recipe_refuses_a_model_that_rebuilds_differently(model):
    recipe = ModelRecipe.of(model)
    changed = dataclasses.replace(recipe, spec=dataclasses.replace(model.spec, centered=True))
    with pytest.raises(ml.MultilevelError, match="processes=1"):
        changed.build()


def _record(index):
    return {"index": index, "ranks": {"a": index}}


def test_store_keeps_one_file_per_simulation(tmp_path):
    config = {"version": FORMAT_VERSION, "seed": 0}
    store = SimulationStore(tmp_path / "run", config)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config
    for i in (0, 2):
        store.save(_record(i))
    assert store.load(2) == _record(2) and store.load(1) is None
    assert store.file(2).name == "sim_000002.json"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json",
        "sim_000000.json",
        "sim_000002.json",
    ]  # no temporary files left behind
    # Reopened with the same config: what was saved is there.
    assert SimulationStore(tmp_path / "run", config).load_all(3) == {0: _record(0), 2: _record(2)}


def test_store_runs_broken_files_again(tmp_path):
    store = SimulationStore(tmp_path, {"version": FORMAT_VERSION})
    store.file(0).write_text('{"index": 0, "ran')  # cut short
    store.file(1).write_text(json.dumps(_record(5)))  # another simulation's record
    store.save(_record(2))
    assert store.load_all(3) == {2: _record(2)}


def test_store_refuses_another_run(tmp_path):
    SimulationStore(tmp_path, {"version": FORMAT_VERSION, "seed": 0, "params": ["a"]})
    with pytest.raises(ml.MultilevelError, match=r"another run \(differs in: seed\)"):
        SimulationStore(tmp_path, {"version": FORMAT_VERSION, "seed": 1, "params": ["a"]})
