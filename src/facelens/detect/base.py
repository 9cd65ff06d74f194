"""The detector interface and the registry of detector backends."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import FaceLensError
from ..types import Detection


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB image.

    Implementations return an empty list (never raise) when there is no face, and return boxes and landmarks in
    pixel coordinates of the image they were given, sorted by descending score.
    """

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an ``H x W x 3`` RGB uint8 image."""
        ...


def working_scale(height: int, width: int, max_side: int | None, upscale: float = 1.0) -> float:
    """Factor an image is resized by before detection (shared by the backends).

    ``upscale``, unless that makes the longest side exceed ``max_side``; then the longest side becomes ``max_side``.
    """
    side = max(height, width)
    if max_side is not None and side * upscale > max_side:
        return max_side / side
    return upscale


DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator that makes a detector class (or factory function) creatable by name with :func:`create_detector`."""

    def wrap(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        DETECTORS[name] = factory
        return factory

    return wrap


def create_detector(name: str = "yunet", **options: object) -> Detector:
    """Create a registered detector by name.

    Args:
        name: A key of :data:`DETECTORS` (``"yunet"`` is the default backend).
        **options: Passed to the backend's constructor.

    Returns:
        The detector.

    Raises:
        FaceLensError: If no detector of that name is registered, or it takes no option of one of those names.

    """
    check_detector_options(name, options)
    return DETECTORS[name](**options)


def check_detector_options(name: str, options: Iterable[str]) -> None:
    """Refuse an unknown detector name, or option names its backend does not take, without creating it.

    Raises:
        FaceLensError: Naming the known detectors, or the options the backend takes.

    """
    if name not in DETECTORS:
        raise FaceLensError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    params = inspect.signature(DETECTORS[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if unknown := sorted(set(options) - set(takes)):
        raise FaceLensError(
            f"detector {name!r} takes no option {', '.join(map(repr, unknown))}; its options: {', '.join(takes)}"
        )
