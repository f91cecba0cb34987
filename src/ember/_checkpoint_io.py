"""Checkpoint files, below the trainer so strategies and callbacks can use them: an atomic write, which files this
process wrote (another run may save into the same folder), the temporary files of writes a kill interrupted, and a
load that runs no code and names the other checkpoints when a file is missing or damaged."""
from __future__ import annotations

import errno
import os
import pickle
import socket
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ember._io import new_temp_file

__all__ = ["atomic_save", "file_identity", "load_checkpoint", "note_written", "other_checkpoints",
           "remove_stale_temporaries", "written_here"]


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """Write ``obj`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    A crash at any moment leaves either the previous file or the complete new one, never a partial file.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp_file(folder, f".{path.name}.{_TMP_MARK}{os.getpid()}@{_host()}.")  # 0o666 less umask
    except OSError as e:
        raise OSError(f"Cannot write checkpoint {path}: the folder {folder} is not writable ({e}). "
                      "Choose another `dirpath`/`default_root_dir` or fix its permissions.") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _written_here[os.path.abspath(path)] = file_identity(path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cause = _os_error_in(e)
        if cause is not None or _is_writer_error(e):
            # torch's zip writer reports a failed write (full disk, quota, I/O error) as a RuntimeError
            # "[enforce fail at inline_container.cc] unexpected pos"; the OSError it hit is its context
            reason = cause if cause is not None else f"torch's writer failed: {e}"
            message = (f"Writing checkpoint {path} failed ({reason}); the previous checkpoints are untouched. "
                       "Free disk space or choose another folder.")
            raise (OSError(cause.errno, message) if cause is not None and cause.errno else OSError(message)) from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the data itself is already on disk


_written_here: dict = {}  # absolute path -> file_identity() right after this process wrote it


def file_identity(path: Union[str, Path]) -> Optional[tuple]:
    """What changes when a process writes ``path`` (a rename over it gives a new inode); None if absent.
    ``lstat``: a ``last.ckpt`` symlink is itself the file that was written."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def written_here(path: Union[str, Path]) -> bool:
    """Whether ``path`` is, unchanged, a file this process wrote (with ``atomic_save``, or recorded by
    ``note_written``): a checkpoint of this run, not of another run saving into the same folder."""
    known = _written_here.get(os.path.abspath(path))
    return known is not None and known == file_identity(path)


def note_written(path: Union[str, Path]) -> None:
    """Record ``path`` (just written by this process some other way, e.g. a symlink) as this run's."""
    _written_here[os.path.abspath(path)] = file_identity(path)


def _os_error_in(error: BaseException) -> Optional[OSError]:
    """``error`` itself or the first OSError it was raised from or while handling."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _is_writer_error(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and ("inline_container" in str(error) or "PytorchStreamWriter" in str(error))


_TMP_MARK = "ember-"  # in a temporary file's name: ".{name}.ember-{pid}@{host}.{random}.tmp"


def remove_stale_temporaries(folder: Union[str, Path]) -> list:
    """Delete the temporary files of saves that never finished (the process was killed mid-write) in ``folder``:
    those named by ``atomic_save`` on this host whose process is gone. A live writer's file, another host's,
    or any other file is left alone. Returns the removed paths."""
    removed = []
    host = _host()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp") and _TMP_MARK in name):
            continue
        owner = name.rsplit(_TMP_MARK, 1)[1].split(".", 1)[0]  # "{pid}@{host}"
        pid, _, owner_host = owner.partition("@")
        if not pid.isdigit() or owner_host != host or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
        except OSError:
            pass  # gone already, or not ours to delete
    return removed


def _host() -> str:
    return socket.gethostname().replace(".", "_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def load_checkpoint(path: Union[str, Path], map_location: Any = None, weights_only: Optional[bool] = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain data only, no code runs.

    ``weights_only=False`` (Lightning's ``trainer.fit(..., weights_only=False)``) is the caller's explicit request to
    unpickle everything, objects of their own classes included: that runs code named in the file, so only for
    files they trust. None means True.

    A missing path, a folder, and a file that is not a complete checkpoint (truncated, empty, random bytes) raise
    an error that names the file and the other checkpoints beside it.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"Checkpoint {path} is a folder, not a checkpoint file. Pass the path of "
                                f"a .ckpt file{other_checkpoints(path / '_') or other_checkpoints(path)}.")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"Checkpoint file not found: {path}{other_checkpoints(path)}.")
    if map_location is None and not torch.cuda.is_available():
        map_location = "cpu"  # a checkpoint saved on a GPU still loads on a machine without one
    safe = weights_only is not False
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=safe)
    except pickle.UnpicklingError as e:
        if safe and "Unsupported global" in str(e):  # a class or function named in the file: refused, never run
            raise pickle.UnpicklingError(
                f"Refused to load {path}: it contains objects that need arbitrary code to unpickle, and ember loads "
                f"checkpoints with torch.load(weights_only=True) unless asked otherwise. Details: {e}\n"
                "If you wrote this file yourself and trust it, pass weights_only=False (e.g. "
                "`trainer.fit(model, ckpt_path=path, weights_only=False)`), or re-save it as plain data: "
                "`ckpt = torch.load(path, weights_only=False)`, keep its 'state_dict' and plain-data "
                "'hyper_parameters', and `torch.save` them again."
            ) from None
        raise _corrupt(path, e) from e
    except (PermissionError, MemoryError):
        raise  # the file may be fine: the message names it (PermissionError) or the cause
    except Exception as e:  # a truncated zip (OSError EINVAL), an empty file (EOFError), garbled records...
        if not safe and not isinstance(e, (EOFError, OSError, RuntimeError, UnicodeDecodeError)):
            raise  # an unpickled object of the user's own raised it
        raise _corrupt(path, e) from e
    if not isinstance(checkpoint, dict):
        raise TypeError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    return checkpoint


def _corrupt(path: Path, error: BaseException) -> RuntimeError:
    size = path.stat().st_size
    what = "is empty (0 bytes)" if size == 0 else f"is incomplete or corrupt ({size} bytes)"
    return RuntimeError(
        f"Checkpoint {path} {what}: torch.load could not read it ({type(error).__name__}: {_gist(error)}). "
        "It was cut short (a copy or download that did not finish, a full disk) or is not a checkpoint. "
        f"Resume from an earlier checkpoint{other_checkpoints(path)}."
    )


def _gist(error: BaseException) -> str:
    """The line of torch's (long) error that says what was wrong."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # after torch's advice about weights_only, which does not apply here
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    line = text.splitlines()[0].strip() if text.strip() else "no details"
    return line if len(line) <= 200 else line[:200] + "..."


def other_checkpoints(path: Path, limit: int = 5) -> str:
    """``": other checkpoints in <folder>, newest first: a.ckpt, b.ckpt"``, or "" when there are none."""
    folder = path.parent
    try:
        found = [e for e in os.scandir(folder) if e.name.endswith(".ckpt") and e.name != path.name
                 and not e.name.startswith(".")]
        found.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
    except OSError:
        return ""
    if not found:
        return ""
    names = ", ".join(e.name for e in found[:limit]) + (f" and {len(found) - limit} more" if len(found) > limit else "")
    return f"; other checkpoints in {folder}, newest first: {names}"
