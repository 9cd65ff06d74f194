"""Reading uploads without touching the disk: size limits while streaming, magic numbers, multipart in memory.

Starlette's ``request.form()`` spools every file part above 1 MB to a temporary file. The server never calls it:
bodies are read chunk by chunk from the ASGI stream into memory, counted as they arrive (so an oversized upload is
refused after at most ``limit`` bytes, whatever its ``Content-Length`` claims), and multipart bodies are split by
``python-multipart``'s push parser, fed the same chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from .errors import ApiError, too_large

RAW_IMAGE_TYPES = ("image/", "application/octet-stream")
"""Content types under which a body is taken as one raw image (its format is still sniffed from the bytes)."""


def sniff_image_type(data: bytes) -> str | None:
    """The image type that ``data`` starts with (by magic number), or ``None`` if it is not a known image.

    Recognises JPEG, PNG, GIF, WebP, BMP and TIFF: the formats :func:`facelens.io.load_image` reads.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and len(data) >= 26:
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return None


def require_image(data: bytes, name: str) -> str:
    """Check that ``data`` is an image by its magic number; returns its type.

    Raises:
        ApiError: 422 for an empty upload, 415 for bytes that are not a supported image format.

    """
    if not data:
        raise ApiError(422, "unreadable_image", f"{name}: empty upload")
    kind = sniff_image_type(data)
    if kind is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{name}: not an image (expected JPEG, PNG, GIF, WebP, BMP or TIFF data; checked by content, "
            "not by the declared type)",
        )
    return kind


def check_content_length(header: str | None, limit: int, what: str) -> None:
    """Refuse a request whose declared ``Content-Length`` is over ``limit`` before reading any of it.

    Raises:
        ApiError: 413 when the declared length is over the limit, 400 when it is malformed.

    """
    if header is None:
        return
    try:
        length = int(header)
    except ValueError:
        raise ApiError(400, "bad_request", "malformed Content-Length header") from None
    if length > limit:
        raise too_large(what, limit)


async def read_limited(chunks: AsyncIterator[bytes], limit: int, what: str) -> bytes:
    """Read a whole body into memory, stopping with 413 as soon as more than ``limit`` bytes arrive.

    Raises:
        ApiError: 413 when the body is over the limit.

    """
    buf = bytearray()
    async for chunk in chunks:
        if len(buf) + len(chunk) > limit:
            raise too_large(what, limit)
        buf += chunk
    return bytes(buf)


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart body, held in memory."""

    field: str
    filename: str | None
    data: bytes


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type.

    Raises:
        ApiError: 400 when there is none.

    """
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data body without a boundary")
    return boundary


class MultipartCollector:
    """Collect the file parts of a multipart body in memory, enforcing per-part, count and total limits.

    Args:
        boundary: The multipart boundary.
        fields: Names of the fields to keep; parts of other fields are parsed and dropped.
        max_part_bytes: Largest part kept (413 beyond).
        max_parts: Most parts kept (413 beyond).

    """

    def __init__(self, boundary: bytes, fields: tuple[str, ...], max_part_bytes: int, max_parts: int) -> None:
        from python_multipart import MultipartParser

        self.fields = fields
        self.max_part_bytes = max_part_bytes
        self.max_parts = max_parts
        self.parts: list[FilePart] = []
        self._headers: dict[bytes, bytes] = {}
        self._field_name = bytearray()
        self._field_value = bytearray()
        self._data: bytearray | None = None
        self._name = ""
        self._filename: str | None = None
        self._ended = False
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the body.

        Raises:
            ApiError: 400 for a malformed body, 413 for a part or part count over the limits.

        """
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise ApiError(400, "bad_request", f"malformed multipart body ({exc})") from None

    def finish(self) -> list[FilePart]:
        """End parsing and return the kept parts.

        Raises:
            ApiError: 400 if the body ended before its closing boundary.

        """
        self._parser.finalize()
        if not self._ended:
            raise ApiError(400, "bad_request", "malformed multipart body (no closing boundary)")
        return self.parts

    def _part_begin(self) -> None:
        self._headers = {}
        self._data = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._field_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field_name).lower()] = bytes(self._field_value)
        self._field_name.clear()
        self._field_value.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        fn = params.get(b"filename")
        self._filename = fn.decode("utf-8", "replace") if fn is not None else None
        if self._name in self.fields:
            if len(self.parts) >= self.max_parts:
                raise ApiError(413, "too_many_images", f"more than {self.max_parts} images in one request")
            self._data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is None:
            return
        if len(self._data) + (end - start) > self.max_part_bytes:
            raise too_large(f"image {self._filename or self._name!r}", self.max_part_bytes)
        self._data += data[start:end]

    def _part_end(self) -> None:
        if self._data is not None:
            self.parts.append(FilePart(self._name, self._filename, bytes(self._data)))
        self._data = None

    def _end(self) -> None:
        self._ended = True


async def read_multipart(
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    fields: tuple[str, ...],
    max_body_bytes: int,
    max_part_bytes: int,
    max_parts: int,
) -> list[FilePart]:
    """Stream a ``multipart/form-data`` body through the parser, in memory, enforcing every limit as bytes arrive.

    Raises:
        ApiError: 400 malformed, 413 over a limit.

    """
    collector = MultipartCollector(multipart_boundary(content_type), fields, max_part_bytes, max_parts)
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_body_bytes:
            raise too_large("request body", max_body_bytes)
        collector.feed(chunk)
    return collector.finish()
