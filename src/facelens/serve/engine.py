"""The inference side of the server: shared models, a bounded thread pool and a concurrency limit.

Models load once (:meth:`Engine.start`, called by the app's lifespan). Each request gets a cheap
:class:`facelens.pipeline.FaceAnalyzer` whose detector comes from a per-thread cache and whose heads are the shared,
already loaded ones, so per-request options (score threshold, working size, face filters, head choice) cost
nothing and results are exactly those of ``facelens analyze`` with the same options.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..detect import Detector, create_detector
from ..errors import FaceLensError
from ..heads import HeadModel, unanswered_tasks
from ..io import load_image
from ..pipeline import AnalyzerConfig, FaceAnalyzer
from ..types import ImageResult
from .errors import ApiError
from .settings import ServeSettings

T = TypeVar("T")

WARMUP_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "astronaut.jpg"
_DETECTORS_PER_THREAD = 4


@dataclass(frozen=True)
class AnalyzeOptions:
    """Per-request options (the query parameters), mirroring ``facelens analyze``.

    Attributes:
        min_score: Minimum detection score.
        max_side: Detector working resolution (``None``: full size).
        max_faces: Keep at most this many faces.
        min_face_size: Drop faces smaller than this (px, shorter side).
        heads: Head names to run; ``None``: all loaded, ``()``: none (detection only).

    """

    min_score: float = 0.6
    max_side: int | None = 640
    max_faces: int | None = None
    min_face_size: float = 0.0
    heads: tuple[str, ...] | None = None


class Limiter:
    """A non-blocking counter of work in flight: :meth:`try_acquire` fails instead of waiting (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Slots taken now."""
        return self._in_flight

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        with self._lock:
            if self._in_flight >= self.limit:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)


class _RequestAnalyzer(FaceAnalyzer):
    """A :class:`FaceAnalyzer` that borrows the engine's per-thread detectors and shared heads."""

    def __init__(self, config: AnalyzerConfig, engine: Engine) -> None:
        super().__init__(config)
        self._engine = engine

    @property
    def detector(self) -> Detector:  # type: ignore[override]
        """The calling thread's detector for this request's score threshold and working size."""
        return self._engine.detector_for(self.config.score_threshold, self.config.max_side)

    @property
    def heads(self) -> list[HeadModel]:  # type: ignore[override]
        """The engine's loaded heads, filtered by this request's choice."""
        return self._engine.select_heads(self.config.heads)


class Engine:
    """Models, the inference thread pool and the concurrency limit of one app.

    Args:
        settings: The server settings.

    """

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.limiter = Limiter(settings.concurrency)
        self._local = threading.local()
        self._heads: list[HeadModel] = []
        self._pool: ThreadPoolExecutor | None = None
        self.ready = False
        self.error: str | None = None
        self.open_streams = 0
        """WebSocket streams connected now (changed on the event loop only)."""

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the heads, start the pool and warm a detector in every thread (blocking; runs once at start-up).

        A failure is recorded in :attr:`error` (``/readyz`` reports it) instead of raised, so the server still
        answers health checks.
        """
        s = self.settings
        self._pool = ThreadPoolExecutor(max_workers=s.threads, thread_name_prefix="facelens-infer")
        try:
            self._heads = FaceAnalyzer(AnalyzerConfig(heads=None, threads=s.onnx_threads)).heads
            image = load_image(WARMUP_IMAGE)
            barrier = threading.Barrier(s.threads)
            opts = AnalyzeOptions(min_score=s.min_score, max_side=s.max_side)

            def warm() -> None:
                try:  # one warm-up per thread, so every thread builds its detector now
                    barrier.wait(timeout=30)
                except threading.BrokenBarrierError:
                    pass
                self.analyze_array(image, None, opts)

            for fut in [self._pool.submit(warm) for _ in range(s.threads)]:
                fut.result()
            self.ready = True
        except FaceLensError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any start-up failure is reported by /readyz, not a crash
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """Stop the pool (waits for running work)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.ready = False

    # -- models ----------------------------------------------------------------------------------------------

    @property
    def heads(self) -> list[HeadModel]:
        """The loaded head models."""
        return self._heads

    def missing_tasks(self) -> list[str]:
        """Tasks no loaded head answers."""
        return unanswered_tasks(self._heads)

    def models(self) -> list[dict[str, Any]]:
        """Public description of the loaded heads (no file paths)."""
        out = []
        for h in self._heads:
            md = h.metadata
            out.append(
                {
                    "name": md.name,
                    "version": md.version,
                    "tasks": list(md.tasks),
                    "input_size": md.input.size,
                    "license": md.license,
                    "description": md.description,
                    "metrics": md.metrics,
                }
            )
        return out

    def check_heads(self, names: tuple[str, ...] | None) -> None:
        """Validate a request's head names before any work.

        Raises:
            ApiError: 422 naming the unknown heads and the loaded ones.

        """
        if not names:
            return
        known = {h.name for h in self._heads}
        unknown = [n for n in names if n not in known]
        if unknown:
            have = ", ".join(sorted(known)) or "none"
            raise ApiError(422, "unknown_head", f"head model(s) not loaded: {', '.join(unknown)} (loaded: {have})")

    def select_heads(self, names: tuple[str, ...] | None) -> list[HeadModel]:
        """The loaded heads named (all for ``None``)."""
        if names is None:
            return self._heads
        return [h for h in self._heads if h.name in names]

    def detector_for(self, score: float, max_side: int | None) -> Detector:
        """The calling thread's detector for these settings (a small per-thread LRU cache)."""
        cache: OrderedDict[tuple[float, int | None], Detector] | None = getattr(self._local, "detectors", None)
        if cache is None:
            cache = self._local.detectors = OrderedDict()
        key = (score, max_side)
        det = cache.get(key)
        if det is None:
            det = create_detector("yunet", score_threshold=score, max_side=max_side)
            cache[key] = det
            while len(cache) > _DETECTORS_PER_THREAD:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return det

    # -- work (runs in the pool) -----------------------------------------------------------------------------

    def analyzer(self, opts: AnalyzeOptions) -> FaceAnalyzer:
        """A request analyzer for these options."""
        cfg = AnalyzerConfig(
            score_threshold=opts.min_score,
            max_side=opts.max_side,
            heads=opts.heads,
            min_face_size=opts.min_face_size,
            max_faces=opts.max_faces,
            max_pixels=self.settings.max_pixels,
            threads=self.settings.onnx_threads,
        )
        return _RequestAnalyzer(cfg, self)

    def decode(self, data: bytes, name: str) -> np.ndarray:
        """Decode image bytes in memory (pixel limit checked before decoding)."""
        buf = io.BytesIO(data)
        buf.name = name  # type: ignore[attr-defined]  # names the upload in error messages
        return load_image(buf, max_pixels=self.settings.max_pixels)

    def analyze_array(self, image: np.ndarray, path: str | None, opts: AnalyzeOptions) -> ImageResult:
        """Analyse a decoded image."""
        return self.analyzer(opts).analyze_array(image, path=path)

    def analyze_bytes(self, data: bytes, path: str | None, opts: AnalyzeOptions) -> ImageResult:
        """Decode and analyse (raises :class:`FaceLensError` on a bad image)."""
        return self.analyze_array(self.decode(data, path or f"<{len(data)} bytes>"), path, opts)

    def annotate_bytes(
        self, data: bytes, path: str | None, opts: AnalyzeOptions, fmt: str
    ) -> tuple[bytes, ImageResult]:
        """Decode, analyse, draw the result, and encode the drawing as JPEG or PNG (in memory)."""
        import cv2

        from ..annotate import annotate

        image = self.decode(data, path or f"<{len(data)} bytes>")
        result = self.analyze_array(image, path, opts)
        drawn = annotate(image, result)
        ext = ".png" if fmt == "png" else ".jpg"
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == ".jpg" else []
        ok, enc = cv2.imencode(ext, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise FaceLensError("could not encode the annotated image")
        return enc.tobytes(), result

    # -- scheduling ------------------------------------------------------------------------------------------

    def acquire(self) -> Slot:
        """Take a concurrency slot or refuse; use the slot as a context manager.

        Raises:
            ApiError: 503 with ``Retry-After`` when the server is at its limit or not ready.

        """
        if not self.ready:
            msg = f"models are not loaded: {self.error}" if self.error else "the server is starting"
            raise ApiError(503, "not_ready", msg, {"Retry-After": "5"})
        if not self.limiter.try_acquire():
            raise ApiError(
                503,
                "busy",
                f"the server is at its limit of {self.limiter.limit} concurrent requests; retry shortly",
                {"Retry-After": "1"},
            )
        return Slot(self)

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is None:
            raise ApiError(503, "not_ready", "the server is shutting down")
        return self._pool.submit(fn, *args)


class Slot:
    """One taken concurrency slot.

    Released on leaving the ``with`` block or, once :meth:`run` handed work to the pool, when that work *finishes*.
    A timed-out request thus keeps its slot until its thread is really free, so the pool's queue never grows
    beyond the concurrency limit.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._handed_off = False

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._handed_off:
            self._handed_off = True
            self._engine.limiter.release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the pool (once per slot)."""
        if self._handed_off:
            raise RuntimeError("a slot runs one piece of work")
        fut = self._engine._submit(fn, *args)
        self._handed_off = True
        fut.add_done_callback(lambda _f: self._engine.limiter.release())
        return await asyncio.wrap_future(fut)
