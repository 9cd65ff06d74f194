"""Reproducible speed benchmarks (``facelens bench``) on generated, public-domain inputs, with peers.

Modules: :mod:`.core` (rows, timing loop, inputs, machine), :mod:`.suites` (facelens' own benchmarks),
:mod:`.peers` (other packages on the same inputs), :mod:`.profile` (stage timings, profiler), :mod:`.report`
(targets, ratios, text / Markdown / JSON) and :mod:`.cli`. ``facelens.bench`` re-exports the public names.
"""

from __future__ import annotations

from .cli import register, run
from .core import Quantity, Report, Row, Skipped, Timing, frame_with_faces, machine, make_chips, time_call
from .peers import run_peer_age_gender, run_peer_cold, run_peer_detect, run_peer_folder
from .report import TARGETS, evaluate_targets, peer_ratios, text_table, to_json, to_markdown, write_markdown
from .suites import (
    run_cold_bench,
    run_detect_bench,
    run_e2e_bench,
    run_folder_bench,
    run_heads_bench,
    run_video_bench,
)

__all__ = [
    "TARGETS",
    "Quantity",
    "Report",
    "Row",
    "Skipped",
    "Timing",
    "evaluate_targets",
    "frame_with_faces",
    "machine",
    "make_chips",
    "peer_ratios",
    "register",
    "run",
    "run_cold_bench",
    "run_detect_bench",
    "run_e2e_bench",
    "run_folder_bench",
    "run_heads_bench",
    "run_peer_age_gender",
    "run_peer_cold",
    "run_peer_detect",
    "run_peer_folder",
    "run_video_bench",
    "text_table",
    "time_call",
    "to_json",
    "to_markdown",
    "write_markdown",
]
