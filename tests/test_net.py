"""Port picking for the servers tests start: no collisions between workers or with outgoing sockets."""

from __future__ import annotations

import socket
from pathlib import Path

from esteira import net


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [net.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert max(ports) < _ephemeral_low()


def test_a_span_is_consecutive_free_ports_a_server_can_bind() -> None:
    first = net.free_port(span=2)
    with socket.socket() as a, socket.socket() as b:
        a.bind(("0.0.0.0", first))
        b.bind(("0.0.0.0", first + 1))
    assert net.free_port() not in (first, first + 1)


def test_a_port_something_listens_on_is_skipped(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(net, "_pick_range", lambda: (taken - 1, taken + 60))
        monkeypatch.setattr(net, "_slot", lambda: 0)
        monkeypatch.setattr(net, "_SLOTS", 1)
        picked = {net.free_port() for _ in range(10)}
    assert taken not in picked


def test_parallel_workers_pick_from_disjoint_slices(monkeypatch) -> None:
    seen: dict[str, set[int]] = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setattr(net, "_handed", set())
        seen[worker] = {net.free_port() for _ in range(20)}
    low, high = net._pick_range()
    width = (high - low) // net._SLOTS
    assert all(low <= p < low + width for p in seen["gw0"])
    assert all(low + width <= p < low + 2 * width for p in seen["gw1"])
