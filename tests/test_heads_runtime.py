"""Tests of facelens.heads: metadata, the ONNX runtime wrapper and the model registry, with a tiny built model."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facelens.align import LOOSE_V1
from facelens.detect import create_detector
from facelens.errors import FaceLensError, ModelError
from facelens.heads import HeadModel, HeadOutputs, ModelMetadata, find_model, list_models, model_dirs, read_metadata
from facelens.heads.metadata import REQUIRED_KEYS
from facelens.labels import AGE_GROUP_SCHEMES, CELEBA_ATTRIBUTES, GENDERS, RACES, age_group, age_group_label
from facelens.types import Age, Detection, Label

Builder = Callable[..., Path]


@pytest.fixture(scope="module")
def astronaut_detection(astronaut_rgb: np.ndarray) -> Detection:
    dets = create_detector("yunet").detect(astronaut_rgb)
    assert len(dets) == 1
    return dets[0]


@pytest.fixture(scope="module")
def tiny_head(tiny_model_path: Path) -> HeadModel:
    return HeadModel(tiny_model_path)


# ------------------------------------------------------------------------------------------------------------
# Metadata


def test_metadata_props_roundtrip(tiny_metadata_factory: Callable[..., ModelMetadata]) -> None:
    meta = tiny_metadata_factory(test_time_flip=True)
    props = meta.to_props()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert set(REQUIRED_KEYS) <= set(props)
    assert props["facelens.extra.purpose"] == "tests"
    assert ModelMetadata.from_props(props) == meta
    assert meta.tasks == ("age", "gender", "race", "attributes")


def test_read_metadata_roundtrip(tiny_model_path: Path, tiny_metadata_factory: Callable[..., ModelMetadata]) -> None:
    meta = read_metadata(tiny_model_path)
    assert meta == tiny_metadata_factory()
    assert meta.input.size == 16 and meta.input.name == "input"
    assert meta.outputs[1].labels == GENDERS and meta.outputs[2].labels == RACES
    assert meta.outputs[3].labels == CELEBA_ATTRIBUTES
    assert meta.alignment == LOOSE_V1.to_dict()


def test_model_without_metadata_refused(tmp_path: Path, tiny_model_builder: Builder) -> None:
    p = tiny_model_builder(tmp_path / "bare.onnx", with_metadata=False)
    with pytest.raises(ModelError) as ei:
        read_metadata(p)
    msg = str(ei.value)
    assert str(p) in msg
    for key in REQUIRED_KEYS:
        assert key in msg
    with pytest.raises(ModelError):
        HeadModel(p)


def test_partial_metadata_names_only_missing_keys(
    tmp_path: Path, tiny_model_builder: Builder, tiny_metadata_factory: Callable[..., ModelMetadata]
) -> None:
    props = tiny_metadata_factory().to_props()
    del props["facelens.alignment"], props["facelens.outputs"]
    p = tiny_model_builder(tmp_path / "partial.onnx", props=props)
    with pytest.raises(ModelError) as ei:
        read_metadata(p)
    msg = str(ei.value)
    assert "facelens.alignment" in msg and "facelens.outputs" in msg
    assert "facelens.input" not in msg.split("lacks", 1)[1].split("(", 1)[0]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("facelens.input", "{not json", "malformed"),
        ("facelens.outputs", "[{]", "malformed"),
        ("facelens.alignment", "nope", "malformed"),
        ("facelens.metrics", "{", "malformed"),
        ("facelens.input", json.dumps({"name": "input"}), "malformed"),  # no size/mean/std
        ("facelens.input", json.dumps({"name": "input", "size": "x", "mean": [0] * 3, "std": [1] * 3}), "malformed"),
        ("facelens.outputs", json.dumps([{"name": "a", "task": "beauty"}]), "unknown output task"),
        ("facelens.schema", "2", "schema"),
        (
            "facelens.input",
            json.dumps({"name": "input", "size": 16, "mean": [0] * 3, "std": [1] * 3, "layout": "NHWC"}),
            "NCHW",
        ),
    ],
)
def test_malformed_metadata(
    tmp_path: Path,
    tiny_model_builder: Builder,
    tiny_metadata_factory: Callable[..., ModelMetadata],
    key: str,
    value: str,
    match: str,
) -> None:
    props = tiny_metadata_factory().to_props()
    props[key] = value
    with pytest.raises(ModelError, match=match):
        ModelMetadata.from_props(props, source="x.onnx")
    p = tiny_model_builder(tmp_path / "bad.onnx", props=props)
    with pytest.raises(ModelError) as ei:
        read_metadata(p)
    assert str(p) in str(ei.value)
    assert isinstance(ei.value, FaceLensError)


def _outputs(**changes: object) -> str:
    """The tiny model's outputs as metadata JSON, with ``changes`` (output name -> dict of fields) applied."""
    outs = [
        {"name": "age_probs", "task": "age", "labels": []},
        {"name": "gender_probs", "task": "gender", "labels": list(GENDERS)},
        {"name": "race_probs", "task": "race", "labels": list(RACES)},
        {"name": "attr_probs", "task": "attributes", "labels": list(CELEBA_ATTRIBUTES)},
    ]
    return json.dumps([{**o, **changes.get(o["name"], {})} for o in outs])  # type: ignore[dict-item]


def _input(**changes: object) -> str:
    return json.dumps({"name": "input", "size": 16, "mean": [0.5] * 3, "std": [0.25] * 3, **changes})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("facelens.input", _input(mean=[0.5]), "one value per RGB channel"),
        ("facelens.input", _input(std=[0.25, 0.0, 0.25]), "std positive"),
        ("facelens.input", _input(size=0), "at least 1 pixel"),
        ("facelens.outputs", "[]", "no outputs"),
        (
            "facelens.outputs",
            _outputs(gender_probs={"labels": []}),
            r"\(gender\) must be labelled \['male', 'female'\]",
        ),
        ("facelens.outputs", _outputs(race_probs={"labels": ["a", "b", "c", "d", "e"]}), "must be labelled"),
        ("facelens.outputs", _outputs(attr_probs={"labels": ["Smiling", "Smiling"]}), "one distinct label"),
        ("facelens.outputs", _outputs(attr_probs={"task": "race", "labels": list(RACES)}), "more than one output"),
        ("facelens.age", "[1, 2]", "malformed"),
        ("facelens.outputs", json.dumps({"name": "x"}), "malformed"),
        ("facelens.test_time_flip", "True", "must be 'true' or 'false'"),
        ("facelens.metrics", "{}", "no measured metric"),
        ("facelens.metrics", "[0.9]", "no measured metric"),
    ],
)
def test_unusable_metadata_values_are_refused_when_read(
    tiny_metadata_factory: Callable[..., ModelMetadata], key: str, value: str, match: str
) -> None:
    props = tiny_metadata_factory().to_props()
    props[key] = value
    with pytest.raises(ModelError, match=match):
        ModelMetadata.from_props(props, source="x.onnx")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("facelens.input", _input(name="pixels"), r"no input named 'pixels' \(the graph's: \['input'\]\)"),
        (
            "facelens.input",
            _input(size=17),
            r"input 'input' has shape \['N', 3, 16, 16\], not \[batch, 3, 17, 17\]",
        ),
        ("facelens.outputs", _outputs(race_probs={"name": "ethnicity"}), "no output named 'ethnicity'"),
        (
            "facelens.outputs",
            _outputs(attr_probs={"labels": list(CELEBA_ATTRIBUTES[:39])}),
            "40 values per face but 39",
        ),
    ],
)
def test_metadata_that_does_not_match_the_graph_is_refused_before_the_first_image(
    tmp_path: Path,
    tiny_model_builder: Builder,
    tiny_metadata_factory: Callable[..., ModelMetadata],
    key: str,
    value: str,
    match: str,
) -> None:
    props = tiny_metadata_factory().to_props()
    assert json.loads(props["facelens.input"])["size"] == 16  # the tiny graph's input side
    props[key] = value
    ModelMetadata.from_props(props)  # well-formed on its own
    p = tiny_model_builder(tmp_path / "mismatch.onnx", props=props)
    with pytest.raises(ModelError, match=match):
        read_metadata(p)
    with pytest.raises(ModelError, match="does not match the ONNX graph"):
        HeadModel(p)


def test_bad_alignment_template_refused(
    tmp_path: Path, tiny_model_builder: Builder, tiny_metadata_factory: Callable[..., ModelMetadata]
) -> None:
    props = tiny_metadata_factory().to_props()
    props["facelens.alignment"] = json.dumps({"name": "broken", "points": [[0.1, 0.2]]})
    p = tiny_model_builder(tmp_path / "badalign.onnx", props=props)
    read_metadata(p)  # metadata itself parses
    with pytest.raises(ModelError, match="alignment"):
        HeadModel(p)


def test_missing_and_non_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        read_metadata(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelError, match="junk.onnx"):
        read_metadata(junk)


# ------------------------------------------------------------------------------------------------------------
# Running


def test_preprocess(tiny_head: HeadModel) -> None:
    crops = np.zeros((2, 16, 16, 3), np.uint8)
    crops[0, ..., 0] = 255
    crops[1, 3, 5] = (0, 128, 64)
    x = tiny_head.preprocess(crops)
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, 0], (1.0 - 0.5) / 0.25)
    np.testing.assert_allclose(x[0, 1], (0.0 - 0.5) / 0.25)
    np.testing.assert_allclose(x[1, :, 3, 5], (np.array([0, 128, 64]) / 255 - 0.5) / 0.25, atol=1e-6)


def test_run_on_astronaut(
    tiny_head: HeadModel,
    astronaut_rgb: np.ndarray,
    astronaut_detection: Detection,
    tiny_reference_fn: Callable[[np.ndarray], dict[str, np.ndarray]],
) -> None:
    out = tiny_head.run(astronaut_rgb, [astronaut_detection])
    assert isinstance(out, HeadOutputs)
    assert out.age is not None and out.gender is not None and out.race is not None and out.attributes is not None
    assert len(out.age) == len(out.gender) == len(out.race) == len(out.attributes) == 1

    age = out.age[0]
    assert isinstance(age, Age)
    assert 0 <= age.years <= 100
    assert age.interval[0] <= age.years <= age.interval[1]
    assert age.coverage == 0.8
    assert set(age.groups) == {"adience", "utkface"}
    labels = {s: {age_group_label(lo, hi) for lo, hi in r} for s, r in AGE_GROUP_SCHEMES.items()}
    for scheme, label in age.groups.items():
        assert label in labels[scheme]

    for lab, names in ((out.gender[0], GENDERS), (out.race[0], RACES)):
        assert isinstance(lab, Label)
        assert tuple(lab.scores) == names
        assert lab.label in names
        assert abs(sum(lab.scores.values()) - 1.0) < 1e-5
        assert lab.score == max(lab.scores.values()) == lab.scores[lab.label]

    attrs = out.attributes[0]
    assert tuple(attrs) == CELEBA_ATTRIBUTES and len(attrs) == 40
    assert all(0.0 <= v <= 1.0 for v in attrs.values())

    # The numbers are the model's: compare with a NumPy reference on the same aligned, normalised crop.
    crops = tiny_head.align(astronaut_rgb, [astronaut_detection])
    assert crops.shape == (1, 16, 16, 3)
    ref = tiny_reference_fn(tiny_head.preprocess(crops))
    np.testing.assert_allclose([out.gender[0].scores[g] for g in GENDERS], ref["gender"][0], atol=1e-5)
    np.testing.assert_allclose([out.race[0].scores[r] for r in RACES], ref["race"][0], atol=1e-5)
    np.testing.assert_allclose([attrs[a] for a in CELEBA_ATTRIBUTES], ref["attributes"][0], atol=1e-5)
    assert abs(age.years - float((ref["age"][0] * np.arange(101)).sum())) < 1e-3


def test_run_batches_faces(tiny_head: HeadModel, astronaut_rgb: np.ndarray, astronaut_detection: Detection) -> None:
    single = tiny_head.run(astronaut_rgb, [astronaut_detection])
    double = tiny_head.run(astronaut_rgb, [astronaut_detection, astronaut_detection])
    assert double.age is not None and single.age is not None
    assert len(double.age) == 2
    assert double.age[0] == double.age[1]
    assert abs(double.age[0].years - single.age[0].years) < 1e-4


def test_run_without_faces(tiny_head: HeadModel, astronaut_rgb: np.ndarray) -> None:
    assert tiny_head.run(astronaut_rgb, []) == HeadOutputs()
    assert tiny_head.run_crops(np.zeros((0, 16, 16, 3), np.uint8)) == {}


def test_head_properties(tiny_head: HeadModel, tiny_model_path: Path) -> None:
    assert tiny_head.name == "tiny-test"
    assert tiny_head.tasks == ("age", "gender", "race", "attributes")
    assert tiny_head.template == LOOSE_V1
    assert tiny_head.path == tiny_model_path


def test_test_time_flip(
    tmp_path: Path,
    tiny_model_builder: Builder,
    tiny_head: HeadModel,
    astronaut_rgb: np.ndarray,
    astronaut_detection: Detection,
    tiny_reference_fn: Callable[[np.ndarray], dict[str, np.ndarray]],
) -> None:
    flip = HeadModel(tiny_model_builder(tmp_path / "flip.onnx", test_time_flip=True))
    assert flip.metadata.test_time_flip
    crops = flip.align(astronaut_rgb, [astronaut_detection])
    got = flip.run_crops(crops)
    x = flip.preprocess(crops)
    ref, ref_flipped = tiny_reference_fn(x), tiny_reference_fn(np.ascontiguousarray(x[:, :, :, ::-1]))
    for task in ("age", "gender", "race", "attributes"):
        assert got[task].shape == ref[task].shape  # the flipped half is averaged away, not appended
        np.testing.assert_allclose(got[task], 0.5 * (ref[task] + ref_flipped[task]), atol=1e-5)
    # Gender depends on pixel positions, so flipping changes it; the mean-pixel heads are flip-invariant.
    plain = tiny_head.run_crops(crops)
    assert np.abs(plain["gender"] - got["gender"]).max() > 1e-4
    np.testing.assert_allclose(plain["age"], got["age"], atol=1e-6)
    out = flip.run(astronaut_rgb, [astronaut_detection])
    assert out.gender is not None and abs(sum(out.gender[0].scores.values()) - 1) < 1e-5


# ------------------------------------------------------------------------------------------------------------
# Registry


def test_model_path_env(tiny_model_env: Path, tiny_model_path: Path) -> None:
    dirs = model_dirs()
    assert dirs[0] == tiny_model_env
    models = list_models()
    assert [m.name for m in models] == ["tiny-test"]
    info = find_model("tiny-test")
    assert info.path == tiny_model_path and info.metadata.name == "tiny-test"
    # A path works as well as a name.
    assert find_model(str(tiny_model_path)).name == "tiny-test"


def test_unknown_model_lists_installed(tiny_model_env: Path) -> None:
    with pytest.raises(ModelError) as ei:
        find_model("no-such-head")
    assert "no-such-head" in str(ei.value)
    assert "tiny-test" in str(ei.value)


def test_unknown_model_with_none_installed(no_models_env: Path) -> None:
    assert list_models() == []
    with pytest.raises(ModelError, match="none"):
        find_model("age")


def test_registry_order_and_bad_files(
    tmp_path: Path, tiny_model_builder: Builder, no_package_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    tiny_model_builder(first / "a.onnx", name="shared-name")
    tiny_model_builder(second / "a.onnx", name="shared-name")
    tiny_model_builder(second / "b.onnx", name="only-second")
    tiny_model_builder(second / "c.onnx", with_metadata=False)  # skipped unless strict
    (second / "d.onnx").write_bytes(b"junk")
    (second / "notes.txt").write_text("ignored")
    monkeypatch.setenv("FACELENS_MODEL_PATH", os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)]))
    with pytest.warns(UserWarning) as caught:
        models = list_models()
    messages = sorted(str(w.message) for w in caught)
    assert (
        len(messages) == 2
        and "c.onnx is not a facelens model" in messages[0]
        and "d.onnx: not a loadable" in messages[1]
    )
    assert [(m.name, m.path) for m in models] == [
        ("shared-name", first / "a.onnx"),  # first folder wins
        ("only-second", second / "b.onnx"),
    ]
    with pytest.raises(ModelError):
        list_models(strict=True)


# ------------------------------------------------------------------------------------------------------------
# Age decoding


def test_decode_age_golden(tiny_head: HeadModel) -> None:
    p = np.zeros(101)
    p[[20, 25, 30, 35, 40]] = [0.05, 0.25, 0.40, 0.25, 0.05]
    age = tiny_head._decode_age(p)
    # mean = 0.05*20 + 0.25*25 + 0.4*30 + 0.25*35 + 0.05*40 = 30
    assert age.years == pytest.approx(30.0, abs=1e-9)
    # cdf: 20 -> .05, 25 -> .30, 30 -> .70, 35 -> .95; the 10% and 90% quantiles are 25 and 35
    assert age.interval == (25.0, 35.0)
    assert age.groups == {"adience": "25-32", "utkface": "26-30"}
    assert age.coverage == 0.8


def test_decode_age_unnormalised_and_edges(tiny_head: HeadModel) -> None:
    p = np.zeros(101)
    p[100] = 7.0  # not normalised: decoded as a distribution anyway
    age = tiny_head._decode_age(p)
    assert age.years == pytest.approx(100.0)
    assert age.interval == (100.0, 100.0)
    assert age.groups == {"adience": "60+", "utkface": "81+"}
    p = np.zeros(101)
    p[0] = 1.0
    age = tiny_head._decode_age(p)
    assert age.years == 0.0 and age.interval == (0.0, 0.0)
    assert age.groups == {"adience": "0-2", "utkface": "0-2"}


def test_decode_age_uses_age_min(tiny_head: HeadModel, tiny_model_path: Path) -> None:
    head = HeadModel(tiny_model_path)
    head.metadata = dataclasses.replace(head.metadata, age_min=10, interval_coverage=0.5)
    p = np.zeros(50)
    p[[0, 10, 20]] = [0.25, 0.5, 0.25]  # years 10, 20, 30
    age = head._decode_age(p)
    assert age.years == pytest.approx(20.0)
    # cdf: year 10 -> .25, year 20 -> .75, year 30 -> 1; the 25% and 75% quantiles (left-closed) are 10 and 20
    assert age.interval == (10.0, 20.0)
    assert age.coverage == 0.5
    assert age.groups["utkface"] == "20-25"


def test_decode_age_calibrated_mass(tiny_model_path: Path) -> None:
    head = HeadModel(tiny_model_path)
    p = np.zeros(101)
    p[[20, 25, 30, 35, 40]] = [0.05, 0.25, 0.40, 0.25, 0.05]  # cdf .05 .30 .70 .95 1
    # a calibrated mass of 0.95 spans the 2.5% .. 97.5% quantiles: years 20 .. 40; the nominal coverage is kept
    head.metadata = dataclasses.replace(head.metadata, interval_mass=0.95)
    age = head._decode_age(p)
    assert age.interval == (20.0, 40.0) and age.coverage == 0.8
    head.metadata = dataclasses.replace(head.metadata, interval_mass=0.3)  # 35% .. 65%: both in year 30
    assert head._decode_age(p).interval == (30.0, 30.0)
    props = head.metadata.to_props()
    assert type(head.metadata).from_props(props).interval_mass == 0.3
    assert "interval_mass" not in dataclasses.replace(head.metadata, interval_mass=None).to_props()["facelens.age"]
    with pytest.raises(ModelError, match="interval_mass must lie between 0 and 1"):
        type(head.metadata).from_props(dataclasses.replace(head.metadata, interval_mass=1.5).to_props())


def test_age_group_matches_labels(tiny_head: HeadModel) -> None:
    mismatches = []
    for mean in np.arange(0.0, 100.0, 0.1):
        p = np.zeros(101)
        lo = int(np.floor(mean))
        frac = mean - lo
        p[lo], p[min(lo + 1, 100)] = 1 - frac, frac
        age = tiny_head._decode_age(p)
        for scheme, ranges in AGE_GROUP_SCHEMES.items():
            expected = age_group_label(*ranges[age_group(age.years, scheme)])
            if age.groups[scheme] != expected:
                mismatches.append((round(age.years, 2), scheme, age.groups[scheme], expected))
    assert not mismatches, mismatches[:10]
