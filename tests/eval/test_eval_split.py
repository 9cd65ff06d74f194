"""Which held-out split ``facelens eval`` reproduces: the settings stored in the model, a --recipe, or (older
models) the recipe named in their metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from facelens.data.base import write_tiny_jpeg
from facelens.errors import DatasetError, ModelError
from facelens.eval import heads
from facelens.eval import split as eval_split

yaml = pytest.importorskip("yaml")
onnx = pytest.importorskip("onnx")

RECIPE = "data:\n  datasets: [{{name: utkface, root: {root}, id: utk_src, max_samples: 30}}]\n  val_fraction: {val}\n"


def _with_extra(src: Path, dst: Path, **extra: str) -> Path:
    """A copy of a model with other ``facelens.extra.*`` metadata."""
    model = onnx.load(str(src))
    for key, value in extra.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"facelens.extra.{key}", value
    onnx.save(model, str(dst))
    return dst


def _settings(val: float) -> dict[str, Any]:
    """The split settings a run of :data:`RECIPE` stores in its model (:func:`facelens.eval.split.split_settings`)."""
    source = {"name": "utkface", "id": "utk_src", "options": {}, "max_samples": 30}
    return {"val_fraction": val, "test_fraction": 0.1, "seed": 0, "sources": [source]}


@pytest.fixture()
def setup(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A 40-image UTKFace folder, recipes/vf.yaml saying val 0.1, and a model named after it trained with val 0.05."""
    utk = tmp_path / "utk"
    for i in range(40):
        write_tiny_jpeg(utk / f"{i % 90 + 1}_{i % 2}_{i % 5}_2017010100{i:04d}.jpg.chip.jpg")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "vf.yaml").write_text(RECIPE.format(root=utk, val=0.1))
    monkeypatch.chdir(tmp_path)
    stored = json.dumps(_settings(0.05))
    return utk, _with_extra(tiny_model, tmp_path / "vf.onnx", recipe="vf", split=stored)


def _analyzer(*models: Path) -> Any:  # noqa: ANN401
    from facelens.pipeline import AnalyzerConfig, FaceAnalyzer

    return FaceAnalyzer(AnalyzerConfig(heads=tuple(str(m) for m in models)))


def _records(utk: Path, val: float) -> list[Any]:
    from facelens.train.cache import collect_records
    from facelens.train.config import config_from_dict

    return collect_records(config_from_dict(yaml.safe_load(RECIPE.format(root=utk, val=val))))[0]


def test_the_stored_split_wins_over_the_recipe_named_in_the_model(setup: tuple[Path, Path]) -> None:
    utk, model = setup
    rep = heads.evaluate_dataset("utkface", utk, split="val", analyzer=_analyzer(model))
    assert rep.split.split_from == "recipe stored in the model metadata" and rep.split.val_fraction == 0.05
    assert (rep.split.n_train, rep.split.n_val, rep.split.n_test, rep.split.n_unused) == (25, 2, 3, 10)
    assert rep.notes[0].startswith("split reproduced from the training run's data settings in the model metadata")
    assert not any("recipes/vf.yaml" in n for n in rep.notes)
    trained_val = sorted(r.path for r in _records(utk, 0.05) if r.split == "val")
    assert sorted(rep.detection.no_face_examples + rep.detection.error_examples) == trained_val
    recipe_val = sorted(r.path for r in _records(utk, 0.1) if r.split == "val")
    assert recipe_val != trained_val  # what the evaluation used to pick


def test_a_disagreeing_recipe_is_refused(setup: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    from facelens.cli import main

    utk, model = setup
    with pytest.raises(DatasetError, match=r"splits utkface differently .*\(val_fraction: 0\.1 vs 0\.05"):
        heads.evaluate_dataset("utkface", utk, recipe="recipes/vf.yaml", analyzer=_analyzer(model))
    assert main(["eval", "utkface", "--root", str(utk), "--model", str(model), "--recipe", "recipes/vf.yaml"]) == 2
    assert "Leave out --recipe" in capsys.readouterr().err
    Path("same.yaml").write_text(RECIPE.format(root="elsewhere", val=0.05))  # another root: the same split
    rep = heads.evaluate_dataset("utkface", utk, split="test", recipe="same.yaml", analyzer=_analyzer(model))
    assert rep.split.split_from == "recipe same.yaml" and rep.split.n_test == 3


def test_old_models_still_use_the_recipe_they_name(setup: tuple[Path, Path], tiny_model: Path) -> None:
    utk, _ = setup
    old = _with_extra(tiny_model, Path("old.onnx"), recipe="vf")  # no stored split: exported before it existed
    rep = heads.evaluate_dataset("utkface", utk, split="test", analyzer=_analyzer(old))
    assert rep.split.split_from == "recipe recipes/vf.yaml" and rep.split.val_fraction == 0.1
    assert rep.notes[0] == "split reproduced from recipes/vf.yaml (named in the model metadata)"


def test_models_with_different_or_malformed_splits(setup: tuple[Path, Path], tiny_model: Path) -> None:
    utk, model = setup
    from facelens.train.config import load_config

    assert eval_split.split_settings(load_config("recipes/vf.yaml").data) == _settings(0.1)  # the stored format
    other = _with_extra(tiny_model, Path("other.onnx"), split=json.dumps(_settings(0.2)))
    with pytest.raises(ModelError, match=r"different utkface splits \(val_fraction: 0\.05 vs 0\.2\).*--model"):
        heads.evaluate_dataset("utkface", utk, analyzer=_analyzer(model, other))
    assert eval_split.stored_split(_analyzer(model, model).heads, "utkface") == _settings(0.05)
    assert eval_split.stored_split(_analyzer(tiny_model).heads, "utkface") is None  # older exports
    bad = _with_extra(tiny_model, Path("bad.onnx"), split='{"seed": 0}')
    with pytest.raises(ModelError, match=r"bad\.onnx: bad facelens\.extra\.split \(KeyError"):
        heads.evaluate_dataset("utkface", utk, analyzer=_analyzer(bad))


def test_peer_comparison_uses_the_stored_split_too(setup: tuple[Path, Path]) -> None:
    from facelens.eval import peer

    class NoFace:
        def predict(self, image: Any) -> list[Any]:  # noqa: ANN401
            return []

    utk, model = setup
    res = peer.compare_age_gender(utk, split="test", analyzer=_analyzer(model), peer=NoFace())
    assert res.split.split_from == "recipe stored in the model metadata"
    assert (res.split.n_val, res.split.n_test) == (2, 3)
    with pytest.raises(DatasetError, match="differently"):
        peer.compare_age_gender(utk, recipe="recipes/vf.yaml", analyzer=_analyzer(model), peer=NoFace())
