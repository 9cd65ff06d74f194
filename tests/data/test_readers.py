"""Tests of the dataset readers in facelens.data.

Every registered reader is exercised on the tiny synthetic example its ``write_example`` writes; the tests
marked ``shared_data`` read the real research data in ``../shared/data`` and skip when it is absent. No data
from there is copied into the repository: images the tests need are generated into ``tmp_path``.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import time
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
try:
    import facelens  # noqa: F401
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(_REPO / "src"))

from facelens.data import (  # noqa: E402
    DATASETS,
    DatasetIndex,
    DatasetReader,
    FaceSample,
    SkippedEntry,
    create_dataset,
    parse_adience_age,
    parse_fairface_age,
    parse_fgnet_name,
    parse_utkface_name,
)
from facelens.data.adience import FOLDS  # noqa: E402
from facelens.data.base import TINY_JPEG, write_tiny_jpeg  # noqa: E402
from facelens.data.fairface import FAIRFACE_RACES  # noqa: E402
from facelens.errors import DatasetError  # noqa: E402
from facelens.labels import CELEBA_ATTRIBUTES, GENDERS, RACES  # noqa: E402


def _shared_data() -> Path | None:
    # ../shared/data beside the checkout; some machines carry shared/ inside the checkout instead.
    for candidate in (_REPO.parent / "shared" / "data", _REPO / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


SHARED = _shared_data()


def _need_shared(*parts: str) -> Path:
    if SHARED is None:
        pytest.skip("shared research data (../shared/data) is not available")
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data path {path} is not available")
    return path


def check_sample(s: FaceSample) -> None:
    """Assert that a sample's fields have the documented types and ranges."""
    assert isinstance(s.path, Path)
    assert s.age is None or (isinstance(s.age, float) and 0 <= s.age <= 120)
    if s.age_range is not None:
        lo, hi = s.age_range
        assert isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi
        assert s.age == (lo + hi) / 2
    assert s.gender is None or s.gender in range(len(GENDERS))
    assert s.race is None or s.race in range(len(RACES))
    if s.attributes is not None:
        assert len(s.attributes) == len(CELEBA_ATTRIBUTES)
        assert set(s.attributes) <= {0, 1}
    assert s.identity is None or (isinstance(s.identity, str) and s.identity)
    assert s.split in (None, "train", "val", "test")
    assert s.fold is None or isinstance(s.fold, int)


# ----------------------------------------------------------------------------------------------------
# Every registered reader


def test_registry_names() -> None:
    assert {"utkface", "celeba", "adience", "fairface", "fgnet", "lfw"} <= set(DATASETS)
    for name, cls in DATASETS.items():
        assert issubclass(cls, DatasetReader)
        assert cls.name == name


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_reader_loads_its_example(name: str, tmp_path: Path) -> None:
    cls = DATASETS[name]
    assert cls.__doc__ and "Layout" in cls.__doc__, "class docstring must document the layout"
    expected = cls.write_example(tmp_path)
    assert expected > 0
    index = create_dataset(name, tmp_path).load()
    assert isinstance(index, DatasetIndex)
    assert index.name == name and index.root == tmp_path
    assert len(index.samples) == len(index) == expected
    assert len({s.path for s in index.samples}) == expected
    for s in index.samples:
        check_sample(s)
        assert tmp_path in s.path.parents
    for entry in index.skipped:
        assert isinstance(entry, SkippedEntry) and entry.path_or_line and entry.reason
    # Deterministic order.
    assert create_dataset(name, tmp_path).load() == index


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_root_names_the_path(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        create_dataset(name, missing).load()


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DatasetError) as info:
        create_dataset("imdb_wikipedia", "/tmp")
    for name in DATASETS:
        assert name in str(info.value)


def test_unknown_option_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="require_images"):
        create_dataset("adience", tmp_path, require_image=True)
    with pytest.raises(DatasetError, match="images"):
        create_dataset("adience", tmp_path, images="cropped")


@pytest.mark.parametrize("name", ["fgnet", "lfw"])
def test_readers_without_options_refuse_one(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="recursive"):
        create_dataset(name, tmp_path, recursive=False)


# ----------------------------------------------------------------------------------------------------
# UTKFace


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("25_0_0_20170116174525125.jpg.chip.jpg", (25, 0, 0)),
        ("1_1_4_20161219140530307.jpg.chip.jpg", (1, 1, 4)),
        ("40_0_3_20170117135331416.jpg", (40, 0, 3)),
    ],
)
def test_utkface_name_parses(name: str, expected: tuple[int, int, int]) -> None:
    assert parse_utkface_name(name) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("39_1_20170116174525125.jpg.chip.jpg", "4 underscore-separated fields"),
        ("24_0_1_20170116220224657 .jpg.chip.jpg", "whitespace"),
        ("55_0_0_20170116232725357jpg.chip.jpg", "missing dot"),
        ("30_3_0_20170116232725357.jpg.chip.jpg", "gender 3 out of range"),
        ("30_0_7_20170116232725357.jpg.chip.jpg", "race 7 out of range"),
        ("x_0_1_20170116232725357.jpg.chip.jpg", "age field 'x'"),
        ("-3_0_1_20170116232725357.jpg.chip.jpg", "age field"),
        ("300_0_1_20170116232725357.jpg.chip.jpg", "age 300 out of range"),
        ("30_0_1_20170116232725357.png", "does not end in"),
    ],
)
def test_utkface_malformed_names(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_utkface_name(name)


def test_utkface_skips_malformed_with_reasons(tmp_path: Path) -> None:
    DATASETS["utkface"].write_example(tmp_path)
    index = create_dataset("utkface", tmp_path).load()
    reasons = {Path(e.path_or_line).name: e.reason for e in index.skipped}
    assert len(reasons) == 5
    assert "found 3" in reasons["39_1_20170116174525125.jpg.chip.jpg"]
    assert "whitespace" in reasons["24_0_1_20170116220224657 .jpg.chip.jpg"]
    assert "missing dot" in reasons["55_0_0_20170116232725357jpg.chip.jpg"]
    assert "gender 3" in reasons["30_3_0_20170116232725357.jpg.chip.jpg"]
    assert "age field" in reasons["x_0_7_20170116232725357.jpg.chip.jpg"]
    by_name = {s.path.name: s for s in index.samples}
    s = by_name["116_1_4_20170120134921760.jpg.chip.jpg"]
    assert (s.age, s.gender, s.race, s.split, s.identity) == (116.0, 1, 4, None, None)
    assert "40_0_3_20170117135331416.jpg" in by_name  # in-the-wild naming, in a subfolder


def test_utkface_root_may_be_the_image_folder(tmp_path: Path) -> None:
    n = DATASETS["utkface"].write_example(tmp_path)
    assert len(create_dataset("utkface", tmp_path / "UTKFace").load()) == n
    flat = create_dataset("utkface", tmp_path / "UTKFace", recursive=False).load()
    assert len(flat) == n - 1  # the in-the-wild example sits in a subfolder


def test_utkface_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no image files"):
        create_dataset("utkface", tmp_path).load()


# ----------------------------------------------------------------------------------------------------
# CelebA


def _gzip_in_place(path: Path) -> None:
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
        f.write(path.read_bytes())
    path.unlink()


@pytest.mark.parametrize("compressed", [False, True])
def test_celeba_join_partition_and_attribute_coding(tmp_path: Path, compressed: bool) -> None:
    DATASETS["celeba"].write_example(tmp_path)
    if compressed:
        _gzip_in_place(tmp_path / "list_attr_celeba.txt")
        _gzip_in_place(tmp_path / "list_eval_partition.txt")
    index = create_dataset("celeba", tmp_path).load()
    by_name = {s.path.name: s for s in index.samples}
    assert sorted(by_name) == ["000001.jpg", "000002.jpg", "000003.jpg"]  # 000006 has no image
    assert [by_name[n].split for n in sorted(by_name)] == ["train", "val", "test"]
    s1 = by_name["000001.jpg"]
    assert s1.attributes == tuple(1 if i % 2 else 0 for i in range(40))
    male = CELEBA_ATTRIBUTES.index("Male")
    assert s1.attributes[male] == 0 and s1.gender == 1
    assert by_name["000002.jpg"].attributes == (0,) * 40 and by_name["000002.jpg"].gender == 1
    assert by_name["000003.jpg"].attributes == (1,) * 40 and by_name["000003.jpg"].gender == 0
    assert all(s.path.parent.name == "face_crops" and s.identity is None for s in index.samples)
    reasons = {e.path_or_line: e.reason for e in index.skipped}
    assert len(reasons) == 2
    assert any("000005.jpg" in k and "no line" in v for k, v in reasons.items())
    assert any(k.endswith("list_attr_celeba.txt" + (".gz" if compressed else "") + ":6") for k in reasons)
    assert any("found 39" in v for v in reasons.values())


def test_celeba_image_folder_option_and_identity(tmp_path: Path) -> None:
    DATASETS["celeba"].write_example(tmp_path)
    write_tiny_jpeg(tmp_path / "img_align_celeba" / "img_align_celeba" / "000006.jpg")  # Kaggle-style nesting
    (tmp_path / "identity_CelebA.txt").write_text("000006.jpg 17\n000001.jpg 3\n")
    index = create_dataset("celeba", tmp_path, images="img_align_celeba").load()
    assert [(s.path.name, s.identity, s.split) for s in index.samples] == [("000006.jpg", "17", "train")]
    # Default: face_crops is preferred over img_align_celeba; the identity file is picked up when present.
    default = create_dataset("celeba", tmp_path).load()
    assert {s.path.name: s.identity for s in default.samples}["000001.jpg"] == "3"
    with pytest.raises(DatasetError, match="img_align_celeba_89x109"):
        create_dataset("celeba", tmp_path, images="img_align_celeba_89x109").load()
    with pytest.raises(DatasetError, match="identity"):
        create_dataset("celeba", tmp_path, identity_file="nope.txt").load()


def test_celeba_permuted_header_is_reordered(tmp_path: Path) -> None:
    DATASETS["celeba"].write_example(tmp_path)
    attr = tmp_path / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    names = lines[1].split()
    perm = list(range(39, -1, -1))
    out = [lines[0], " ".join(names[i] for i in perm)]
    for line in lines[2:]:
        parts = line.split()
        out.append(" ".join([parts[0], *(parts[1:][i] for i in perm)]) if len(parts) == 41 else line)
    attr.write_text("\n".join(out) + "\n")
    s1 = next(s for s in create_dataset("celeba", tmp_path).load().samples if s.path.name == "000001.jpg")
    assert s1.attributes == tuple(1 if i % 2 else 0 for i in range(40))


def test_celeba_missing_label_file_names_it(tmp_path: Path) -> None:
    DATASETS["celeba"].write_example(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "list_eval_partition.txt"))):
        create_dataset("celeba", tmp_path).load()


def test_celeba_bad_header_is_an_error(tmp_path: Path) -> None:
    DATASETS["celeba"].write_example(tmp_path)
    (tmp_path / "list_attr_celeba.txt").write_text("1\nSmiling Young\n000001.jpg 1 -1\n")
    with pytest.raises(DatasetError, match="40 CelebA attributes"):
        create_dataset("celeba", tmp_path).load()


# ----------------------------------------------------------------------------------------------------
# Adience


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(25, 32)", (28.5, (25, 32))),
        ("(0, 2)", (1.0, (0, 2))),
        ("(60, 100)", (80.0, (60, 100))),
        ("(8, 23)", (15.5, (8, 23))),
        ("(38, 42)", (40.0, (38, 42))),
        ("(27, 32)", (29.5, (27, 32))),
        ("35", (35.0, None)),
        ("13", (13.0, None)),
        ("None", (None, None)),
        ("", (None, None)),
        ("  ", (None, None)),
    ],
)
def test_adience_age_forms(text: str, expected: tuple) -> None:
    assert parse_adience_age(text) == expected


@pytest.mark.parametrize("text", ["(25 32)", "(32, 25)", "(a, b)", "25-32", "thirty", "3.5"])
def test_adience_bad_ages(text: str) -> None:
    with pytest.raises(ValueError):
        parse_adience_age(text)


@pytest.mark.parametrize(
    ("images", "folder", "prefix"),
    [("aligned", "aligned", "landmark_aligned_face"), ("faces", "faces", "coarse_tilt_aligned_face")],
)
def test_adience_image_layouts(tmp_path: Path, images: str, folder: str, prefix: str) -> None:
    DATASETS["adience"].write_example(tmp_path)
    index = create_dataset("adience", tmp_path, images=images).load()
    s = index.samples[0]
    assert s.path == tmp_path / folder / "user0@N00" / f"{prefix}.1.1000_abc_o.jpg"
    assert (s.identity, s.fold, s.age, s.age_range, s.gender, s.split) == (
        "user0@N00",
        0,
        28.5,
        (25, 32),
        1,
        None,
    )
    assert [s.fold for s in index.samples] == [f for f in FOLDS for _ in range(2)]
    assert len(index.skipped) == 2


def test_adience_labels_and_require_images(tmp_path: Path) -> None:
    n = DATASETS["adience"].write_example(tmp_path)
    index = create_dataset("adience", tmp_path).load()
    assert [(s.age, s.gender) for s in index.samples[:4]] == [
        (28.5, 1),
        (35.0, 0),
        (None, None),
        (15.5, None),
    ]
    reasons = [e.reason for e in index.skipped]
    assert any("'(25 32)'" in r for r in reasons) and any("gender 'q'" in r for r in reasons)
    kept = create_dataset("adience", tmp_path, require_images=True).load()
    assert len(kept) == len(FOLDS)  # write_example writes the aligned image of the first row of each fold
    assert all(s.path.is_file() for s in kept.samples)
    assert sum("image not found" in e.reason for e in kept.skipped) == n - len(FOLDS)
    faces = create_dataset("adience", tmp_path, images="faces", require_images=True).load()
    assert len(faces) == 0


def test_adience_missing_fold_file_names_it(tmp_path: Path) -> None:
    DATASETS["adience"].write_example(tmp_path)
    (tmp_path / "fold_3_data.txt").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "fold_3_data.txt"))):
        create_dataset("adience", tmp_path).load()
    assert len(create_dataset("adience", tmp_path, folds=[0, 1]).load()) == 4


# ----------------------------------------------------------------------------------------------------
# FairFace


def test_fairface_race_mapping() -> None:
    expected = {
        "White": "white",
        "Black": "black",
        "East Asian": "asian",
        "Southeast Asian": "asian",
        "Indian": "indian",
        "Latino_Hispanic": "other",
        "Middle Eastern": "other",
    }
    assert {k: RACES[v] for k, v in FAIRFACE_RACES.items()} == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-2", (1.0, (0, 2))),
        ("3-9", (6.0, (3, 9))),
        ("20-29", (24.5, (20, 29))),
        ("more than 70", (85.0, (70, 100))),
    ],
)
def test_fairface_age_groups(text: str, expected: tuple) -> None:
    assert parse_fairface_age(text) == expected


def test_fairface_example_labels(tmp_path: Path) -> None:
    DATASETS["fairface"].write_example(tmp_path)
    index = create_dataset("fairface", tmp_path).load()
    assert [s.split for s in index.samples] == ["train"] * 7 + ["val"] * 3
    races = [RACES[s.race] for s in index.samples[:7]]
    assert races == ["white", "black", "asian", "asian", "indian", "other", "other"]
    assert [s.gender for s in index.samples[:2]] == [1, 0]
    assert index.samples[8].age_range == (70, 100)
    assert index.samples[0].path == tmp_path / "train" / "1.jpg"
    assert len(index.skipped) == 3
    kept = create_dataset("fairface", tmp_path, require_images=True).load()
    assert [s.path.relative_to(tmp_path).as_posix() for s in kept.samples] == ["train/1.jpg", "val/1.jpg"]
    with pytest.raises(DatasetError, match="splits"):
        create_dataset("fairface", tmp_path, splits=("test",))


def test_fairface_missing_label_file_names_it(tmp_path: Path) -> None:
    DATASETS["fairface"].write_example(tmp_path)
    (tmp_path / "fairface_label_val.csv").unlink()
    with pytest.raises(DatasetError, match="fairface_label_val.csv"):
        create_dataset("fairface", tmp_path).load()
    assert len(create_dataset("fairface", tmp_path, splits=["train"]).load()) == 7


# ----------------------------------------------------------------------------------------------------
# FG-NET and LFW


def test_fgnet_names(tmp_path: Path) -> None:
    assert parse_fgnet_name("001A02.JPG") == ("001", 2)
    assert parse_fgnet_name("001A43a.JPG") == ("001", 43)
    with pytest.raises(ValueError):
        parse_fgnet_name("1A02.JPG")
    DATASETS["fgnet"].write_example(tmp_path)
    index = create_dataset("fgnet", tmp_path).load()
    assert [(s.identity, s.age) for s in index.samples] == [
        ("001", 2.0),
        ("001", 43.0),
        ("002", 16.0),
        ("082", 5.0),
    ]
    assert sorted(Path(e.path_or_line).name for e in index.skipped) == ["001B02.JPG", "1A02.JPG"]


def test_lfw_identities(tmp_path: Path) -> None:
    DATASETS["lfw"].write_example(tmp_path)
    index = create_dataset("lfw", tmp_path).load()
    assert [s.identity for s in index.samples] == ["Ada_Lovelace", "Ada_Lovelace", "Alan_Turing"]
    assert all(s.age is None and s.gender is None for s in index.samples)
    assert [Path(e.path_or_line).name for e in index.skipped] == ["Ada_Lovelace_0003.jpg"]


def test_tiny_jpeg_decodes(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    write_tiny_jpeg(tmp_path / "a.jpg")
    with image.open(tmp_path / "a.jpg") as im:
        im.load()
        assert im.size == (1, 1)
    assert (tmp_path / "a.jpg").read_bytes() == TINY_JPEG


# ----------------------------------------------------------------------------------------------------
# Real shared data (skips when ../shared/data is absent)


def _write_jpeg(path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.new("RGB", (8, 8), (120, 90, 60)).save(path, "JPEG")


def _link_label_files(src: Path, dst: Path, names: list[str]) -> None:
    for name in names:
        target = dst / name
        try:
            os.symlink(src / name, target)
        except OSError:
            target.write_bytes((src / name).read_bytes())


@pytest.mark.shared_data
def test_shared_utkface() -> None:
    root = _need_shared("utkface")
    index = create_dataset("utkface", root).load()
    total = len(index.samples) + len(index.skipped)
    assert total == 19_583
    assert 0 < len(index.skipped) <= 20
    ages = [s.age for s in index.samples]
    assert min(ages) >= 1 and max(ages) <= 116
    assert 25 <= sum(ages) / len(ages) <= 40
    assert {s.gender for s in index.samples} == {0, 1}
    assert {s.race for s in index.samples} == set(range(5))


@pytest.mark.shared_data
def test_shared_celeba_face_crops() -> None:
    root = _need_shared("celeba", "face_crops")
    t0 = time.perf_counter()
    index = create_dataset("celeba", root.parent, images="face_crops").load()
    elapsed = time.perf_counter() - t0
    assert len(index.samples) == 6_000 and not index.skipped
    assert {s.split for s in index.samples} <= {"train", "val"}
    assert len({s.split for s in index.samples}) == 2
    for s in index.samples[:200]:
        check_sample(s)
        assert s.gender == 1 - s.attributes[CELEBA_ATTRIBUTES.index("Male")]
    assert elapsed < 3.0, f"parsing the CelebA label files took {elapsed:.2f} s"


@pytest.mark.shared_data
def test_shared_celeba_aligned() -> None:
    root = _need_shared("celeba", "img_align_celeba_89x109")
    index = create_dataset("celeba", root.parent, images="img_align_celeba_89x109").load()
    assert len(index.samples) == 10_000 and not index.skipped
    assert {s.split for s in index.samples} == {"train"}


@pytest.mark.shared_data
def test_shared_adience(tmp_path: Path) -> None:
    src = _need_shared("adience")
    _link_label_files(src, tmp_path, [f"fold_{k}_data.txt" for k in FOLDS])
    index = create_dataset("adience", tmp_path).load()
    assert len(index.samples) == 19_370 and not index.skipped
    per_fold = [sum(s.fold == k for s in index.samples) for k in FOLDS]
    assert per_fold == [4484, 3730, 3894, 3446, 3816]
    for s in index.samples:
        check_sample(s)
    ranges = {s.age_range for s in index.samples if s.age_range is not None}
    assert (8, 23) in ranges and (38, 42) in ranges and (27, 32) in ranges
    assert any(s.age == 13.0 and s.age_range is None for s in index.samples)
    assert 0 < sum(s.age is None for s in index.samples) < 1_000
    assert 0 < sum(s.gender is None for s in index.samples) < 2_500
    # Users never span folds (the benchmark's folds are subject-disjoint).
    folds_of: dict[str, set[int | None]] = {}
    for s in index.samples:
        folds_of.setdefault(s.identity or "", set()).add(s.fold)
    assert all(len(f) == 1 for f in folds_of.values())

    chosen = [index.samples[0], index.samples[5_000], index.samples[-1]]
    for s in chosen:
        _write_jpeg(s.path)
    kept = create_dataset("adience", tmp_path, require_images=True).load()
    assert [s.path for s in kept.samples] == [s.path for s in chosen]
    assert len(kept.skipped) == 19_370 - 3


@pytest.mark.shared_data
def test_shared_fairface(tmp_path: Path) -> None:
    src = _need_shared("fairface")
    _link_label_files(src, tmp_path, ["fairface_label_train.csv", "fairface_label_val.csv"])
    index = create_dataset("fairface", tmp_path).load()
    assert not index.skipped
    assert sum(s.split == "train" for s in index.samples) == 86_744
    assert sum(s.split == "val" for s in index.samples) == 10_954
    assert {s.race for s in index.samples} == set(range(5))
    assert {s.age_range for s in index.samples} == {
        (0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 100),
    }  # fmt: skip
    chosen = [index.samples[0], index.samples[86_744], index.samples[-1]]
    for s in chosen:
        _write_jpeg(s.path)
    kept = create_dataset("fairface", tmp_path, require_images=True).load()
    assert [s.path for s in kept.samples] == [s.path for s in chosen]
    assert [s.split for s in kept.samples] == ["train", "val", "val"]
