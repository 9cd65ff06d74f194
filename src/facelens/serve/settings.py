"""Settings of the HTTP server (``facelens serve``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""Largest accepted request body of ``/v1/analyze`` and largest single image anywhere (10 MiB)."""

DEFAULT_SERVE_MAX_PIXELS = 25_000_000
"""The server's pixel limit: lower than the library's, since a decoded image costs 3 bytes a pixel per request."""


def default_threads() -> int:
    """Inference threads by default: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs to know; :func:`facelens.serve.create_app` takes one of these.

    Attributes:
        host: Interface to listen on (loopback by default; use ``0.0.0.0`` deliberately).
        port: TCP port.
        threads: Inference threads (each has its own detector; head sessions are shared).
        max_concurrency: Requests (and stream frames) in flight at once; beyond this the answer is 503 with
            ``Retry-After`` instead of an unbounded queue. ``None``: twice ``threads``.
        max_upload_bytes: Largest body of ``/v1/analyze`` and largest image in a batch or a stream frame.
        max_batch_bytes: Largest body of ``/v1/analyze/batch``.
        max_batch_images: Most images in one batch request.
        max_pixels: Refuse images with more pixels than this (decompression-bomb guard).
        api_key: When set, ``/v1/*`` needs it as ``X-API-Key`` or ``Authorization: Bearer``.
        cors_origins: Origins allowed to call the API from a browser; empty: CORS off.
        timeout_s: Time limit of one request (upload, decoding and analysis), answered with 504.
        min_score: Default minimum detection score (a request may ask for another).
        max_side: Default detector working resolution (``None``: full size).
        stream_max_fps: Most frames a second one WebSocket stream is analysed at.
        onnx_threads: ONNX Runtime threads per head session (0: its default).

    """

    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = field(default_factory=default_threads)
    max_concurrency: int | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_batch_bytes: int = 4 * DEFAULT_MAX_UPLOAD_BYTES
    max_batch_images: int = 16
    max_pixels: int | None = DEFAULT_SERVE_MAX_PIXELS
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    timeout_s: float = 30.0
    min_score: float = 0.6
    max_side: int | None = 640
    stream_max_fps: float = 15.0
    onnx_threads: int = 0

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if self.max_upload_bytes < 1 or self.max_batch_bytes < 1 or self.max_batch_images < 1:
            raise ValueError("upload and batch limits must be positive")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError("min_score must be in [0, 1]")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be blank")

    @property
    def concurrency(self) -> int:
        """The effective concurrency limit."""
        return self.max_concurrency if self.max_concurrency is not None else 2 * self.threads
