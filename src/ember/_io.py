"""Small file-system helpers below every other module: writing a file atomically with the permissions a plain
``open()`` gives, and claiming a numbered folder that no other process can also claim.

Both are about several writers at once: a reader never sees half a file, and two runs started at the same moment
in one folder never share a ``version_{n}``.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Iterator, TextIO, Union

__all__ = ["atomic_write_text", "claim_numbered_folder", "exclusive_lock", "new_temp_file"]


def atomic_write_text(path: Union[str, os.PathLike], write: Callable[[TextIO], Any]) -> None:
    """Call ``write(f)`` on a new text file beside ``path``, then rename it over ``path``.

    A reader (or a crash) sees the previous file or the complete new one, never part of one. The file gets the
    permissions ``open(path, "w")`` would give (``0o666`` less the umask: ``0644`` under the usual ``022``), as a
    checkpoint does; ``tempfile.mkstemp`` would make it ``0600``. The umask is applied by the kernel when the file is
    created, so it is never read or changed here (changing it would affect every thread of the process).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> atomic_write_text(path, lambda f: f.write("hello\\n"))
    >>> open(path).read()
    'hello\\n'
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    fd, tmp = new_temp_file(folder, f".{name}.{os.getpid()}.")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def new_temp_file(folder: Union[str, os.PathLike], prefix: str) -> tuple:
    """``(fd, path)`` of a new file ``{prefix}{random}.tmp`` in ``folder``, opened for writing.

    Created exclusively (never another writer's temporary file) with mode ``0o666``, which the kernel reduces by
    the umask: the permissions ``open()`` gives, without reading or changing the umask.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(os.fspath(folder), f"{prefix}{os.urandom(4).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def claim_numbered_folder(root: Union[str, os.PathLike], prefix: str = "version_") -> int:
    """Create ``{root}/{prefix}{n}`` for the smallest ``n`` above every existing one (0 in an empty ``root``) and
    return ``n``. The folder is made with ``os.mkdir``, which fails when the name exists, so of several processes
    claiming at the same moment each gets its own number: the loser of a race takes the next one.

    Only folders count as taken numbers when choosing the start; a file named ``version_9`` is skipped over.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> claim_numbered_folder(root), claim_numbered_folder(root)
    (0, 1)
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    number = next_number(root, prefix)
    while True:
        try:
            os.mkdir(os.path.join(root, f"{prefix}{number}"))
            return number
        except FileExistsError:  # another process took it between our listing and now (or a file has the name)
            number += 1


def next_number(root: Union[str, os.PathLike], prefix: str = "version_") -> int:
    """One more than the highest ``{prefix}{n}`` folder in ``root``, or 0. Claims nothing (see
    ``claim_numbered_folder``)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        return 0
    numbers = [int(entry[len(prefix):]) for entry in os.listdir(root)
               if entry.startswith(prefix) and entry[len(prefix):].isdigit()
               and os.path.isdir(os.path.join(root, entry))]
    return max(numbers) + 1 if numbers else 0


@contextlib.contextmanager
def exclusive_lock(path: Union[str, os.PathLike]) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing, never removed) for the ``with`` block: other
    processes entering ``exclusive_lock`` on the same path wait. The lock goes with the process if it dies.

    >>> import os, tempfile
    >>> with exclusive_lock(os.path.join(tempfile.mkdtemp(), ".lock")):
    ...     pass
    """
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # Windows: lock the first byte, retrying (msvcrt gives up after ten one-second tries)
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.1)
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
