"""Tests of facelens.align: the similarity fit, warping onto the template, and a golden crop of the sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelens.align import (
    LOOSE_V1,
    TEMPLATES,
    Template,
    align_face,
    align_faces,
    alignment_matrix,
    similarity_transform,
)

ASTRONAUT_LANDMARKS = np.array(
    [[200.22, 101.70], [246.89, 102.42], [219.98, 124.45], [199.11, 142.93], [239.68, 143.66]]
)


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"),
    [(1.0, 0.0, 0.0, 0.0), (0.37, 12.5, -40.0, 7.0), (2.5, -170.0, 100.0, -3.5), (0.01, 90.0, 1e3, 1e3)],
)
def test_similarity_transform_recovers_known(scale: float, angle: float, tx: float, ty: float) -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 300, (5, 2))
    m_true = _similarity(scale, angle, tx, ty)
    m = similarity_transform(src, _apply(m_true, src))
    assert m.shape == (2, 3) and m.dtype == np.float64
    np.testing.assert_allclose(m, m_true, atol=1e-9 * max(1.0, abs(tx), abs(ty)))


def test_similarity_transform_is_least_squares_not_affine() -> None:
    # A reflection cannot be produced by a similarity: the fit must stay a proper rotation (det > 0).
    src = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]], float)
    dst = src * np.array([-1.0, 1.0])
    m = similarity_transform(src, dst)
    assert np.linalg.det(m[:, :2]) >= 0
    a = m[:, :2]
    np.testing.assert_allclose(a.T @ a, np.eye(2) * (a[0, 0] ** 2 + a[1, 0] ** 2), atol=1e-12)  # uniform scale


def test_similarity_transform_with_noise_is_close() -> None:
    rng = np.random.default_rng(5)
    src = rng.uniform(0, 200, (5, 2))
    m_true = _similarity(0.8, 20.0, 5.0, -9.0)
    m = similarity_transform(src, _apply(m_true, src) + rng.normal(0, 0.01, (5, 2)))
    np.testing.assert_allclose(m, m_true, atol=0.01)


@pytest.mark.parametrize(
    "landmarks",
    [np.zeros((5, 2)), np.full((5, 2), 123.4), np.tile([[10.0, 20.0]], (5, 1)) + 1e-9],
    ids=["zeros", "same-point", "near-same"],
)
def test_degenerate_landmarks_raise(landmarks: np.ndarray) -> None:
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(landmarks, LOOSE_V1.scaled(112))
    with pytest.raises(ValueError):
        align_face(np.zeros((50, 50, 3), np.uint8), landmarks)


def test_wrong_landmark_count_raises() -> None:
    with pytest.raises(ValueError):
        alignment_matrix(np.zeros((4, 2)), 112)


def _find_dots(gray: np.ndarray) -> np.ndarray:
    """Centroids of bright blobs, sorted to match the template order (by nearest template point later)."""
    _, bw = cv2.threshold(gray, 100, 255, cv2.THRESH_BINARY)
    n, _, stats, cents = cv2.connectedComponentsWithStats(bw)
    # weighted centroids are more precise than the binary ones
    out = []
    for i in range(1, n):
        x, y, w, h = stats[i, :4]
        patch = gray[y : y + h, x : x + w].astype(np.float64)
        yy, xx = np.mgrid[y : y + h, x : x + w]
        out.append([(patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()])
    return np.array(out)


@pytest.mark.parametrize(
    ("size", "angle", "scale"), [(112, 0.0, 1.0), (112, 25.0, 1.7), (96, -40.0, 0.8), (224, 10, 2)]
)
def test_align_face_puts_landmarks_on_template(size: int, angle: float, scale: float) -> None:
    # Build landmarks as a rotated / scaled / shifted copy of the template, draw soft dots there, align, and
    # look for the dots in the crop.
    base = LOOSE_V1.scaled(100)
    m = _similarity(scale, angle, 150.0, 120.0)
    lms = _apply(m, base - 50.0)
    img = np.zeros((400, 400), np.float64)
    yy, xx = np.mgrid[0:400, 0:400]
    sigma = 2.0 * scale * size / 100.0  # dots of ~constant size in the crop
    for x, y in lms:
        img += 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    crop = align_face(rgb, lms, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    dots = _find_dots(crop[:, :, 0])
    assert len(dots) == 5
    target = LOOSE_V1.scaled(size)
    for t in target:
        d = np.linalg.norm(dots - t, axis=1).min()
        assert d < 1.0, (t, dots)


def test_align_keeps_channels_and_gray() -> None:
    img = np.zeros((100, 100, 4), np.uint8)
    img[..., 3] = 77
    lms = LOOSE_V1.scaled(60) + 20
    assert align_face(img, lms, 32).shape == (32, 32, 4)
    assert align_face(img[..., 0], lms, 32).shape == (32, 32)
    batch = align_faces(img[..., :3], [lms, lms + 5], 40)
    assert batch.shape == (2, 40, 40, 3) and batch.dtype == np.uint8
    gray_batch = align_faces(img[..., 0], [lms], 24)
    assert gray_batch.shape == (1, 24, 24, 1)
    assert align_faces(img[..., :3], [], 40).shape == (0, 40, 40, 3)


def test_identity_alignment_is_a_copy() -> None:
    # Landmarks exactly on the template of the output size -> the crop is the top-left corner of the image.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (130, 150, 3), dtype=np.uint8)
    crop = align_face(img, LOOSE_V1.scaled(112), 112)
    np.testing.assert_array_equal(crop, img[:112, :112])


def test_border_replicated() -> None:
    img = np.zeros((60, 60, 3), np.uint8)
    img[:, -1] = 200  # right border column
    lms = LOOSE_V1.scaled(60) + np.array([30.0, 0.0])  # face shifted half out to the right
    crop = align_face(img, lms, 60)
    assert (crop[:, -5:] == 200).all()  # outside: replicated border, not black


def test_template_scaled_and_dict_roundtrip() -> None:
    s = LOOSE_V1.scaled(200)
    assert s.shape == (5, 2) and s.dtype == np.float64
    np.testing.assert_allclose(s, np.asarray(LOOSE_V1.points) * 200)
    rect = LOOSE_V1.scaled(100, 50)
    np.testing.assert_allclose(rect[:, 1], np.asarray(LOOSE_V1.points)[:, 1] * 50)
    d = LOOSE_V1.to_dict()
    assert Template.from_dict(json.loads(json.dumps(d))) == LOOSE_V1
    assert TEMPLATES[LOOSE_V1.name] is LOOSE_V1
    # left eye left of right eye, eyes above nose above mouth
    p = np.asarray(LOOSE_V1.points)
    assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]
    assert p[0, 1] < p[2, 1] < p[3, 1]


@pytest.mark.parametrize("points", [[[0.1, 0.2]] * 4, "abc", None])
def test_template_from_dict_rejects_bad_points(points: object) -> None:
    with pytest.raises(ValueError):
        Template.from_dict({"name": "bad", "points": points})


# ------------------------------------------------------------------------------------------------------------
# Golden: catches drift in alignment (template, transform, interpolation, border mode) or in JPEG decoding.

GOLDEN_MEAN = 134.43
GOLDEN_CHANNEL_MEANS = (153.91, 134.82, 114.55)
GOLDEN_PIXELS = {  # (row, col) -> RGB, picked in smooth regions so decoder rounding cannot move them much
    (10, 10): (206, 199, 193),
    (56, 56): (230, 199, 175),
    (90, 56): (237, 202, 182),
    (100, 100): (224, 213, 209),
}


def test_golden_astronaut_crop(astronaut_path: Path) -> None:
    from facelens.io import load_image

    crop = align_face(load_image(astronaut_path), ASTRONAUT_LANDMARKS, 112)
    assert crop.shape == (112, 112, 3)
    assert abs(crop.mean() - GOLDEN_MEAN) <= 1.0
    np.testing.assert_allclose(crop.reshape(-1, 3).mean(axis=0), GOLDEN_CHANNEL_MEANS, atol=1.0)
    for (r, c), rgb in GOLDEN_PIXELS.items():
        assert np.abs(crop[r, c].astype(int) - np.array(rgb)).max() <= 1, ((r, c), crop[r, c], rgb)
