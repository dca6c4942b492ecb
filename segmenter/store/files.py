"""Files under MODEL_DIR written so that no reader ever sees half of one.

``stage`` writes a complete temp file beside its destination (named
``.{name}.{pid}@{host}.*.tmp``, so a later save can tell an abandoned one from
one still being written); ``atomic_write`` then renames it into place.  A write
that fails for lack of space raises ``StorageError`` saying "no space left on
device" and leaves nothing behind.  ``flock`` is the exclusive file lock that
every process sharing MODEL_DIR respects.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

STALE_AFTER = 3600.0  # seconds after which a temp file written on another host counts as abandoned
_TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<scope>[^@/]+)\.[^.]+\.tmp$")
_FULL = (errno.ENOSPC, errno.EDQUOT)


class StorageError(OSError):
    """A file under ``MODEL_DIR`` could not be written because the disk is full."""


@functools.cache
def pid_scope() -> str:
    """This host and PID namespace: the scope in which a pid names one process (temp files, metric files)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = ""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) + f"~{namespace}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host and PID namespace is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def abandoned(path: Path, now: float) -> bool:
    """Whether a temp file's writer is gone: its process ended, or (elsewhere) it is over an hour old."""
    found = _TEMP_FILE.match(path.name)
    if found and found["scope"] == pid_scope():
        return not alive(int(found["pid"]))
    try:
        return now - path.stat().st_mtime > STALE_AFTER
    except FileNotFoundError:
        return False


def _full(exc: OSError, what: str) -> OSError:
    """``exc``, or for a full disk a ``StorageError`` that says so in words and names ``what``."""
    if exc.errno not in _FULL:
        return exc
    error = StorageError(f"no space left on device: cannot write {what}")
    error.errno = exc.errno
    return error


def stage(path: Path, write: Callable[[Path], None], mode: int, durable: bool) -> Path:
    """A complete temp file beside ``path``, written by ``write(temp)``, not yet in place."""
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}@{pid_scope()}.", suffix=".tmp")
        os.close(fd)
        temp = Path(name)
        write(temp)
        if durable:
            with open(temp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(temp, mode)
        return temp
    except BaseException as exc:
        if temp is not None:
            temp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise _full(exc, str(path)) from exc
        raise


def atomic_write(path: Path, write: Callable[[Path], None], mode: int = 0o644, durable: bool = True) -> None:
    """Write ``path`` through ``write(temp_path)`` and rename it into place.

    ``durable`` also flushes the file to disk before the rename (models); state
    files that are rewritten on every webhook skip that to stay fast.  A full
    disk raises ``StorageError``; nothing is left behind either way.
    """
    temp = stage(path, write, mode, durable)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def json_text(data: object) -> str:
    return json.dumps(data, indent=2, default=str)


def write_json(path: Path, data: object, mode: int = 0o644, durable: bool = True) -> None:
    """Atomically write ``data`` as JSON."""
    atomic_write(path, lambda p: p.write_text(json_text(data)), mode, durable)


def create_json(path: Path, data: object) -> bool:
    """Write ``data`` as JSON to ``path`` only if nothing is there yet, atomically; returns whether
    this call wrote it (one of several processes racing wins, the others see its file)."""
    temp = stage(path, lambda p: p.write_text(json_text(data)), 0o644, True)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    return True


def read_json(path: Path, default: object = None) -> object:
    """JSON from ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


@contextmanager
def flock(path: Path, blocking: bool = True, tries: int = 1) -> Iterator[bool]:
    """An exclusive file lock; without ``blocking``, ``tries`` attempts 20 ms apart, then False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(tries):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if attempt == tries - 1:
                    yield False
                    return
                time.sleep(0.02)
        yield True
    finally:
        os.close(fd)
