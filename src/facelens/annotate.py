"""Draw results on images: boxes, landmarks and a short label per face."""

from __future__ import annotations

import cv2
import numpy as np

from .types import Face, ImageResult

_BOX = (46, 204, 113)
_LM = (255, 196, 0)


def face_caption(face: Face) -> str:
    """A one-line label such as ``"31y F asian"`` from whatever heads answered."""
    parts = []
    if face.age is not None:
        parts.append(f"{face.age.years:.0f}y")
    if face.gender is not None:
        parts.append("F" if face.gender.label == "female" else "M")
    if face.race is not None:
        parts.append(face.race.label)
    return " ".join(parts) if parts else f"{face.detection.score:.2f}"


def annotate(image: np.ndarray, result: ImageResult) -> np.ndarray:
    """Return a copy of an RGB image with every face of ``result`` drawn on it."""
    out = np.ascontiguousarray(image.copy())
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, round(2 * scale))
    for face in result.faces:
        b = face.box
        p1, p2 = (round(b.x1), round(b.y1)), (round(b.x2), round(b.y2))
        cv2.rectangle(out, p1, p2, _BOX, thick, cv2.LINE_AA)
        for x, y in face.detection.landmarks.points:
            cv2.circle(out, (round(x), round(y)), max(1, thick), _LM, -1, cv2.LINE_AA)
        text = face_caption(face)
        fs = 0.5 * max(scale, 0.6)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, max(1, thick // 2))
        ty = p1[1] - 4 if p1[1] - th - base - 4 > 0 else p2[1] + th + 4
        cv2.rectangle(out, (p1[0], ty - th - base), (p1[0] + tw + 4, ty + base), _BOX, -1)
        cv2.putText(out, text, (p1[0] + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), max(1, thick // 2),
                    cv2.LINE_AA)  # fmt: skip
    return out
