"""Where the end-to-end time goes: each pipeline stage timed alone, and a sampling profile of the whole call."""

from __future__ import annotations

import cProfile
import io
import pstats

import numpy as np

from .core import Row, Skipped, frame_with_faces, time_call
from .suites import _analyzer


def run_profile_bench(number: int, repeat: int, model: str | None = None, faces: int = 1) -> list[Row]:
    """Time each stage of ``analyze_array`` on the 640x480 frame alone (group ``profile``).

    Stages: RGB->BGR conversion, the YuNet network (``cv2.FaceDetectorYN.detect``), the whole ``detect``
    (conversion, network, result objects), and per head model: alignment, normalisation (``preprocess``),
    ONNX Runtime ``session.run``, decoding; then the whole ``analyze_array``.
    """
    import cv2

    analyzer = _analyzer(model)
    frame = frame_with_faces(640, 480, faces)
    det = analyzer.detector
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    net = det._net  # noqa: SLF001 - the benchmark times the network alone
    dets = analyzer.detect(frame)
    tag = f"{faces} face(s)"
    rows: list[Row] = [
        time_call(
            f"stage RGB->BGR, {tag}",
            lambda: cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
            number,
            repeat,
            group="profile",
            unit="frame",
        ),
        time_call(
            f"stage YuNet network, {tag}",
            lambda: (net.setInputSize((640, 480)), net.detect(bgr)),
            number,
            repeat,
            group="profile",
            unit="frame",
        ),
        time_call(
            f"stage detect (all), {tag}",
            lambda: analyzer.detect(frame),
            number,
            repeat,
            f"{len(dets)} face(s)",
            group="profile",
            unit="frame",
        ),
    ]
    if not dets:
        return [*rows, Skipped(f"stage heads, {tag}", "no face found", "profile")]
    for head in analyzer.heads:
        crops = head.align(frame, dets)
        x = head.preprocess(crops)
        if head.metadata.test_time_flip:
            x = np.concatenate([x, x[:, :, :, ::-1]], axis=0)
        sess = head._get_session()  # noqa: SLF001
        names = [o.name for o in head.metadata.outputs]
        feed = {head.metadata.input.name: x}
        probs = head.run_crops(crops)
        n = len(dets)
        stages = [
            ("align", lambda h=head: h.align(frame, dets)),
            ("preprocess", lambda h=head, c=crops: h.preprocess(c)),
            ("ONNX session.run", lambda s=sess, f=feed, o=names: s.run(o, f)),
            ("decode", lambda h=head, p=probs: h.decode(p)),
        ]
        rows += [
            time_call(f"stage {stage} [{head.name}], {tag}", fn, number, repeat, group="profile", items=n, unit="face")
            for stage, fn in stages
        ]
    rows.append(
        time_call(
            f"stage analyze_array (all), {tag}",
            lambda: analyzer.analyze_array(frame),
            number,
            repeat,
            group="profile",
            unit="frame",
        )
    )
    return rows


def profile_text(model: str | None = None, calls: int = 200, faces: int = 1, top: int = 25) -> str:
    """Profile ``calls`` x ``analyze_array`` on the 640x480 frame.

    Returns pyinstrument's call tree when it is installed, else cProfile's functions by own time.
    """
    analyzer = _analyzer(model)
    frame = frame_with_faces(640, 480, faces)
    analyzer.analyze_array(frame)  # load models outside the profile
    try:
        from pyinstrument import Profiler
    except ImportError:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            analyzer.analyze_array(frame)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        return "cProfile (pyinstrument not installed), by own time:\n" + buf.getvalue()
    p = Profiler(interval=0.0005)
    p.start()
    for _ in range(calls):
        analyzer.analyze_array(frame)
    p.stop()
    return p.output_text(unicode=False, color=False, show_all=False)
