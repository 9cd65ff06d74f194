"""HTTP errors of the server: every failure is answered as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import FaceLensError, ImageTooLarge, ModelError, UnreadableImage, UnsupportedInput

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "busy",
    504: "timeout",
}
"""The error ``code`` used for a status when nothing more specific applies."""


class ApiError(Exception):
    """An error answered to the client with a status, a stable code and a message.

    Args:
        status: HTTP status.
        code: Machine-readable code (``payload_too_large``, ``unreadable_image``...).
        message: Human-readable explanation; never contains uploaded data.
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).

    """

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message}}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message}}


def from_facelens_error(exc: FaceLensError) -> ApiError:
    """Map a library error to its HTTP answer (413 too large, 422 unreadable, 415 unsupported, 500 model)."""
    if isinstance(exc, ImageTooLarge):  # its hint (raise --max-pixels) is for the operator, not the client
        return ApiError(413, exc.code, exc.message)
    if isinstance(exc, UnreadableImage):
        return ApiError(422, exc.code, str(exc))
    if isinstance(exc, UnsupportedInput):
        return ApiError(415, exc.code, str(exc))
    if isinstance(exc, ModelError):
        return ApiError(500, exc.code, str(exc))
    return ApiError(422, exc.code, str(exc))


def too_large(what: str, limit: int) -> ApiError:
    """The 413 answer for a body or image over ``limit`` bytes."""
    return ApiError(413, "payload_too_large", f"{what} exceeds the upload limit of {_size(limit)}")


def _size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{n:,} bytes"
