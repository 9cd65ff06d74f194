"""``facelens analyze``, ``facelens detect`` and ``facelens models``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import FaceLensError
from ..io import DEFAULT_MAX_PIXELS, is_video, iter_video_frames
from ..labels import CELEBA_ATTRIBUTES
from ..types import ImageResult
from . import expand_paths, head_names, number, prepare_output, shown

SAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "astronaut.jpg"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the analyze, detect and models subcommands."""
    p = sub.add_parser(
        "analyze",
        help="find faces and run the attribute heads (age, gender, ethnicity, attributes)",
        description="Analyse images, folders (recursively), glob patterns and videos. A file that cannot be read "
        "becomes a result with an 'error' and the run goes on; the exit status is 1 if any input failed. Mistakes "
        "(an option out of range, an unknown head, a folder without images or videos, an output that cannot be "
        "written) exit with status 2 before any input is read. With no PATH, the bundled sample photo is analysed.",
    )
    _add_common(p)
    p.add_argument(
        "--heads", action="extend", type=head_names, metavar="NAME[,NAME...]",
        help="head models (names or .onnx paths) to use, comma-separated or repeated (default: all installed)",
    )  # fmt: skip
    p.add_argument(
        "--head-every", type=number(int, low=1), default=1, metavar="N",
        help="videos with --track: re-run the heads on a track only every N analysed frames (default 1)",
    )  # fmt: skip
    p.set_defaults(func=run_analyze, detect_only=False)

    d = sub.add_parser(
        "detect",
        help="find faces only: boxes, scores and 5 landmarks",
        description="Detect faces (no attribute heads). Same inputs, output formats and exit status as 'analyze'.",
    )
    _add_common(d)
    d.set_defaults(func=run_analyze, detect_only=True, heads=None, head_every=1)

    m = sub.add_parser("models", help="list installed head models and their metadata")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.set_defaults(func=run_models)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="image/video files, folders or glob patterns")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON Lines: one object per image (see docs/schema.md)")
    fmt.add_argument("--csv", action="store_true", help="CSV: one row per face (images without faces: one row)")
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE",
        help="write results to FILE instead of stdout (missing parent folders are created)",
    )  # fmt: skip
    p.add_argument(
        "--annotate", metavar="DIR", type=Path,
        help="write images (and videos) with faces drawn into DIR, mirroring the subfolders of each folder given",
    )  # fmt: skip
    p.add_argument(
        "--min-score", type=number(float, low=0, high=1), default=0.6, metavar="X",
        help="minimum detection score, 0 to 1 (default 0.6)",
    )  # fmt: skip
    p.add_argument(
        "--max-side", type=number(int, low=0), default=640, metavar="PX",
        help="detector working resolution, longest side in px (default 640; 0 = full size, slower, finds small faces)",
    )  # fmt: skip
    p.add_argument(
        "--upscale", type=number(float, low=0, above=True), default=1.0, metavar="F",
        help="enlarge images by F before detection (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--accurate", action="store_true",
        help="also scan at 0.5x and 2x and merge by box voting: more small faces, about 6x slower (docs/detection.md)",
    )  # fmt: skip
    p.add_argument(
        "--min-face-size", type=number(float, low=0), default=0.0, metavar="PX",
        help="ignore faces whose box is smaller than PX on its shorter side (default 0: keep all)",
    )  # fmt: skip
    p.add_argument(
        "--max-faces", type=number(int, low=1), default=None, metavar="N",
        help="keep at most N faces per image, highest scores first (default: all)",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels", type=number(int, low=1), default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse images with more pixels than this (default {DEFAULT_MAX_PIXELS:,})",
    )  # fmt: skip
    p.add_argument(
        "--every", type=number(int, low=1), default=1, metavar="N",
        help="videos: analyse every N-th frame (default 1: every frame)",
    )  # fmt: skip
    p.add_argument(
        "--track", action="store_true",
        help="videos: follow faces across frames (track ids, smoothed predictions, a per-track summary)",
    )  # fmt: skip
    p.add_argument(
        "--tracks-output", type=Path, metavar="FILE",
        help="videos with --track: write per-track summaries as JSON Lines to FILE (default: stderr summary)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal)")


def _analyzer(args: argparse.Namespace):  # noqa: ANN202
    from ..detect.yunet import ACCURATE_SCALES
    from ..pipeline import AnalyzerConfig, FaceAnalyzer

    heads: tuple[str, ...] | None = () if args.detect_only else (tuple(args.heads) if args.heads else None)
    return FaceAnalyzer(
        AnalyzerConfig(
            score_threshold=args.min_score,
            max_side=args.max_side or None,
            upscale=args.upscale,
            heads=heads,
            min_face_size=args.min_face_size,
            max_faces=args.max_faces,
            max_pixels=args.max_pixels,
            detector_options={"extra_scales": ACCURATE_SCALES} if args.accurate else {},
        )
    )


def annotated_names(files: list[tuple[Path, Path]], folder: Path) -> dict[str, Path]:
    """Where ``--annotate DIR`` writes each input: DIR/RELATIVE_PATH with ``.annotated.jpg`` (videos ``.avi``).

    Args:
        files: ``(input, path relative to the folder given)`` pairs from :func:`facelens.cli.expand_paths`.
        folder: The ``--annotate`` folder.

    Returns:
        The output path of each input (keyed by ``str(input)``). Two inputs never share one: if they would
        (``x.jpg`` and ``x.png``, or the same relative path under two folders given), the later one gets a
        numbered name, ``x-2.annotated.jpg``.
    """
    names: dict[str, Path] = {}
    used: set[Path] = set()
    for path, rel in files:
        if str(path) in names:
            continue  # the same input given twice: same picture, same name
        ext = ".annotated.avi" if is_video(path) else ".annotated.jpg"
        target, n = folder / rel.parent / (rel.stem + ext), 1
        while target in used:
            n += 1
            target = folder / rel.parent / f"{rel.stem}-{n}{ext}"
        used.add(target)
        names[str(path)] = target
    return names


def _results(analyzer, paths: list[Path], args: argparse.Namespace) -> Iterator[ImageResult]:  # noqa: ANN001
    from ..io import load_image

    for path in paths:
        if is_video(path):
            yield from _video_results(analyzer, path, args)
            continue
        try:
            image = load_image(path, max_pixels=analyzer.config.max_pixels)
        except FaceLensError as exc:
            yield ImageResult(str(path), 0, 0, (), str(exc), exc.code)
            continue
        yield analyzer.analyze_array(image, path=str(path))


def _video_results(analyzer, path: Path, args: argparse.Namespace) -> Iterator[ImageResult]:  # noqa: ANN001
    from ..video import VideoAnalyzer, write_annotated_video

    video = VideoAnalyzer(analyzer, head_every=args.head_every) if args.track else None
    annotated: list[tuple[ImageResult, object]] = []
    frames = 0
    try:
        for fr in iter_video_frames(path, args.every, max_pixels=analyzer.config.max_pixels):
            frames += 1
            if video is not None:
                res = video.process_frame(fr.image, fr.index, str(path))
            else:
                res = analyzer.analyze_array(fr.image, path=str(path), frame=fr.index)
            if args.annotate:
                annotated.append((res, fr.image))
            yield res
    except FaceLensError as exc:
        yield ImageResult(str(path), 0, 0, (), str(exc), exc.code)
        return
    if frames == 0:
        yield ImageResult(str(path), 0, 0, (), f"{path}: no frame could be decoded", "unreadable_image")
        return
    if annotated:
        target = args.annotated_names[str(path)]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_annotated_video(annotated, target, fps=25.0 / args.every)
    if video is not None:
        lines = [json.dumps({"path": str(path), **t.to_dict()}) for t in video.track_results()]
        if args.tracks_output:
            with open(args.tracks_output, "a", encoding="utf-8") as fh:
                fh.writelines(line + "\n" for line in lines)
        else:
            print(f"{shown(str(path))}: {len(lines)} track(s)", file=sys.stderr)
            for line in lines:
                print("  " + line, file=sys.stderr)


def run_analyze(args: argparse.Namespace) -> int:
    """Run ``analyze`` or ``detect``; returns 1 if any input failed, 2 on a usage error, else 0.

    Everything that can be checked up front is, before the first input is read: the settings and head models
    (:class:`FaceLensError`), the PATH arguments (a folder without images or videos) and the outputs (missing
    parent folders are created; a folder where a file is expected, or the reverse, is refused).
    """
    if not args.paths:
        print(f"note: no PATH given; analysing the bundled sample photo {SAMPLE_IMAGE}", file=sys.stderr)
        args.paths = [str(SAMPLE_IMAGE)]
    try:
        analyzer = _analyzer(args)
        missing = [] if args.detect_only else analyzer.missing_tasks()
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if missing:
        print(
            f"note: no head model installed for: {', '.join(missing)} (detection results only)",
            file=sys.stderr,
        )
    files, problems = expand_paths(args.paths)
    outputs = [
        ("-o", args.output, False),
        ("--tracks-output", args.tracks_output, False),
        ("--annotate", args.annotate, True),
    ]
    problems += [msg for opt, path, folder in outputs if path and (msg := prepare_output(path, opt, folder=folder))]
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    paths = [f for f, _ in files]
    args.annotated_names = annotated_names(files, args.annotate) if args.annotate else {}
    try:
        if args.tracks_output:
            args.tracks_output.write_text("")  # appended to by each video
        out: IO[str] = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    except OSError as exc:
        print(f"error: cannot write an output: {exc}", file=sys.stderr)
        return 2
    writer = _Writer(out, "json" if args.json else "csv" if args.csv else "text")
    failed = 0
    try:
        for res in _progress(_results(analyzer, paths, args), len(paths), args.no_progress):
            failed += not res.ok
            writer.write(res)
            if args.annotate and res.ok and res.faces is not None:
                _save_annotated(args.annotated_names, res, analyzer)
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    if failed:
        print(f"{failed} of {len(paths)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _progress(it: Iterator[ImageResult], total: int, disabled: bool) -> Iterator[ImageResult]:
    if disabled or not sys.stderr.isatty():
        return it
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    return iter(tqdm(it, total=total, unit="img", file=sys.stderr))


def _save_annotated(names: dict[str, Path], res: ImageResult, analyzer) -> None:  # noqa: ANN001
    import cv2

    from ..annotate import annotate
    from ..io import load_image

    if res.path is None or res.frame is not None:
        return  # video frames are written as one annotated video by _video_results
    out = names[res.path]
    out.parent.mkdir(parents=True, exist_ok=True)
    image = load_image(res.path, max_pixels=analyzer.config.max_pixels)
    cv2.imwrite(str(out), cv2.cvtColor(annotate(image, res), cv2.COLOR_RGB2BGR))


CSV_FIELDS = [
    "path", "frame", "face", "error", "x1", "y1", "x2", "y2", "score", "age", "age_lo", "age_hi",
    "age_group_adience", "age_group_utkface", "gender", "gender_score", "race", "race_score",
    *CELEBA_ATTRIBUTES,
]  # fmt: skip


class _Writer:
    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self.csv = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore") if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, res: ImageResult) -> None:
        d = res.to_dict()
        if self.fmt == "json":
            self.out.write(json.dumps(d) + "\n")
        elif self.fmt == "csv":
            self._csv(d)
        else:
            self._text(res)

    def _csv(self, d: dict) -> None:
        assert self.csv is not None
        base = {"path": d["path"], "frame": d.get("frame", ""), "error": d["error"] or ""}
        if not d["faces"]:
            self.csv.writerow(base)
        for i, f in enumerate(d["faces"]):
            row = dict(base, face=i, score=f["score"])
            row.update(zip(("x1", "y1", "x2", "y2"), f["box"], strict=True))
            if "age" in f:
                row.update(age=f["age"], age_lo=f["age_interval"][0], age_hi=f["age_interval"][1])
                row.update({f"age_group_{k}": v for k, v in f["age_group"].items()})
            if "gender" in f:
                row.update(gender=f["gender"]["label"], gender_score=f["gender"]["score"])
            if "race" in f:
                row.update(race=f["race"]["label"], race_score=f["race"]["scores"][f["race"]["label"]])
            row.update(f.get("attributes", {}))
            self.csv.writerow(row)

    def _text(self, res: ImageResult) -> None:
        w = self.out.write
        name = shown(res.path or "")
        where = name + (f" [frame {res.frame}]" if res.frame is not None else "")
        if not res.ok:
            error = res.error or ""
            if res.path:
                error = error.replace(res.path, name)  # the name as above; the rest escaped if it breaks the line
            w(f"{where}: ERROR {shown(error)}\n")
            return
        w(f"{where}: {res.width}x{res.height}, {len(res.faces)} face(s)\n")
        for i, f in enumerate(res.faces):
            b = f.box
            w(f"  face {i}: box=({b.x1:.0f}, {b.y1:.0f}, {b.x2:.0f}, {b.y2:.0f}) score={f.detection.score:.2f}")
            lm = " ".join(f"({x:.0f},{y:.0f})" for x, y in f.detection.landmarks.points)
            w(f" landmarks={lm}\n")
            if f.age is not None:
                lo, hi = f.age.interval
                groups = ", ".join(f"{k} {v}" for k, v in f.age.groups.items())
                w(f"    age {f.age.years:.1f} (80% interval {lo:.0f}-{hi:.0f}; {groups})\n")
            if f.gender is not None:
                w(f"    gender {f.gender.label} ({f.gender.score:.2f})\n")
            if f.race is not None:
                w(f"    ethnicity {f.race.label} ({f.race.score:.2f})\n")
            if f.attributes:
                top = sorted(f.attributes.items(), key=lambda kv: -kv[1])[:6]
                w("    attributes " + ", ".join(f"{k} {v:.2f}" for k, v in top) + "\n")


def run_models(args: argparse.Namespace) -> int:
    """Print installed head models."""
    from ..heads import list_models, model_dirs

    models = list_models()
    if args.json:
        print(json.dumps([{"name": m.name, "path": str(m.path), **m.metadata.to_props()} for m in models], indent=2))
        return 0
    if not models:
        print("no head models installed; searched: " + ", ".join(str(d) for d in model_dirs()))
        return 0
    for m in models:
        md = m.metadata
        print(f"{md.name} {md.version}  ({m.path})")
        print(f"  tasks: {', '.join(md.tasks)}; input {md.input.size}x{md.input.size} {md.input.color}")
        print(f"  alignment: {md.alignment.get('name')}; licence: {md.license}")
        if md.metrics:
            print("  metrics: " + json.dumps(md.metrics))
    return 0
