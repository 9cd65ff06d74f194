"""Run the app with uvicorn."""

from __future__ import annotations

from typing import Any

from .settings import ServeSettings


def uvicorn_config(settings: ServeSettings, **overrides: Any) -> Any:
    """A ``uvicorn.Config`` for the app: loopback by default, WebSocket messages capped at the upload limit.

    Args:
        settings: Server settings.
        **overrides: Further ``uvicorn.Config`` arguments (``log_level``, ``access_log``...).

    """
    import uvicorn

    from .app import create_app

    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws_max_size": settings.max_upload_bytes + 1024,
        "timeout_keep_alive": 5,
        "server_header": False,
        "log_level": "info",
    }
    kwargs.update(overrides)
    return uvicorn.Config(create_app(settings), **kwargs)


def run_server(settings: ServeSettings, **overrides: Any) -> None:
    """Serve until interrupted (blocking)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(settings, **overrides)).run()
