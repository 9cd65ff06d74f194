"""Render experiment run folders as a Markdown report with PNG plots.

``facelens report RUN_DIR... -o docs/experiments/NAME.md`` reads each folder's ``experiment.json``,
``summary.json`` and ``command.txt`` (see :mod:`facelens.experiments.records`) and writes ``NAME.md`` plus
plots in ``NAME_files/``. Every number in the report is read from those files; the command that produced
each run is quoted above its tables, and the report command itself at the top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .records import ExperimentError, load_experiment

_ORDER = (
    "accuracy",
    "balanced_accuracy",
    "tpr",
    "fpr",
    "precision",
    "macro_tpr",
    "macro_fpr",
    "macro_precision",
    "roc_auc",
    "mae",
    "rmse",
    "group_exact",
    "group_one_off",
)
_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "bal. acc.",
    "tpr": "TPR",
    "fpr": "FPR",
    "precision": "precision",
    "macro_tpr": "macro TPR",
    "macro_fpr": "macro FPR",
    "macro_precision": "macro prec.",
    "roc_auc": "ROC-AUC",
    "mae": "MAE (y)",
    "rmse": "RMSE (y)",
    "group_exact": "group exact",
    "group_one_off": "group 1-off",
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


def _pm(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "–"
    m, s = stat.get("mean"), stat.get("std")
    return f"{_fmt(m)} ± {_fmt(s)}" if s is not None else _fmt(m)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def _metric_keys(dicts: Sequence[dict[str, Any]]) -> list[str]:
    present = {k for d in dicts for k in d}
    return [k for k in _ORDER if k in present]


def _main_metric(keys: Sequence[str]) -> str:
    return "mae" if "mae" in keys else ("accuracy" if "accuracy" in keys else (keys[0] if keys else ""))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)


def _bar(
    names: Sequence[str], values: Sequence[float], errors: Sequence[float] | None, ylabel: str, title: str, path: Path
) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.4))
    vals = [v if v is not None else math.nan for v in values]
    ax.bar(range(len(names)), vals, yerr=errors, capsize=3, color="C0")
    ax.set_xticks(
        range(len(names)), names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    finite = [v for v in vals if math.isfinite(v)]
    if finite and ylabel.lower() not in ("mae (y)", "rmse (y)"):
        lo = min(finite)
        ax.set_ylim(
            max(0.0, lo - 0.1 * (max(finite) - lo + 0.05) - 0.02),
            min(1.0, max(finite) + 0.03) if max(finite) <= 1 else None,
        )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, path)


def _main_metric_bar(
    keys: Sequence[str],
    names: Sequence[str],
    tests: Sequence[dict[str, Any]],
    title: Callable[[str], str],
    per: str,
    img: Path,
) -> list[str]:
    """Plot the main metric of ``keys`` (see :func:`_main_metric`) per model as a bar chart.

    Args:
        keys: The metric keys of the section's table.
        names: Bar labels, one per model.
        tests: Each model's metrics.
        title: Title of the chart, given the main metric's key.
        per: What a bar is (``"fold"``, ``"arm"``...), for the image's alt text.
        img: Where to save the chart.

    Returns:
        The Markdown lines showing the chart; none when no metric of ``keys`` is a main metric.

    """
    main = _main_metric(keys)
    if not main:
        return []
    _bar(names, [t.get(main) for t in tests], None, _LABELS[main], title(main), img)
    return [f"![{main} per {per}]({img.parent.name}/{img.name})", ""]


def _curves(models: Sequence[dict[str, Any]], key: str, title: str, path: Path) -> bool:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    drawn = False
    for m in models:
        hist = [h for h in m.get("history", ()) if key in h]
        if hist:
            ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], "o-", label=m["name"])
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def _mode(summary: dict[str, Any]) -> str:
    if summary.get("single_task"):
        return f"Training: single-task ({summary['task']} labels only; the other labels are hidden from the engine)."
    return "Training: the recipe's multi-task objective; the table reports the task above."


def _scale(models: Sequence[dict[str, Any]]) -> str:
    """One honest line about how big the runs were, from the recorded results."""
    if not models:
        return ""

    def span(values: list[Any]) -> str:
        vals = sorted({v for v in values if v is not None}, key=str)
        if not vals:
            return "–"
        if not all(isinstance(v, (int, float)) for v in vals):
            return ", ".join(map(str, vals))
        vals = sorted(vals)
        return str(vals[0]) if len(vals) == 1 else f"{vals[0]}–{vals[-1]}"

    prof = [m.get("profile", {}) for m in models]
    return (
        f"Scale: {len(models)} model(s); training rows {span([m['n_train'] for m in models])}, "
        f"validation rows {span([m['n_val'] for m in models])}, evaluated rows {span([m['n_test'] for m in models])}; "
        f"epochs run {span([m['epochs_run'] for m in models])}; architecture {span([p.get('arch') for p in prof])} "
        f"at {span([p.get('input_size') for p in prof])} px; total training time "
        f"{_fmt(sum(m['train_seconds'] for m in models) / 60.0, 1)} min (CPU)."
    )


def _metric_rows(models: Sequence[tuple[str, dict[str, Any], dict[str, Any]]], keys: Sequence[str]) -> list[list[str]]:
    rows = []
    for label, m, test in models:
        rows.append(
            [
                label,
                _fmt(m.get("n_train")),
                _fmt(test.get("n")),
                _fmt(m.get("best_epoch")),
                _fmt(m.get("epochs_run")),
                _fmt(m.get("train_seconds"), 1),
            ]
            + [_fmt(test.get(k)) for k in keys]
        )
    return rows


_BASE_HEADER = ["model", "train rows", "eval rows", "best epoch", "epochs", "train s"]


def _section_cv(exp: dict[str, Any], files: Path, stem: str, idx: int) -> tuple[list[str], list[dict[str, Any]]]:
    s = exp["summary"]
    folds = s["per_fold"]
    keys = _metric_keys([f["test"] for f in folds])
    pos = f" (positive class: {s['positive']})" if s.get("positive") else ""
    lines = [
        f"Task: **{s['task']}**{pos}; {s['folds']} folds over {s['n_rows']} rows of the recipe's train+val "
        f"splits, stratified on the task; subject-disjoint: {str(s['subject_disjoint']).lower()} "
        "(only where the data has identities). Each fold's model is selected on an inner validation split of its "
        "training folds and evaluated once on the held-out fold.",
        "",
    ]
    rows = _metric_rows([(f"fold {i + 1}", f, f["test"]) for i, f in enumerate(folds)], keys)
    rows.append(["**mean ± std**", "", "", "", "", ""] + [_pm(s["mean_std"].get(k)) for k in keys])
    lines += _table(_BASE_HEADER + [_LABELS[k] for k in keys], rows)
    lines += _main_metric_bar(
        keys,
        [f"fold {i + 1}" for i in range(len(folds))],
        [f["test"] for f in folds],
        lambda main: f"{s['task']}: {_LABELS[main]} per fold (mean {_pm(s['mean_std'].get(main))})",
        "fold",
        files / f"{stem}-{idx}-cv-folds.png",
    )
    val_key = _val_key(folds)
    img = files / f"{stem}-{idx}-cv-curves.png"
    if val_key and _curves(folds, val_key, f"validation {val_key[4:]} per epoch", img):
        lines += [f"![learning curves]({files.name}/{img.name})", ""]
    return lines, folds


def _val_key(models: Sequence[dict[str, Any]]) -> str:
    for k in ("val_gender_acc", "val_male_acc", "val_race_acc", "val_age_mae", "val_attr_acc", "val_score"):
        if any(k in h for m in models for h in m.get("history", ())):
            return k
    return ""


def _section_ablation(exp: dict[str, Any], files: Path, stem: str, idx: int) -> tuple[list[str], list[dict[str, Any]]]:
    s = exp["summary"]
    arms = s["arms"]
    keys = _metric_keys([a["test"] for a in arms])
    varied = ", ".join(s.get("varied", []))
    lines = [
        f"Task: **{s['task']}**; varied: {varied}. All arms train on the same rows and are evaluated on the "
        "same test rows.",
        "",
    ]
    rows = _metric_rows([(a["name"], a, a["test"]) for a in arms], keys)
    if varied == "augment":
        head = _BASE_HEADER + ["augment (flip/rot/bright/contr/shift/zoom)"] + [_LABELS[k] for k in keys]
        for r, a in zip(rows, arms, strict=True):
            au = a.get("extra", {}).get("augment", {})
            r.insert(
                6, "/".join(_fmt(au.get(f), 2) for f in ("flip", "rotate", "brightness", "contrast", "shift", "scale"))
            )
    else:
        head = _BASE_HEADER + [_LABELS[k] for k in keys]
    lines += _table(head, rows)
    lines += _main_metric_bar(
        keys,
        [a["name"] for a in arms],
        [a["test"] for a in arms],
        lambda main: f"{s['task']}: {_LABELS[main]} per arm",
        "arm",
        files / f"{stem}-{idx}-ablation.png",
    )
    return lines, arms


def _section_sweep(exp: dict[str, Any], files: Path, stem: str, idx: int) -> tuple[list[str], list[dict[str, Any]]]:
    s = exp["summary"]
    trials = s["trials"]
    params = sorted({k for t in trials for k in t["params"]})
    lines = [
        f"Objective: validation **{s['metric']}** ({s['direction']}), sampler {s['sampler']}, Optuna storage "
        f"`{s['storage']}`. Best trial: #{s['best']['number']} with {_fmt(s['best']['value'], 4)}; its recipe: "
        f"`{s['best']['recipe']}`. A pruned trial shows the value it last reported, at the epoch it was stopped.",
        "",
    ]
    rows = []
    for t in trials:
        mark = "**" if t["number"] == s["best"]["number"] else ""
        rows.append(
            [
                f"{mark}{t['number']}{mark}",
                t["state"].lower(),
                _fmt(t["value"], 4),
                _fmt(t["epochs"]),
                _fmt(t.get("seconds"), 0),
            ]
            + [_fmt(t["params"].get(p), 5) for p in params]
        )
    lines += _table(["trial", "state", s["metric"], "epochs reported", "seconds"] + params, rows)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        pts = [(t["number"], t["value"]) for t in trials if t["state"] == state and t["value"] is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker, linestyle="none", label=state.lower())
    ax.set_xlabel("trial")
    ax.set_ylabel(s["metric"])
    ax.set_title("sweep objective per trial")
    ax.legend(fontsize=7)
    img = files / f"{stem}-{idx}-sweep.png"
    _save(fig, img)
    lines += [f"![objective per trial]({files.name}/{img.name})", ""]
    models = []
    for t in trials:
        res = Path(t.get("out_dir") or "") / "result.json"
        if t["state"] == "COMPLETE" and res.is_file():
            from .records import read_json

            models.append(read_json(res)["result"])
    return lines, models


def _section_transfer(exp: dict[str, Any], files: Path, stem: str, idx: int) -> tuple[list[str], list[dict[str, Any]]]:
    s = exp["summary"]
    m, ev = s["models"], s["evaluations"]
    a, b = ", ".join(s["pretrain_sources"]), ", ".join(s["finetune_sources"])
    entries: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = []
    if "pretrain" in m:
        entries.append(("pretrain (in-domain)", m["pretrain"], m["pretrain"]["test"], a, a))
        entries.append(("pretrain → B (cross-dataset)", m["pretrain"], ev.get("pretrain_on_b", {}), a, b))
    for key, label, trained, tested in (
        ("scratch", "B from scratch", b, b),
        ("finetune", "B fine-tuned from pretrain", f"{a} → {b}", b),
        ("scratch_gray", "B from scratch, grayscale", f"{b} (gray)", f"{b} (gray)"),
    ):
        if key in m:
            entries.append((label, m[key], m[key]["test"], trained, tested))
    if "scratch_on_gray" in ev:
        entries.append(("B from scratch (RGB) on gray", m["scratch"], ev["scratch_on_gray"], b, f"{b} (gray)"))
    entries = [e for e in entries if e[2]]
    keys = _metric_keys([e[2] for e in entries])
    pos = f" (positive class: {s['positive']})" if s.get("positive") else ""
    lines = [
        f"Task: **{s['task']}**{pos}. Recipe A `{s['pretrain_recipe']}` (sources {a}); recipe B "
        f"`{s['finetune_recipe']}` (sources {b}).",
        "",
    ]
    if "pretrain" in m and not m["pretrain"]["test"]:
        lines += ["Recipe A's sources have no test rows in this cache, so there is no in-domain row for A.", ""]
    rows = [
        [
            label,
            trained,
            tested,
            _fmt(mm.get("n_train")),
            _fmt(t.get("n")),
            _fmt(mm.get("epochs_run")),
            _fmt(mm.get("train_seconds"), 1),
        ]
        + [_fmt(t.get(k)) for k in keys]
        for label, mm, t, trained, tested in entries
    ]
    lines += _table(
        ["model", "trained on", "tested on", "train rows", "eval rows", "epochs", "train s"]
        + [_LABELS[k] for k in keys],
        rows,
    )
    lines += _main_metric_bar(
        keys,
        [e[0].split(" (")[0] if "cross" not in e[0] else "cross-dataset" for e in entries],
        [e[2] for e in entries],
        lambda main: f"{s['task']}: {_LABELS[main]}",
        "model",
        files / f"{stem}-{idx}-transfer.png",
    )
    return lines, list(m.values())


_SECTIONS = {"cv": _section_cv, "ablation": _section_ablation, "sweep": _section_sweep, "transfer": _section_transfer}
_TITLES = {
    "cv": "Cross-validation",
    "ablation": "Ablation",
    "sweep": "Hyper-parameter sweep",
    "transfer": "Transfer and cross-dataset",
}


def _arch_table(models: Sequence[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for m in models:
        p = m.get("profile") or {}
        if p:
            groups.setdefault((p["arch"], p["input_size"], p["channels"]), []).append(m)
    if not groups:
        return []
    rows = []
    for (arch, size, ch), ms in sorted(groups.items(), key=lambda kv: str(kv[0])):
        per_epoch = [m["train_seconds"] / m["epochs_run"] for m in ms if m["epochs_run"]]
        per_kimg = [
            1000.0 * m["train_seconds"] / (m["epochs_run"] * m["n_train"])
            for m in ms
            if m["epochs_run"] and m["n_train"]
        ]
        lat = sorted(m["profile"]["cpu_ms_per_image"] for m in ms)
        rows.append(
            [
                f"`{arch}`",
                str(size),
                str(ch),
                f"{ms[0]['profile']['params'] / 1e6:.2f} M",
                str(len(ms)),
                _fmt(sum(per_epoch) / len(per_epoch), 1) if per_epoch else "–",
                _fmt(sum(per_kimg) / len(per_kimg), 1) if per_kimg else "–",
                _fmt(lat[len(lat) // 2], 2),
                str(ms[0]["profile"]["threads"]),
            ]
        )
    return [
        "## Architectures",
        "",
        "Over every model in the runs above. Training time is the engine's per-epoch training time (without "
        "validation); CPU inference is the median single-image forward pass measured after training.",
        "",
    ] + _table(
        [
            "arch",
            "input px",
            "channels",
            "params",
            "models",
            "train s / epoch",
            "train s / 1000 img",
            "CPU ms / image",
            "threads",
        ],
        rows,
    )


def render_report(
    run_dirs: Sequence[str | Path], out: str | Path, title: str = "", note: str = "", command: str = ""
) -> Path:
    """Write the Markdown report of some run folders (plots in ``<out stem>_files/``).

    Args:
        run_dirs: Experiment folders.
        out: The ``.md`` file to write.
        title: Report title (default: from the runs).
        note: A paragraph placed under the title (e.g. how small the runs were and why).
        command: The command that generated the report, quoted at the top.

    Returns:
        The Markdown file.

    Raises:
        ExperimentError: If a folder is not an experiment or has no summary yet.

    """
    out = Path(out)
    files = out.parent / f"{out.stem}_files"
    exps = [load_experiment(d) for d in run_dirs]
    for e in exps:
        if e["summary"] is None:
            raise ExperimentError(f"{e['path']} has no summary.json yet (the experiment has not finished)")
    title = title or "Experiments: " + ", ".join(f"{e['meta']['kind']} {e['meta']['name']}" for e in exps)
    lines = [f"# {title}", ""]
    if command:
        lines += ["Generated from the run folders by:", "", "```", command, "```", ""]
    lines += [
        "Every number below is read from the runs' `summary.json` / `result.json`; nothing is typed in. "
        "Commands run from the repository root.",
        "",
    ]
    if note:
        lines += [note.strip(), ""]
    all_models: list[dict[str, Any]] = []
    for i, e in enumerate(exps, 1):
        kind = e["meta"]["kind"]
        lines += [
            f"## {_TITLES.get(kind, kind)}: {e['meta']['name']}",
            "",
            "Command:",
            "",
            "```",
            e["command"] or "(not recorded)",
            "```",
            "",
        ]
        body, models = _SECTIONS[kind](e, files, out.stem, i)
        scale = _scale(models)
        if scale:
            lines += [scale, ""]
        lines += [_mode(e["summary"]), ""]
        lines += body
        all_models += models
    lines += _arch_table(all_models)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out
