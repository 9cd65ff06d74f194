from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelens.align import LOOSE_V1, align_face
from facelens.data.base import FaceSample
from facelens.train import cache as cache_mod
from facelens.train.cache import assign_splits, build_cache, choose_face, open_cache, to_records
from facelens.train.config import DataConfig, DatasetSpec, PreprocessConfig, TrainConfig
from facelens.types import Box, Detection, Landmarks

SIZE = 24
LANDMARKS = np.array([[12, 14], [20, 14], [16, 19], [13, 24], [19, 24]], np.float32)


def det(x1: float, y1: float, x2: float, y2: float, score: float = 0.9) -> Detection:
    return Detection(Box(x1, y1, x2, y2), score, Landmarks.from_array(LANDMARKS))


class FakeDetector:
    """Returns one face with fixed landmarks, none for files named 'noface', and fails on demand."""

    name = "fake"
    calls: list[tuple[int, int]] = []
    fail_after: int | None = None

    def detect(self, image: np.ndarray) -> list[Detection]:
        if FakeDetector.fail_after is not None and len(FakeDetector.calls) >= FakeDetector.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        FakeDetector.calls.append(image.shape[:2])
        if image.shape[0] == 33:  # the 'noface' image is 33 px high
            return []
        return [det(0, 0, 8, 8, 0.95), det(8, 8, 28, 30, 0.9)]


@pytest.fixture()
def fake_detector(monkeypatch: pytest.MonkeyPatch) -> type[FakeDetector]:
    FakeDetector.calls = []
    FakeDetector.fail_after = None
    monkeypatch.setattr(cache_mod, "make_detector", lambda name, options: FakeDetector())
    return FakeDetector


def samples(tmp_path: Path) -> list[FaceSample]:
    rng = np.random.default_rng(0)
    out = []
    for i, h in enumerate([32, 32, 33, 32]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, 32, 3), dtype=np.uint8)).save(path)
        out.append(FaceSample(path=path, age=20.0 + i, gender=i % 2, race=i % 5))
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not an image")
    out.append(FaceSample(path=bad, age=50.0, gender=0, race=1))
    attrs = tuple([0] * 20 + [1] + [0] * 19)  # Male = 1
    out.append(FaceSample(path=tmp_path / "img0.png", attributes=attrs, split="val"))
    return out


def config(tmp_path: Path, chunk_size: int = 2) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(datasets=(DatasetSpec("utkface", str(tmp_path)),), cache_dir=str(tmp_path / "cache")),
        preprocess=PreprocessConfig(size=SIZE, workers=0, chunk_size=chunk_size, detector="fake"),
    )


def test_build_cache_stores_aligned_faces_and_reports_misses(tmp_path: Path, fake_detector: type) -> None:
    cfg = config(tmp_path)
    records = to_records("utkface", samples(tmp_path), 0.25, 0.0, seed=0)
    info = build_cache(cfg, records, {"utkface": {"root": str(tmp_path)}}, progress=False)
    assert (info.n_samples, info.n_faces, info.no_face, info.unreadable) == (6, 4, 1, 1)
    assert not info.reused
    c = open_cache(info.path)
    assert c.images.shape == (4, SIZE, SIZE, 3) and c.images.dtype == np.uint8
    # the largest, most central face was chosen and aligned like align_face does it
    rgb = np.asarray(Image.open(tmp_path / "img0.png").convert("RGB"))
    np.testing.assert_array_equal(c.images[0], align_face(rgb, LANDMARKS, SIZE, LOOSE_V1))
    lab = c.labels
    assert lab["source_index"].tolist() == [0, 1, 3, 5]
    assert lab["age"][:3].tolist() == [20.0, 21.0, 23.0] and np.isnan(lab["age"][3])
    assert lab["gender"].tolist() == [0, 1, 1, 0]  # the last from Male = 1
    assert lab["race"].tolist() == [0, 1, 3, -1]
    assert (lab["attributes"][:3] == -1).all() and lab["attributes"][3, 20] == 1
    assert lab["split"][3] == "val" and set(lab["split"]) <= {"train", "val"}
    assert lab["dataset"].tolist() == ["utkface"] * 4
    meta = json.loads((info.path / "meta.json").read_text())
    assert meta["totals"] == {"samples": 6, "faces": 4, "no_face": 1, "unreadable": 1}
    assert meta["template"] == LOOSE_V1.to_dict() and meta["size"] == SIZE
    assert meta["sources"]["utkface"]["root"] == str(tmp_path)
    assert (info.path / "no_face.txt").read_text().strip().endswith("img2.png")
    assert (info.path / "unreadable.txt").read_text().strip().endswith("corrupt.jpg")
    assert not (info.path / "partial").exists()

    n_calls = len(fake_detector.calls)
    again = build_cache(cfg, records, progress=False)
    assert again.reused and again.path == info.path and len(fake_detector.calls) == n_calls


def test_cache_key_changes_with_settings_and_labels(tmp_path: Path) -> None:
    records = to_records("utkface", samples(tmp_path), 0.25, 0.0, seed=0)
    cfg = config(tmp_path)
    key = cache_mod.cache_key(cfg, records)
    assert key == cache_mod.cache_key(config(tmp_path, chunk_size=7), records)  # chunking is not a setting
    bigger = TrainConfig(data=cfg.data, preprocess=PreprocessConfig(size=SIZE + 1, detector="fake"))
    assert cache_mod.cache_key(bigger, records) != key
    relabelled = to_records("utkface", samples(tmp_path), 0.5, 0.0, seed=0)
    assert cache_mod.cache_key(cfg, relabelled) != key


def test_interrupted_build_resumes(tmp_path: Path, fake_detector: type) -> None:
    cfg = config(tmp_path, chunk_size=1)
    records = to_records("utkface", samples(tmp_path)[:4], 0.0, 0.0, seed=0)
    fake_detector.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        build_cache(cfg, records, progress=False)
    assert len(fake_detector.calls) == 2
    fake_detector.fail_after = None
    info = build_cache(cfg, records, progress=False)
    assert len(fake_detector.calls) == 4  # the first two were not detected again
    assert (info.n_faces, info.no_face) == (3, 1)


def test_choose_face_prefers_large_central_confident_faces() -> None:
    big_central = det(30, 30, 70, 70, 0.80)
    small_corner = det(0, 0, 10, 10, 0.90)
    assert choose_face([small_corner, big_central], 100, 100) is big_central
    weak_big = det(10, 10, 90, 90, 0.50)  # more than 0.15 below the best score: not a candidate
    assert choose_face([small_corner, weak_big], 100, 100) is small_corner
    assert choose_face([], 100, 100) is None


def test_assign_splits_is_seeded_and_sized() -> None:
    a = assign_splits(1000, 0.1, 0.1, seed=0, source="utkface")
    assert a == assign_splits(1000, 0.1, 0.1, seed=0, source="utkface")
    assert a != assign_splits(1000, 0.1, 0.1, seed=1, source="utkface")
    assert (a.count("val"), a.count("test"), a.count("train")) == (100, 100, 800)


def test_official_splits_are_kept(tmp_path: Path) -> None:
    s = [FaceSample(path=tmp_path / f"{i}.jpg", split="train" if i % 2 else "val") for i in range(10)]
    assert [r.split for r in to_records("celeba", s, 0.5, 0.2, seed=0)] == [x.split for x in s]


def _shared_data() -> Path | None:
    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo.parent / "shared" / "data", repo / "shared" / "data"):
        if (candidate / "utkface").is_dir() and (candidate / "celeba").is_dir():
            return candidate
    return None


@pytest.mark.shared_data
def test_real_preprocessing_on_a_few_shared_images(tmp_path: Path) -> None:
    """YuNet, the real readers and alignment on 6 UTKFace chips and 6 CelebA crops (written to tmp only)."""
    shared = _shared_data()
    if shared is None:
        pytest.skip("shared research data (../shared/data) is not available")
    cfg = TrainConfig(
        data=DataConfig(
            datasets=(
                DatasetSpec("utkface", str(shared / "utkface"), max_samples=6),
                DatasetSpec("celeba", str(shared / "celeba"), {"images": "face_crops"}, id="crops", max_samples=6),
            ),
            cache_dir=str(tmp_path / "cache"),
        ),
        preprocess=PreprocessConfig(size=SIZE, workers=0),
    )
    info = build_cache(cfg, progress=False)
    assert info.n_samples == 12 and info.n_faces + info.no_face == 12 and info.n_faces >= 10
    c = open_cache(info.path)
    assert set(c.labels["dataset"]) == {"utkface", "crops"}
    utk = c.labels["dataset"] == "utkface"
    assert not np.isnan(c.labels["age"][utk]).any() and (c.labels["attributes"][utk] == -1).all()
    assert (c.labels["attributes"][~utk] >= 0).all() and (c.labels["race"][~utk] == -1).all()
    assert (c.labels["det_score"] >= 0.6).all()


def _utk_folder(root: Path, names: list[str]) -> Path:
    folder = root / "UTKFace"
    folder.mkdir(parents=True)
    for name in names:
        Image.new("RGB", (32, 32)).save(folder / name)
    return root


def test_collect_records_expands_environment_variables_in_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facelens.train.cache import collect_records

    _utk_folder(tmp_path / "data" / "utk", ["25_0_0_20170116174525125.jpg.chip.jpg"])
    monkeypatch.setenv("FACELENS_TEST_DATA", str(tmp_path / "data"))
    spec = DatasetSpec("utkface", "$FACELENS_TEST_DATA/utk")
    records, sources = collect_records(TrainConfig(data=DataConfig(datasets=(spec,))))
    assert len(records) == 1 and sources["utkface"]["root"] == str((tmp_path / "data" / "utk").resolve())


def test_a_source_that_yields_no_samples_is_an_error_naming_it(tmp_path: Path) -> None:
    from facelens.train.cache import collect_records
    from facelens.train.config import ConfigError

    good = _utk_folder(tmp_path / "utk", ["25_0_0_20170116174525125.jpg.chip.jpg"])
    wrong = _utk_folder(tmp_path / "celeba", ["000001.jpg", "000002.jpg"])  # CelebA names: no UTKFace sample
    specs = (DatasetSpec("utkface", str(good)), DatasetSpec("utkface", str(wrong), id="second"))
    with pytest.raises(ConfigError) as err:
        build_cache(TrainConfig(data=DataConfig(datasets=specs, cache_dir=str(tmp_path / "cache"))), progress=False)
    message = str(err.value)
    assert message.startswith(f"data source 'second' (utkface reader, root {wrong}) yielded no samples: the reader")
    assert "skipped 2 entries, e.g. " in message and "000001.jpg: expected 4 underscore-separated fields" in message
    assert not (tmp_path / "cache").exists()
    assert len(collect_records(TrainConfig(data=DataConfig(datasets=specs[:1])))[0]) == 1
