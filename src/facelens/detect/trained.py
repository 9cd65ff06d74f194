"""A face detector trained with ``facelens train-detector``, as a detection backend (needs PyTorch).

Use it anywhere a detector name is taken, e.g. ``create_detector("trained", checkpoint="runs/detector/detector.pt")``
or ``facelens eval widerface --detector trained --detector-option checkpoint=runs/detector/detector.pt``. The
torchvision detectors it runs predict boxes only; the five landmarks that alignment needs are placed in each box
at fixed relative positions (:data:`BOX_LANDMARKS`), so alignment is coarser than with YuNet's landmarks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from ..types import Box, Detection, Landmarks
from .base import register_detector, working_scale

BOX_LANDMARKS = np.array([[0.268, 0.373], [0.722, 0.374], [0.496, 0.572], [0.309, 0.735], [0.691, 0.736]])
"""Eyes, nose tip and mouth corners as fractions of the box (x of width, y of height): the medians of YuNet's
landmarks relative to its own boxes over the 237 faces of at least 40 px it finds with score >= 0.8 on the 150
WIDER FACE val images of ``../shared/data`` (measured once, 2026-11-23)."""


def landmarks_in_box(box: Box) -> Landmarks:
    """Typical landmark positions of a frontal face filling ``box`` (see :data:`BOX_LANDMARKS`)."""
    return Landmarks.from_array(np.array([box.x1, box.y1]) + BOX_LANDMARKS * np.array([box.width, box.height]))


@register_detector("trained")
class TrainedDetector:
    """Runs a ``detector.pt`` written by ``facelens train-detector`` (torchvision Faster R-CNN or FCOS).

    Args:
        checkpoint: The ``detector.pt`` file.
        score_threshold: Minimum detection score (0..1).
        max_side: Images whose longest side (after ``upscale``) exceeds this are downscaled to it first; the
            network then resizes to its own training size (``model.min_size``/``max_size``) as it always does.
        upscale: Factor to enlarge the image by first.
        device: Torch device, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        ModelError: If PyTorch is not installed or the checkpoint cannot be loaded.

    """

    name = "trained"

    def __init__(
        self,
        checkpoint: str | Path,
        score_threshold: float = 0.5,
        max_side: int | None = None,
        upscale: float = 1.0,
        device: str = "cpu",
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], not {score_threshold}")
        try:
            from ..train.detector import load_detector, predict
        except ImportError as exc:
            raise ModelError("the 'trained' detector needs PyTorch: pip install 'facelens[train]'") from exc
        from ..errors import FaceLensError

        try:
            self._model, self.config = load_detector(checkpoint, device)
        except FaceLensError as exc:
            raise ModelError(str(exc)) from exc
        self._predict = predict
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.upscale = upscale

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an ``H x W x 3`` RGB uint8 image; boxes in its pixels, by descending score."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("detect() needs an H x W x 3 uint8 RGB image")
        h, w = image.shape[:2]
        scale = working_scale(h, w, self.max_side, self.upscale)
        work = image
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        out = []
        for row in self._predict(self._model, work, self.score_threshold):
            x1, y1, x2, y2 = row[:4] / scale
            score = row[4]
            box = Box(max(0.0, float(x1)), max(0.0, float(y1)), min(float(w), float(x2)), min(float(h), float(y2)))
            if box.width > 0 and box.height > 0:
                out.append(Detection(box, float(score), landmarks_in_box(box)))
        return out
