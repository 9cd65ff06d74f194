"""End-to-end tests of facelens.pipeline.FaceAnalyzer and the top-level facelens API, with the tiny head model."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import facelens
import facelens.heads.runtime
import facelens.pipeline
from facelens.align import LOOSE_V1, Template
from facelens.errors import FaceLensError, ImageTooLarge, InvalidSettings, ModelError
from facelens.heads import HeadModel, HeadOutputs, ModelMetadata
from facelens.labels import CELEBA_ATTRIBUTES, GENDERS, RACES
from facelens.pipeline import AnalyzerConfig, FaceAnalyzer
from facelens.types import Age, Detection, Face, ImageResult, Label

RESULT_KEYS = {"path", "width", "height", "faces", "error"}
DETECTION_KEYS = {"box", "score", "landmarks"}
HEAD_KEYS = {"age", "age_interval", "age_group", "gender", "race", "attributes"}


def _check_face_dict(f: dict[str, object], with_heads: bool) -> None:
    assert set(f) == (DETECTION_KEYS | HEAD_KEYS if with_heads else DETECTION_KEYS)
    box = f["box"]
    assert isinstance(box, list) and len(box) == 4 and all(isinstance(v, float) for v in box)
    assert box[0] < box[2] and box[1] < box[3]
    assert isinstance(f["score"], float) and 0 <= f["score"] <= 1
    lms = f["landmarks"]
    assert isinstance(lms, list) and len(lms) == 5 and all(len(p) == 2 for p in lms)
    if not with_heads:
        return
    assert isinstance(f["age"], float)
    lo, hi = f["age_interval"]  # type: ignore[misc]
    assert lo <= f["age"] <= hi
    assert set(f["age_group"]) == {"adience", "utkface"}  # type: ignore[arg-type]
    assert set(f["gender"]) == {"label", "score"}  # type: ignore[arg-type]
    assert f["gender"]["label"] in GENDERS  # type: ignore[index]
    assert set(f["race"]) == {"label", "scores"}  # type: ignore[arg-type]
    assert f["race"]["label"] in RACES and list(f["race"]["scores"]) == list(RACES)  # type: ignore[index]
    assert list(f["attributes"]) == list(CELEBA_ATTRIBUTES)  # type: ignore[arg-type]


def test_end_to_end_with_tiny_model(tiny_model_env: Path, astronaut_path: Path) -> None:
    analyzer = FaceAnalyzer()
    assert analyzer.missing_tasks() == []
    assert [h.name for h in analyzer.heads] == ["tiny-test"]
    res = analyzer.analyze(astronaut_path)
    assert isinstance(res, ImageResult)
    assert res.ok and res.error is None and res.error_code is None
    assert res.path == str(astronaut_path)
    assert (res.width, res.height) == (512, 512)
    assert len(res.faces) == 1
    face = res.faces[0]
    assert isinstance(face, Face)
    assert face.box == face.detection.box
    assert isinstance(face.age, Age) and face.age.interval[0] <= face.age.years <= face.age.interval[1]
    assert isinstance(face.gender, Label) and face.gender.label in GENDERS
    assert isinstance(face.race, Label) and face.race.label in RACES
    assert face.attributes is not None and len(face.attributes) == 40
    assert face.track_id is None

    d = res.to_dict()
    assert set(d) == RESULT_KEYS
    assert d["path"] == str(astronaut_path) and d["error"] is None
    assert len(d["faces"]) == 1
    _check_face_dict(d["faces"][0], with_heads=True)
    assert json.loads(json.dumps(d)) == d  # JSON-ready, round-trips


def test_same_result_for_every_input_kind(tiny_model_env: Path, astronaut_path: Path) -> None:
    from PIL import Image

    analyzer = FaceAnalyzer()
    ref = analyzer.analyze(astronaut_path).to_dict()
    for src in (astronaut_path.read_bytes(), facelens.load_image(astronaut_path), Image.open(astronaut_path)):
        d = analyzer.analyze(src).to_dict()  # type: ignore[arg-type]
        assert d["path"] is None  # in-memory input has no path
        assert d["faces"] == ref["faces"]
    assert analyzer.analyze(astronaut_path.read_bytes(), path="named.jpg").path == "named.jpg"


def test_detection_only_without_heads(no_models_env: Path, astronaut_path: Path) -> None:
    analyzer = FaceAnalyzer()
    assert analyzer.heads == []
    assert analyzer.missing_tasks() == ["age", "gender", "race", "attributes"]
    res = analyzer.analyze(astronaut_path)
    assert len(res.faces) == 1
    f = res.faces[0]
    assert f.age is None and f.gender is None and f.race is None and f.attributes is None
    d = res.to_dict()
    assert set(d) == RESULT_KEYS
    _check_face_dict(d["faces"][0], with_heads=False)


def test_heads_by_name_and_path(tiny_model_env: Path, tiny_model_path: Path, astronaut_path: Path) -> None:
    by_name = FaceAnalyzer(heads=("tiny-test",)).analyze(astronaut_path)
    by_path = FaceAnalyzer(heads=(str(tiny_model_path),)).analyze(astronaut_path)
    assert by_name.to_dict()["faces"] == by_path.to_dict()["faces"]
    none = FaceAnalyzer(heads=()).analyze(astronaut_path)
    assert set(none.to_dict()["faces"][0]) == DETECTION_KEYS
    with pytest.raises(ModelError, match="tiny-test"):
        FaceAnalyzer(heads=("no-such-head",)).analyze(astronaut_path)


def test_heads_with_the_same_crop_spec_share_one_alignment(
    no_models_env: Path,
    tmp_path: Path,
    tiny_model_path: Path,
    tiny_model_builder: Callable[..., Path],
    tiny_metadata_factory: Callable[..., ModelMetadata],
    astronaut_rgb: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flip = tiny_model_builder(tmp_path / "flip.onnx", test_time_flip=True, name="tiny-flip")
    shifted = Template("shifted", tuple((x, y + 0.03) for x, y in LOOSE_V1.points))
    meta = dataclasses.replace(tiny_metadata_factory(name="tiny-shifted"), alignment=shifted.to_dict())
    other = tiny_model_builder(tmp_path / "shifted.onnx", props=meta.to_props())
    analyzer = FaceAnalyzer(heads=(str(tiny_model_path), str(flip), str(other)))
    heads = analyzer.heads
    assert heads[0].crop_spec == heads[1].crop_spec == (LOOSE_V1, 16)
    assert heads[2].crop_spec == (shifted, 16) and len({h.crop_spec for h in heads}) == 2  # hashable keys

    aligned: list[tuple[int, str, int]] = []
    real_align = facelens.heads.runtime.align_faces

    def counting_align(image: np.ndarray, landmarks: list[np.ndarray], size: int, template: Template) -> np.ndarray:
        aligned.append((size, template.name, len(landmarks)))
        return real_align(image, landmarks, size, template)

    merged: list[list[HeadOutputs]] = []
    real_merge = facelens.pipeline._merge

    def recording_merge(i: int, det: Detection, outputs: list[HeadOutputs]) -> Face:
        merged.append(list(outputs))
        return real_merge(i, det, outputs)

    monkeypatch.setattr(facelens.heads.runtime, "align_faces", counting_align)
    monkeypatch.setattr(facelens.pipeline, "_merge", recording_merge)
    res = analyzer.analyze(astronaut_rgb)
    assert len(res.faces) == 1
    assert sorted(aligned) == [(16, "facelens-loose-v1", 1), (16, "shifted", 1)]  # once per spec, not per head

    # Each head answers exactly as it does run on its own (which aligns for itself).
    dets = [f.detection for f in res.faces]
    aligned.clear()
    alone = [h.run(astronaut_rgb, dets) for h in heads]
    assert len(aligned) == 3
    assert merged == [alone]
    assert alone[0] != alone[1] and alone[0] != alone[2]  # the three heads really differ (flip; template)
    assert res.faces[0].gender == (alone[0].gender or [None])[0]  # the first head that answers wins

    # No face: nothing is aligned and no head runs.
    aligned.clear()
    monkeypatch.setattr(HeadModel, "run_crops", lambda self, crops: pytest.fail("a head ran without faces"))
    assert analyzer.analyze(np.zeros((64, 64, 3), np.uint8)).faces == ()
    assert aligned == []


@pytest.mark.parametrize(
    ("make_source", "code"),
    [
        (lambda tmp: b"definitely not an image", "unreadable_image"),
        (lambda tmp: tmp / "missing.jpg", "unreadable_image"),
        (lambda tmp: str(tmp / "missing.jpg"), "unreadable_image"),
        (lambda tmp: 42, "unsupported_input"),
        (lambda tmp: np.zeros((4, 4, 2), np.uint8), "unsupported_input"),
    ],
    ids=["junk-bytes", "missing-path", "missing-str", "int", "bad-array"],
)
def test_analyze_safe_bad_input(no_models_env: Path, tmp_path: Path, make_source: object, code: str) -> None:
    source = make_source(tmp_path)  # type: ignore[operator]
    analyzer = FaceAnalyzer()
    res = analyzer.analyze_safe(source)
    assert not res.ok
    assert res.error and res.error_code == code
    assert res.faces == () and (res.width, res.height) == (0, 0)
    if isinstance(source, (str, Path)):
        assert res.path == str(source) and str(source) in res.error
    else:
        assert res.path is None  # in-memory input: null path (docs/schema.md); the message names the input
    d = res.to_dict()
    assert set(d) == RESULT_KEYS | {"error_code"}
    assert d["error_code"] == code and d["faces"] == []
    with pytest.raises(FaceLensError):
        analyzer.analyze(source)


def test_analyze_safe_huge_image(no_models_env: Path, huge_png_path: Path) -> None:
    res = FaceAnalyzer().analyze_safe(huge_png_path)
    assert res.error_code == "image_too_large" and str(huge_png_path) in (res.error or "")


def test_analyze_many_keeps_going(no_models_env: Path, astronaut_path: Path, tmp_path: Path) -> None:
    results = list(FaceAnalyzer().analyze_many([astronaut_path, tmp_path / "nope.png", astronaut_path]))
    assert [r.ok for r in results] == [True, False, True]
    assert [len(r.faces) for r in results] == [1, 0, 1]


def test_config_filters(no_models_env: Path, astronaut_rgb: np.ndarray) -> None:
    assert len(FaceAnalyzer(min_face_size=80).analyze(astronaut_rgb).faces) == 1
    assert FaceAnalyzer(min_face_size=200).analyze(astronaut_rgb).faces == ()
    assert FaceAnalyzer(max_faces=0).analyze(astronaut_rgb).faces == ()
    assert FaceAnalyzer(score_threshold=0.99).analyze(astronaut_rgb).faces == ()
    assert len(FaceAnalyzer(max_pixels=100).analyze(np.zeros((10, 10, 3), np.uint8)).faces) == 0
    with pytest.raises(ImageTooLarge):
        FaceAnalyzer(max_pixels=100).analyze(astronaut_rgb)
    with pytest.raises(TypeError):
        FaceAnalyzer(AnalyzerConfig(), max_faces=1)  # type: ignore[arg-type]
    with pytest.raises(FaceLensError, match="unknown detector"):
        FaceAnalyzer(detector="nope").analyze(astronaut_rgb)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"max_faces": -1}, "max_faces must be a number at least 0, not -1"),
        ({"score_threshold": 5}, r"score_threshold must be a number between 0.0 and 1.0, not 5"),
        ({"score_threshold": float("nan")}, "score_threshold .* not nan"),
        ({"upscale": 0}, "upscale"),
        ({"max_side": -5}, "max_side"),
        ({"min_face_size": -1.0}, "min_face_size"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"threads": True}, "threads"),
        ({"detector_options": [("pad", "auto")]}, "detector_options must be a dict"),
    ],
)
def test_out_of_range_settings_are_refused_before_anything_loads(settings: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidSettings, match=match):
        FaceAnalyzer(**settings)


def test_settings_are_normalised(no_models_env: Path, astronaut_rgb: np.ndarray) -> None:
    config = AnalyzerConfig(heads="one-model", max_side=0)  # type: ignore[arg-type]
    assert config.heads == ("one-model",) and config.max_side is None  # a name, not its letters; 0 = full size
    assert AnalyzerConfig(heads=["a", "b"]).heads == ("a", "b")  # type: ignore[arg-type]
    assert len(FaceAnalyzer(max_side=0).analyze(astronaut_rgb).faces) == 1


def test_analyze_safe_turns_an_unexpected_failure_into_an_error_result(
    no_models_env: Path, astronaut_rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyzer = FaceAnalyzer()

    def broken(image: np.ndarray) -> list[object]:
        raise struct.error("bad tag")  # what a corrupt file once tripped in a decoder

    monkeypatch.setattr(analyzer, "detect", broken)
    res = analyzer.analyze_safe(astronaut_rgb, path="x.jpg")
    assert (res.path, res.error_code, res.error, res.faces) == ("x.jpg", "internal_error", "error: bad tag", ())
    assert [r.error_code for r in analyzer.analyze_many([astronaut_rgb, astronaut_rgb])] == ["internal_error"] * 2


def test_analyzer_threads(tiny_model_env: Path, astronaut_rgb: np.ndarray) -> None:
    analyzer = FaceAnalyzer()
    ref = analyzer.analyze(astronaut_rgb).to_dict()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: analyzer.analyze(astronaut_rgb).to_dict(), range(4)))
    assert all(r == ref for r in results)


def test_toplevel_analyze(tiny_model_env: Path, astronaut_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facelens, "_default", None)
    res = facelens.analyze(astronaut_path)
    assert len(res.faces) == 1 and res.faces[0].age is not None
    assert facelens.analyze(str(astronaut_path)).to_dict() == res.to_dict()  # default analyzer reused
    monkeypatch.setattr(facelens, "_by_settings", {})
    assert facelens.analyze(astronaut_path, max_faces=0).faces == ()  # settings: an analyzer of their own
    kept = dict(facelens._by_settings)
    assert len(kept) == 1 and facelens.analyze(astronaut_path, max_faces=0).faces == ()
    assert list(facelens._by_settings.values()) == list(kept.values())  # the same analyzer, reused
    for n in range(1, 6):
        facelens.analyze(astronaut_path, max_faces=n)
    assert len(facelens._by_settings) == facelens._KEEP_ANALYZERS  # only the most recent settings are kept
    assert list(kept.values())[0] not in facelens._by_settings.values()
    assert facelens.FaceAnalyzer is FaceAnalyzer and facelens.AnalyzerConfig is AnalyzerConfig
    with pytest.raises(AttributeError):
        facelens.no_such_attribute  # noqa: B018


def test_public_api_exports() -> None:
    for name in facelens.__all__:
        assert getattr(facelens, name) is not None
    assert isinstance(facelens.__version__, str)


def test_import_is_light() -> None:
    code = (
        "import facelens, sys; "
        "print('onnxruntime' in sys.modules, 'cv2' in sys.modules, 'torch' in sys.modules, "
        "'facelens.pipeline' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"], out.stdout + out.stderr
