"""Face detection: the :class:`Detector` interface, its registry, and the YuNet backend (the default)."""

from .base import DETECTORS, Detector, create_detector, register_detector
from .yunet import YuNetDetector

__all__ = ["DETECTORS", "Detector", "YuNetDetector", "create_detector", "register_detector"]
