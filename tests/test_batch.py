import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facelens.batch import ResultSink, read_inputs, run_batch
from facelens.errors import FaceLensError

ASTRONAUT = Path(__file__).resolve().parents[1] / "src" / "facelens" / "assets" / "astronaut.jpg"
DETECT_ONLY = {"heads": ()}


def _folder(tmp_path: Path, n: int, bad: int = 1) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for i in range(n):
        shutil.copy(ASTRONAUT, d / ("sub" if i % 2 else ".") / f"img{i:03d}.jpg")
    for i in range(bad):
        (d / f"broken{i}.jpg").write_text("not an image")
    return d


def _lines(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def test_manifests(tmp_path: Path) -> None:
    d = _folder(tmp_path, 3, bad=0)
    (tmp_path / "m.txt").write_text("in/img000.jpg\n\nin/sub/img001.jpg\n")
    (tmp_path / "m.csv").write_text("id,path\n1,in/img002.jpg\n")
    assert read_inputs([str(tmp_path / "m.txt")]) == [str(d / "img000.jpg"), str(d / "sub" / "img001.jpg")]
    assert read_inputs([str(tmp_path / "m.csv")]) == [str(d / "img002.jpg")]
    (tmp_path / "bad.csv").write_text("file\nx.jpg\n")
    with pytest.raises(FaceLensError, match="path"):
        read_inputs([str(tmp_path / "bad.csv")])
    assert len(read_inputs([str(d)])) == 3


def test_batch_jsonl_summary_and_resume(tmp_path: Path) -> None:
    d = _folder(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    s = run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False)
    assert s.processed == 5 and s.faces == 4 and dict(s.errors) == {"unreadable_image": 1}
    rows = _lines(out)
    assert sorted(r["path"] for r in rows) == sorted(read_inputs([str(d)]))
    again = run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False)
    assert again.processed == 0 and again.skipped_done == 5
    assert len(_lines(out)) == 5


def test_torn_last_line_is_repaired(tmp_path: Path) -> None:
    d = _folder(tmp_path, 3, bad=0)
    out = tmp_path / "out.jsonl"
    run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False, limit=2)
    with open(out, "a") as fh:
        fh.write('{"path": "half-writ')  # the process died mid-line
    s = run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False)
    assert s.skipped_done == 2 and s.processed == 1
    rows = _lines(out)
    assert len(rows) == 3 and len({r["path"] for r in rows}) == 3


def test_multiprocess_matches_single(tmp_path: Path) -> None:
    d = _folder(tmp_path, 4)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    run_batch([str(d)], a, DETECT_ONLY, workers=1, progress=False)
    run_batch([str(d)], b, DETECT_ONLY, workers=2, progress=False)
    key = {r["path"]: r for r in _lines(a)}
    assert {r["path"]: r for r in _lines(b)} == key


def test_parquet_output_and_resume(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = _folder(tmp_path, 3)
    out = tmp_path / "out.parquet"
    run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False, limit=2)
    s = run_batch([str(d)], out, DETECT_ONLY, workers=1, progress=False)
    assert s.skipped_done == 2 and s.processed == 2
    table = pq.read_table(out)
    assert table.num_rows == 4 and len(set(table.column("path").to_pylist())) == 4
    assert ResultSink(out).done_paths() == set(read_inputs([str(d)]))


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    d = _folder(tmp_path, 30, bad=0)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "facelens", "batch", str(d), str(out), "--workers", "1", "--detect-only",
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    partial = len(out.read_text().splitlines())
    assert 3 <= partial < 30, "the run should have been stopped part-way"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    summary = json.loads(done.stdout)
    assert summary["already_done"] == partial and summary["processed"] == 30 - partial
    rows = _lines(out)
    assert len(rows) == 30 and len({r["path"] for r in rows}) == 30


def test_ray_engine_local_mode(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    d = _folder(tmp_path, 3)
    out = tmp_path / "ray.jsonl"
    s = run_batch([str(d)], out, DETECT_ONLY, workers=1, engine="ray", progress=False)
    assert s.processed == 4 and s.faces == 3
    ref = tmp_path / "ref.jsonl"
    run_batch([str(d)], ref, DETECT_ONLY, workers=1, progress=False)
    assert {r["path"]: r for r in _lines(out)} == {r["path"]: r for r in _lines(ref)}
