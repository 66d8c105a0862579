"""Shared test settings: small, reproducible runs; fitted models shared across tests."""

import os

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.program_cache import clear_compiled

# Two host devices would split our vectorised chains; keep JAX on one CPU device and quiet.
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
    """Free every compiled program after each test module: each holds memory maps of its
    own, and the suite in one process otherwise reached 64,278 of Linux's 65,530 maps
    and segfaulted in XLA (multilevel.program_cache). Programs used again are read back
    from the persistent compilation cache."""
    yield
    clear_compiled()


# Radon fits shared by the evaluation, log-likelihood and K-fold tests (one fit each per
# session: the compile and sampling time is paid once).
PARTIAL = "log_radon ~ floor + (1 | county)"
COMPLETE = "log_radon ~ floor"
KW = dict(chains=4, warmup=300, draws=300, seed=1, progress=False, warn=False)


@pytest.fixture(scope="session")
def radon():
    return ml.datasets.load("radon")


@pytest.fixture(scope="session")
def partial(radon):
    return ml.Model(PARTIAL, radon).fit(**KW)


@pytest.fixture(scope="session")
def complete(radon):
    return ml.Model(COMPLETE, radon).fit(**KW)


@pytest.fixture(scope="session")
def outlier():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    df = pd.DataFrame({"x": x, "y": 1 + 0.5 * x + rng.normal(size=30)})
    df.loc[7, "y"] += 20.0  # 20 sd out
    return ml.Model("y ~ x", df).fit(**KW)
