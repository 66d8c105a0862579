"""Write a file whole or not at all: one home for every file this package writes.

``write_atomically(path, write)`` calls ``write(temporary)`` on a new file beside
``path`` (same folder, so the same file system), flushes it to disk and renames it over
``path`` with ``os.replace``, which is atomic. A file already there is replaced only by a
complete one; an error, Ctrl-C or a crash while writing leaves it as it was, and the
temporary file is removed (only ``kill -9`` can leave a ``.NAME.<random>.tmp<suffix>``
behind: nothing runs to remove it then). The temporary name keeps ``path``'s suffix, as
writers such as matplotlib read the format from it. The permissions of a file being
replaced are kept; a link is written through.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` then rename the temporary file over ``path``; returns ``path``.

    >>> write_atomically("report.json", lambda t: t.write_text("{}"))  # doctest: +SKIP
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    temporary = None
    try:
        temporary = temporary_beside(target)
        if target.is_file():
            shutil.copymode(target, temporary)
        write(temporary)
        with open(temporary, "rb+") as handle:  # on disk before the rename makes it the file
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:  # Ctrl-C included: never leave the temporary file behind
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise
    _sync_folder(target.parent)
    return path


def temporary_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder, created exclusively, with the permissions
    a new file gets (the umask applies) and ``path``'s suffix."""
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise OSError(f"cannot create a temporary file beside {str(path)!r}")


def _sync_folder(folder: Path) -> None:
    """Flush the rename itself (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
