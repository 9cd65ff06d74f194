"""facelens serve under a real uvicorn on 127.0.0.1: raw-socket upload limits, httpx and WebSocket clients, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from facelens.serve.cli import register, settings_from_args

REPO = Path(__file__).resolve().parents[2]


def read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read what the server sends until it closes or ``timeout``; a reset after the response is fine."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1].rstrip().endswith(b"}"):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_live_content_length_over_limit_answered_before_body(live_factory: Callable[..., object]) -> None:
    server = live_factory(max_upload_bytes=1024 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:  # type: ignore[attr-defined]
        head = (
            "POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 52428800\r\n\r\n"
        )
        sock.sendall(head.encode() + b"\xff\xd8\xff" + b"\x00" * 1000)  # 50 MB announced, 1 kB sent
        t0 = time.monotonic()
        resp = read_response(sock)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert b'"payload_too_large"' in resp and time.monotonic() - t0 < 5


def test_live_streamed_body_cut_off_while_client_still_sends(live_factory: Callable[..., object]) -> None:
    limit = 1024 * 1024
    server = live_factory(max_upload_bytes=limit)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # type: ignore[attr-defined]
    try:
        sock.sendall(
            b"POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"\xff\xd8\xff" + b"\x00" * (64 * 1024 - 3)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent, total = 0, 64 * limit  # we would send 64 MB; the server must answer long before
        sock.setblocking(False)
        answered = False
        deadline = time.monotonic() + 30
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                answered = True
                break
            if writable:
                try:
                    sent += sock.send(framed)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    answered = True
                    break
        assert answered and sent < total, f"sent {sent} bytes without an answer"
        sock.setblocking(True)
        resp = read_response(sock)
    finally:
        sock.close()
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]


def test_live_http_and_websocket_clients(live_server, astronaut_bytes: bytes) -> None:  # noqa: ANN001
    from websockets.sync.client import connect

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        assert http.get("/readyz").json()["status"] == "ready"
        r = http.post("/v1/analyze", files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
        r = http.post("/v1/analyze", content=b"GIF89a-but-not-really", headers={"content-type": "image/gif"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "unreadable_image"
    ws_url = live_server.url.replace("http://", "ws://") + "/v1/stream"
    with connect(ws_url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        for _ in range(2):
            ws.send(astronaut_bytes)
            msg = json.loads(ws.recv(timeout=30))
            assert msg["type"] == "result" and len(msg["result"]["faces"]) == 1
    deadline = time.monotonic() + 5
    while live_server.engine.limiter.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_server.engine.limiter.in_flight == 0


def test_live_websocket_message_over_limit_closed(live_factory: Callable[..., object]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = live_factory(max_upload_bytes=64 * 1024)
    with connect(server.url.replace("http://", "ws://") + "/v1/stream", open_timeout=10) as ws:  # type: ignore[attr-defined]
        json.loads(ws.recv(timeout=10))
        ws.send(b"\xff\xd8\xff" + b"\x00" * (2 * 64 * 1024))
        with pytest.raises(ConnectionClosed) as ei:
            ws.recv(timeout=10)
    assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009  # "message too big", by uvicorn's ws_max_size


# ---- command line ------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="facelens")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACELENS_API_KEY", raising=False)
    s = settings_from_args(parse(["serve"]))
    assert (s.host, s.port, s.max_upload_bytes, s.api_key, s.cors_origins) == ("127.0.0.1", 8000, 10 << 20, None, ())
    args = parse([
        "serve", "--port", "9001", "--workers-threads", "3", "--max-concurrency", "5", "--max-upload-mb", "2",
        "--max-pixels", "1000000", "--cors-origin", "https://a.example", "--cors-origin", "https://b.example",
        "--timeout", "7.5", "--max-side", "0",
    ])  # fmt: skip
    s = settings_from_args(args)
    assert (s.port, s.threads, s.concurrency, s.max_upload_bytes, s.max_pixels) == (9001, 3, 5, 2 << 20, 1_000_000)
    assert s.cors_origins == ("https://a.example", "https://b.example") and s.timeout_s == 7.5 and s.max_side is None
    monkeypatch.setenv("FACELENS_API_KEY", "from-env")
    assert settings_from_args(parse(["serve"])).api_key == "from-env"
    assert settings_from_args(parse(["serve", "--api-key", "flag"])).api_key == "flag"


def test_cli_registered_in_main_parser() -> None:
    from facelens.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "serve" not in sub.choices:
        pytest.skip("facelens.serve.cli.register is not wired into facelens.cli.build_parser yet")
    assert sub.choices["serve"].parse_args(["--port", "1"]).func.__name__ == "run_serve"


def test_cli_serve_process_starts_and_stops(astronaut_bytes: bytes, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import argparse, sys; from facelens.serve.cli import register; p = argparse.ArgumentParser(); "
        "register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    env = {**os.environ, "FACELENS_API_KEY": "proc-key", "FACELENS_MODEL_PATH": str(tmp_path)}
    cmd = [sys.executable, "-c", code, "serve", "--port", str(port), "--workers-threads", "1", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert httpx.get(url + "/v1/models").status_code == 401
        r = httpx.post(url + "/v1/analyze", content=astronaut_bytes, headers={"X-API-Key": "proc-key"}, timeout=30)
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "proc-key" not in out
