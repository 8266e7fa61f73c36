"""A local supervisor that behaves like a kubelet: `esteira serve` runs its servers under it.

A child that exits is started again with the same command line after a backoff that
doubles from ``backoff_seconds`` up to ``max_backoff_seconds`` (the kubelet's
CrashLoopBackOff, shorter); a child that stayed up ``reset_after_seconds`` starts the
count again. The other children keep serving meanwhile: the transformer answers 503
while its predictor is down, and 200 once it is back. After ``give_up_after`` crashes in
a row, each within ``reset_after_seconds`` of its start, the supervisor gives up and says
so (:class:`GaveUp`).

Each restart is logged (``esteira.supervisor``) and counted:
``esteira_supervisor_restarts_total{role}`` and ``esteira_supervisor_child_up{role}`` on
the supervisor's own ``/metrics`` (``serving.supervisor_port``, 127.0.0.1), and in
``supervisor.json`` next to the logs (pid, command line, restarts per child).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esteira.errors import EsteiraError

log = logging.getLogger("esteira.supervisor")


@dataclass
class ChildSpec:
    """How to run one server: its argv, environment and log file."""

    role: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cleanup: list[str] | None = None  # run before each (re)start, e.g. `docker rm -f <name>`


class GaveUp(EsteiraError):
    """A child crash-looped ``give_up_after`` times in a row."""


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    crashes: int = 0  # in a row, each soon after its start
    restarts: int = 0
    restart_at: float | None = None
    last_code: int | None = None
    delays: list[float] = field(default_factory=list)  # each backoff, in order


class Supervisor:
    """Start children, restart the ones that exit, stop them all."""

    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        reset_after_seconds: float = 60.0,
        give_up_after: int = 5,
        state_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = {s.role: _Child(s) for s in specs}
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.reset_after_seconds = reset_after_seconds
        self.give_up_after = give_up_after
        self.state_path = state_path
        self.clock = clock
        self._server: Any = None

    # ---- metrics ------------------------------------------------------------------------
    def serve_metrics(self, port: int) -> int:
        """Expose ``/metrics`` on 127.0.0.1:``port`` (0 picks a free port); returns the port.

        The values are read from the children at each scrape (a collector, no Counter or
        Gauge objects): prometheus_client's value storage is chosen once per process (Feast,
        imported first, switches it to multiprocess files), and these metrics belong to this
        process alone whatever was imported before."""
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        supervisor = self

        class _Collector:
            def collect(self) -> Any:
                restarts = CounterMetricFamily(
                    "esteira_supervisor_restarts",
                    "Times the supervisor restarted a server after it exited",
                    labels=["role"],
                )
                up = GaugeMetricFamily(
                    "esteira_supervisor_child_up",
                    "1 while the server process runs",
                    labels=["role"],
                )
                for role in supervisor.children:
                    restarts.add_metric([role], supervisor.restarts(role))
                    up.add_metric([role], float(supervisor.running(role)))
                yield restarts
                yield up

        registry = CollectorRegistry()
        registry.register(_Collector())
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        self._server = server
        return int(server.server_address[1])

    # ---- lifecycle ----------------------------------------------------------------------
    def start_all(self) -> None:
        for child in self.children.values():
            self._start(child)

    def _start(self, child: _Child) -> None:
        spec = child.spec
        if spec.cleanup:
            subprocess.run(spec.cleanup, capture_output=True, check=False, timeout=60, env=spec.env)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as out:  # the child keeps its own descriptor
            child.proc = subprocess.Popen(
                spec.argv, stdout=out, stderr=subprocess.STDOUT, env=spec.env
            )
        child.started_at = self.clock()
        child.restart_at = None
        self._write_state()

    def running(self, role: str) -> bool:
        proc = self.children[role].proc
        return proc is not None and proc.poll() is None

    def pid(self, role: str) -> int | None:
        proc = self.children[role].proc
        return proc.pid if proc is not None else None

    def restarts(self, role: str) -> int:
        return self.children[role].restarts

    def delays(self, role: str) -> list[float]:
        """The backoffs a child waited before each restart (seconds)."""
        return list(self.children[role].delays)

    def poll(self) -> None:
        """One supervision step: notice exits, schedule and make restarts.

        Raises :class:`GaveUp` when a child crash-looped ``give_up_after`` times."""
        now = self.clock()
        for role, child in self.children.items():
            proc = child.proc
            if proc is None:
                continue
            if proc.poll() is None:
                if child.crashes and now - child.started_at >= self.reset_after_seconds:
                    child.crashes = 0
                continue
            if child.restart_at is None:  # exited since the last step
                self._schedule(role, child, proc.returncode, now)
            elif now >= child.restart_at:
                child.restarts += 1
                self._start(child)
                log.warning(
                    "restarted %s (restart %d, pid %d)", role, child.restarts, child.proc.pid
                )

    def _schedule(self, role: str, child: _Child, code: int, now: float) -> None:
        ran = now - child.started_at
        child.last_code = code
        child.crashes = child.crashes + 1 if ran < self.reset_after_seconds else 1
        if child.crashes >= self.give_up_after:
            self._write_state()
            raise GaveUp(
                f"serving {role}",
                f"exited {child.crashes} times in a row, each within "
                f"{self.reset_after_seconds:.0f}s of starting (last code {code}); gave up "
                f"after {child.restarts} restarts",
                f"see {child.spec.log_path}",
            )
        delay = min(self.backoff_seconds * 2 ** (child.crashes - 1), self.max_backoff_seconds)
        child.restart_at = now + delay
        child.delays.append(delay)
        log.warning(
            "%s exited with code %s after %.1fs; restarting in %.1fs (see %s)",
            role,
            code,
            ran,
            delay,
            child.spec.log_path,
        )
        self._write_state()

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every child (last started first), then SIGKILL what is left."""
        for child in reversed(list(self.children.values())):
            proc = child.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(list(self.children.values())):
            proc = child.proc
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if child.spec.cleanup:
                subprocess.run(
                    child.spec.cleanup, capture_output=True, check=False, timeout=60,
                    env=child.spec.env,
                )  # fmt: skip
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._write_state()

    def _write_state(self) -> None:
        if self.state_path is None:
            return
        state = {
            role: {
                "pid": c.proc.pid if c.proc is not None else None,
                "running": c.proc is not None and c.proc.poll() is None,
                "argv": c.spec.argv,
                "restarts": c.restarts,
                "last_exit_code": c.last_code,
                "log": str(c.spec.log_path),
            }
            for role, c in self.children.items()
        }
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_path)
