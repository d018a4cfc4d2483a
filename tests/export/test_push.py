"""Hub push: without a token or offline it fails at once and nothing is exported or uploaded; the token
reaches the hub and nowhere else (not the run folder, the export, its log, events, config or the output)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tuitune.cli.main import main
from tuitune.errors import TuituneError
from tuitune.export.formats import ExportRequest
from tuitune.export.runner import run_export

TOKEN = "hf_tuituneLeakCanary7fa3c9d21e"


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    """No HF_TOKEN and no saved login."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))


def test_push_without_a_token_fails_at_once_and_exports_nothing(no_login, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TuituneError, match="no Hugging Face token. Set HF_TOKEN"):
        run_export(ExportRequest("/no/such/run", "adapter", output=str(out), push="me/pirate"))
    assert not out.exists()


def test_push_offline_fails_at_once_without_echoing_the_token(no_login, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    assert main(["export", "/no/such/run", "--format", "adapter", "--output", str(out), "--push", "me/pirate"]) == 2
    err = capsys.readouterr().err
    assert "not reachable (HF_HUB_OFFLINE is set)" in err and "Nothing was exported or uploaded" in err
    assert TOKEN not in err and not out.exists()


def test_a_bad_repo_id_is_refused_before_anything(no_login, capsys):
    assert main(["export", "/no/such/run", "--push", "not a repo"]) == 2
    assert "is not a hub repo id" in capsys.readouterr().err


class EchoingHub(BaseHTTPRequestHandler):
    """A hub that refuses every call and, rudely, echoes the Authorization header in its error."""

    seen: list[str] = []

    def _refuse(self) -> None:
        auth = self.headers.get("Authorization", "")
        EchoingHub.seen.append(auth)
        body = json.dumps({"error": f"Invalid credentials in Authorization header: {auth}"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_the_token_never_leaks_into_the_run_the_export_or_the_output(smol_export_run, tmp_path, monkeypatch,
                                                                     no_login, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    EchoingHub.seen.clear()
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # tuitune's reachability probe
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)  # the hub client read both at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    try:
        code = main(["export", str(smol_export_run), "--format", "adapter", "--push", "me/pirate-smol"])
    finally:
        server.shutdown()
    captured = capsys.readouterr()
    assert code == 2  # verified and kept, then the upload failed
    assert "Uploading" in captured.err and "The export itself is complete" in captured.err
    assert any(TOKEN in header for header in EchoingHub.seen)  # the token did go to the hub
    assert TOKEN not in captured.out + captured.err
    export = Path(smol_export_run) / "exports" / "adapter"
    assert (export / "export.json").exists()
    assert json.loads((export / "export.json").read_text())["request"]["push"] == "me/pirate-smol"
    leaks = [str(path) for path in Path(smol_export_run).rglob("*")
             if path.is_file() and TOKEN.encode() in path.read_bytes()]
    assert leaks == []  # config.toml, events.jsonl, train.log, adapter/, exports/ (manifest, card, log)
