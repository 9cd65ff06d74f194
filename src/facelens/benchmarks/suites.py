"""The facelens benchmarks: detection, heads, end to end, video settings, folder throughput, cold start."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core import SAMPLE, Quantity, Row, Skipped, frame_with_faces, make_chips, summarize, time_call

# Row names the targets and the peers refer to.
DETECT_640 = "detect 640x480"
DETECT_720 = "detect 1280x720"
HEADS_BATCH = "heads batch {}"
HEADS_1THREAD = "heads batch 1, 1 thread"
HEADS_FULL = "heads {} face(s), align+run+decode"
E2E = "e2e 640x480, {} face(s)"
E2E_1THREAD = "e2e 640x480, 1 face(s), 1 thread"
FOLDER = "folder, {} process(es)"
COLD = "cold start"
COLD_RSS = "cold start peak RSS"

NO_HEADS = (
    "no head model installed: pass --model NAME_OR_PATH (or set FACELENS_MODEL_PATH to a folder with a "
    "facelens .onnx model)"
)


def heads_setting(model: str | None) -> tuple[str, ...] | None:
    """The ``AnalyzerConfig.heads`` value for ``--model`` (``None``: every installed model)."""
    return (model,) if model else None


def _analyzer(model: str | None, **settings: object):  # noqa: ANN202 - FaceAnalyzer
    from ..pipeline import FaceAnalyzer

    return FaceAnalyzer(heads=heads_setting(model), **settings)


def describe_heads(model: str | None) -> str:
    """A short description of the head models a benchmark with ``--model model`` uses."""
    heads = _analyzer(model).heads
    if not heads:
        return "none (detection only)"
    return ", ".join(f"{h.name} {h.metadata.version} ({h.metadata.input.size}px, {h.path})" for h in heads)


def run_detect_bench(number: int, repeat: int) -> list[Row]:
    """Detection alone (YuNet) on 640x480 and 1280x720 frames with one face.

    Default settings (``max_side`` 640), then 1280x720 at full size, plain and in the accurate mode (``--accurate``).
    """
    from ..detect import create_detector
    from ..detect.yunet import ACCURATE_SCALES

    det = create_detector("yunet")
    out: list[Row] = []
    for (w, h), name in (((640, 480), DETECT_640), ((1280, 720), DETECT_720)):
        frame = frame_with_faces(w, h, 1)
        n = len(det.detect(frame))
        out.append(
            time_call(
                name,
                lambda f=frame: det.detect(f),
                number,
                repeat,
                f"{n} face(s); max_side=640",
                group="detect",
                unit="frame",
            )
        )
    frame = frame_with_faces(1280, 720, 1)
    for name, options in (
        ("detect 1280x720 full size", {}),
        ("detect 1280x720 full size, accurate", {"extra_scales": ACCURATE_SCALES}),
    ):
        full = create_detector("yunet", max_side=None, **options)
        out.append(
            time_call(
                name,
                lambda d=full: d.detect(frame),
                number,
                repeat,
                f"{len(full.detect(frame))} face(s); max_side=None" + (" + 0.5x and 2x passes" if options else ""),
                group="detect",
                unit="frame",
            )
        )
    return out


def run_heads_bench(
    number: int, repeat: int, model: str | None = None, batches: Sequence[int] = (1, 8, 32)
) -> list[Row]:
    """The head models alone on aligned crops (batch 1 and batched), and align+run+decode on 1 and 3 faces.

    ``heads batch N`` times :meth:`HeadModel.run_crops` (normalisation and ONNX Runtime) on N copies of an aligned
    face; ``items`` is N, so ``per_item_ms`` is the time per face. ``heads batch 1, 1 thread`` is batch 1 with one
    ONNX Runtime thread. Rounds of large batches make fewer calls
    (``number // (N / 4)``) so each batch size takes about the same time.
    """
    analyzer = _analyzer(model)
    heads = analyzer.heads
    if not heads:
        return [Skipped("heads", NO_HEADS, "heads")]
    out: list[Row] = []
    frames = {k: frame_with_faces(640, 480, k) for k in (1, 3)}
    dets = {k: analyzer.detect(f) for k, f in frames.items()}
    if not dets[1]:
        return [Skipped("heads", "the detector found no face on the generated frame", "heads")]
    for i, head in enumerate(heads):
        tag = "" if i == 0 else f" [{head.name}]"
        crop = head.align(frames[1], dets[1][:1])
        flip = ", test-time flip (2 passes)" if head.metadata.test_time_flip else ""
        note = f"{head.name}, {head.metadata.input.size}px{flip}; threads={analyzer.config.threads or 'ORT default'}"
        for b in batches:
            crops = np.repeat(crop, b, axis=0)
            calls = max(1, number // max(1, b // 4))
            out.append(
                time_call(
                    HEADS_BATCH.format(b) + tag,
                    lambda c=crops, h=head: h.run_crops(c),
                    calls,
                    repeat,
                    note,
                    group="heads",
                    items=b,
                    unit="face",
                )
            )
        if i == 0:  # the same model with one ONNX Runtime thread (the setting of batch workers)
            from ..heads import HeadModel

            single = HeadModel(head.path, threads=1)
            out.append(
                time_call(
                    HEADS_1THREAD,
                    lambda h=single, c=crop: h.run_crops(c),
                    number,
                    repeat,
                    f"{head.name}; ONNX Runtime threads=1",
                    group="heads",
                    unit="face",
                )
            )
        for k in (1, 3):
            d = dets[k][:k]
            out.append(
                time_call(
                    HEADS_FULL.format(k) + tag,
                    lambda f=frames[k], d=d, h=head: h.run(f, d),
                    number,
                    repeat,
                    f"{len(d)} face(s) aligned, run, decoded",
                    group="heads",
                    items=len(d),
                    unit="face",
                )
            )
    return out


def run_e2e_bench(number: int, repeat: int, model: str | None = None) -> list[Row]:
    """The whole pipeline (``FaceAnalyzer.analyze_array``) on decoded 640x480 frames with 1 and 3 faces.

    Also once with one thread (ONNX Runtime and OpenCV), the setting of the single-threaded peer.
    """
    import cv2

    analyzer = _analyzer(model)
    heads = ", ".join(h.name for h in analyzer.heads) or "none: detection only"
    out: list[Row] = []
    for k in (1, 3):
        frame = frame_with_faces(640, 480, k)
        found = len(analyzer.analyze_array(frame).faces)
        out.append(
            time_call(
                E2E.format(k),
                lambda f=frame: analyzer.analyze_array(f),
                number,
                repeat,
                f"{found} face(s) found; heads: {heads}",
                group="e2e",
                unit="frame",
            )
        )
    single = _analyzer(model, threads=1)
    frame = frame_with_faces(640, 480, 1)
    prev = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        out.append(
            time_call(
                E2E_1THREAD,
                lambda: single.analyze_array(frame),
                number,
                repeat,
                "ONNX Runtime threads=1, cv2.setNumThreads(1)",
                group="e2e",
                unit="frame",
            )
        )
    finally:
        cv2.setNumThreads(prev)
    return out


def run_video_bench(
    number: int,
    repeat: int,
    model: str | None = None,
    configs: Sequence[tuple[int, int]] = ((480, 0), (320, 0), (320, 1)),
) -> list[Row]:
    """End to end on the same frames with smaller detector working sizes (``AnalyzerConfig.max_side``).

    Args:
        number: Calls per round.
        repeat: Rounds.
        model: Head model name or path.
        configs: ``(max_side, threads)`` pairs; ``threads=1`` also sets OpenCV to one thread for that row.

    """
    import cv2

    out: list[Row] = []
    for side, threads in configs:
        analyzer = _analyzer(model, max_side=side, threads=threads)
        suffix = f", max_side={side}" + (f", {threads} thread(s)" if threads else "")
        prev = cv2.getNumThreads()
        if threads:
            cv2.setNumThreads(threads)
        try:
            for k in (1, 3):
                frame = frame_with_faces(640, 480, k)
                found = len(analyzer.analyze_array(frame).faces)
                out.append(
                    time_call(
                        E2E.format(k) + suffix,
                        lambda f=frame, a=analyzer: a.analyze_array(f),
                        number,
                        repeat,
                        f"{found} face(s) found",
                        group="video",
                        unit="frame",
                    )
                )
        finally:
            cv2.setNumThreads(prev)
    return out


# ---- folder throughput ------------------------------------------------------------------------------------------


def run_folder_bench(
    repeat: int,
    model: str | None = None,
    folder: str | os.PathLike | None = None,
    chips: int = 300,
    processes: Sequence[int] = (1, 2),
) -> list[Row]:
    """``facelens batch`` throughput (:func:`facelens.batch.run_batch`) on a folder of 200x200 face chips.

    Each round analyses every chip into a fresh JSON Lines file, start-up (worker processes, model loading)
    included, as a user of ``facelens batch`` sees it. Each round also runs a quarter of the chips, so the note
    gives the steady-state rate and the start-up time: ``steady = (n - n/4) / (t_n - t_n/4)``.

    Args:
        repeat: Timed rounds (after one warm-up run).
        model: Head model name or path (``None``: every installed model).
        folder: A folder of chips (default: ``chips`` generated by :func:`make_chips` in a temporary folder).
        chips: How many chips to generate when ``folder`` is not given.
        processes: Worker process counts to measure.

    """
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="facelens-bench-") as tmp:
            make_chips(Path(tmp) / "chips", chips)
            return run_folder_bench(repeat, model, Path(tmp) / "chips", chips, processes)

    from ..batch import read_inputs, run_batch

    folder = Path(folder)
    n = len(read_inputs([str(folder)]))
    if n == 0:
        return [Skipped("folder", f"no images in {folder}", "folder")]
    quarter = max(1, n // 4)
    settings = {"heads": heads_setting(model)}
    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="facelens-bench-out-") as tmp:

        def once(workers: int, limit: int | None) -> tuple[float, int]:
            dest = Path(tmp) / f"{uuid.uuid4().hex}.jsonl"
            t0 = time.perf_counter()
            summary = run_batch([str(folder)], dest, settings, workers=workers, progress=False, limit=limit)
            seconds = time.perf_counter() - t0
            dest.unlink(missing_ok=True)
            return seconds, summary.faces

        for w in processes:
            once(w, None)  # warm-up: file cache, imports
            full, part, faces = [], [], 0
            for _ in range(max(1, repeat)):
                s, faces = once(w, None)
                full.append(s)
                part.append(once(w, quarter)[0])
            t_full, t_part = float(np.median(full)), float(np.median(part))
            note = f"{faces} face(s) in {n} chips"
            if t_full > t_part:
                steady = (n - quarter) / (t_full - t_part)
                note += f"; steady ≈ {steady:.0f} chips/s, start-up ≈ {max(0.0, t_full - n / steady):.2f} s"
            out.append(
                summarize(FOLDER.format(w), [1000 * s for s in full], note, group="folder", items=n, unit="chip")
            )
    return out


# ---- cold start ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRun:
    """One measured child process."""

    seconds: float
    peak_rss_mb: float | None
    returncode: int
    output: str

    def value(self, key: str) -> str | None:
        """The value printed by the child on a line ``BENCH key value``."""
        for line in self.output.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "BENCH" and parts[1] == key:
                return parts[2]
        return None


def measure_process(argv: Sequence[str], timeout: float = 300.0) -> ProcessRun:
    """Run ``argv``; wall time from start to exit, its output, and ``wait4``'s ``ru_maxrss`` of this one child.

    ``ru_maxrss`` is ``None`` where the platform has no ``os.wait4``. On Linux it also counts this (parent)
    process's memory at the time of the ``exec``, so :func:`cold_rows` prefers the child's own ``VmHWM``.
    """
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(p.pid, 0)
                seconds = time.perf_counter() - t0
                p.returncode = os.waitstatus_to_exitcode(status)
                scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
                rss: float | None = usage.ru_maxrss * scale / 1e6
            else:  # pragma: no cover - Windows
                p.wait()
                seconds = time.perf_counter() - t0
                rss = None
        finally:
            timer.cancel()
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    return ProcessRun(seconds, rss, int(p.returncode or 0), text)


PEAK_RSS_CODE = """\
def _peak_rss_kb():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
print("BENCH peak_rss_kb", _peak_rss_kb())
"""
"""Appended to a child's code: its own peak RSS (Linux ``VmHWM``, the high-water mark since ``exec``).

On Linux a child's ``ru_maxrss`` (from ``wait4`` or ``getrusage``) also counts the parent's resident memory at the
time of ``fork``/``exec``, so a benchmark process that already holds models would inflate it; ``VmHWM`` does not.
"""

COLD_CODE = (
    """\
import sys, time
t0 = time.perf_counter()
import facelens
t1 = time.perf_counter()
r = facelens.analyze(sys.argv[1]{kwargs})
t2 = time.perf_counter()
print("BENCH faces", len(r.faces))
print("BENCH import_ms", round(1000 * (t1 - t0), 1))
print("BENCH first_ms", round(1000 * (t2 - t1), 1))
"""
    + PEAK_RSS_CODE
)


def cold_rows(
    name: str,
    rss_name: str,
    argv: Sequence[str],
    repeat: int,
    group: str = "cold",
    vs: str = "",
    vs_rss: str = "",
    describe: str = "",
) -> list[Row]:
    """Run a child ``repeat`` times (after one untimed run that warms the file cache); time and peak RSS rows."""
    first = measure_process(argv)
    if first.returncode != 0:
        tail = " ".join(first.output.strip().splitlines()[-3:])[-400:]
        return [Skipped(name, f"the child process failed (exit {first.returncode}): {tail}", group)]
    runs = [measure_process(argv) for _ in range(max(1, repeat))]
    bad = [r for r in runs if r.returncode != 0]
    if bad:
        return [Skipped(name, f"the child process failed (exit {bad[0].returncode})", group)]
    note = describe
    parts = {k: [float(v) for r in runs if (v := r.value(k)) is not None] for k in ("import_ms", "first_ms")}
    if parts["import_ms"] and parts["first_ms"]:
        note += (
            f"; inside the child: import {np.median(parts['import_ms']):.0f} ms + first result "
            f"{np.median(parts['first_ms']):.0f} ms, the rest is interpreter start-up"
        )
    faces = runs[-1].value("faces")
    if faces is not None:
        note += f"; {faces} face(s)"
    rows: list[Row] = [
        summarize(name, [1000 * r.seconds for r in runs], note.lstrip("; "), group=group, unit="start", vs=vs)
    ]
    rss, how = [], "VmHWM reported by the child"
    for run in runs:
        kb = run.value("peak_rss_kb")
        if kb not in (None, "None"):
            rss.append(int(kb) * 1024 / 1e6)
    if not rss and sys.platform == "darwin":  # macOS: ru_maxrss does not inherit the parent's memory
        rss, how = [r.peak_rss_mb for r in runs if r.peak_rss_mb is not None], "wait4 ru_maxrss"
    if rss:
        rows.append(
            Quantity(
                rss_name,
                "MB",
                min(rss),
                float(np.median(rss)),
                max(rss),
                len(rss),
                f"peak resident set size of the child ({how})",
                group,
                vs_rss,
            )
        )
    else:
        rows.append(Skipped(rss_name, "no way to read the child's own peak RSS on this platform", group))
    return rows


def run_cold_bench(repeat: int, model: str | None = None, image: str | os.PathLike = SAMPLE) -> list[Row]:
    """Cold start: a fresh ``python -c "import facelens; facelens.analyze(path)"``, import + first result.

    Wall time from process start to exit (interpreter start-up included) and the child's peak RSS. With
    ``--model`` the call is ``facelens.analyze(path, heads=(model,))``.
    """
    kwargs = f", heads=({model!r},)" if model else ""
    argv = [sys.executable, "-c", COLD_CODE.format(kwargs=kwargs), str(image)]
    return cold_rows(
        COLD,
        COLD_RSS,
        argv,
        repeat,
        describe=f"python -c 'import facelens; facelens.analyze(...)' on {Path(image).name}",
    )
