"""``facelens batch``: what is refused before the first image (output, inputs, settings) and --retry-errors."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from facelens import batch
from facelens.batch import ResultSink, read_inputs, run_batch
from facelens.cli import build_parser, main
from facelens.errors import FaceLensError

ASTRONAUT = Path(__file__).resolve().parents[1] / "src" / "facelens" / "assets" / "astronaut.jpg"
DETECT_ONLY = {"heads": ()}
FAST = ["--workers", "1", "--detect-only", "--no-progress"]


def _folder(tmp_path: Path, n: int = 2, bad: int = 0, videos: int = 0) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for i in range(n):
        shutil.copy(ASTRONAUT, d / f"img{i}.jpg")
    for i in range(bad):
        (d / f"broken{i}.jpg").write_text("not an image")
    for i in range(videos):
        (d / f"clip{i}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return d


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _lines(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image would be processed."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the run should have stopped before processing any input")

    monkeypatch.setattr(batch, "run_local", refuse)
    monkeypatch.setattr(batch, "run_ray", refuse)


# ---- bug 1: the output -----------------------------------------------------------------------------------------


def test_image_as_output_is_refused_and_left_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    shutil.copy(ASTRONAUT, a)
    shutil.copy(ASTRONAUT, b)
    code, out, err = _run(capsys, "batch", str(a), str(b), *FAST)
    assert code == 2 and out == ""
    assert "OUTPUT must be a .jsonl file or a .parquet folder" in err and len(err.strip().splitlines()) == 1
    assert b.read_bytes() == ASTRONAUT.read_bytes()


def test_output_folder_or_file_of_the_wrong_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out.jsonl").mkdir()
    code, _, err = _run(capsys, "batch", str(ASTRONAUT), str(tmp_path / "out.jsonl"), *FAST)
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    (tmp_path / "out.parquet").write_text("x")
    with pytest.raises(FaceLensError, match="folder of part files"):
        ResultSink(tmp_path / "out.parquet")


@pytest.mark.parametrize("content", [b"my notes\nkeep me\n", b"no newline at all", b'{"a": 1}\n'])
def test_existing_output_that_is_not_results_is_never_changed(tmp_path: Path, content: bytes, no_engine: None) -> None:
    out = tmp_path / "notes.jsonl"
    out.write_bytes(content)
    with pytest.raises(FaceLensError, match="does not hold facelens batch results.*choose another OUTPUT or delete"):
        run_batch([str(ASTRONAUT)], out, DETECT_ONLY, workers=1, progress=False)
    assert out.read_bytes() == content


def test_foreign_parquet_folder_is_refused(tmp_path: Path, no_engine: None) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    out = tmp_path / "other.parquet"
    out.mkdir()
    pq.write_table(pa.table({"x": [1]}), out / "part-00000.parquet")
    with pytest.raises(FaceLensError, match="does not hold facelens batch results"):
        run_batch([str(ASTRONAUT)], out, DETECT_ONLY, workers=1, progress=False)


# ---- bug 2: settings are checked once, before any input ---------------------------------------------------------


def test_unknown_head_stops_the_run_with_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_engine: None
) -> None:
    out = tmp_path / "o.jsonl"
    code, stdout, err = _run(capsys, "batch", str(_folder(tmp_path)), str(out), "--heads", "bogus", "--no-progress")
    assert code == 2 and stdout == "" and "no head model named 'bogus'" in err
    assert not out.exists()


def test_invalid_setting_is_refused_before_the_worker_pool(tmp_path: Path, no_engine: None) -> None:
    out = tmp_path / "o.jsonl"
    with pytest.raises(FaceLensError, match="score_threshold"):
        run_batch([str(ASTRONAUT)], out, {**DETECT_ONLY, "score_threshold": 5.0}, workers=2, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    "option",
    [["--min-score", "5"], ["--min-score", "nan"], ["--max-side", "-1"], ["--max-pixels", "0"], ["--workers", "0"],
     ["--limit", "-1"], ["--workers", "two"]],
)  # fmt: skip
def test_numeric_options_are_checked_by_argparse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], no_engine: None
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(ASTRONAUT), str(tmp_path / "o.jsonl"), *FAST, *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and f"argument {option[0]}" in err
    assert not (tmp_path / "o.jsonl").exists()


# ---- bug 3: manifests ----------------------------------------------------------------------------------------


def test_non_utf8_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.txt").write_bytes(b"caf\xe9.jpg\n")
    code, _, err = _run(capsys, "batch", str(tmp_path / "m.txt"), str(tmp_path / "o.jsonl"), *FAST)
    assert code == 2 and "must be UTF-8" in err and "Traceback" not in err


def test_corrupt_parquet_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    (tmp_path / "m.parquet").write_bytes(b"PAR1 not really parquet")
    code, _, err = _run(capsys, "batch", str(tmp_path / "m.parquet"), str(tmp_path / "o.jsonl"), *FAST)
    assert code == 2 and "not a readable Parquet manifest" in err and "Traceback" not in err


def test_csv_manifest_with_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("path,id\nx.jpg,1\n".encode("utf-8-sig"))
    assert read_inputs([str(tmp_path / "m.csv")]) == [str(tmp_path / "x.jpg")]


# ---- bugs 4 and 8: videos and empty inputs ----------------------------------------------------------------------


def test_videos_in_folders_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path, n=1, videos=2)
    out = tmp_path / "o.jsonl"
    code, stdout, err = _run(capsys, "batch", str(d), str(out), *FAST)
    assert code == 0 and json.loads(stdout)["videos_skipped"] == 2 and "skipped 2 video file(s)" in err
    assert [r["path"] for r in _lines(out)] == [str(d / "img0.jpg")]
    assert read_inputs([str(d / "*")]) == [str(d / "img0.jpg")]  # globs too


def test_a_video_named_explicitly_is_an_error_result(tmp_path: Path) -> None:
    d = _folder(tmp_path, n=0, videos=1)
    out = tmp_path / "o.jsonl"
    s = run_batch([str(d / "clip0.mp4")], out, DETECT_ONLY, workers=1, progress=False)
    assert dict(s.errors) == {"unsupported_input": 1}
    assert "use 'facelens analyze" in _lines(out)[0]["error"]


@pytest.mark.parametrize("videos", [0, 1])
def test_no_images_found(tmp_path: Path, capsys: pytest.CaptureFixture[str], videos: int) -> None:
    d = _folder(tmp_path, n=0, videos=videos)
    code, stdout, err = _run(capsys, "batch", str(d), str(tmp_path / "o.jsonl"), *FAST)
    assert code == 2 and stdout == "" and f"no images found in {d}" in err
    assert not (tmp_path / "o.jsonl").exists()


# ---- bug 5: pyarrow is checked first ----------------------------------------------------------------------------


def test_parquet_without_pyarrow_fails_before_processing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_engine: None
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    code, _, err = _run(capsys, "batch", str(ASTRONAUT), str(tmp_path / "o.parquet"), *FAST)
    assert code == 2 and "pip install 'facelens[scale]'" in err
    assert not (tmp_path / "o.parquet").exists()


# ---- bugs 6 and 7: the command line ----------------------------------------------------------------------------


def test_heads_flag_takes_commas_or_repeats_and_leaves_positionals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict = {}

    def fake_run_batch(inputs: list[str], output: Path, settings: dict, **kwargs: object) -> batch.BatchSummary:
        seen.update(inputs=inputs, output=output, heads=settings["heads"])
        return batch.BatchSummary()

    monkeypatch.setattr(batch, "run_batch", fake_run_batch)
    code, _, _ = _run(capsys, "batch", "--heads", "a,b", "--heads", "c", "photos", "out.jsonl")
    assert code == 0 and seen == {"inputs": ["photos"], "output": Path("out.jsonl"), "heads": ("a", "b", "c")}


def test_help_states_the_defaults() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices["batch"].format_help().split())
    for default in ("(default: local)", "(default: 640;", "(default: 64,000,000)", "(default: 0.6)"):
        assert default in text


# ---- bug 9: --retry-errors ----------------------------------------------------------------------------------------


def test_retry_errors_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _folder(tmp_path, n=1, bad=1)
    out = tmp_path / "o.jsonl"
    assert _run(capsys, "batch", str(d), str(out), *FAST)[0] == 1
    shutil.copy(ASTRONAUT, d / "broken0.jpg")  # the user fixed the file
    code, stdout, _ = _run(capsys, "batch", str(d), str(out), *FAST)  # default: errors count as done
    assert code == 0 and json.loads(stdout)["already_done"] == 2
    code, stdout, _ = _run(capsys, "batch", str(d), str(out), *FAST, "--retry-errors")
    assert code == 0 and json.loads(stdout)["processed"] == 1
    rows = _lines(out)
    assert len(rows) == 2 and all(r["error"] is None for r in rows)


def test_retry_errors_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = _folder(tmp_path, n=1, bad=1)
    out = tmp_path / "o.parquet"
    run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False)
    shutil.copy(ASTRONAUT, d / "broken0.jpg")
    s = run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False, retry_errors=True)
    assert s.skipped_done == 1 and s.processed == 1 and not s.errors
    table = pq.read_table(out)
    assert table.num_rows == 2 and table.column("error").null_count == 2
