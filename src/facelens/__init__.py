"""facelens: offline face analysis — detection, age, gender, ethnicity and 40 facial attributes.

Typical use::

    import facelens
    result = facelens.analyze("photo.jpg")
    for face in result.faces:
        print(face.box, face.age, face.gender)

Importing this package loads no model; :class:`FaceAnalyzer` loads its detector and heads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    DatasetError,
    FaceLensError,
    ImageTooLarge,
    InvalidSettings,
    ModelError,
    UnreadableImage,
    UnsupportedInput,
)
from .types import Age, Box, Detection, Face, ImageResult, Label, Landmarks

if TYPE_CHECKING:
    from .io import ImageSource
    from .pipeline import AnalyzerConfig, FaceAnalyzer

__version__ = "0.1.0"

__all__ = [
    "Age",
    "AnalyzerConfig",
    "Box",
    "DatasetError",
    "Detection",
    "Face",
    "FaceAnalyzer",
    "FaceLensError",
    "ImageResult",
    "ImageTooLarge",
    "InvalidSettings",
    "Label",
    "Landmarks",
    "ModelError",
    "UnreadableImage",
    "UnsupportedInput",
    "analyze",
    "load_image",
]

_default: FaceAnalyzer | None = None
_by_settings: dict[str, FaceAnalyzer] = {}
_KEEP_ANALYZERS = 4  # analyzers kept for the most recent distinct settings of analyze(image, **settings)


def analyze(image: ImageSource, **settings: Any) -> ImageResult:
    """Analyse one image with the default settings (or the given :class:`AnalyzerConfig` fields).

    Args:
        image: A path, bytes, file object, numpy RGB array or PIL image.
        **settings: Fields of :class:`AnalyzerConfig`. The analyzer built for them is kept (for the last few
            distinct settings), so calling this in a loop with the same settings loads the models once.

    Returns:
        The :class:`ImageResult` with one :class:`Face` per detected face.

    Raises:
        FaceLensError: If the image cannot be read, or a setting is out of range (:class:`InvalidSettings`).

    """
    global _default
    from .pipeline import FaceAnalyzer

    if settings:
        key = repr(sorted(settings.items()))
        analyzer = _by_settings.pop(key, None) or FaceAnalyzer(**settings)
        _by_settings[key] = analyzer  # most recent last
        while len(_by_settings) > _KEEP_ANALYZERS:
            del _by_settings[next(iter(_by_settings))]
        return analyzer.analyze(image)
    if _default is None:
        _default = FaceAnalyzer()
    return _default.analyze(image)


def __getattr__(name: str) -> Any:
    if name in ("FaceAnalyzer", "AnalyzerConfig"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load_image":
        from .io import load_image

        return load_image
    raise AttributeError(f"module 'facelens' has no attribute {name!r}")
