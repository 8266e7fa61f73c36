"""A stand-in for the Kubeflow Pipelines v2beta1 REST API (the API server needs a cluster).

It answers the calls `esteira upload` and `esteira schedule` make through kfp 2.17's client,
keeps what they create in memory, and records every request. Each JSON request body is
checked against KFP's API types (the ``kfp_server_api`` models generated from KFP's
swagger): an unknown field or a value of the wrong type is a 400, as the server's
grpc-gateway would answer, and is recorded in ``errors`` for the test to fail on.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

_PRIMITIVES = {"str": str, "bool": bool, "int": int, "float": (int, float), "object": object}


def type_errors(value: Any, type_name: str, where: str = "body") -> list[str]:
    """Where ``value`` (JSON) does not fit ``type_name`` of kfp_server_api's openapi types."""
    import kfp_server_api

    if value is None:
        return []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        inner = type_name[5:-1]
        return [e for i, v in enumerate(value) for e in type_errors(v, inner, f"{where}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for k, v in value.items() for e in type_errors(v, inner, f"{where}.{k}")]
    if type_name == "datetime":
        return [] if isinstance(value, str) else [f"{where}: expected an RFC 3339 string"]
    if type_name in _PRIMITIVES:
        if type_name == "str" and isinstance(value, bool | dict | list):
            return [f"{where}: expected a string, got {value!r}"]
        if type_name != "str" and not isinstance(value, _PRIMITIVES[type_name]):
            return [f"{where}: expected {type_name}, got {value!r}"]
        return []
    model = getattr(kfp_server_api, type_name)
    if hasattr(model, "allowable_values"):  # an enum
        ok = value in model.allowable_values
        return [] if ok else [f"{where}: {value!r} not in {model.allowable_values}"]
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object"]
    by_json = {v: k for k, v in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{where}.{key}: not a field of {type_name}")
            continue
        errors += type_errors(item, model.openapi_types[by_json[key]], f"{where}.{key}")
    return errors


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None  # parsed JSON, or {"fields": ..., "file": bytes} for uploads


@dataclass
class KfpState:
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    token: str = ""  # when set, a request without `Authorization: Bearer <token>` gets 401
    cookie: str = ""  # ... or, when set, without this Cookie header

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self.ids)}"

    def sent(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]


def _name_filter(query: dict[str, str]) -> str | None:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"])["predicates"]
    (pred,) = predicates
    assert pred["key"] == "display_name" and pred["operation"] == "EQUALS", pred
    return pred["stringValue"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stored_spec(data: bytes) -> dict:
    """What KFP stores as a version's pipeline_spec: the spec, with the platform spec beside it."""
    docs = [d for d in yaml.safe_load_all(data) if d]
    if len(docs) == 1:
        return docs[0]
    return {"pipeline_spec": docs[0], "platform_spec": docs[1]}


class _Handler(BaseHTTPRequestHandler):
    state: KfpState

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, payload: dict, type_name: str | None = None) -> None:
        if type_name:  # this double answers in KFP's types too
            self.state.errors += [f"reply {e}" for e in type_errors(payload, type_name)]
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _parse(self) -> tuple[str, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        size = int(self.headers.get("Content-Length") or 0)
        return url.path, query, self.rfile.read(size) if size else b""

    def _json_body(self, raw: bytes, type_name: str) -> dict | None:
        body = json.loads(raw or b"{}")
        errors = type_errors(body, type_name)
        if errors:
            self.state.errors += errors
            self._reply(400, {"code": 3, "message": "; ".join(errors)})
            return None
        return body

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:  # noqa: C901 - one table of routes
        path, query, raw = self._parse()
        s = self.state
        rec = Recorded(method, path, query)
        api = "/apis/v2beta1"
        authorized = (not s.token or self.headers.get("Authorization") == f"Bearer {s.token}") and (
            not s.cookie or self.headers.get("Cookie") == s.cookie
        )
        if not authorized:
            return self._reply(401, {"code": 16, "message": "Unauthenticated"})
        s.requests.append(rec)
        if path == f"{api}/healthz":
            return self._reply(200, {"multi_user": False}, "V2beta1GetHealthzResponse")
        if path == f"{api}/pipelines" and method == "GET":
            name = _name_filter(query)
            found = [p for p in s.pipelines.values() if name in (None, p["display_name"])]
            return self._reply(
                200, {"pipelines": found, "total_size": len(found)}, "V2beta1ListPipelinesResponse"
            )
        if path == f"{api}/pipelines" and method == "POST":
            body = rec.body = self._json_body(raw, "V2beta1Pipeline")
            if body is None:
                return None
            pid = s.new_id("pipeline")
            s.pipelines[pid] = {**body, "pipeline_id": pid, "created_at": _now()}
            return self._reply(200, s.pipelines[pid], "V2beta1Pipeline")
        if path == f"{api}/pipelines/upload_version" and method == "POST":
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
            )
            parts = {p.get_param("name", header="content-disposition"): p for p in message.walk()}
            data = parts["uploadfile"].get_payload(decode=True)
            rec.body = {"file": data}
            unknown = set(query) - {"name", "display_name", "pipelineid", "description", "tags"}
            if unknown or query.get("pipelineid") not in s.pipelines:
                s.errors.append(f"upload_version: bad query {query}")
                return self._reply(400, {"code": 3, "message": "bad upload"})
            vid = s.new_id("version")
            s.versions[vid] = {
                "pipeline_id": query["pipelineid"],
                "pipeline_version_id": vid,
                "name": query["name"],
                "display_name": query.get("display_name") or query["name"],
                "description": query.get("description", ""),
                "created_at": _now(),
                "pipeline_spec": stored_spec(data),
            }
            return self._reply(200, s.versions[vid], "V2beta1PipelineVersion")
        if m := re.fullmatch(rf"{api}/pipelines/([\w-]+)/versions", path):
            name = _name_filter(query)
            found = [
                {k: v for k, v in ver.items() if k != "pipeline_spec"}
                for ver in s.versions.values()
                if ver["pipeline_id"] == m[1] and name in (None, ver["display_name"])
            ]
            if query.get("sort_by") == "created_at desc":
                found.reverse()  # ids grow with time here
            if "page_size" in query:
                found = found[: int(query["page_size"])]
            return self._reply(
                200, {"pipeline_versions": found}, "V2beta1ListPipelineVersionsResponse"
            )
        if m := re.fullmatch(rf"{api}/pipelines/([\w-]+)/versions/([\w-]+)", path):
            return self._reply(200, s.versions[m[2]], "V2beta1PipelineVersion")
        if path == f"{api}/experiments" and method == "GET":
            name = _name_filter(query)
            found = [e for e in s.experiments.values() if name in (None, e["display_name"])]
            return self._reply(200, {"experiments": found}, "V2beta1ListExperimentsResponse")
        if path == f"{api}/experiments" and method == "POST":
            body = rec.body = self._json_body(raw, "V2beta1Experiment")
            if body is None:
                return None
            eid = s.new_id("experiment")
            s.experiments[eid] = {**body, "experiment_id": eid}
            return self._reply(200, s.experiments[eid], "V2beta1Experiment")
        if path == f"{api}/recurringruns" and method == "GET":
            name = _name_filter(query)
            found = [
                r
                for r in s.recurring_runs.values()
                if r["experiment_id"] == query.get("experiment_id")
                and name in (None, r["display_name"])
            ]
            return self._reply(
                200,
                {"recurringRuns": found, "total_size": len(found)},
                "V2beta1ListRecurringRunsResponse",
            )
        if path == f"{api}/recurringruns" and method == "POST":
            body = rec.body = self._json_body(raw, "V2beta1RecurringRun")
            if body is None:
                return None
            rid = s.new_id("recurring")
            s.recurring_runs[rid] = {**body, "recurring_run_id": rid, "status": "ENABLED"}
            return self._reply(200, s.recurring_runs[rid], "V2beta1RecurringRun")
        if m := re.fullmatch(rf"{api}/recurringruns/([\w-]+)", path):
            if method == "DELETE" and s.recurring_runs.pop(m[1], None) is not None:
                return self._reply(200, {})
            return self._reply(404, {"code": 5, "message": f"recurring run {m[1]} not found"})
        s.errors.append(f"unexpected {method} {path}")
        return self._reply(404, {"code": 5, "message": f"no route {method} {path}"})


class KfpApiDouble:
    """``with KfpApiDouble() as kfp: kfp.host, kfp.state``: on 127.0.0.1, a free port."""

    def __init__(self) -> None:
        self.state = KfpState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> KfpApiDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
