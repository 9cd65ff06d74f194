"""The detector interface and the registry of detector backends."""

from __future__ import annotations

from collections.abc import Callable
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
    """Class decorator that makes a detector creatable by name with :func:`create_detector`."""

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
        FaceLensError: If no detector of that name is registered.

    """
    if name not in DETECTORS:
        raise FaceLensError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name](**options)
