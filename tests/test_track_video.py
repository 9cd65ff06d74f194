from pathlib import Path

import cv2
import numpy as np
import pytest

from facelens.pipeline import FaceAnalyzer
from facelens.track import IoUTracker, iou
from facelens.types import Box, Detection, Landmarks
from facelens.video import VideoAnalyzer

ASTRONAUT = Path(__file__).resolve().parents[1] / "src" / "facelens" / "assets" / "astronaut.jpg"


def _det(x: float, y: float, s: float = 50.0) -> Detection:
    pts = np.array([[x + 15, y + 20], [x + 35, y + 20], [x + 25, y + 30], [x + 17, y + 40], [x + 33, y + 40]])
    return Detection(Box(x, y, x + s, y + s), 0.9, Landmarks.from_array(pts))


def test_iou() -> None:
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou(Box(0, 0, 10, 10), Box(20, 20, 30, 30)) == 0.0


def test_tracker_keeps_ids_and_ends_tracks() -> None:
    tr = IoUTracker(iou_threshold=0.3, max_missed=2)
    a = tr.update(0, [_det(0, 0), _det(200, 0)])
    assert [t.track_id for t in a] == [1, 2]
    b = tr.update(1, [_det(205, 2), _det(3, 1)])  # order swapped, small motion
    assert [t.track_id for t in b] == [2, 1]
    for f in range(2, 6):  # track 1 disappears
        tr.update(f, [_det(205, 2)])
    assert 1 not in tr.tracks and [t.track_id for t in tr.finished] == [1]
    c = tr.update(6, [_det(0, 0)])  # a face where track 1 was: a new id, not a resurrection
    assert c[0].track_id == 3
    s = {x.track_id: x for x in tr.summaries()}
    assert s[1].frames_seen == 2 and s[2].frames_seen == 6


def test_smoothing_is_a_moving_average() -> None:
    tr = IoUTracker(alpha=0.5)
    (t,) = tr.update(0, [_det(0, 0)])
    t.smooth({"0/gender": np.array([1.0, 0.0])}, tr.alpha)
    t.smooth({"0/gender": np.array([0.0, 1.0])}, tr.alpha)
    np.testing.assert_allclose(t.probs["0/gender"], [0.5, 0.5])


def _frames(n: int) -> list[tuple[int, np.ndarray]]:
    img = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    return [(i, cv2.warpAffine(img, np.float32([[1, 0, 3 * i], [0, 1, 0]]), (512, 512))) for i in range(n)]


def test_video_analyzer_tracks_one_face(tiny_model_env: Path) -> None:
    va = VideoAnalyzer(FaceAnalyzer(), head_every=3)
    results = list(va.process(_frames(7), path="clip"))
    assert all(len(r.faces) == 1 for r in results)
    assert {r.faces[0].track_id for r in results} == {1}
    assert all(r.faces[0].age is not None and r.faces[0].gender is not None for r in results)
    (summary,) = va.track_results()
    assert summary.frames_seen == 7
    assert summary.head_updates == 3  # frames 0, 3, 6
    d = summary.to_dict()
    assert d["track_id"] == 1 and "age" in d and "gender" in d


def test_head_every_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VideoAnalyzer(FaceAnalyzer(heads=()), head_every=0)
