"""The persistent compilation cache: compiled programs kept on disk between processes.

A new process that fits a model it has fitted before loads the sampler's compiled
programs from the cache folder instead of compiling them (seconds on a cold start). The
folder is the user cache directory's ``multilevel/jax`` (``MULTILEVEL_CACHE_DIR``
overrides the ``multilevel`` part, ``off`` disables the cache).

A cache entry is machine code this process runs, so the cache is only used where no one
else can put files:

* the folder is refused (one warning, then every program is compiled in the process) if
  another user owns it or any folder above it, if other users can write it, or if they
  can write a folder above it that lacks the sticky bit (the bit that stops them renaming
  what they do not own, as on ``/tmp``);
* every entry carries a SHA-256 digest of its key and contents, checked before JAX
  deserialises it: a damaged entry (truncated, corrupted on disk) or one copied under
  another program's key is deleted and compiled anew, and the fresh program replaces it;
* entries are written to a temporary file in the folder and renamed over the entry, so
  a reader (another process) sees a whole entry or none, and a crash mid-write leaves no
  entry behind.

JAX 0.10's own file cache (``jax._src.lru_cache.LRUCache``) does none of this: it writes
an entry in place with ``Path.write_bytes`` (no lock unless a size limit is set), never
replaces an entry that exists (so a truncated one makes every later process warn and
recompile), and deserialises whatever file has the key's name. JAX has no public hook for
another cache implementation; ``CheckedCache`` implements its ``CacheInterface`` and is
installed where JAX looks for its cache (``jax._src.compilation_cache._cache``), with
``jax_compilation_cache_dir`` left unset. A cache the user configured for JAX themselves
(``jax_compilation_cache_dir``, ``JAX_COMPILATION_CACHE_DIR``) is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import threading
import time
import warnings
from pathlib import Path

import jax
import platformdirs

try:  # the hook into JAX's cache is private; without it there is no persistent cache
    from jax._src import compilation_cache as _jax_cache
    from jax._src.compilation_cache_interface import CacheInterface
except ImportError:  # pragma: no cover - another JAX
    _jax_cache = None
    CacheInterface = object

__all__ = [
    "CacheWarning",
    "CheckedCache",
    "cache_folder",
    "enable_compilation_cache",
    "unsafe_reason",
]

ENV = "MULTILEVEL_CACHE_DIR"

# Our programs compile in 0.1-2 s (compile.COMPILER_OPTIONS): JAX's default floor of 1 s
# would leave most of them out of the cache, and every new process compiling.
MIN_COMPILE_TIME_S = 0.1

_MAGIC = b"multilevel compiled program v1\n"
_DIGEST = hashlib.sha256().digest_size
_SUFFIX = ".xla"
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_S = 3600.0  # a temporary file this old is left by a killed writer


class CacheWarning(UserWarning):
    """The compilation cache folder is not used, or an entry in it was damaged."""


def cache_folder() -> Path | None:
    """Where compiled programs are kept: ``$MULTILEVEL_CACHE_DIR/jax``, or the user cache
    directory's ``multilevel/jax``; None when ``MULTILEVEL_CACHE_DIR=off``."""
    where = os.environ.get(ENV) or platformdirs.user_cache_dir("multilevel")
    if where.strip().lower() == "off":
        return None
    return Path(os.path.abspath(os.path.expanduser(where))) / "jax"


def unsafe_reason(folder: Path) -> str | None:
    """Why other users could put files into ``folder`` (an existing folder), or None.

    The folder itself must belong to this user and be writable by no one else; each
    folder above it must belong to this user or root, and be writable by others only
    with the sticky bit set. Both the path as given and the path its links resolve to
    are checked. Not checked where there are no user ids (Windows)."""
    if not hasattr(os, "getuid"):
        return None
    uid = os.getuid()
    folder = Path(os.path.abspath(folder))
    real = Path(os.path.realpath(folder))
    for leaf in dict.fromkeys((folder, real)):
        for path in (leaf, *leaf.parents):
            st = os.stat(path)
            if st.st_uid not in (uid, 0) or (path == leaf and st.st_uid != uid):
                return f"{path} belongs to another user (uid {st.st_uid})"
            others_write = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            if others_write and (path == leaf or not st.st_mode & stat.S_ISVTX):
                who = "other users" if st.st_mode & stat.S_IWOTH else "its group"
                return f"{who} can write {path} (mode {stat.filemode(st.st_mode)})"
    return None


class CheckedCache(CacheInterface):
    """JAX's cache interface over a folder of checked, atomically written entries.

    An entry's file holds a header, the SHA-256 digest of the header, key and payload,
    then the payload (JAX's compressed executable). ``get`` returns a payload only if its
    digest matches its key; it deletes an entry that does not, so that the program is
    compiled again and ``put`` writes a sound entry in its place."""

    def __init__(self, folder: str | os.PathLike):
        self._path = Path(folder)

    def _file(self, key: str) -> Path:
        if not key:
            raise ValueError("key cannot be empty")
        # JAX's keys are a module name and a hex digest; anything else is hashed, so a
        # key can never name a file outside the folder.
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", key):
            key = hashlib.sha256(key.encode()).hexdigest()
        return self._path / f"{key}{_SUFFIX}"

    @staticmethod
    def _digest(key: str, payload: bytes) -> bytes:
        return hashlib.sha256(_MAGIC + key.encode() + b"\0" + payload).digest()

    def get(self, key: str) -> bytes | None:
        path = self._file(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        head = len(_MAGIC) + _DIGEST
        payload = data[head:]
        if (
            len(data) <= head
            or not data.startswith(_MAGIC)
            or data[len(_MAGIC) : head] != self._digest(key, payload)
        ):
            _discard(path)
            return None
        return payload

    def put(self, key: str, value: bytes) -> None:
        path = self._file(key)
        fd, temp = tempfile.mkstemp(dir=self._path, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + self._digest(key, value) + value)
            os.replace(temp, path)  # atomic: readers see the old entry or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def _discard(path: Path) -> None:
    """Delete a damaged entry and say so: it is compiled anew and replaced."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    warnings.warn(
        f"The compilation cache entry {str(path)!r} was damaged or not the program its "
        "name says (a truncated write, a disk fault, or a file copied there); it was "
        "deleted, and the program is compiled again and stored in its place.",
        CacheWarning,
        stacklevel=2,
    )


def _tidy(folder: Path) -> None:
    """Delete what no checked entry is: files of JAX's own cache format (older versions
    of this package used it; its entries cannot be checked) and temporary files left by
    writers that were killed."""
    now = time.time()
    for entry in os.scandir(folder):
        name = entry.name
        legacy = name.endswith(("-cache", "-atime")) or name == ".lockfile"
        stale = name.startswith(_TEMP_PREFIX)
        with contextlib.suppress(OSError):
            if stale and now - entry.stat(follow_symlinks=False).st_mtime < _STALE_TEMP_S:
                continue  # another process may be writing it now
            if (legacy or stale) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


_LOCK = threading.Lock()
_STATE: dict = {"done": False, "folder": None}


def enable_compilation_cache() -> Path | None:
    """Keep compiled programs on disk so a new process skips XLA compilation.

    Checks the folder (``cache_folder()``) once per process: a folder other users could
    write is refused with one ``CacheWarning`` that names it and says what to do, and
    the process runs without a persistent cache. Returns the folder in use, or None.
    A persistent cache the user configured for JAX themselves is left alone."""
    with _LOCK:
        if not _STATE["done"]:
            _STATE["done"] = True
            _STATE["folder"] = _install()
        return _STATE["folder"]


def _install() -> Path | None:
    if _jax_cache is None or CacheInterface is object:
        return None
    if (
        jax.config.jax_compilation_cache_dir is not None
        or not jax.config.jax_enable_compilation_cache
    ):
        return None  # the user's own choice for JAX
    folder = cache_folder()
    if folder is None:
        return None
    what_to_do = (
        f"Make the folder yours and private (chmod go-w), or set {ENV} to a folder only "
        f"you can write (or to 'off'); until then every process compiles its programs."
    )
    try:
        # Private from the start; Path.mkdir(parents=True) would give the folders above
        # the default mode, group-writable under a umask of 002.
        for path in (*reversed(folder.parents), folder):
            if not path.is_dir():
                path.mkdir(mode=0o700, exist_ok=True)
        reason = unsafe_reason(folder)
    except OSError as exc:
        reason = f"it cannot be created or read ({exc.strerror or exc})"
    if reason is not None:
        warnings.warn(
            f"The compilation cache folder {str(folder)!r} is not used: {reason}. "
            f"Other users could put programs there that this process would run. " + what_to_do,
            CacheWarning,
            stacklevel=3,
        )
        return None
    with contextlib.suppress(OSError):
        _tidy(folder)
    with _jax_cache._cache_initialized_mutex:
        if _jax_cache._cache is not None:
            return None  # someone installed a cache already: theirs
        _jax_cache._cache = CheckedCache(folder)
        # JAX initialises its own cache at most once: it must never replace this one.
        _jax_cache._cache_initialized = True
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return folder
