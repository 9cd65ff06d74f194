"""Tests of the facelens command line, run in-process through facelens.cli.main (and once as python -m)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facelens import __version__
from facelens.cli import build_parser, main
from facelens.cli.analyze import CSV_FIELDS
from facelens.io import load_image

ASTRONAUT_BOX = (178.0, 63.0, 269.0, 176.0)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _jsonl(text: str) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]


def _close(box: list[float], expected: tuple[float, ...], tol: float = 4.0) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(box, expected, strict=True))


# ------------------------------------------------------------------------------------------------------------
# The bundled sample


def test_analyze_sample_text(capsys: pytest.CaptureFixture[str], no_models_env: Path) -> None:
    code, out, err = _run(capsys, "analyze")
    assert code == 0
    assert "sample photo" in err and "no head model installed" in err
    assert "astronaut.jpg: 512x512, 1 face(s)" in out
    m = re.search(r"face 0: box=\((\d+), (\d+), (\d+), (\d+)\) score=([\d.]+) landmarks=(.*)", out)
    assert m, out
    assert _close([float(v) for v in m.groups()[:4]], ASTRONAUT_BOX)
    assert float(m.group(5)) > 0.8
    assert len(re.findall(r"\(\d+,\d+\)", m.group(6))) == 5


def test_analyze_sample_json(capsys: pytest.CaptureFixture[str], no_models_env: Path) -> None:
    code, out, _ = _run(capsys, "analyze", "--json")
    assert code == 0
    (obj,) = _jsonl(out)
    assert obj["path"].endswith("astronaut.jpg") and obj["error"] is None
    (face,) = obj["faces"]
    assert _close(face["box"], ASTRONAUT_BOX) and len(face["landmarks"]) == 5
    assert set(face) == {"box", "score", "landmarks"}  # no heads installed


def test_analyze_sample_with_heads(capsys: pytest.CaptureFixture[str], tiny_model_env: Path) -> None:
    code, out, err = _run(capsys, "analyze")
    assert code == 0 and "no head model installed" not in err
    assert re.search(r"age [\d.]+ \(80% interval \d+-\d+; adience [\d+-]+, utkface [\d+-]+\)", out), out
    assert re.search(r"gender (male|female) \(", out) and "ethnicity" in out and "attributes" in out
    code, out, _ = _run(capsys, "analyze", "--json")
    (obj,) = _jsonl(out)
    assert {"age", "age_interval", "age_group", "gender", "race", "attributes"} <= set(obj["faces"][0])


# ------------------------------------------------------------------------------------------------------------
# A folder of good and bad inputs


@pytest.fixture
def mixed_folder(tmp_path: Path, astronaut_path: Path, huge_png_bytes: bytes) -> Path:
    d = tmp_path / "mixed"
    d.mkdir()
    data = astronaut_path.read_bytes()
    (d / "a_astronaut.jpg").write_bytes(data)
    Image.new("RGB", (64, 48), (128, 128, 128)).save(d / "b_noface.png")
    (d / "c_truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "d_text.jpg").write_text("hello, I am not a JPEG\n")
    (d / "e_huge.png").write_bytes(huge_png_bytes)
    (d / "f_readme.txt").write_text("not an image extension: skipped when expanding the folder")
    return d


def test_folder_json(capsys: pytest.CaptureFixture[str], tiny_model_env: Path, mixed_folder: Path) -> None:
    code, out, err = _run(capsys, "analyze", str(mixed_folder), "--json")
    assert code == 1
    assert "3 of 5 input(s) failed" in err
    objs = _jsonl(out)
    assert [Path(o["path"]).name for o in objs] == [
        "a_astronaut.jpg", "b_noface.png", "c_truncated.jpg", "d_text.jpg", "e_huge.png",
    ]  # fmt: skip
    astro, noface, trunc, text, huge = objs
    assert astro["error"] is None and len(astro["faces"]) == 1 and "age" in astro["faces"][0]
    assert (astro["width"], astro["height"]) == (512, 512)
    assert noface["error"] is None and noface["faces"] == [] and (noface["width"], noface["height"]) == (64, 48)
    for obj, code_ in ((trunc, "unreadable_image"), (text, "unreadable_image"), (huge, "image_too_large")):
        assert obj["faces"] == []
        assert obj["error_code"] == code_
        assert obj["path"] in obj["error"]  # the message names the file
    assert "truncated" in trunc["error"]
    assert "not a recognised image" in text["error"]


def test_folder_text(capsys: pytest.CaptureFixture[str], no_models_env: Path, mixed_folder: Path) -> None:
    code, out, _ = _run(capsys, "detect", str(mixed_folder))
    assert code == 1
    assert out.count(": ERROR ") == 3
    assert "b_noface.png: 64x48, 0 face(s)" in out


def test_missing_path_and_glob(capsys: pytest.CaptureFixture[str], no_models_env: Path, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "detect", "--json", str(tmp_path / "missing.jpg"), str(tmp_path / "*.nomatch"))
    assert code == 1
    objs = _jsonl(out)
    assert len(objs) == 2 and all(o["error_code"] == "unreadable_image" for o in objs)


def test_symlink_loop_and_broken_symlink_named_as_such(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, tmp_path: Path, symlinks: tuple[Path, Path]
) -> None:
    loop, dangling = symlinks
    code, out, err = _run(capsys, "detect", str(loop), str(dangling), str(tmp_path / "missing.jpg"))
    assert code == 1 and "3 of 3 input(s) failed" in err
    assert out.splitlines() == [
        f"{loop}: ERROR {loop}: symbolic link loop (cannot be resolved)",
        f"{dangling}: ERROR {dangling}: broken symbolic link (its target does not exist)",
        f"{tmp_path / 'missing.jpg'}: ERROR {tmp_path / 'missing.jpg'}: no such file",
    ]
    code, out, _ = _run(capsys, "detect", "--json", str(loop))
    assert code == 1 and _jsonl(out)[0]["error_code"] == "unreadable_image"  # same kind as other unusable inputs
    code, out, err = _run(capsys, "eval", "detection-rate", str(loop), str(dangling))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {loop}: symbolic link loop (cannot be resolved)",
        f"error: {dangling}: broken symbolic link (its target does not exist)",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="no newline or tab in Windows file names")
def test_text_output_escapes_control_characters_in_names(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, tmp_path: Path, astronaut_path: Path
) -> None:
    data = astronaut_path.read_bytes()
    names = ["a\nb.jpg", "c\td.jpg", "e\x1b[31mf.jpg", "Zoë photo.jpg"]
    for name in names:
        (tmp_path / name).write_bytes(data)
    (tmp_path / "bad\nname.jpg").write_text("not a JPEG")
    code, out, err = _run(capsys, "detect", str(tmp_path))
    assert code == 1 and "1 of 5 input(s) failed" in err
    results = [line for line in out.splitlines() if not line.startswith(" ")]
    nl, bad, tab, esc = (repr(str(tmp_path / n)) for n in ["a\nb.jpg", "bad\nname.jpg", "c\td.jpg", "e\x1b[31mf.jpg"])
    assert results == [  # one line per input, sorted by name; an ordinary name unchanged, the others repr()
        f"{tmp_path / 'Zoë photo.jpg'}: 512x512, 1 face(s)",
        f"{nl}: 512x512, 1 face(s)",
        f"{bad}: ERROR {bad}: not a recognised image format",
        f"{tab}: 512x512, 1 face(s)",
        f"{esc}: 512x512, 1 face(s)",
    ]
    assert "\x1b" not in out and "\t" not in out
    code, out, _ = _run(capsys, "detect", "--json", str(tmp_path))  # JSON already escapes: names as they are
    assert sorted(o["path"] for o in _jsonl(out)) == sorted(str(tmp_path / n) for n in [*names, "bad\nname.jpg"])


def test_csv(capsys: pytest.CaptureFixture[str], tiny_model_env: Path, mixed_folder: Path) -> None:
    code, out, _ = _run(capsys, "analyze", str(mixed_folder), "--csv")
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    header = next(csv.reader(io.StringIO(out)))
    assert header == CSV_FIELDS
    assert header[:4] == ["path", "frame", "face", "error"] and "Smiling" in header
    assert len(rows) == 5
    astro = rows[0]
    assert astro["face"] == "0" and astro["error"] == ""
    assert _close([float(astro[k]) for k in ("x1", "y1", "x2", "y2")], ASTRONAUT_BOX)
    assert float(astro["age_lo"]) <= float(astro["age"]) <= float(astro["age_hi"])
    assert astro["gender"] in ("male", "female") and astro["race"] and astro["age_group_adience"]
    assert 0 <= float(astro["Smiling"]) <= 1
    assert rows[1]["face"] == "" and rows[1]["error"] == ""  # no face: one row
    assert all(r["error"] for r in rows[2:])


def test_csv_detect_only(capsys: pytest.CaptureFixture[str], tiny_model_env: Path, astronaut_path: Path) -> None:
    code, out, _ = _run(capsys, "detect", str(astronaut_path), "--csv")
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["score"] and row["age"] == "" and row["gender"] == ""


def test_json_and_csv_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["analyze", "--json", "--csv"])
    assert ei.value.code == 2
    capsys.readouterr()


def test_output_file(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, astronaut_path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "results.jsonl"
    code, out, _ = _run(capsys, "analyze", str(astronaut_path), str(astronaut_path), "--json", "-o", str(target))
    assert code == 0 and out == ""
    objs = _jsonl(target.read_text(encoding="utf-8"))
    assert len(objs) == 2 and all(len(o["faces"]) == 1 for o in objs)
    csv_target = tmp_path / "results.csv"
    assert main(["detect", str(astronaut_path), "--csv", "--output", str(csv_target)]) == 0
    assert csv_target.read_text(encoding="utf-8").splitlines()[0].startswith("path,frame,face,error")


def test_annotate(capsys: pytest.CaptureFixture[str], no_models_env: Path, mixed_folder: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "annotated"
    code, _, _ = _run(capsys, "analyze", str(mixed_folder / "a_astronaut.jpg"), "--annotate", str(out_dir))
    assert code == 0
    written = out_dir / "a_astronaut.annotated.jpg"
    assert written.is_file()
    img = load_image(written)
    assert img.shape == (512, 512, 3)
    original = load_image(mixed_folder / "a_astronaut.jpg")
    assert np.abs(img.astype(int) - original.astype(int)).max() > 100  # something was drawn
    # Failed inputs are not annotated; the run goes on.
    code, _, _ = _run(capsys, "detect", str(mixed_folder), "--annotate", str(out_dir))
    assert code == 1
    assert not (out_dir / "c_truncated.annotated.jpg").exists()


def test_detect_min_score(capsys: pytest.CaptureFixture[str], tiny_model_env: Path, astronaut_path: Path) -> None:
    code, out, err = _run(capsys, "detect", "--json", "--min-score", "0.9", str(astronaut_path))
    assert code == 0 and "no head model" not in err
    (obj,) = _jsonl(out)
    assert len(obj["faces"]) == 1
    assert all(f["score"] >= 0.9 for f in obj["faces"])
    assert set(obj["faces"][0]) == {"box", "score", "landmarks"}  # detect never runs heads
    code, out, _ = _run(capsys, "detect", "--json", "--min-score", "0.99", str(astronaut_path))
    assert _jsonl(out)[0]["faces"] == []


def test_detect_options(capsys: pytest.CaptureFixture[str], no_models_env: Path, astronaut_path: Path) -> None:
    for extra in (["--max-side", "0"], ["--upscale", "1.5"], ["--max-faces", "1"], ["--min-face-size", "500"]):
        code, out, _ = _run(capsys, "detect", "--json", str(astronaut_path), *extra)
        assert code == 0
        n = len(_jsonl(out)[0]["faces"])
        assert n == (0 if extra[0] == "--min-face-size" else 1), extra
    code, out, _ = _run(capsys, "detect", "--json", "--max-pixels", "1000", str(astronaut_path))
    assert code == 1 and _jsonl(out)[0]["error_code"] == "image_too_large"


# ------------------------------------------------------------------------------------------------------------
# models


def test_models(capsys: pytest.CaptureFixture[str], tiny_model_env: Path, tiny_model_path: Path) -> None:
    code, out, _ = _run(capsys, "models")
    assert code == 0
    assert "tiny-test 0.0.1" in out and str(tiny_model_path) in out
    assert "tasks: age, gender, race, attributes; input 16x16 RGB" in out
    assert "alignment: facelens-loose-v1" in out and "metrics:" in out
    code, out, _ = _run(capsys, "models", "--json")
    assert code == 0
    (m,) = json.loads(out)
    assert m["name"] == "tiny-test" and m["path"] == str(tiny_model_path)
    assert m["facelens.name"] == "tiny-test" and json.loads(m["facelens.input"])["size"] == 16


def test_models_none(capsys: pytest.CaptureFixture[str], no_models_env: Path) -> None:
    code, out, _ = _run(capsys, "models")
    assert code == 0 and "no head models installed" in out and str(no_models_env) in out
    code, out, _ = _run(capsys, "models", "--json")
    assert code == 0 and json.loads(out) == []


# ------------------------------------------------------------------------------------------------------------
# Video


@pytest.fixture
def video_path(tmp_path: Path, astronaut_rgb: np.ndarray) -> Path:
    p = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    if not writer.isOpened():
        pytest.skip("OpenCV build cannot write MJPG/AVI")
    bgr = cv2.cvtColor(np.ascontiguousarray(astronaut_rgb), cv2.COLOR_RGB2BGR)
    for _ in range(10):
        writer.write(bgr)
    writer.release()
    return p


def test_video_every(capsys: pytest.CaptureFixture[str], no_models_env: Path, video_path: Path) -> None:
    code, out, _ = _run(capsys, "analyze", str(video_path), "--every", "3", "--json")
    assert code == 0
    objs = _jsonl(out)
    assert [o["frame"] for o in objs] == [0, 3, 6, 9]
    for o in objs:
        assert o["path"] == str(video_path) and o["error"] is None
        assert (o["width"], o["height"]) == (512, 512)
        (face,) = o["faces"]
        assert _close(face["box"], ASTRONAUT_BOX, tol=6.0)
    code, out, _ = _run(capsys, "detect", str(video_path), "--every", "4", "--csv")
    assert [r["frame"] for r in csv.DictReader(io.StringIO(out))] == ["0", "4", "8"]
    code, out, _ = _run(capsys, "detect", str(video_path), "--every", "5")
    assert "[frame 5]" in out


def test_video_bad(capsys: pytest.CaptureFixture[str], no_models_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    code, out, _ = _run(capsys, "detect", str(bad), "--json")
    assert code == 1
    (obj,) = _jsonl(out)
    assert obj["error_code"] == "unreadable_image" and str(bad) in obj["error"]


def test_video_frames_over_the_pixel_limit_are_refused(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, video_path: Path
) -> None:
    code, out, _ = _run(capsys, "detect", str(video_path), "--json", "--max-pixels", str(512 * 512 - 1))
    assert code == 1
    (obj,) = _jsonl(out)
    assert obj["error_code"] == "image_too_large" and "512x512" in obj["error"]
    code, out, _ = _run(capsys, "detect", str(video_path), "--json", "--max-pixels", str(512 * 512), "--every", "5")
    assert code == 0 and len(_jsonl(out)) == 2


def test_every_must_be_positive(capsys: pytest.CaptureFixture[str], no_models_env: Path) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["detect", "--every", "0"])
    assert ei.value.code == 2 and "--every" in capsys.readouterr().err


def test_video_annotate_and_tracks_output(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, video_path: Path, tmp_path: Path
) -> None:
    tracks = tmp_path / "new" / "tracks.jsonl"
    code, _, _ = _run(
        capsys, "detect", str(video_path), "--every", "5", "--track", "--tracks-output", str(tracks),
        "--annotate", str(tmp_path / "ann"),
    )  # fmt: skip
    assert code == 0
    assert (tmp_path / "ann" / "clip.annotated.avi").is_file()
    assert [json.loads(ln)["path"] for ln in tracks.read_text().splitlines()] == [str(video_path)]


# ------------------------------------------------------------------------------------------------------------
# Help, version, entry points


def _commands() -> list[str]:
    sub = build_parser()._subparsers
    assert sub is not None
    return sorted(sub._group_actions[0].choices)  # type: ignore[attr-defined]


def test_expected_commands() -> None:
    assert {"analyze", "detect", "models"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_help_of_each_command(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as ei:
        main([command, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert f"facelens {command}" in out and "usage:" in out


def test_top_level_help_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    assert "COMMAND" in capsys.readouterr().out
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.strip() == f"facelens {__version__}"


def test_python_m_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "facelens", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"facelens {__version__}"


def test_train_commands_mounted() -> None:
    pytest.importorskip("facelens.train.cli")
    assert {"train", "preprocess", "export"} <= set(_commands())


def test_detect_accurate_mode(capsys: pytest.CaptureFixture[str], no_models_env: Path, astronaut_path: Path) -> None:
    from facelens.cli import analyze, build_parser

    args = build_parser().parse_args(["detect", "--accurate", str(astronaut_path)])
    assert analyze._analyzer(args).config.detector_options == {"extra_scales": (0.5, 2.0)}
    code, out, _ = _run(capsys, "detect", "--json", "--accurate", str(astronaut_path))
    assert code == 0 and len(_jsonl(out)[0]["faces"]) == 1


# ------------------------------------------------------------------------------------------------------------
# Mistakes on the command line: usage errors (exit 2) before any input is read


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--min-score", "5"), ("--min-score", "-1"), ("--min-score", "nan"), ("--max-faces", "-1"),
        ("--max-faces", "0"), ("--max-side", "-5"), ("--upscale", "0"), ("--upscale", "inf"),
        ("--min-face-size", "-1"), ("--max-pixels", "0"), ("--every", "0"), ("--head-every", "0"),
        ("--max-side", "1.5"),
    ],
)  # fmt: skip
def test_option_out_of_range(capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["analyze", "photo.jpg", f"{option}={value}"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and f"argument {option}: must be" in err and "Traceback" not in err


def test_invalid_settings_and_unknown_head(
    capsys: pytest.CaptureFixture[str], tiny_model_env: Path, astronaut_path: Path
) -> None:
    code, out, err = _run(capsys, "detect", str(astronaut_path), "--upscale", "0.0001")  # below the pipeline's 1e-3
    assert code == 2 and out == "" and err.startswith("error: upscale must be") and len(err.splitlines()) == 1
    code, out, err = _run(capsys, "analyze", str(astronaut_path), "--heads", "no-such-head")
    assert code == 2 and out == "" and "error: no head model named 'no-such-head'" in err


def test_heads_comma_separated_and_repeatable(
    capsys: pytest.CaptureFixture[str], tiny_model_env: Path, tiny_model_path: Path, astronaut_path: Path
) -> None:
    args = build_parser().parse_args(["analyze", "--heads", "a, b", "--heads", "c", "x.jpg", "y.jpg"])
    assert args.heads == ["a", "b", "c"] and args.paths == ["x.jpg", "y.jpg"]
    code, out, _ = _run(capsys, "analyze", "--heads", "tiny-test", str(astronaut_path), "--json")
    assert code == 0
    (obj,) = _jsonl(out)
    assert obj["path"] == str(astronaut_path) and "age" in obj["faces"][0]
    with pytest.raises(SystemExit) as ei:
        main(["analyze", "--heads", "a,,b", str(astronaut_path)])
    assert ei.value.code == 2 and "--heads" in capsys.readouterr().err


def test_folder_without_images(capsys: pytest.CaptureFixture[str], no_models_env: Path, tmp_path: Path) -> None:
    empty, texts = tmp_path / "empty", tmp_path / "texts"
    empty.mkdir()
    texts.mkdir()
    (texts / "notes.txt").write_text("no image here")
    for folder in (empty, texts):
        code, out, err = _run(capsys, "detect", str(folder))
        assert code == 2 and out == "" and err == f"error: no images or videos found in {folder}\n"


def test_output_parent_created(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, astronaut_path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new" / "deeper" / "results.jsonl"
    code, out, _ = _run(capsys, "detect", str(astronaut_path), "--json", "-o", str(target))
    assert code == 0 and out == "" and len(_jsonl(target.read_text())) == 1


def test_unwritable_outputs(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, mixed_folder: Path, tmp_path: Path
) -> None:
    a_file = mixed_folder / "a_astronaut.jpg"
    cases = [
        (["-o", str(tmp_path)], f"error: -o {tmp_path}: is a folder, not a file"),
        (["-o", str(a_file / "x.json")], f"error: -o {a_file / 'x.json'}: cannot write it"),
        (["--annotate", str(a_file)], f"error: --annotate {a_file}: exists and is not a folder"),
        (["--track", "--tracks-output", str(tmp_path)], f"error: --tracks-output {tmp_path}: is a folder"),
    ]
    for extra, message in cases:
        code, out, err = _run(capsys, "detect", str(mixed_folder), *extra)
        assert code == 2 and out == "", extra  # stopped before the first image
        assert err.startswith(message) and len(err.splitlines()) == 1, err
    assert a_file.read_bytes()[:2] == b"\xff\xd8"  # untouched


def test_annotate_names_are_unique(
    capsys: pytest.CaptureFixture[str], no_models_env: Path, astronaut_path: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    for rel in ("a/x.jpg", "b/x.jpg", "a/x.png", "top.jpg"):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        (photos / rel).write_bytes(astronaut_path.read_bytes())
    out_dir = tmp_path / "annotated"
    code, _, _ = _run(capsys, "detect", str(photos), "--annotate", str(out_dir))
    assert code == 0
    written = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    assert written == ["a/x-2.annotated.jpg", "a/x.annotated.jpg", "b/x.annotated.jpg", "top.annotated.jpg"]
    # A glob keeps the path below its fixed part; a file given by name is named by its name.
    out_dir = tmp_path / "annotated_glob"
    code, _, _ = _run(capsys, "detect", str(photos / "*" / "x.jpg"), str(astronaut_path), "--annotate", str(out_dir))
    assert code == 0
    written = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    assert written == ["a/x.annotated.jpg", "astronaut.annotated.jpg", "b/x.annotated.jpg"]


def test_annotated_names_two_folders(tmp_path: Path) -> None:
    from facelens.cli.analyze import annotated_names

    files = [(Path("p/a/x.jpg"), Path("x.jpg")), (Path("p/b/x.jpg"), Path("x.jpg")), (Path("p/a/x.jpg"), Path("x.jpg"))]
    names = annotated_names(files, tmp_path)
    assert names == {"p/a/x.jpg": tmp_path / "x.annotated.jpg", "p/b/x.jpg": tmp_path / "x-2.annotated.jpg"}


# ------------------------------------------------------------------------------------------------------------
# Help texts


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def _option_help(text: str) -> dict[str, str]:
    """``--option METAVAR`` -> its help, unwrapped (entries start on a line indented by two spaces)."""
    entries = re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]
    return {e.split()[0].rstrip(","): " ".join(e.split()) for e in entries}


def test_help_states_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    options = _option_help(_help(capsys, "analyze"))
    for option, default in (("--every", "(default 1"), ("--min-face-size", "(default 0"),
                            ("--max-faces", "(default: all)"), ("--head-every", "(default 1)"),
                            ("--heads", "(default: all installed)"), ("--upscale", "(default 1)")):  # fmt: skip
        assert default in options[option], option
    detect = _help(capsys, "detect")
    assert "--head-every" not in detect and "--heads" not in detect and "--every N" in detect
    rate = _help(capsys, "eval", "detection-rate")
    assert "--list-misses FILE" in rate and "LIST_MISSES" not in rate
    assert "(default: all)" in _option_help(rate)["--limit"]
    assert "(default 0 = original scale)" in _option_help(_help(capsys, "eval", "widerface"))["--max-side"]


def test_detection_rate_missing_and_empty_paths(
    capsys: pytest.CaptureFixture[str], astronaut_path: Path, tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "eval", "detection-rate", str(tmp_path / "no_such_dir"))
    assert code == 2 and out == "" and err == f"error: path not found: {tmp_path / 'no_such_dir'}\n"
    code, out, err = _run(capsys, "eval", "detection-rate", str(tmp_path / "*.nomatch"))
    assert code == 2 and "path not found" in err
    code, out, err = _run(capsys, "eval", "detection-rate", str(tmp_path))
    assert code == 2 and err == f"error: no images or videos found in {tmp_path}\n"
    misses = tmp_path / "out" / "misses.txt"
    code, out, _ = _run(capsys, "eval", "detection-rate", str(astronaut_path), "--list-misses", str(misses))
    assert code == 0 and json.loads(out)["detection_rate"] == 1.0 and misses.read_text() == ""
