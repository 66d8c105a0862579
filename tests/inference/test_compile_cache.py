"""The persistent compilation cache: only a private folder, only checked entries."""

import os
import shutil
import stat
import warnings

import jax
import numpy as np
import pytest
from jax._src import compilation_cache as jax_cache

from multilevel.inference import compile_cache
from multilevel.inference.compile_cache import CacheWarning, CheckedCache


@pytest.fixture
def fresh(monkeypatch):
    """This process as if no cache had been enabled yet; everything restored after, so
    that the other tests keep the cache they had."""
    monkeypatch.setattr(jax_cache, "_cache", None)
    monkeypatch.setattr(jax_cache, "_cache_initialized", False)
    monkeypatch.setattr(compile_cache, "_STATE", {"done": False, "folder": None})
    saved = {
        name: getattr(jax.config, name)
        for name in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    }
    jax.config.update("jax_compilation_cache_dir", None)
    yield monkeypatch
    for name, value in saved.items():
        jax.config.update(name, value)


def _enable(monkeypatch, where) -> tuple[object, list[warnings.WarningMessage]]:
    monkeypatch.setenv("MULTILEVEL_CACHE_DIR", str(where))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = compile_cache.enable_compilation_cache()
        again = compile_cache.enable_compilation_cache()
    assert first == again
    return first, [w for w in caught if issubclass(w.category, CacheWarning)]


@pytest.mark.parametrize(
    "layout",
    ["leaf world-writable", "leaf group-writable", "leaf sticky world-writable", "parent open"],
)
def test_a_folder_others_can_write_is_refused_with_one_warning(fresh, tmp_path, layout):
    where = tmp_path / "parent" / "cache"
    (where / "jax").mkdir(parents=True)
    mode = {
        "leaf world-writable": 0o777,
        "leaf group-writable": 0o770,
        "leaf sticky world-writable": 0o1777,  # others could still add entries
        "parent open": 0o700,
    }[layout]
    os.chmod(where / "jax", mode)
    if layout == "parent open":  # others could rename the cache folder and put their own
        os.chmod(tmp_path / "parent", 0o777)
    used, caught = _enable(fresh, where)
    assert used is None and jax_cache._cache is None
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(where / "jax") in message
    assert "can write" in message and "MULTILEVEL_CACHE_DIR" in message


def test_a_folder_below_a_sticky_shared_folder_is_used(fresh, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: others cannot rename what is ours
    used, caught = _enable(fresh, shared / "mine")
    assert caught == []
    assert used == shared / "mine" / "jax"
    assert isinstance(jax_cache._cache, CheckedCache)
    for folder in (shared / "mine", shared / "mine" / "jax"):  # created private
        assert stat.S_IMODE(os.stat(folder).st_mode) & 0o077 == 0


def test_a_folder_of_another_user_is_refused(fresh, tmp_path):
    fresh.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    used, caught = _enable(fresh, tmp_path / "cache")
    assert used is None and len(caught) == 1
    assert "belongs to another user" in str(caught[0].message)


def test_off_disables_the_cache(fresh, tmp_path):
    fresh.chdir(tmp_path)
    used, caught = _enable(fresh, "off")
    assert used is None and caught == [] and jax_cache._cache is None
    assert os.listdir(tmp_path) == []


def test_entries_of_the_unchecked_format_are_removed(fresh, tmp_path):
    folder = tmp_path / "jax"
    folder.mkdir(mode=0o700)
    for name in ("jit_f-123-cache", "jit_f-123-atime", ".lockfile"):
        (folder / name).write_bytes(b"x")
    used, _ = _enable(fresh, tmp_path)
    assert used == folder and os.listdir(folder) == []


def test_entries_are_checked_before_use(tmp_path):
    cache = CheckedCache(tmp_path)
    cache.put("jit_a-1", b"program a")
    cache.put("jit_b-2", b"program b")
    assert cache.get("jit_a-1") == b"program a"
    assert cache.get("jit_missing-3") is None
    assert sorted(os.listdir(tmp_path)) == ["jit_a-1.xla", "jit_b-2.xla"]  # no temporaries

    # Another program's entry under this key: refused and deleted.
    shutil.copy(tmp_path / "jit_a-1.xla", tmp_path / "jit_b-2.xla")
    with pytest.warns(CacheWarning, match="jit_b-2"):
        assert cache.get("jit_b-2") is None
    assert not (tmp_path / "jit_b-2.xla").exists()
    cache.put("jit_b-2", b"program b")  # the fresh compile replaces it
    assert cache.get("jit_b-2") == b"program b"

    # A truncated entry (a writer killed in JAX's own format, a disk fault): the same.
    data = (tmp_path / "jit_a-1.xla").read_bytes()
    (tmp_path / "jit_a-1.xla").write_bytes(data[:-3])
    with pytest.warns(CacheWarning):
        assert cache.get("jit_a-1") is None
    cache.put("jit_a-1", b"program a")
    assert cache.get("jit_a-1") == b"program a"


def test_a_failed_write_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        CheckedCache(tmp_path).put("jit_a-1", b"program a")
    assert os.listdir(tmp_path) == []


def _jitted(kind: str):
    """A new jitted function each call: JAX's in-memory caches know nothing of it, so it
    compiles or loads from the persistent cache. The name makes the cache key."""

    def plus_one(x):
        return x + 1.0

    def times_two(x):
        return x * 2.0

    return jax.jit(plus_one if kind == "plus_one" else times_two)


def test_a_swapped_or_truncated_entry_is_never_run_and_is_replaced(fresh, tmp_path):
    folder, _ = _enable(fresh, tmp_path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache tiny programs
    x = np.float32(3.0)
    assert float(_jitted("plus_one")(x)) == 4.0
    (plus_one,) = [f for f in os.listdir(folder) if f.startswith("jit_plus_one")]
    assert float(_jitted("times_two")(x)) == 6.0
    (times_two,) = [f for f in os.listdir(folder) if f.startswith("jit_times_two")]
    key = times_two.removesuffix(".xla")

    # JAX's own cache would load plus_one here and return 4.
    shutil.copy(folder / plus_one, folder / times_two)
    with pytest.warns(CacheWarning, match="jit_times_two"):
        assert float(_jitted("times_two")(x)) == 6.0
    assert CheckedCache(folder).get(key) is not None  # replaced by the fresh compile

    data = (folder / times_two).read_bytes()
    (folder / times_two).write_bytes(data[: len(data) // 2])
    with pytest.warns(CacheWarning, match="jit_times_two"):
        assert float(_jitted("times_two")(x)) == 6.0
    assert CheckedCache(folder).get(key) is not None

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sound now: loaded without a word
        assert float(_jitted("times_two")(x)) == 6.0
