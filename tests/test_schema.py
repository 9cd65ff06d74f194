"""Real ``facelens analyze --json`` output validated against the shipped JSON Schema (docs/schema.md).

The CLI runs in-process (``facelens.cli.main``) with the packaged head model on the bundled sample photo, on
unreadable inputs (error results) and on a tiny generated video with ``--track`` (``faces[].track_id``).
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facelens.cli import main

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (pip install jsonschema)")

ASTRONAUT = Path(__file__).resolve().parents[1] / "src" / "facelens" / "assets" / "astronaut.jpg"
SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The JSON Schema as installed with the package (``facelens/schema/result.schema.json``)."""
    text = resources.files("facelens").joinpath("schema", "result.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Any:  # noqa: ANN401 - a jsonschema validator
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _analyze(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["analyze", "--json", "--no-progress", *argv])
    out, _ = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def _assert_valid(validator: Any, obj: dict[str, Any]) -> None:  # noqa: ANN401
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    assert not errors, errors


def test_sample_photo_with_shipped_heads(capsys: pytest.CaptureFixture[str], validator: Any) -> None:  # noqa: ANN401
    code, objs = _analyze(capsys, str(ASTRONAUT))
    assert code == 0
    (obj,) = objs
    _assert_valid(validator, obj)
    assert obj["path"] == str(ASTRONAUT) and obj["error"] is None
    (face,) = obj["faces"]
    if any(k in face for k in ("age", "gender", "race", "attributes")):  # the packaged heads are installed
        for key in ("age", "age_interval", "age_group", "gender", "race", "attributes"):
            assert key in face, key
        assert len(face["attributes"]) == 40


def test_error_results(capsys: pytest.CaptureFixture[str], validator: Any, tmp_path: Path) -> None:  # noqa: ANN401
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image" * 10)
    code, objs = _analyze(capsys, str(broken), str(tmp_path / "missing.jpg"))
    assert code == 1
    assert objs, "no result for the unreadable inputs"
    for obj in objs:
        _assert_valid(validator, obj)
        assert obj["error"] and obj["error_code"] and obj["faces"] == []
        assert (obj["width"], obj["height"]) == (0, 0)


def test_tracked_video(capsys: pytest.CaptureFixture[str], validator: Any, tmp_path: Path) -> None:  # noqa: ANN401
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    if not writer.isOpened():
        pytest.skip("OpenCV build cannot write MJPG/AVI")
    bgr = cv2.imread(str(ASTRONAUT))
    for i in range(3):  # the face moves 3 px per frame
        writer.write(cv2.warpAffine(bgr, np.float32([[1, 0, 3 * i], [0, 1, 0]]), (512, 512)))
    writer.release()
    code, objs = _analyze(capsys, str(clip), "--track")
    assert code == 0
    assert [o["frame"] for o in objs] == [0, 1, 2]
    for obj in objs:
        _assert_valid(validator, obj)
        (face,) = obj["faces"]
        assert face["track_id"] == 1


def test_schema_rejects_broken_results(
    capsys: pytest.CaptureFixture[str],
    validator: Any,  # noqa: ANN401
) -> None:
    """The check above can fail: damaged copies of a real result do not validate."""
    _, (good,) = _analyze(capsys, str(ASTRONAUT))
    _assert_valid(validator, good)

    def damaged(change: Any) -> dict[str, Any]:  # noqa: ANN401
        obj = copy.deepcopy(good)
        change(obj)
        return obj

    broken = [
        damaged(lambda o: o.pop("error")),  # a required key missing
        damaged(lambda o: o.update(unexpected=1)),  # an undocumented top-level key
        damaged(lambda o: o.update(width=-1)),
        damaged(lambda o: o["faces"][0].update(score="high")),
        damaged(lambda o: o["faces"][0].update(box=[1.0, 2.0, 3.0])),
        damaged(lambda o: o["faces"][0].update(track_id=1.5)),
        damaged(lambda o: o["faces"][0].update(colour="blue")),  # an undocumented face key
    ]
    for obj in broken:
        assert not validator.is_valid(obj), obj


def test_doc_lists_every_schema_key(schema: dict[str, Any]) -> None:
    """docs/schema.md's key table names every key of the JSON Schema, and no other."""
    if not SCHEMA_DOC.is_file():
        pytest.skip("docs/schema.md is not present (installed package, not a checkout)")
    documented: set[str] = set()
    for row in re.findall(r"^\| (`[^|]+`) \|", SCHEMA_DOC.read_text(encoding="utf-8"), flags=re.M):
        documented.update(re.findall(r"`([^`]+)`", row))
    expected = set(schema["properties"]) | {f"faces[].{k}" for k in schema["$defs"]["face"]["properties"]}
    expected.discard("faces")  # documented through its faces[].* keys
    assert documented == expected
