"""Bounded caches of compiled programs (multilevel.program_cache)."""

import os

import pytest

import multilevel as ml
from multilevel.program_cache import ProgramCache, clear_compiled


def test_keeps_the_most_recently_used():
    cache = ProgramCache(maxsize=2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # "a" used: "b" is now the oldest
    cache["c"] = 3
    assert list(cache) == ["a", "c"]
    assert cache.get("b") is None and cache.get("c") == 3


def _maps() -> int:
    with open(f"/proc/{os.getpid()}/maps") as handle:
        return sum(1 for _ in handle)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux memory maps only")
def test_clearing_frees_the_memory_maps_of_compiled_programs():
    """A fit's programs hold hundreds of memory maps; clear_compiled gives most back
    (measured: 759 -> 3,228 -> 1,508 after three radon fits). Asserted loosely: at least
    half of what the fits added is returned."""
    from multilevel._arviz import az

    assert az.InferenceData  # imported on first use, with its shared libraries' maps: not ours
    data = ml.datasets.load("sleepstudy")
    clear_compiled()
    before = _maps()
    ml.Model("Reaction ~ Days + (Days | Subject)", data).fit(
        chains=1, warmup=50, draws=50, seed=1, progress=False, warn=False, method="nuts"
    )
    during = _maps()
    clear_compiled()
    after = _maps()
    assert during > before
    assert during - after >= (during - before) / 2, (before, during, after)


def test_an_eviction_clears_jax_caches_at_the_next_release():
    """JAX keeps per-shape traces and executables of every jitted function it has run;
    they are dropped (``release_evicted``) only once some cache here forgot a program,
    so a process that keeps its few programs does not trace them again."""
    import jax

    from multilevel.program_cache import release_evicted

    add_one = jax.jit(lambda x: x + 1)
    add_one(1.0)
    release_evicted()  # whatever earlier tests evicted
    cache = ProgramCache(maxsize=1)
    cache["a"] = 1
    release_evicted()
    assert add_one._cache_size() == 1  # nothing evicted: JAX's caches kept
    cache["b"] = 2  # "a" evicted
    release_evicted()
    assert add_one._cache_size() == 0
