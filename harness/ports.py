"""Loopback ports for the processes and servers the harness starts."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from harness import DriverError


def port_is_free(port: int) -> bool:
    """Nothing answers on 127.0.0.1:``port`` and it can be bound on all interfaces."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to servers
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(preferred: int | None = None, tries: int = 50, avoid: Iterable[int] = ()) -> int:
    """``preferred`` or the next free port after it; any free port when ``preferred`` is None."""
    avoid = set(avoid)
    if preferred is not None:
        for port in range(preferred, preferred + tries):
            if port not in avoid and port_is_free(port):
                return port
        raise DriverError(f"no free port in {preferred}..{preferred + tries - 1}")
    for _ in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port_is_free(port):
            return port
    raise DriverError("no free port")
