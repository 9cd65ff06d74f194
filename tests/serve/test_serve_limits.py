"""Limits and safety of facelens serve: upload size, pixels, sniffing, corrupt images, timeout, busy, no disk/log."""

from __future__ import annotations

import io
import logging
import os
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from facelens.serve.engine import Engine

Maker = Callable[..., TestClient]
CHUNK = 8192


def assert_error(r, status: int, code: str) -> dict:  # noqa: ANN001
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    return body


def call_asgi(client: TestClient, headers: list[tuple[bytes, bytes]], body: Iterator[bytes]) -> tuple[int, int]:
    """POST /v1/analyze straight into the ASGI app (lifespan already run); returns (status, receive calls)."""
    calls = 0
    status = 0

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        chunk = next(body, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/analyze", "raw_path": b"/v1/analyze", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip

    async def run() -> None:
        await client.app(scope, receive, send)

    client.portal.call(run)  # type: ignore[union-attr]
    return status, calls


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels but holds almost nothing (never decoded: refused first)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def endless_jpeg() -> Iterator[bytes]:
    yield b"\xff\xd8\xff" + b"\x00" * (CHUNK - 3)
    while True:
        yield b"\x00" * CHUNK


# ---- upload size ---------------------------------------------------------------------------------------------------


def test_default_upload_limit_is_10_mb(client: TestClient) -> None:
    limit = 10 * 1024 * 1024
    body = b"\xff\xd8\xff" + b"\x00" * (limit - 2)  # one byte over
    r = client.post("/v1/analyze", content=body, headers={"content-type": "image/jpeg"})
    assert "10 MB" in assert_error(r, 413, "payload_too_large")["error"]["message"]
    r = client.post("/v1/analyze", files={"image": ("big.jpg", body, "image/jpeg")})
    assert_error(r, 413, "payload_too_large")


def test_content_length_refused_before_reading_body(make_client: Maker) -> None:
    c = make_client(max_upload_bytes=64 * 1024)
    status, calls = call_asgi(c, [(b"content-type", b"image/jpeg"), (b"content-length", b"50000000")], endless_jpeg())
    assert status == 413 and calls == 0


def test_streamed_bytes_counted_without_content_length(make_client: Maker) -> None:
    limit = 64 * 1024
    c = make_client(max_upload_bytes=limit)
    status, calls = call_asgi(c, [(b"content-type", b"image/jpeg")], endless_jpeg())  # would never end
    assert status == 413 and calls <= limit // CHUNK + 2
    boundary = b"bnd"
    ctype = b"multipart/form-data; boundary=" + boundary
    head = b'--bnd\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n\xff\xd8\xff'

    def endless_part() -> Iterator[bytes]:
        yield head
        while True:
            yield b"\x00" * CHUNK

    status, calls = call_asgi(c, [(b"content-type", ctype)], endless_part())
    assert status == 413 and calls <= limit // CHUNK + 2
    # A lying Content-Length (small) does not help: the bytes are counted as they arrive.
    status, calls = call_asgi(c, [(b"content-type", b"image/jpeg"), (b"content-length", b"100")], endless_jpeg())
    assert status == 413 and calls <= limit // CHUNK + 2


def test_batch_part_over_image_limit(make_client: Maker, noise_png: Callable[[int, int], bytes]) -> None:
    c = make_client(max_upload_bytes=100_000, max_batch_bytes=1_000_000)
    big = noise_png(200, 200)  # ~120 kB
    assert len(big) > 100_000
    r = c.post("/v1/analyze/batch", files=[("images", ("big.png", big, "image/png"))])
    assert "big.png" in assert_error(r, 413, "payload_too_large")["error"]["message"]
    small = noise_png(50, 50)
    r = c.post("/v1/analyze/batch", files=[("images", (f"{i}.png", small, "image/png")) for i in range(3)])
    assert r.status_code == 200 and len(r.json()["results"]) == 3


# ---- pixels, sniffing, corrupt images --------------------------------------------------------------------------------


def test_max_pixels(make_client: Maker, astronaut_bytes: bytes, huge_png_bytes: bytes) -> None:
    c = make_client(max_pixels=100_000)  # the photo has 262,144
    body = assert_error(c.post("/v1/analyze", files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")}), 413,
                        "image_too_large")  # fmt: skip
    assert "512x512" in body["error"]["message"]
    default = make_client()  # 25 MP by default
    r = default.post("/v1/analyze", content=png_header(6000, 5000), headers={"content-type": "image/png"})
    message = assert_error(r, 413, "image_too_large")["error"]["message"]
    assert "6000x5000 = 30,000,000 pixels" in message and "--max-pixels" not in message  # no operator hint
    r = default.post("/v1/analyze", content=huge_png_bytes, headers={"content-type": "image/png"})
    assert_error(r, 413, "image_too_large")
    batch = default.post("/v1/analyze/batch", files=[("images", ("bomb.png", huge_png_bytes, "image/png"))])
    assert batch.json()["results"][0]["error_code"] == "image_too_large"


@pytest.mark.parametrize(
    "payload",
    [b"hello world", b"<html><body>not an image</body></html>", b"%PDF-1.7\n...", b"\x00" * 100, b"BM"],
    ids=["text", "html", "pdf", "zeros", "short-bmp"],
)
def test_non_images_are_415_whatever_the_declared_type(client: TestClient, payload: bytes) -> None:
    r = client.post("/v1/analyze", content=payload, headers={"content-type": "image/jpeg"})
    assert "not an image" in assert_error(r, 415, "unsupported_media_type")["error"]["message"]
    r = client.post("/v1/analyze", files={"image": ("photo.jpg", payload, "image/jpeg")})
    assert "photo.jpg" in assert_error(r, 415, "unsupported_media_type")["error"]["message"]


def test_corrupt_image_is_422_with_clear_message(client: TestClient, astronaut_bytes: bytes) -> None:
    r = client.post("/v1/analyze", files={"image": ("cut.jpg", astronaut_bytes[:5000], "image/jpeg")})
    msg = assert_error(r, 422, "unreadable_image")["error"]["message"]
    assert msg.startswith("cut.jpg: corrupt or truncated image"), msg
    garbage = b"\x89PNG\r\n\x1a\n" + b"\x13" * 200
    r = client.post("/v1/analyze", content=garbage, headers={"content-type": "image/png"})
    assert_error(r, 422, "unreadable_image")
    assert "empty" in assert_error(client.post("/v1/analyze", content=b""), 422, "unreadable_image")["error"]["message"]


# ---- timeout and concurrency ---------------------------------------------------------------------------------------


def test_timeout_is_504_and_slot_freed_when_work_ends(
    make_client: Maker, astronaut_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(timeout_s=0.3, max_concurrency=1)
    engine: Engine = c.app.state.engine  # type: ignore[attr-defined]
    real = Engine.analyze_bytes

    def slow(self: Engine, *args: object) -> object:
        time.sleep(2.0)
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "analyze_bytes", slow)
    t0 = time.monotonic()
    r = c.post("/v1/analyze", files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")})
    assert "0.3 s" in assert_error(r, 504, "timeout")["error"]["message"]
    assert time.monotonic() - t0 < 1.8  # answered at the limit, not when the work ends
    assert engine.limiter.in_flight == 1  # the thread still works: its slot stays taken, the pool cannot pile up
    deadline = time.monotonic() + 5
    while engine.limiter.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.limiter.in_flight == 0
    monkeypatch.setattr(Engine, "analyze_bytes", real)
    assert c.post("/v1/analyze", files={"image": ("a.jpg", astronaut_bytes, "image/jpeg")}).status_code == 200


def test_busy_is_503_with_retry_after(
    make_client: Maker, astronaut_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(max_concurrency=1)
    engine: Engine = c.app.state.engine  # type: ignore[attr-defined]
    gate = threading.Event()
    real = Engine.analyze_bytes

    def gated(self: Engine, *args: object) -> object:
        gate.wait(10)
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "analyze_bytes", gated)
    first: dict[str, int] = {}
    files = {"image": ("a.jpg", astronaut_bytes, "image/jpeg")}
    t = threading.Thread(target=lambda: first.setdefault("status", c.post("/v1/analyze", files=files).status_code))
    t.start()
    try:
        deadline = time.monotonic() + 10
        while engine.limiter.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.post("/v1/analyze", files=files)
        assert_error(r, 503, "busy")
        assert r.headers["retry-after"] == "1"
        assert_error(c.post("/v1/analyze/batch", files=[("images", files["image"])]), 503, "busy")
        with c.websocket_connect("/v1/stream") as ws:  # a stream frame is refused the same way, and goes on
            ws.receive_json()
            ws.send_bytes(astronaut_bytes)
            assert ws.receive_json()["error"]["code"] == "busy"
    finally:
        gate.set()
        t.join(15)
    assert first["status"] == 200
    assert c.post("/v1/analyze", files=files).status_code == 200


# ---- nothing uploaded touches the disk or the logs -------------------------------------------------------------------

_WRITES: list[str] = []
_WATCH = threading.Event()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | getattr(os, "O_TMPFILE", 0)


def _audit(event: str, args: tuple) -> None:
    if not _WATCH.is_set() or event not in ("open", "os.mkdir", "tempfile.mkstemp", "tempfile.mkdtemp"):
        return
    if event != "open":
        _WRITES.append(f"{event} {args}")
        return
    path, mode, flags = args
    writing = (isinstance(mode, str) and any(m in mode for m in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
    if writing and not str(path).endswith(".pyc"):
        _WRITES.append(f"open {path!r} mode={mode!r} flags={flags!r}")


_HOOKED = False


def _watch_writes() -> None:
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records while _WATCH is set
        _HOOKED = True


def test_uploads_never_touch_disk_or_logs(
    client: TestClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    marker = "FACELENS-SECRET-PIXELS-7f3a"
    noise = np.random.default_rng(7).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    rng_img = Image.fromarray(noise)  # ~3 MB PNG: over starlette's 1 MB spool size
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker)
    buf = io.BytesIO()
    rng_img.save(buf, format="PNG", pnginfo=info, compress_level=1)
    data = buf.getvalue()
    assert len(data) > 2 * 1024 * 1024 and marker.encode() in data

    def exercise() -> None:
        assert client.post("/v1/analyze", files={"image": ("p.png", data, "image/png")}).status_code == 200
        assert client.post("/v1/analyze", content=data, headers={"content-type": "image/png"}).status_code == 200
        r = client.post("/v1/analyze?annotate=true", files={"image": ("p.png", data, "image/png")})
        assert r.status_code == 200
        files = [("images", ("a.png", data, "image/png")), ("images", ("b.txt", marker.encode(), "text/plain"))]
        assert client.post("/v1/analyze/batch", files=files).status_code == 200
        bad = data[:100_000]
        assert client.post("/v1/analyze", files={"image": ("bad.png", bad, "image/png")}).status_code == 422
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            ws.send_bytes(data)
            assert ws.receive_json()["type"] == "result"

    exercise()  # warm-up: first-use imports may write bytecode caches
    _watch_writes()
    caplog.set_level(logging.DEBUG)
    _WATCH.set()
    try:
        exercise()
    finally:
        _WATCH.clear()
    assert _WRITES == [], f"files written while handling uploads: {_WRITES}"
    out, err = capfd.readouterr()
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    for text in (out, err, logged):
        assert marker not in text
    assert all(len(rec.getMessage()) < 2000 for rec in caplog.records)
