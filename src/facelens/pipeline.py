"""The analysis pipeline: ``io -> detect -> align -> heads -> Face``.

:class:`FaceAnalyzer` holds a detector and the head models, created lazily on first use. The whole loop is
:meth:`FaceAnalyzer.analyze`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .detect import Detector, create_detector
from .errors import FaceLensError, InvalidSettings
from .heads import HeadModel, HeadOutputs, find_model, list_models, unanswered_tasks
from .io import DEFAULT_MAX_PIXELS, ImageSource, load_image
from .types import Detection, Face, ImageResult


@dataclass(frozen=True)
class AnalyzerConfig:
    """Settings of a :class:`FaceAnalyzer`.

    Attributes:
        detector: Registered detector name.
        score_threshold: Minimum detection score.
        max_side: Detector working resolution (longest side); ``None`` (or 0) scans at full size.
        upscale: Enlarge images before detection (finds smaller faces, slower).
        heads: Head model names or ``.onnx`` paths (one name may be given as a string); ``None`` uses every
            installed model.
        min_face_size: Drop faces whose box is smaller than this many pixels on its shorter side.
        max_faces: Keep at most this many faces (highest scores first); ``None`` keeps all.
        max_pixels: Refuse images larger than this (decompression-bomb guard).
        threads: ONNX Runtime threads for the heads (0: its default).
        detector_options: Further options of the detector backend (see :func:`facelens.detect.create_detector`).

    Raises:
        InvalidSettings: If a value is out of range (checked when the config is made, before anything loads).

    """

    detector: str = "yunet"
    score_threshold: float = 0.6
    max_side: int | None = 640
    upscale: float = 1.0
    heads: tuple[str, ...] | None = None
    min_face_size: float = 0.0
    max_faces: int | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    threads: int = 0
    detector_options: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.heads, str):
            object.__setattr__(self, "heads", (self.heads,))
        elif self.heads is not None:
            object.__setattr__(self, "heads", tuple(self.heads))
        if self.max_side == 0:
            object.__setattr__(self, "max_side", None)
        checks = (
            ("score_threshold", self.score_threshold, 0.0, 1.0),
            ("max_side", self.max_side, 1, None),
            ("upscale", self.upscale, 1e-3, None),
            ("min_face_size", self.min_face_size, 0.0, None),
            ("max_faces", self.max_faces, 0, None),
            ("max_pixels", self.max_pixels, 1, None),
            ("threads", self.threads, 0, None),
        )
        for name, value, low, high in checks:
            if value is None and name in ("max_side", "max_faces", "max_pixels"):
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < low or (high is not None and value > high):
                bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise InvalidSettings(f"{name} must be a number {bounds}, not {value!r}")
        if not isinstance(self.detector_options, dict):
            raise InvalidSettings(f"detector_options must be a dict, not {type(self.detector_options).__name__}")


class FaceAnalyzer:
    """Find faces and run the attribute heads on them.

    Creating one loads nothing; the detector and heads load on first use. Safe to share between threads
    (each thread gets its own detector; head sessions are shared).

    Example:
        >>> analyzer = FaceAnalyzer()
        >>> result = analyzer.analyze("photo.jpg")
        >>> [f.age.years for f in result.faces if f.age]

    """

    def __init__(self, config: AnalyzerConfig | None = None, **overrides: object) -> None:
        if config is None:
            config = AnalyzerConfig(**overrides)  # type: ignore[arg-type]
        elif overrides:
            raise TypeError("pass either config or keyword settings, not both")
        self.config = config
        self._local = threading.local()
        self._heads: list[HeadModel] | None = None
        self._lock = threading.Lock()

    @property
    def detector(self) -> Detector:
        """The detector of the calling thread (created on first use)."""
        det = getattr(self._local, "detector", None)
        if det is None:
            c = self.config
            opts = {"score_threshold": c.score_threshold, "max_side": c.max_side, "upscale": c.upscale}
            opts.update(c.detector_options)
            det = create_detector(c.detector, **opts)
            self._local.detector = det
        return det

    @property
    def heads(self) -> list[HeadModel]:
        """The head models in use (loaded on first access)."""
        if self._heads is None:
            with self._lock:
                if self._heads is None:
                    names = self.config.heads
                    infos = list_models() if names is None else [find_model(n) for n in names]
                    self._heads = [HeadModel(i.path, threads=self.config.threads) for i in infos]
        return self._heads

    def missing_tasks(self) -> list[str]:
        """Tasks (age, gender, race, attributes) that no loaded head answers."""
        return unanswered_tasks(self.heads)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB image, applying the size and count filters."""
        dets = self.detector.detect(image)
        if self.config.min_face_size > 0:
            dets = [d for d in dets if min(d.box.width, d.box.height) >= self.config.min_face_size]
        if self.config.max_faces is not None:
            dets = dets[: self.config.max_faces]
        return dets

    def analyze(self, source: ImageSource, *, path: str | None = None) -> ImageResult:
        """Analyse one image.

        Args:
            source: Anything :func:`facelens.io.load_image` accepts.
            path: Name to report in the result (defaults to the path, if ``source`` is one).

        Returns:
            The result, with one :class:`Face` per detected face (empty when there is none).

        Raises:
            FaceLensError: If the image cannot be read or is too large.

        """
        image = load_image(source, max_pixels=self.config.max_pixels)
        name = path if path is not None else _path_of(source)
        return self.analyze_array(image, path=name)

    def analyze_array(self, image: np.ndarray, *, path: str | None = None, frame: int | None = None) -> ImageResult:
        """Analyse an already decoded ``H x W x 3`` uint8 RGB image (the pipeline itself).

        Detect; align the faces once per distinct :attr:`HeadModel.crop_spec` (template and input size) among the
        heads; run and decode each head on its crops, all faces in one batch; merge the answers into faces. Without
        faces nothing is aligned and no head runs.

        Args:
            image: The image.
            path: Name to report in the result.
            frame: Frame number to report (video).

        Returns:
            The result, with one :class:`Face` per detected face.

        """
        detections = self.detect(image)
        heads = self.heads  # loaded (a bad name refused) even for an image without faces, as before
        if not detections:
            return ImageResult(path, image.shape[1], image.shape[0], (), frame=frame)
        crops = {spec: spec.align(image, detections) for spec in dict.fromkeys(h.crop_spec for h in heads)}
        outputs = [head.decode(head.run_crops(crops[head.crop_spec])) for head in heads]
        faces = tuple(_merge(i, det, outputs) for i, det in enumerate(detections))
        return ImageResult(path, image.shape[1], image.shape[0], faces, frame=frame)

    def analyze_many(self, sources: Iterable[ImageSource]) -> Iterator[ImageResult]:
        """Analyse many images; a bad input yields a result with ``error`` set instead of stopping."""
        for src in sources:
            yield self.analyze_safe(src)

    def analyze_safe(self, source: ImageSource, *, path: str | None = None) -> ImageResult:
        """Like :meth:`analyze`, but a failure becomes a result with ``error`` set instead of an exception.

        A :class:`FaceLensError` keeps its ``code``; anything else (a decoder bug tripped by a hostile file...) is
        reported as ``internal_error`` with its type and message, so one input never stops a batch.
        """
        name = path if path is not None else _path_of(source)
        try:
            return self.analyze(source, path=name)
        except FaceLensError as exc:
            return ImageResult(name, 0, 0, (), str(exc), exc.code)
        except Exception as exc:  # noqa: BLE001 - one input must never stop the caller's loop
            return ImageResult(name, 0, 0, (), f"{type(exc).__name__}: {exc}", "internal_error")


def _path_of(source: object) -> str | None:
    import os

    return str(source) if isinstance(source, (str, os.PathLike)) else None


def _merge(i: int, det: Detection, outputs: Sequence[HeadOutputs]) -> Face:
    age = gender = race = attrs = None
    for o in outputs:  # the first head that answers a task wins
        age = age or (o.age[i] if o.age else None)
        gender = gender or (o.gender[i] if o.gender else None)
        race = race or (o.race[i] if o.race else None)
        attrs = attrs or (o.attributes[i] if o.attributes else None)
    return Face(det, age, gender, race, attrs)
