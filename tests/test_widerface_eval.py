"""Tests of the WIDER FACE easy/medium/hard AP evaluation on a tiny synthetic dataset tree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

scipy_io = pytest.importorskip("scipy.io")

from facelens.errors import DatasetError  # noqa: E402
from facelens.eval.widerface import (  # noqa: E402
    WiderFaceResult,
    _iou_matrix,
    evaluate_detections,
    evaluate_widerface,
    load_ground_truth,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wider_face"

# Synthetic annotation: event -> [(name, [x, y, w, h] boxes, present on disk, image size (h, w))].
# Settings (1-based keep lists like the official .mat): A0, B0 easy; + A1 medium; + B1 hard.
EVENTS = {
    "0--Parade": [
        ("0_Parade_a", [[10, 10, 20, 20], [50, 10, 20, 20]], True, (60, 100)),
        ("0_Parade_b", [[10, 50, 30, 30], [60, 50, 10, 10]], True, (100, 90)),
        ("0_Parade_c", [[10, 10, 20, 20], [40, 40, 20, 20]], False, (50, 50)),  # not on disk
    ],
    "1--Handshaking": [
        # A face-free image: the official .mat holds one dummy all-zero box and empty keep lists.
        ("1_Handshaking_d", [[0, 0, 0, 0]], True, (70, 80)),
    ],
}
KEEP = {
    "easy": {"0_Parade_a": [1], "0_Parade_b": [1], "0_Parade_c": [1, 2], "1_Handshaking_d": []},
    "medium": {"0_Parade_a": [1, 2], "0_Parade_b": [1], "0_Parade_c": [1, 2], "1_Handshaking_d": []},
    "hard": {"0_Parade_a": [1, 2], "0_Parade_b": [1, 2], "0_Parade_c": [1, 2], "1_Handshaking_d": []},
}
A = "0--Parade/0_Parade_a.jpg"
B = "0--Parade/0_Parade_b.jpg"
D = "1--Handshaking/1_Handshaking_d.jpg"
A0, A1 = [10, 10, 30, 30], [50, 10, 70, 30]
B0, B1 = [10, 50, 40, 80], [60, 50, 70, 60]


def _cell(items: list[object]) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _color(name: str) -> tuple[int, int, int]:
    return (10 * len(name) % 256, 200, 30)  # BGR


def _make_tree(root: Path) -> Path:
    gt_dir = root / "ground_truth"
    gt_dir.mkdir(parents=True)
    (root / "wider_face_split").mkdir()
    events = list(EVENTS)
    common = {
        "event_list": _cell(events),
        "file_list": _cell([_cell([n for n, *_ in EVENTS[e]]) for e in events]),
        "face_bbx_list": _cell(
            [_cell([np.array(b, dtype=np.int32).reshape(-1, 4) for _, b, *_ in EVENTS[e]]) for e in events]
        ),
    }
    scipy_io.savemat(str(gt_dir / "wider_face_val.mat"), common)
    for setting, keep in KEEP.items():
        gt_list = _cell(
            [_cell([np.array(keep[n], dtype=np.uint8).reshape(-1, 1) for n, *_ in EVENTS[e]]) for e in events]
        )
        scipy_io.savemat(str(gt_dir / f"wider_{setting}_val.mat"), {**common, "gt_list": gt_list})
    for event, images in EVENTS.items():
        folder = root / "WIDER_val" / "images" / event
        folder.mkdir(parents=True)
        for name, _, present, (h, w) in images:
            if present:
                img = np.zeros((h, w, 3), np.uint8)
                img[:] = _color(name)
                assert cv2.imwrite(str(folder / f"{name}.jpg"), img)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _make_tree(tmp_path / "wider_face")


def _dets(*rows: tuple[list[int], float]) -> np.ndarray:
    return np.array([[*box, score] for box, score in rows], dtype=np.float64)


def _aps(result: WiderFaceResult) -> tuple[float, float, float]:
    return result.ap_easy, result.ap_medium, result.ap_hard


def test_loader_reads_synthetic_structure(tree: Path) -> None:
    gt = load_ground_truth(tree)
    assert [im.path for im in gt.images] == [A, B, D]  # c is not on disk
    assert gt.annotated_images == 4
    np.testing.assert_array_equal(gt.images[0].boxes, [A0, A1])  # x2 = x + w
    assert gt.images[0].keep["medium"].tolist() == [0, 1]  # 1-based -> 0-based
    assert gt.images[2].keep["hard"].size == 0


def test_perfect_detector_scores_one(tree: Path) -> None:
    gt = load_ground_truth(tree)
    dets = {A: _dets((A0, 0.9), (A1, 0.3)), B: _dets((B0, 0.8), (B1, 0.2))}
    result = evaluate_detections(gt, dets)
    assert _aps(result) == pytest.approx((1.0, 1.0, 1.0))


def test_empty_detector_scores_zero(tree: Path) -> None:
    result = evaluate_detections(load_ground_truth(tree), {})
    assert _aps(result) == (0.0, 0.0, 0.0)
    assert result.images == 3


def test_half_the_faces_gives_recall_limited_ap(tree: Path) -> None:
    gt = load_ground_truth(tree)
    # Finds A0 and B0 only: half the hard faces, 2/3 of medium, all of easy; precision 1 everywhere.
    result = evaluate_detections(gt, {A: _dets((A0, 0.9)), B: _dets((B0, 0.5))})
    assert _aps(result) == pytest.approx((1.0, 2 / 3, 0.5))
    # Add a false positive on the face-free image D ranked between them. Scores normalise to A0 1.0, FP 0.5,
    # B0 0.0. Hard (4 faces): t > 0.5 -> P 1, R 1/4; 0 < t <= 0.5 -> P 1/2, R 1/4; t = 0 -> P 2/3, R 1/2.
    # AP = 1/4 * 1 + 1/4 * 2/3 = 5/12. Medium (3): 1/3 + 1/3 * 2/3 = 5/9. Easy (2): 1/2 + 1/2 * 2/3 = 5/6.
    dets = {A: _dets((A0, 0.9)), B: _dets((B0, 0.5)), D: _dets(([20, 20, 40, 40], 0.7))}
    result = evaluate_detections(gt, dets)
    assert _aps(result) == pytest.approx((5 / 6, 5 / 9, 5 / 12))
    assert 0.0 < result.ap_hard < 1.0


def test_detections_on_ignored_faces_are_not_false_positives(tree: Path) -> None:
    gt = load_ground_truth(tree)
    # A1 is ignored in easy; two detections on it (an ignored gt can be matched repeatedly) stay neutral.
    dets = {A: _dets((A0, 0.9), (A1, 0.6), ([51, 10, 71, 30], 0.55)), B: _dets((B0, 0.1))}
    result = evaluate_detections(gt, dets)
    assert result.ap_easy == pytest.approx(1.0)
    # In hard, A1 counts: first hit TP, the duplicate is a FP. Normalised: A0 1, A1 .625, dup .5625, B0 0.
    # R/P steps: 1/4 @ 1, 2/4 @ 1, (2/4 @ 2/3), 3/4 @ 3/4 -> AP = 1/4 + 1/4 + 1/4 * 3/4 = 11/16.
    assert result.ap_hard == pytest.approx(11 / 16)
    # The same duplicate on a counted face (A0) is a FP in easy, and lowers AP below 1.
    dup_counted = {A: _dets((A0, 0.9), ([11, 10, 31, 30], 0.6)), B: _dets((B0, 0.1))}
    assert evaluate_detections(gt, dup_counted).ap_easy == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_absent_images_are_not_counted(tree: Path) -> None:
    gt = load_ground_truth(tree)
    assert gt.faces() == {"easy": 2, "medium": 3, "hard": 4}  # c's two faces left out
    result = evaluate_detections(gt, {A: _dets((A0, 1.0), (A1, 0.5)), B: _dets((B0, 0.7), (B1, 0.0))})
    assert result.faces == {"easy": 2, "medium": 3, "hard": 4}
    assert _aps(result) == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_detections(gt, {"0--Parade/0_Parade_c.jpg": _dets((A0, 1.0))})


def test_iou_uses_official_plus_one_convention() -> None:
    gt = np.array([[0.0, 0.0, 9.0, 9.0]])
    dets = np.array([[0.0, 0.0, 9.0, 9.0, 1.0], [5.0, 0.0, 14.0, 9.0, 1.0], [20.0, 0.0, 29.0, 9.0, 1.0]])
    # +1: boxes are 10x10, overlap 5x10 -> 50 / 150 (without +1 it would be 36 / 126).
    np.testing.assert_allclose(_iou_matrix(dets, gt)[:, 0], [1.0, 1 / 3, 0.0])


def test_evaluate_widerface_runs_detector_on_rgb_images(tree: Path) -> None:
    truth = {(60, 100): [(*A0, 0.9), (*A1, 0.4)], (100, 90): [(*B0, 0.8), (*B1, 0.1)], (70, 80): []}
    seen: list[tuple[int, int, int]] = []

    def detect(rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3
        seen.append(tuple(int(v) for v in rgb[5, 5]))
        return truth[rgb.shape[:2]]

    result = evaluate_widerface(tree, detect, progress=True)
    assert _aps(result) == pytest.approx((1.0, 1.0, 1.0))
    assert result.to_dict()["images"] == 3
    b, g, r = _color("0_Parade_a")
    assert np.allclose(seen[0], (r, g, b), atol=3)  # BGR -> RGB (jpeg may shift a value slightly)
    limited = evaluate_widerface(tree, detect, limit=1)
    assert limited.images == 1 and limited.faces == {"easy": 1, "medium": 2, "hard": 2}
    chosen = evaluate_widerface(tree, detect, images=["0--Parade/0_Parade_b.jpg"])
    assert chosen.images == 1 and chosen.faces["hard"] == 2
    with pytest.raises(DatasetError, match="no ground truth"):
        evaluate_widerface(tree, detect, images=["0--Parade/unknown.jpg"])


def test_cli_image_list_and_backend_options(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facelens.cli import main

    listed = tmp_path / "holdout.txt"
    listed.write_text("0--Parade/0_Parade_a.jpg\n\n")
    assert main(["eval", "widerface", "--root", str(tree), "--images", str(listed), "--accurate"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 1 and out["settings"]["extra_scales"] == [0.5, 2.0]
    assert main(["eval", "widerface", "--root", str(tree), "--detector", "trained", "--accurate"]) == 2
    assert "yunet only" in capsys.readouterr().err
    assert main(["eval", "widerface", "--root", str(tree), "--detector-option", "nokey"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_missing_or_malformed_root_raises(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(DatasetError, match="root folder not found"):
        load_ground_truth(tmp_path / "nope")
    with pytest.raises(DatasetError, match="WIDER_val"):
        load_ground_truth(tmp_path)
    (tree / "ground_truth" / "wider_hard_val.mat").unlink()
    with pytest.raises(DatasetError, match="wider_hard_val.mat"):
        evaluate_widerface(tree, lambda rgb: [])


def test_missing_scipy_names_the_extra(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(DatasetError, match=r"pip install facelens\[eval\]"):
        load_ground_truth(tree)


@pytest.mark.shared_data
def test_real_ground_truth_loads() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/data/wider_face not present")
    gt = load_ground_truth(SHARED)
    assert len(gt.images) == 150
    assert gt.annotated_images == 3226
    faces = gt.faces()
    assert 0 < faces["easy"] < faces["medium"] < faces["hard"] <= sum(len(im.boxes) for im in gt.images)
    assert all(im.boxes.shape[1] == 4 and (im.boxes[:, 2:] >= im.boxes[:, :2]).all() for im in gt.images)
