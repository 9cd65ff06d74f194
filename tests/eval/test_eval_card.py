"""Model cards: every shipped ONNX model has an up-to-date card, and the generator works on a tiny model."""

from __future__ import annotations

import argparse
import hashlib
import json
import numbers
from pathlib import Path

import pytest

from facelens.eval import card, heads

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "src" / "facelens" / "models").glob("*.onnx"))


def check_card(model: Path, text: str) -> None:
    """The checks every card must pass: sections, model identity, and the metadata metrics."""
    from facelens.heads import read_metadata

    meta = read_metadata(model)
    for section in card.REQUIRED_SECTIONS:
        assert f"\n{section}\n" in text, f"card of {model.name} lacks the section {section!r}"
    assert text.startswith(f"# Model card: {meta.name}")
    assert hashlib.sha256(model.read_bytes()).hexdigest() in text, "card was not generated from this model file"
    for key, value in meta.metrics.items():
        if isinstance(value, numbers.Number):
            assert f"| {key} | {card.format_metric(value)} |" in text, f"metadata metric {key}={value} not in card"
    assert "non-commercial" in text.lower()


@pytest.mark.parametrize(
    "model",
    SHIPPED or [pytest.param(None, marks=pytest.mark.skip(reason="no ONNX model shipped in src/facelens/models yet"))],
    ids=lambda p: p.name if p else "none",
)
def test_shipped_model_has_a_matching_card(model: Path) -> None:
    from facelens.heads import read_metadata

    path = card.card_path(read_metadata(model).name, REPO / card.CARD_DIR)
    assert path.is_file(), f"missing model card {path}: run 'facelens model-card {model} --eval ... -o {path}'"
    text = path.read_text(encoding="utf-8")
    check_card(model, text)
    assert "## Measured accuracy" in text and "No evaluation report was given" not in text


@pytest.fixture()
def eval_json(utk_root: Path, tiny_model: Path, tmp_path: Path) -> Path:
    from facelens.pipeline import AnalyzerConfig, FaceAnalyzer

    analyzer = FaceAnalyzer(AnalyzerConfig(heads=(str(tiny_model),)))
    rep = heads.evaluate_dataset("utkface", utk_root, split="all", analyzer=analyzer, command="facelens eval X")
    out = tmp_path / "utk.json"
    out.write_text(json.dumps(rep.to_dict()))
    return out


def test_card_generated_for_tiny_model(tiny_model: Path, eval_json: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    parser = argparse.ArgumentParser()
    card.register(parser.add_subparsers())
    out = tmp_path / "docs" / "tiny.md"
    args = parser.parse_args(["model-card", str(tiny_model), "--eval", str(eval_json), "-o", str(out)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text()
    check_card(tiny_model, text)
    assert "| val_age_mae | 7.2500 |" in text and "| epoch | 3 |" in text
    assert "facelens eval X" in text and f"facelens model-card {tiny_model} --eval {eval_json}" in text
    assert "| age MAE (years) | 18.25 |" in text  # ages 12, 30, 45, 70 against a constant 30
    assert "| gender accuracy | 50.0% |" in text and "| detection rate | 80.0% |" in text
    assert "Ethnicity confusion matrix" in text and "Age MAE by decade" in text
    assert "Gender accuracy by ethnicity label" in text and "No gap computed" in text
    assert "`python -c build_tiny_model`" in text  # the command stored in the metadata extra
    assert "Warning" not in text  # the report was made with this very model file
    assert "perceived" in text and "consequential decisions" in text


def test_card_without_evals_and_stale_report(tiny_model: Path, eval_json: Path, tmp_path: Path) -> None:
    text = card.render_model_card(tiny_model)
    assert "No evaluation report was given" in text
    check_card(tiny_model, text)
    data = json.loads(eval_json.read_text())
    data["models"][0]["sha256"] = "0" * 64
    assert "**Warning:** these reports were not made with this model file" in card.render_model_card(tiny_model, [data])


def test_card_rejects_files_that_are_not_reports(tmp_path: Path) -> None:
    from facelens.errors import FaceLensError

    bad = tmp_path / "x.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(FaceLensError, match="is not a 'facelens eval"):
        card.load_eval(bad)
    with pytest.raises(FaceLensError, match="cannot read"):
        card.load_eval(tmp_path / "missing.json")


def test_format_metric() -> None:
    assert card.format_metric(0.818473) == "0.8185"
    assert card.format_metric(12) == "12"
    assert card.format_metric(float("nan")) == "n/a"
    assert card.format_metric(True) == "True"


def test_card_shows_a_reproduction_beside_the_model(tiny_model: Path, eval_json: Path, tmp_path: Path) -> None:
    from facelens.errors import FaceLensError

    own = json.loads(eval_json.read_text())
    rep = json.loads(eval_json.read_text())
    rep["models"][0].update(sha256="ab" * 32, version="9.9-repro")
    rep["age"]["mae"] = 17.5
    rep["command"] = "facelens eval utkface --model runs/repro/model.onnx"
    text = card.render_model_card(tiny_model, [own], reproduction=[rep])
    check_card(tiny_model, text)
    assert "\n## Reproduction\n" in text and "9.9-repro, sha256 abababababab" in text
    assert "| age MAE (years) | 18.25 | 17.50 |" in text
    assert "| gender accuracy | 50.0% | 50.0% |" in text
    assert "facelens eval utkface --model runs/repro/model.onnx" in text
    assert "## Reproduction" not in card.render_model_card(tiny_model, [own])

    with pytest.raises(FaceLensError, match="made with this very model file"):
        card.render_model_card(tiny_model, [own], reproduction=[own])
    with pytest.raises(FaceLensError, match="no report of this model to stand beside"):
        card.render_model_card(tiny_model, [], reproduction=[rep])

    rep_file = tmp_path / "rep.json"
    rep_file.write_text(json.dumps(rep))
    out = tmp_path / "card.md"
    parser = argparse.ArgumentParser()
    card.register(parser.add_subparsers())
    args = parser.parse_args(
        ["model-card", str(tiny_model), "--eval", str(eval_json), "--reproduction", str(rep_file), "-o", str(out)]
    )
    assert args.func(args) == 0
    assert f"--reproduction {rep_file}" in out.read_text() and "| 17.50 |" in out.read_text()


@pytest.mark.parametrize(
    ("split", "split_from", "n_test", "note"),
    [
        ("val", "recipe recipes/x.yaml", 0, "validation split (there are no test images of it here), held out"),
        ("val", "defaults", 5, "utkface (val): the training loop's validation split, held out"),
        ("val", "not in training data", 0, None),
        ("test", "recipe recipes/x.yaml", 5, None),
    ],
)
def test_card_says_when_a_report_is_the_loops_validation_split(
    tiny_model: Path, eval_json: Path, tmp_path: Path, split: str, split_from: str, n_test: int, note: str | None
) -> None:
    report = json.loads(eval_json.read_text())
    report["split"] |= {"split": split, "split_from": split_from, "n_test": n_test}
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(report))
    parser = argparse.ArgumentParser()
    card.register(parser.add_subparsers())
    out = tmp_path / "card.md"
    args = parser.parse_args(["model-card", str(tiny_model), "--eval", str(changed), "-o", str(out)])
    assert args.func(args) == 0
    text = out.read_text()
    if note is None:
        assert "used to keep the best epoch" not in text
    else:
        assert note in text and "used to keep the best epoch, so slightly optimistic" in text
