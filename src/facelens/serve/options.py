"""Per-request options from query parameters (shared by the HTTP routes and the WebSocket stream)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from .engine import AnalyzeOptions
from .errors import ApiError
from .settings import ServeSettings

MAX_SIDE_LIMIT = 8192
MAX_FACES_LIMIT = 1000


def parse_heads(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """``heads=a,b`` or repeated ``heads=a&heads=b``; ``heads=none`` runs no head (detection only)."""
    if not values:
        return None
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    if any(n.endswith(".onnx") or "/" in n or "\\" in n for n in names):
        raise ApiError(422, "invalid_parameter", "heads: give installed model names, not file paths")
    return names


def build_options(
    settings: ServeSettings,
    *,
    min_score: float | None = None,
    max_side: int | None = None,
    max_faces: int | None = None,
    min_face_size: float | None = None,
    heads: Sequence[str] | None = None,
) -> AnalyzeOptions:
    """Options of one request, with the server's defaults for what it leaves out (``max_side=0``: full size).

    Raises:
        ApiError: 422 for a value out of range.

    """
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ApiError(422, "invalid_parameter", "min_score must be between 0 and 1")
    if max_side is not None and not 0 <= max_side <= MAX_SIDE_LIMIT:
        raise ApiError(422, "invalid_parameter", f"max_side must be between 0 (full size) and {MAX_SIDE_LIMIT}")
    if max_faces is not None and not 1 <= max_faces <= MAX_FACES_LIMIT:
        raise ApiError(422, "invalid_parameter", f"max_faces must be between 1 and {MAX_FACES_LIMIT}")
    if min_face_size is not None and min_face_size < 0:
        raise ApiError(422, "invalid_parameter", "min_face_size must be >= 0")
    side = settings.max_side if max_side is None else (max_side or None)
    return AnalyzeOptions(
        min_score=settings.min_score if min_score is None else float(min_score),
        max_side=side,
        max_faces=max_faces,
        min_face_size=float(min_face_size or 0.0),
        heads=parse_heads(heads),
    )


def options_from_query(settings: ServeSettings, query: Mapping[str, str], heads: Sequence[str]) -> AnalyzeOptions:
    """:func:`build_options` from raw query strings (the WebSocket route, which FastAPI does not validate).

    Raises:
        ApiError: 422 for a value that is not a number or out of range.

    """

    def num(name: str, kind: type) -> object:
        raw = query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return kind(raw)
        except ValueError:
            raise ApiError(422, "invalid_parameter", f"{name} must be a number") from None

    return build_options(
        settings,
        min_score=num("min_score", float),  # type: ignore[arg-type]
        max_side=num("max_side", int),  # type: ignore[arg-type]
        max_faces=num("max_faces", int),  # type: ignore[arg-type]
        min_face_size=num("min_face_size", float),  # type: ignore[arg-type]
        heads=heads,
    )


def key_matches(settings: ServeSettings, headers: Mapping[str, str]) -> bool:
    """True when no key is configured, or ``X-API-Key`` / ``Authorization: Bearer`` carries the right one."""
    if settings.api_key is None:
        return True
    given = headers.get("x-api-key")
    if given is None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    return given is not None and hmac.compare_digest(given.encode(), settings.api_key.encode())


def unauthorized() -> ApiError:
    """The 401 answer."""
    return ApiError(
        401,
        "unauthorized",
        "this server needs an API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
        {"WWW-Authenticate": 'Bearer realm="facelens"'},
    )
