"""Face detection: the :class:`Detector` interface, its registry and its backends.

Backends: ``"yunet"`` (the default) and ``"trained"`` (a detector trained with ``facelens train-detector``).
"""

from .base import DETECTORS, Detector, check_detector_options, create_detector, register_detector
from .trained import TrainedDetector
from .yunet import YuNetDetector

__all__ = [
    "DETECTORS",
    "Detector",
    "TrainedDetector",
    "YuNetDetector",
    "check_detector_options",
    "create_detector",
    "register_detector",
]
