"""``facelens serve``: the command line of the HTTP server."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from .settings import DEFAULT_SERVE_MAX_PIXELS, ServeSettings, default_threads

API_KEY_ENV = "FACELENS_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="run the REST API, WebSocket stream and web page (needs the [serve] extra)",
        description="Serve face analysis over HTTP: POST /v1/analyze, POST /v1/analyze/batch, WS /v1/stream, "
        "GET /v1/models, /healthz, /readyz, API docs at /docs and a web page at /. Listens on 127.0.0.1 unless "
        "told otherwise. See docs/serve.md.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--workers-threads", type=int, default=default_threads(), metavar="N",
        help=f"inference threads (default {default_threads()}: the CPU count, at most 4)",
    )  # fmt: skip
    p.add_argument(
        "--max-concurrency", type=int, default=None, metavar="N",
        help="requests in flight at once; more are answered 503 with Retry-After (default: 2 x threads)",
    )  # fmt: skip
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload / image in MB (default 10)")
    p.add_argument("--max-batch-mb", type=float, default=40.0, help="largest batch request in MB (default 40)")
    p.add_argument("--max-batch-images", type=int, default=16, help="most images in one batch (default 16)")
    p.add_argument(
        "--max-pixels", type=int, default=DEFAULT_SERVE_MAX_PIXELS,
        help=f"refuse images with more pixels than this (default {DEFAULT_SERVE_MAX_PIXELS:,})",
    )  # fmt: skip
    p.add_argument(
        "--api-key", default=None, metavar="KEY",
        help=f"require this key on /v1/* (X-API-Key or Authorization: Bearer); prefer the {API_KEY_ENV} "
        "environment variable, which other users cannot read from the process list",
    )  # fmt: skip
    p.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow browser calls from this origin, e.g. https://app.example (repeatable; default: CORS off)",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="request time limit (default 30 s)")
    p.add_argument("--min-score", type=float, default=0.6, help="default minimum detection score (default 0.6)")
    p.add_argument("--max-side", type=int, default=640, help="default detector working size (default 640; 0: full)")
    p.add_argument("--stream-max-fps", type=float, default=15.0, help="frame rate cap per stream (default 15)")
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default info)",
    )  # fmt: skip
    p.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    p.set_defaults(func=run_serve)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """Build :class:`ServeSettings` from parsed arguments (the API key falls back to ``FACELENS_API_KEY``)."""
    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    upload = int(args.max_upload_mb * 1024 * 1024)
    return ServeSettings(
        host=args.host,
        port=args.port,
        threads=args.workers_threads,
        max_concurrency=args.max_concurrency,
        max_upload_bytes=upload,
        max_batch_bytes=max(upload, int(args.max_batch_mb * 1024 * 1024)),
        max_batch_images=args.max_batch_images,
        max_pixels=args.max_pixels or None,
        api_key=key,
        cors_origins=tuple(args.cors_origin),
        timeout_s=args.timeout,
        min_score=args.min_score,
        max_side=args.max_side or None,
        stream_max_fps=args.stream_max_fps,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; returns 2 on a bad setting or a missing extra."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"error: facelens serve needs the [serve] extra: pip install 'facelens[serve]' ({exc})", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(settings.host) and settings.api_key is None:
        print(
            f"warning: listening on {settings.host} without an API key: anyone who can reach this port can use it "
            f"(set {API_KEY_ENV})",
            file=sys.stderr,
        )
    from .runner import run_server

    try:
        run_server(settings, log_level=args.log_level, access_log=not args.no_access_log)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    return 0
