"""This process's Prometheus multiprocess files, written so that a full disk never kills the process.

``prometheus_client`` keeps each process's metric values in files it maps into
memory and grows by extending them (``truncate``), which leaves holes: the
first write into a hole asks the file system for a block, and when none is
left the kernel answers with SIGBUS, which ends the process (a gunicorn worker
died mid-request on a full ``MODEL_DIR``).  Here every byte of a file is backed
by real blocks (``posix_fallocate``, or zeros written on file systems without it)
before it is mapped, so a full disk is an ``OSError`` at that moment instead.

``FileValue`` is the value class the metrics use in multiprocess mode
(``segmenter.service.metrics`` installs it as ``prometheus_client.values.ValueClass``).
It keeps every value in memory and writes it to this process's file for its
type, in the library's format and names (so its collector reads them as
always).  An update the disk refuses stays in memory and is written with the
next update that succeeds: while the disk is full the files lag behind,
nothing is lost, and the lag is logged when it starts and when it ends.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import weakref

from prometheus_client.mmap_dict import MmapedDict, mmap_key

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
INITIAL_SIZE = 1 << 16  # the size the library gives a new file
ENTRY_OVERHEAD = 32  # an entry beside its key: length, padding to 8 bytes, value and timestamp
_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def reserve(path: str, start: int, end: int) -> None:
    """Back bytes ``start`` to ``end`` of ``path`` with blocks of the file system, growing the file
    to ``end`` if shorter; raises ``OSError`` (ENOSPC) when there is no room.  The range must hold no
    data yet: where ``posix_fallocate`` is not supported, zeros are written into it."""
    if end <= start:
        return
    fd = os.open(path, os.O_WRONLY)  # not O_APPEND (the library's mode): pwrite must land where asked
    try:
        try:
            os.posix_fallocate(fd, start, end - start)
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                raise
            zeros = bytes(min(end - start, INITIAL_SIZE))
            at = start
            while at < end:
                at += os.pwrite(fd, zeros[: end - at], at)
    finally:
        os.close(fd)


def _prepare(filename: str) -> None:
    """Make sure ``filename`` exists with every byte backed.  A new file is made beside it and
    renamed in, so that a scrape never reads one without its header."""
    try:
        with open(filename, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(4)
    except FileNotFoundError:
        size, header = 0, b""
    if size > 0 and len(header) == 4:
        used = max(8, struct.unpack("i", header)[0])
        reserve(filename, min(used, size), size)
        return
    new = f"{filename}.new"
    with open(new, "wb"):
        pass
    try:
        reserve(new, 0, INITIAL_SIZE)
        os.replace(new, filename)
    except OSError:
        os.unlink(new)
        raise


class BackedDict(MmapedDict):
    """The library's file of one process's values, with every byte backed before it is mapped."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            _prepare(filename)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        """Add ``key``, first backing the room the library doubles the file to when it must grow."""
        needed = self._used + len(key.encode("utf-8")) + ENTRY_OVERHEAD
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        reserve(self._fname, self._capacity, capacity)
        super()._init_value(key)


_lock = threading.Lock()  # one for all values: a file is written by one thread at a time
_files: dict[str, BackedDict] = {}
_values: weakref.WeakSet[FileValue] = weakref.WeakSet()
_behind: set[FileValue] = set()  # values whose file does not hold their latest update yet
_waited = 0  # updates that waited for space since the lag began


def _file(prefix: str) -> BackedDict:
    """This process's file for ``prefix`` (the metric type, and a gauge's mode)."""
    if prefix not in _files:
        path = os.path.join(os.environ[ENV], f"{prefix}_{os.getpid()}.db")
        _files[prefix] = BackedDict(path)
    return _files[prefix]


class FileValue:
    """One metric value of this process: in memory, and in this process's file when the disk allows."""

    _multiprocess = True

    def __init__(self, typ: str, metric_name: str, name: str, labelnames: list[str], labelvalues: list[str],
                 help_text: str, multiprocess_mode: str = "", **kwargs: object) -> None:
        self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
        self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
        self._value = self._timestamp = 0.0
        self._was_set = False  # a set value stands as it is; counts add to what the file held
        self._file: BackedDict | None = None
        with _lock:
            _values.add(self)
            self._write()  # listed from now on, at its value so far

    def inc(self, amount: float) -> None:
        with _lock:
            self._value += amount
            self._timestamp = 0.0
            self._write()

    def set(self, value: float, timestamp: float | None = None) -> None:
        with _lock:
            self._value, self._timestamp, self._was_set = value, timestamp or 0.0, True
            self._write()

    def get(self) -> float:
        with _lock:
            return self._value

    def set_exemplar(self, exemplar: object) -> None:
        """Exemplars are not kept in multiprocess mode."""

    def get_exemplar(self) -> None:
        return None

    def _put(self) -> None:
        """Write the value into its file; a first write of counts adds what a file of this pid already held."""
        if self._file is None:
            file = _file(self._prefix)
            stored, _ = file.read_value(self._key)
            self._value, self._file = self._value if self._was_set else self._value + stored, file
        self._file.write_value(self._key, self._value, self._timestamp)

    def _write(self) -> None:
        """Write this value, then those that waited for space; one the disk refuses waits in memory."""
        global _waited
        try:
            self._put()
        except OSError as exc:
            if not _behind:
                log.warning("metrics: cannot write %s (%s); updates wait in memory until there is space",
                            os.environ.get(ENV), exc)
            _behind.add(self)
            _waited += 1
            return
        _behind.discard(self)
        for value in list(_behind):
            try:
                value._put()
            except OSError:
                return
            _behind.discard(value)
        if _waited:
            log.warning("metrics: written again; %d updates had waited for space", _waited)
            _waited = 0


def _forked() -> None:
    """In a forked child: its own files (named by its pid), every value from zero, as the library does."""
    global _lock, _waited
    _lock = threading.Lock()
    for file in _files.values():
        file.close()
    _files.clear()
    _behind.clear()
    _waited = 0
    for value in list(_values):
        value._value = value._timestamp = 0.0
        value._was_set, value._file = False, None


os.register_at_fork(after_in_child=_forked)
