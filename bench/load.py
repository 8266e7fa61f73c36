"""`make load`: sustained concurrent load on the predictor and the transformer chain.

``python -m bench.load [--seconds 60] [--clients 16] [--target predictor|chain|both]
[--warmup 10] [--out dist/load]`` builds a small world (as ``testkit.fuzz`` does), starts
the predictor and the transformer (-> predictor, V2) as child processes in their own
process groups, then for each target, first the predictor, then the chain:

1. warms it up with ``--warmup`` seconds of the same load (allocator caches, lazy
   imports, connection pools), then records each server's RSS (``/proc/<pid>/status``
   of the process and its descendants);
2. drives ``--clients`` concurrent keep-alive connections for ``--seconds`` **from a
   separate process** (``python -m bench.load --client SPEC``: a small asyncio HTTP/1.1
   client, so the load generator spends little CPU next to the servers on 127.0.0.1),
   recording every request's latency and status;
3. records the RSS again.

The requests are single-row valid requests: the predictor alternates V1 and V2 over
training rows; the chain alternates transformer V1 and V2 over machine ids present in
the online store. ``<out>/summary.json`` has, per target: requests, errors (non-2xx or
exceptions), throughput, p50/p90/p99 latency, CPU seconds of the client and of each
server, and each involved server's memory after warm-up, at the end and its growth.
The exit status is non-zero on any error or a memory growth of 10% or more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MAX_GROWTH_PCT = 10.0
REQUEST_TIMEOUT = 10.0
SETTLE_SECONDS = 1.0  # between the end of a run and a memory reading
INVOLVED = {"predictor": ("predictor",), "chain": ("transformer", "predictor")}


# ---- the client (runs in its own process) ------------------------------------------------
def http_request(port: int, path: str, body: bytes) -> bytes:
    """A keep-alive HTTP/1.1 POST of a JSON body, as bytes."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        for _ in range(100_000):  # bounded: chunks of one response
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


class Recorder:
    """Latencies and outcomes of every request of one client run."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.statuses: Counter = Counter()
        self.exceptions: Counter = Counter()
        self.examples: list[str] = []

    def answer(self, started: float, status: int, body: bytes) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[str(status)] += 1
        if not 200 <= status < 300 and len(self.examples) < 5:
            self.examples.append(f"HTTP {status}: {body[:300].decode(errors='replace')}")

    def failure(self, exc: BaseException) -> None:
        self.exceptions[type(exc).__name__] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{type(exc).__name__}: {exc}")


async def connection_loop(
    port: int, requests: list[bytes], offset: int, stop_at: float, rec: Recorder
) -> None:
    """One client: a keep-alive connection sending ``requests`` round-robin until ``stop_at``."""
    reader = writer = None
    i = offset
    while time.perf_counter() < stop_at:
        payload = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT
                )
            writer.write(payload)
            status, body, keep = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            rec.failure(exc)
            keep = False
        else:
            rec.answer(started, status, body)
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def drive(port: int, requests: list[bytes], clients: int, seconds: float) -> Recorder:
    rec = Recorder()
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(
        *(connection_loop(port, requests, i, stop_at, rec) for i in range(clients))
    )
    return rec


def run_client(spec_path: Path, result_path: Path) -> int:
    """The child process: read the spec, drive the load, write latencies and outcomes."""
    spec = json.loads(spec_path.read_text())
    requests = [http_request(spec["port"], r["path"], r["body"].encode()) for r in spec["requests"]]
    started = time.perf_counter()
    rec = asyncio.run(drive(spec["port"], requests, spec["clients"], spec["seconds"]))
    result = {
        "elapsed": time.perf_counter() - started,
        "latencies_ms": [round(v, 4) for v in rec.latencies_ms],
        "statuses": dict(rec.statuses),
        "exceptions": dict(rec.exceptions),
        "examples": rec.examples,
    }
    result_path.write_text(json.dumps(result))
    return 0


# ---- the parent: servers, requests, memory -----------------------------------------------
def target_requests(
    target: str, schema: Any, request_values: dict[int, dict[str, float]]
) -> list[dict[str, str]]:
    """Single-row valid requests for ``target``, alternating V1 and V2; the chain's machine
    ids (``request_values`` keys) are those of the online store."""
    v1 = f"/v1/models/{schema.model_name}:predict"
    v2 = f"/v2/models/{schema.model_name}/infer"
    out = []
    if target == "predictor":
        for i, row in enumerate(schema.rows[:8]):
            params = {"probabilities": True, "machine_ids": str(i + 1)}
            inputs = [
                {"name": f, "shape": [1], "datatype": schema.datatype(f), "data": [row[f]]}
                for f in schema.features
            ]
            out.append({"path": v1, "body": json.dumps({"instances": [row], "parameters": params})})
            out.append({"path": v2, "body": json.dumps({"inputs": inputs, "parameters": params})})
        return out
    for machine, values in request_values.items():
        instance = {"machine_id": machine, **values}
        inputs = [{"name": "machine_id", "shape": [1], "datatype": "INT64", "data": [machine]}]
        inputs += [
            {"name": f, "shape": [1], "datatype": "FP64", "data": [values[f]]}
            for f in schema.fields
        ]
        out.append({"path": v1, "body": json.dumps({"instances": [instance]})})
        out.append({"path": v2, "body": json.dumps({"inputs": inputs})})
    return out


def rss_mb(server: Any) -> float:
    """Resident memory of a server process and its descendants, in MB."""
    total_kb = 0
    for pid in server.pids():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def cpu_seconds(server: Any) -> float:
    """User + system CPU time of a server process and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in server.pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def run_load(
    port: int, requests: list[dict[str, str]], clients: int, seconds: float, work: Path
) -> dict[str, Any]:
    """Drive the load from a child process; returns its result plus the client's CPU time."""
    from testkit.fuzz import _die_with_parent

    spec, result = work / "spec.json", work / "result.json"
    result.unlink(missing_ok=True)
    spec.write_text(json.dumps({"port": port, "requests": requests, "clients": clients,
                                "seconds": seconds}))  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--client", str(spec), "--result", str(result)],
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # started before any thread exists
    )
    try:
        code = child.wait(timeout=seconds + 60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0 or not result.exists():
        raise RuntimeError(f"load client exited with {code}")
    data = json.loads(result.read_text())
    data["client_cpu_seconds"] = round(
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1
    )
    return data


def statistics(data: dict[str, Any]) -> dict[str, Any]:
    """Requests, errors, throughput and latency percentiles of one client run."""
    import numpy as np

    latencies = np.asarray(data["latencies_ms"] or [0.0])
    ok = sum(n for s, n in data["statuses"].items() if s.startswith("2"))
    answered = sum(data["statuses"].values())
    exceptions = sum(data["exceptions"].values())
    return {
        "requests": answered + exceptions,
        "errors": answered - ok + exceptions,
        "statuses": data["statuses"],
        "exceptions": data["exceptions"],
        "error_examples": data["examples"],
        "seconds": round(data["elapsed"], 2),
        "throughput_rps": round((answered + exceptions) / data["elapsed"], 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p90_ms": round(float(np.percentile(latencies, 90)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "max_ms": round(float(latencies.max()), 3),
        "client_cpu_seconds": data["client_cpu_seconds"],
    }


def memory(servers: Any, roles: tuple[str, ...], base: dict[str, float]) -> dict[str, Any]:
    """Each involved server's RSS after warm-up (``base``), now, and the growth."""
    out: dict[str, Any] = {}
    for role in roles:
        end = rss_mb(servers.by_role(role))
        growth = (end - base[role]) / base[role] * 100 if base[role] else float("inf")
        out[role] = {"after_warmup_mb": base[role], "end_mb": end, "growth_pct": round(growth, 2)}
    return out


def measure(
    servers: Any, requests: list[dict[str, str]], target: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Warm up, read memory, drive the load, read memory again: one target's results."""
    roles = INVOLVED[target]
    server = servers.predictor if target == "predictor" else servers.transformer
    print(f"[load] {target}: warm-up {args.warmup:.0f}s", flush=True)
    warm = statistics(run_load(server.port, requests, args.clients, args.warmup, work))
    time.sleep(SETTLE_SECONDS)
    base = {role: rss_mb(servers.by_role(role)) for role in roles}
    cpu = {role: cpu_seconds(servers.by_role(role)) for role in roles}
    print(f"[load] {target}: {args.clients} clients for {args.seconds:.0f}s", flush=True)
    result = statistics(run_load(server.port, requests, args.clients, args.seconds, work))
    time.sleep(SETTLE_SECONDS)
    result["server_cpu_seconds"] = {
        role: round(cpu_seconds(servers.by_role(role)) - cpu[role], 1) for role in roles
    }
    result["memory"] = memory(servers, roles, base)
    result["warmup"] = {k: warm[k] for k in ("requests", "errors", "throughput_rps", "p99_ms")}
    result["alive_at_end"] = {role: servers.by_role(role).ready() is None for role in roles}
    return result


def failures(summary: dict[str, Any]) -> list[str]:
    """What makes the load test fail (empty: it passed)."""
    found = []
    for target, result in summary.get("targets", {}).items():
        if result["errors"]:
            found.append(f"{target}: {result['errors']} errors")
        for role, mem in result["memory"].items():
            if mem["growth_pct"] >= MAX_GROWTH_PCT:
                found.append(f"{target}: {role} memory grew {mem['growth_pct']}%")
        found += [f"{target}: {role} not ready at the end"
                  for role, ok in result["alive_at_end"].items() if not ok]  # fmt: skip
    return found


# ---- command line ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured load per target")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--target", choices=["predictor", "chain", "both"], default="both")
    parser.add_argument("--warmup", type=float, default=10.0, help="same load before the baseline")
    parser.add_argument("--out", default="dist/load", help="summary.json and server logs here")
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)  # internal: client mode
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.client:
        return run_client(args.client, args.result)
    from testkit.fuzz import Schema, start_servers, terminate_on_sigterm
    from testkit.serving import build_world

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = ["predictor", "chain"] if args.target == "both" else [args.target]
    started = time.monotonic()
    summary: dict[str, Any] = {
        "clients": args.clients, "seconds": args.seconds, "warmup_seconds": args.warmup,
        "cores": os.cpu_count(), "load_average_at_start": list(os.getloadavg()), "targets": {},
    }  # fmt: skip
    with terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix="load-world-") as tmp:
        world = build_world(Path(tmp))
        schema = Schema.from_world(world)
        try:
            with start_servers(world, out) as servers:
                for target in targets:
                    requests = target_requests(target, schema, world.request_values)
                    summary["targets"][target] = measure(servers, requests, target, args, Path(tmp))
        finally:
            summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
            summary["failures"] = failures(summary) if summary["targets"] else ["no run"]
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for target, r in summary["targets"].items():
        mem = ", ".join(f"{k} {v['after_warmup_mb']}->{v['end_mb']} MB ({v['growth_pct']:+}%)"
                        for k, v in r["memory"].items())  # fmt: skip
        print(f"[load] {target}: {r['requests']} requests, {r['errors']} errors, "
              f"{r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, p90 {r['p90_ms']} ms, "
              f"p99 {r['p99_ms']} ms; memory {mem}")  # fmt: skip
    print(f"[load] failures: {summary['failures'] or 'none'}")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
