"""``facelens serve``: a REST API, a WebSocket stream and a web page for face analysis (needs the [serve] extra).

Example:
    >>> from facelens.serve import ServeSettings, create_app
    >>> app = create_app(ServeSettings(max_concurrency=8))  # run with uvicorn

Importing this package needs nothing beyond facelens itself; :func:`create_app` imports FastAPI.

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServeSettings

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'facelens.serve' has no attribute {name!r}")
