"""Five-point face alignment: one similarity transform to a canonical template.

The same functions prepare faces for training (``facelens.train``) and for inference (``facelens.pipeline``), so
a model sees faces cropped the same way in both. A model records the template it was trained with in its ONNX
metadata; the runtime aligns with that template.

Landmark order everywhere: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth
corner (YuNet's order).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Template:
    """A canonical landmark layout in normalised coordinates (0..1 of the output width and height)."""

    name: str
    points: tuple[tuple[float, float], ...]

    def scaled(self, width: int, height: int | None = None) -> np.ndarray:
        """Template points in pixels of a ``width`` x ``height`` crop, as a ``(5, 2)`` float64 array."""
        h = width if height is None else height
        return np.asarray(self.points, dtype=np.float64) * np.array([width, h], dtype=np.float64)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as stored in model metadata."""
        return {"name": self.name, "points": [list(p) for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Template:
        """Inverse of :meth:`to_dict`."""
        pts = d["points"]
        if not isinstance(pts, list) or len(pts) != 5:
            raise ValueError("an alignment template needs exactly 5 points")
        return cls(str(d["name"]), tuple((float(p[0]), float(p[1])) for p in pts))


LOOSE_V1 = Template(
    "facelens-loose-v1",
    ((0.375, 0.42), (0.625, 0.42), (0.5, 0.56), (0.397, 0.705), (0.603, 0.705)),
)
"""The default template: eyes a quarter of the crop apart, with room for hair, ears and chin (attributes such as
Wearing_Hat, Bangs or Double_Chin need them). Derived by us from average face proportions."""

TEMPLATES: dict[str, Template] = {LOOSE_V1.name: LOOSE_V1}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Closed form (Umeyama, 1991) instead of ``cv2.estimateAffinePartial2D``, which is a robust RANSAC/LMedS
    estimator: with five reliable points the exact least-squares answer is deterministic and what we want.

    Args:
        src: ``(N, 2)`` source points.
        dst: ``(N, 2)`` destination points.

    Returns:
        The ``(2, 3)`` float64 matrix ``M`` with ``dst ~= M @ [x, y, 1]``.

    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def alignment_matrix(landmarks: np.ndarray, size: int, template: Template = LOOSE_V1) -> np.ndarray:
    """The ``(2, 3)`` matrix that maps image pixels to a ``size`` x ``size`` aligned crop."""
    return similarity_transform(np.asarray(landmarks).reshape(5, 2), template.scaled(size))


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 112,
    template: Template = LOOSE_V1,
) -> np.ndarray:
    """Warp one face to the template.

    Pixels outside the image are filled by replicating the border, the same in training and inference.

    Args:
        image: ``H x W x C`` uint8 image (any channel order; it is kept).
        landmarks: ``(5, 2)`` landmarks in pixels of ``image``.
        size: Side of the square output.
        template: Canonical layout.

    Returns:
        ``size x size x C`` uint8 crop.

    """
    m = alignment_matrix(landmarks, size, template)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_faces(
    image: np.ndarray,
    landmarks: list[np.ndarray],
    size: int = 112,
    template: Template = LOOSE_V1,
) -> np.ndarray:
    """Align several faces of one image into an ``(N, size, size, C)`` uint8 batch."""
    c = image.shape[2] if image.ndim == 3 else 1
    out = np.empty((len(landmarks), size, size, c), dtype=np.uint8)
    for i, lm in enumerate(landmarks):
        out[i] = align_face(image, lm, size, template).reshape(size, size, c)
    return out
