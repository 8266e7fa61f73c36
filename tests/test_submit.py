"""`esteira submit`: parameters, a fast clear failure on an unreachable KFP, the happy path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.net import free_port
from esteira_cli import submit as submit_mod
from esteira_cli.cli import main
from esteira_cli.submit import check_kfp_reachable, parse_params, submit


def kfp_settings(host: str) -> Settings:
    return Settings.model_validate({"kfp": {"host": host, "experiment": "exp"}})


def test_parse_params() -> None:
    assert parse_params(["days=30", "ratio=0.5", "flag=true", "name=fleet-a", "empty="]) == {
        "days": 30,
        "ratio": 0.5,
        "flag": True,
        "name": "fleet-a",
        "empty": "",
    }
    with pytest.raises(EsteiraError, match="--param"):
        parse_params(["novalue"])


def test_unreachable_host_fails_fast_and_names_kfp_host() -> None:
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(EsteiraError) as err:
        submit("training", kfp_settings(host))
    assert time.monotonic() - start < 5
    assert err.value.field == "kfp.host"
    assert host in err.value.rule and "unreachable" in err.value.rule


def test_cli_reports_unreachable_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ESTEIRA_KFP__HOST", host)
    assert main(["submit", "training", "--param", "days=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: kfp.host:") and host in err and "Traceback" not in err


def test_host_must_be_a_url() -> None:
    with pytest.raises(EsteiraError, match="not an http"):
        check_kfp_reachable("127.0.0.1:8888")


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"multi_user": false}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kfp_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_compiles_uploads_and_starts_a_run(
    kfp_api: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    compiled: list[tuple[str, Path]] = []
    runs: list[dict[str, Any]] = []

    def fake_compile(name: str, settings: Settings, out_dir: Path) -> Path:
        compiled.append((name, out_dir))
        path = out_dir / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("pipelineSpec: {}\n")
        return path

    class FakeClient:
        def __init__(self, host: str) -> None:
            self.host = host

        def create_run_from_pipeline_package(self, pipeline_file: str, **kwargs: Any) -> Any:
            runs.append({"host": self.host, "file": pipeline_file, **kwargs})
            return type("Run", (), {"run_id": "run-123"})()

    import kfp

    monkeypatch.setattr(submit_mod, "_compile", fake_compile)
    monkeypatch.setattr(kfp, "Client", FakeClient)

    result = submit(
        "training", kfp_settings(kfp_api), {"days": 30}, out_dir=tmp_path, run_name="r1"
    )

    assert compiled == [("training", tmp_path)]
    assert runs == [
        {
            "host": kfp_api,
            "file": str(tmp_path / "training.yaml"),
            "arguments": {"days": 30},
            "run_name": "r1",
            "experiment_name": "exp",
        }
    ]
    assert result.run_id == "run-123"
    assert result.run_url == f"{kfp_api}/#/runs/details/run-123"


def test_kfp_refusal_is_a_clear_error(
    kfp_api: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class Refusing:
        def __init__(self, host: str) -> None:
            pass

        def create_run_from_pipeline_package(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("(400) Bad Request\nlong body")

    import kfp

    monkeypatch.setattr(submit_mod, "_compile", lambda n, s, o: tmp_path / "p.yaml")
    monkeypatch.setattr(kfp, "Client", Refusing)
    with pytest.raises(
        EsteiraError, match=r"refused the run \(RuntimeError: \(400\) Bad Request\)"
    ):
        submit("training", kfp_settings(kfp_api), out_dir=tmp_path)
