"""Loopback helpers for the local servers that tests and benchmarks start."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

_SLOTS = (
    16  # pytest-xdist workers (gw0, gw1, ...) and other processes each pick from their own slice
)
_handed: set[int] = set()  # ports this process already gave out


def _pick_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range: an outgoing connection never takes one of them
    between the moment it is picked and the moment a server binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, 32768) - 1
    return max(top - 12000, 1024), top


def _slot() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % _SLOTS
    return os.getpid() % _SLOTS


def _bindable(port: int) -> bool:
    # no SO_REUSEADDR: a port still in TIME_WAIT counts as taken, like anything listening on it
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A TCP port free on every IPv4 address right now; with ``span``, the first of that many
    consecutive free ports (a server that serves gRPC on its REST port + 1 needs ``span=2``).

    Ports come from below the ephemeral range, from a slice of their own per pytest-xdist worker,
    and are never handed out twice by one process, so parallel test workers don't collide.
    """
    low, high = _pick_range()
    width = (high - low) // _SLOTS
    start = low + _slot() * width
    offsets = list(range(width - span))
    random.Random().shuffle(offsets)
    for offset in offsets:
        ports = range(start + offset, start + offset + span)
        if _handed.isdisjoint(ports) and all(_bindable(p) for p in ports):
            _handed.update(ports)
            return ports[0]
    raise RuntimeError(f"no {span} consecutive free TCP port(s) in {start}-{start + width}")


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
