"""``WS /v1/stream``: live analysis of camera frames.

Protocol (JSON text messages from the server, binary frames from the client):

1. The server accepts and sends ``{"type": "hello", "max_fps", "max_frame_bytes", "auth_required",
   "missing_tasks"}``.
2. If an API key is configured and the upgrade request carried none (browsers cannot set headers on a WebSocket),
   the client's first message must be ``{"type": "auth", "api_key": "..."}``; a wrong key closes with 1008.
3. Each binary message is one encoded image (JPEG/PNG). The server answers each, in order, with
   ``{"type": "result", "seq", "server_ms", "result": <ImageResult>}`` or
   ``{"type": "error", "seq", "error": {"code", "message"}}`` (busy, too large, not an image, timeout...).

Clients send the next frame when the previous answer arrives; the server also paces a stream to ``max_fps``.
Query parameters are those of ``/v1/analyze`` (``min_score``, ``max_side``, ``max_faces``, ``min_face_size``,
``heads``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..errors import FaceLensError
from .engine import AnalyzeOptions, Engine
from .errors import ApiError, error_body, from_facelens_error, too_large
from .options import key_matches, options_from_query
from .settings import ServeSettings
from .uploads import require_image

log = logging.getLogger("facelens.serve")

AUTH_TIMEOUT_S = 10.0
POLICY_VIOLATION = 1008


def origin_allowed(settings: ServeSettings, headers: Any) -> bool:
    """Same-origin pages, configured CORS origins and non-browser clients (no ``Origin``) may connect.

    CORS does not apply to WebSockets, so without this any web page could stream to a local server.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin in settings.cors_origins or "*" in settings.cors_origins:
        return True
    return urlsplit(origin).netloc.lower() == str(headers.get("host", "")).lower()


def stream_router(settings: ServeSettings, engine: Engine) -> APIRouter:
    """The router holding ``/v1/stream``."""
    router = APIRouter()

    @router.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        if not origin_allowed(settings, ws.headers):
            await ws.close(code=POLICY_VIOLATION, reason="origin not allowed")
            return
        try:
            opts = options_from_query(settings, ws.query_params, ws.query_params.getlist("heads"))
            engine.check_heads(opts.heads)
        except ApiError as exc:
            await ws.accept()
            await ws.send_json({"type": "error", "seq": None, **exc.to_dict()})
            await ws.close(code=POLICY_VIOLATION, reason=exc.code)
            return
        await ws.accept()
        engine.open_streams += 1
        try:
            authed = key_matches(settings, ws.headers)
            await ws.send_json(
                {
                    "type": "hello",
                    "max_fps": settings.stream_max_fps,
                    "max_frame_bytes": settings.max_upload_bytes,
                    "auth_required": not authed,
                    "missing_tasks": engine.missing_tasks(),
                }
            )
            if not authed and not await _authenticate(ws, settings):
                return
            await _serve_frames(ws, settings, engine, opts)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away, possibly mid-frame
            return
        finally:
            engine.open_streams -= 1

    return router


async def _authenticate(ws: WebSocket, settings: ServeSettings) -> bool:
    try:
        msg = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S)
        key = json.loads(msg).get("api_key") if msg.startswith("{") else None
    except (asyncio.TimeoutError, KeyError, ValueError, AttributeError):
        key = None
    if isinstance(key, str) and key_matches(settings, {"x-api-key": key}):
        await ws.send_json({"type": "auth", "ok": True})
        return True
    await ws.send_json({"type": "error", "seq": None, **error_body("unauthorized", "missing or wrong API key")})
    await ws.close(code=POLICY_VIOLATION, reason="unauthorized")
    return False


async def _serve_frames(ws: WebSocket, settings: ServeSettings, engine: Engine, opts: AnalyzeOptions) -> None:
    min_interval = 1.0 / settings.stream_max_fps if settings.stream_max_fps > 0 else 0.0
    last = 0.0
    seq = 0
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        data = msg.get("bytes")
        if data is None:  # text: pings and stray control messages are ignored
            continue
        wait = last + min_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        last = time.monotonic()
        t0 = time.perf_counter()
        try:
            if len(data) > settings.max_upload_bytes:
                raise too_large("frame", settings.max_upload_bytes)
            require_image(data, "frame")
            with engine.acquire() as slot:
                work = slot.run(engine.analyze_bytes, data, None, opts)
                try:
                    result = await asyncio.wait_for(work, settings.timeout_s)
                except asyncio.TimeoutError:
                    raise ApiError(504, "timeout", f"frame took longer than {settings.timeout_s:g} s") from None
            reply: dict[str, Any] = {
                "type": "result",
                "seq": seq,
                "server_ms": round((time.perf_counter() - t0) * 1000, 1),
                "result": result.to_dict(),
            }
        except FaceLensError as exc:
            reply = {"type": "error", "seq": seq, **from_facelens_error(exc).to_dict()}
        except ApiError as exc:
            reply = {"type": "error", "seq": seq, **exc.to_dict()}
        except Exception:  # noqa: BLE001 - a frame that trips a bug is that frame's error, the stream goes on
            log.exception("stream frame %s failed", seq)
            reply = {"type": "error", "seq": seq, **error_body("internal_error", "internal error")}
        await ws.send_json(reply)
        seq += 1
