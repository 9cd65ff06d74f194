"""The FastAPI application: :func:`create_app` builds it from :class:`ServeSettings`.

Routes: ``POST /v1/analyze``, ``POST /v1/analyze/batch``, ``GET /v1/models``, ``WS /v1/stream``, ``GET /healthz``,
``GET /readyz``, the web page at ``/`` (files under ``static/``) and the OpenAPI docs at ``/docs``.
"""

# No ``from __future__ import annotations`` here: FastAPI must evaluate the route signatures, which refer to
# dependencies defined inside create_app.
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import FaceLensError
from ..types import ImageResult
from .engine import AnalyzeOptions, Engine, Slot
from .errors import STATUS_CODES, ApiError, error_body, from_facelens_error
from .options import build_options, key_matches, unauthorized
from .settings import ServeSettings
from .uploads import (
    RAW_IMAGE_TYPES,
    FilePart,
    check_content_length,
    read_limited,
    read_multipart,
    require_image,
    sniff_image_type,
)

log = logging.getLogger("facelens.serve")
T = TypeVar("T")

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
        "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image: a multipart/form-data field `image`, or the raw bytes with an image content "
        "type. The format is checked from the bytes (JPEG, PNG, GIF, WebP, BMP, TIFF).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Several multipart/form-data fields `images`, one image each.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["images"],
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key"},
    413: {"description": "upload or image over the size / pixel limit"},
    415: {"description": "not an image"},
    422: {"description": "corrupt image or invalid parameter"},
    503: {"description": "at the concurrency limit (see Retry-After)"},
    504: {"description": "request timed out"},
}


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the application.

    Models load in the lifespan start-up (once; shared by every request); inference runs in a bounded thread
    pool, and a concurrency limit answers 503 instead of queueing.

    Args:
        settings: Server settings (defaults if omitted).

    Returns:
        The FastAPI app; run it with uvicorn (see :func:`facelens.serve.runner.run_server`).

    """
    settings = settings or ServeSettings()
    engine = Engine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(engine.start)
        if engine.error:
            log.error("facelens serve: models failed to load: %s", engine.error)
        yield
        await asyncio.to_thread(engine.stop)

    app = FastAPI(
        title="facelens",
        version=__version__,
        description="Offline face analysis: faces, landmarks, age, gender, ethnicity and facial attributes.",
        lifespan=lifespan,
        docs_url=None,  # served below, from local files when possible
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    _install_error_handlers(app)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-Facelens-Faces"],
            max_age=600,
        )

    app.include_router(_api_router(settings, engine))
    from .stream import stream_router

    app.include_router(stream_router(settings, engine))

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: models are loaded", responses={503: {}})
    async def readyz() -> JSONResponse:
        if not engine.ready:
            msg = f"models are not loaded: {engine.error}" if engine.error else "models are loading"
            return JSONResponse(error_body("not_ready", msg), status_code=503, headers={"Retry-After": "5"})
        return JSONResponse(
            {
                "status": "ready",
                "detector": "yunet",
                "models": [h.name for h in engine.heads],
                "missing_tasks": engine.missing_tasks(),
            }
        )

    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)
    return app


def swagger_assets_dir() -> Path | None:
    """The Swagger UI files of the optional ``swagger-ui-py`` package, so ``/docs`` works offline; else ``None``."""
    try:
        import swagger_ui
    except ImportError:
        return None
    d = Path(swagger_ui.__file__).resolve().parent / "static"
    return d if all((d / n).is_file() for n in _SWAGGER_FILES) else None


_SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from local files (``swagger-ui-py`` installed) or, failing that, from its CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse

    assets = swagger_assets_dir()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if assets is None:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="facelens API", swagger_favicon_url="data:,")
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="facelens API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if assets is None or name not in _SWAGGER_FILES:
            raise ApiError(404, "not_found", "no such file")
        return FileResponse(assets / name, media_type=_SWAGGER_FILES[name], headers={"Cache-Control": "max-age=86400"})


def _install_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": {"code", "message"}}``."""

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return JSONResponse(error_body("invalid_parameter", "; ".join(parts)), status_code=422)

    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("facelens serve: internal error: %s", type(exc).__name__)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)


async def within(timeout_s: float, work: Awaitable[T]) -> T:
    """Await ``work`` with a time limit.

    Raises:
        ApiError: 504 when it runs out.

    """
    try:
        return await asyncio.wait_for(work, timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(504, "timeout", f"the request took longer than the limit of {timeout_s:g} s") from None


def _api_router(settings: ServeSettings, engine: Engine) -> APIRouter:
    def require_key(request: Request) -> None:
        if not key_matches(settings, request.headers):
            raise unauthorized()

    def options(
        min_score: Annotated[float | None, Query(ge=0.0, le=1.0, description="minimum detection score")] = None,
        max_side: Annotated[int | None, Query(ge=0, le=8192, description="detector working size; 0: full")] = None,
        max_faces: Annotated[int | None, Query(ge=1, le=1000, description="keep at most N faces")] = None,
        min_face_size: Annotated[float | None, Query(ge=0.0, description="ignore smaller faces (px)")] = None,
        heads: Annotated[list[str] | None, Query(description="head models (default all; 'none': detection)")] = None,
    ) -> AnalyzeOptions:
        opts = build_options(
            settings,
            min_score=min_score,
            max_side=max_side,
            max_faces=max_faces,
            min_face_size=min_face_size,
            heads=heads,
        )
        engine.check_heads(opts.heads)
        return opts

    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=_ERRORS)

    @router.get("/models", tags=["models"], summary="The detector and the loaded head models")
    async def models() -> dict[str, Any]:
        return {"detector": "yunet", "models": engine.models(), "missing_tasks": engine.missing_tasks()}

    @router.post(
        "/analyze",
        tags=["analyze"],
        summary="Analyse one image",
        description="Returns the `ImageResult` JSON of docs/schema.md, or with `annotate=true` the image with "
        "the faces drawn on it (JPEG, or PNG with `format=png`; header `X-Facelens-Faces` gives the count).",
        openapi_extra=_IMAGE_BODY,
        response_model=None,
    )
    async def analyze(
        request: Request,
        opts: Annotated[AnalyzeOptions, Depends(options)],
        annotate: Annotated[bool, Query(description="return the annotated image instead of JSON")] = False,
        format: Annotated[Literal["jpeg", "png"], Query(description="annotated image format")] = "jpeg",  # noqa: A002
    ) -> Response:
        ctype = request.headers.get("content-type", "").lower()
        multipart = ctype.startswith("multipart/form-data")
        if not multipart and ctype and not ctype.startswith(RAW_IMAGE_TYPES):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send the image as multipart/form-data field 'image' or as a raw image body, not {ctype!r}",
            )
        limit = settings.max_upload_bytes
        check_content_length(request.headers.get("content-length"), limit, "request body")
        with engine.acquire() as slot:
            return await within(settings.timeout_s, _analyze_one(request, slot, opts, multipart, annotate, format))

    async def _analyze_one(
        request: Request, slot: Slot, opts: AnalyzeOptions, multipart: bool, annotate: bool, fmt: str
    ) -> Response:
        limit = settings.max_upload_bytes
        if multipart:
            parts = await read_multipart(
                request.stream(),
                request.headers["content-type"],
                fields=("image",),
                max_body_bytes=limit,
                max_part_bytes=limit,
                max_parts=1,
            )
            if not parts:
                raise ApiError(422, "missing_image", "no 'image' field in the multipart body")
            data, name = parts[0].data, parts[0].filename
        else:
            data, name = await read_limited(request.stream(), limit, "request body"), None
        require_image(data, name or "upload")
        t0 = time.perf_counter()
        try:
            if annotate:
                image, result = await slot.run(engine.annotate_bytes, data, name, opts, fmt)
                headers = {"X-Facelens-Faces": str(len(result.faces)), **_timing(t0)}
                return Response(image, media_type=f"image/{fmt}", headers=headers)
            result = await slot.run(engine.analyze_bytes, data, name, opts)
        except FaceLensError as exc:
            raise from_facelens_error(exc) from None
        return JSONResponse(result.to_dict(), headers=_timing(t0))

    @router.post(
        "/analyze/batch",
        tags=["analyze"],
        summary="Analyse several images",
        description='One `ImageResult` per `images` part, in order, as `{"results": [...]}`. A bad image gives a '
        "result with `error` and `error_code` set; the others are analysed as usual.",
        openapi_extra=_BATCH_BODY,
    )
    async def analyze_batch(request: Request, opts: Annotated[AnalyzeOptions, Depends(options)]) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data fields 'images'")
        check_content_length(request.headers.get("content-length"), settings.max_batch_bytes, "request body")
        with engine.acquire() as slot:
            return await within(settings.timeout_s, _batch(request, slot, opts, ctype))

    async def _batch(request: Request, slot: Slot, opts: AnalyzeOptions, ctype: str) -> JSONResponse:
        parts = await read_multipart(
            request.stream(),
            ctype,
            fields=("images", "image"),
            max_body_bytes=settings.max_batch_bytes,
            max_part_bytes=settings.max_upload_bytes,
            max_parts=settings.max_batch_images,
        )
        if not parts:
            raise ApiError(422, "missing_image", "no 'images' fields in the multipart body")
        t0 = time.perf_counter()
        results = await slot.run(_analyze_parts, engine, parts, opts)
        return JSONResponse({"results": [r.to_dict() for r in results]}, headers=_timing(t0))

    return router


def _analyze_parts(engine: Engine, parts: list[FilePart], opts: AnalyzeOptions) -> list[ImageResult]:
    """Analyse every part in turn (in a pool thread); a bad part becomes a result with ``error`` set."""
    out = []
    for i, part in enumerate(parts):
        name = part.filename or f"image {i}"
        if not part.data:
            out.append(ImageResult(part.filename, 0, 0, (), f"{name}: empty upload", "unreadable_image"))
        elif sniff_image_type(part.data) is None:
            msg = f"{name}: not an image (checked by content)"
            out.append(ImageResult(part.filename, 0, 0, (), msg, "unsupported_media_type"))
        else:
            try:
                out.append(engine.analyze_bytes(part.data, part.filename, opts))
            except FaceLensError as exc:
                out.append(ImageResult(part.filename, 0, 0, (), str(exc), exc.code))
            except Exception:  # noqa: BLE001 - one part must not lose the others' results
                log.exception("batch part %s failed", name)
                out.append(ImageResult(part.filename, 0, 0, (), f"{name}: internal error", "internal_error"))
    return out


def _timing(t0: float) -> dict[str, str]:
    return {"Server-Timing": f"analyze;dur={(time.perf_counter() - t0) * 1000:.1f}"}
