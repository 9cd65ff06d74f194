"""End-to-end head evaluation (facelens.eval.heads) on tiny synthetic dataset folders with a constant-output model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facelens.data.base import write_tiny_jpeg
from facelens.errors import DatasetError
from facelens.eval import heads
from facelens.eval import split as eval_split
from facelens.labels import CELEBA_ATTRIBUTES

ASTRONAUT = Path(__file__).resolve().parents[2] / "src" / "facelens" / "assets" / "astronaut.jpg"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared research data not present at {SHARED}")


@pytest.fixture()
def analyzer(tiny_model: Path):  # noqa: ANN201
    from facelens.pipeline import AnalyzerConfig, FaceAnalyzer

    return FaceAnalyzer(AnalyzerConfig(heads=(str(tiny_model),)))


def test_evaluate_utkface_end_to_end(
    utk_root: Path, analyzer, tiny_expected_interval, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # noqa: ANN001
    monkeypatch.setattr(heads, "FAIRNESS_MIN_COUNT", 1)
    rep = heads.evaluate_dataset("utkface", utk_root, split="all", analyzer=analyzer, plots=tmp_path / "plots")
    d = rep.detection
    assert (d.images, d.with_face, d.no_face, d.errors, d.multi_face) == (6, 4, 1, 1, 0)
    assert d.detection_rate == pytest.approx(0.8)
    assert "40_1_4" in d.error_examples[0] and "40_1_4" not in " ".join(d.no_face_examples)
    # faces: true ages 12, 30, 45, 70 -- the model always says 30, female, asian
    assert rep.age is not None and rep.age.mae == pytest.approx((18 + 0 + 15 + 40) / 4)
    assert rep.age.bias == pytest.approx((18 + 0 - 15 - 40) / 4)
    assert {g.group: g.value for g in rep.age.by_decade} == pytest.approx(
        {"10-19": 18.0, "30-39": 0.0, "40-49": 15.0, "70-79": 40.0}
    )
    assert tiny_expected_interval == (27.0, 33.0)
    assert rep.age_interval is not None
    assert (rep.age_interval.coverage, rep.age_interval.below, rep.age_interval.above) == (0.25, 0.25, 0.5)
    assert rep.age_groups_adience is not None
    assert (rep.age_groups_adience.exact, rep.age_groups_adience.one_off) == (0.25, 0.5)
    assert rep.age_groups_utkface is not None
    assert (rep.age_groups_utkface.exact, rep.age_groups_utkface.one_off) == (0.25, 0.25)
    assert rep.gender is not None and rep.gender.accuracy == 0.5 and rep.gender.confusion == ((0, 2), (0, 2))
    assert rep.race is not None and rep.race.accuracy == 0.5
    assert [row[2] for row in rep.race.confusion] == [1, 1, 2, 0, 0]
    assert rep.attributes is None
    f = rep.fairness
    assert f is not None and f.gender_accuracy_by_race is not None
    by_race = {g.group: g.value for g in f.gender_accuracy_by_race.groups if g.n}
    assert by_race == {"white": 0.0, "black": 1.0, "asian": 0.5}
    assert f.gender_accuracy_by_race.gap_points == pytest.approx(100.0)
    # adults only (>= 20): the 12-year-old black girl drops out
    assert f.gender_accuracy_by_race_adults is not None
    assert {g.group: g.value for g in f.gender_accuracy_by_race_adults.groups if g.n} == {"white": 0.0, "asian": 0.5}
    assert f.gender_accuracy_by_age is not None
    by_age = {g.group: (g.n, g.value) for g in f.gender_accuracy_by_age.groups if g.n}
    assert by_age == {"10-19": (1, 1.0), "20-39": (1, 1.0), "40-59": (1, 0.0), "60+": (1, 0.0)}
    assert f.age_mae_by_gender is not None and f.age_mae_by_gender.group("male").value == pytest.approx(27.5)
    assert f.race_accuracy_by_gender is not None and f.race_accuracy_by_gender.group("female").value == 0.5
    assert rep.predicted_gender is not None and rep.predicted_gender[1].value == 1.0
    assert rep.split.split == "all" and rep.split.n_selected == 6
    assert rep.models[0].name == "tiny-test-heads" and len(rep.models[0].sha256) == 64
    names = sorted(Path(p).name for p in rep.plots)
    assert names == ["utkface_all_age.png", "utkface_all_fairness.png", "utkface_all_race_confusion.png"]
    assert all(Path(p).stat().st_size > 1000 for p in rep.plots)
    json.dumps(rep.to_dict(), allow_nan=False)


def _celeba(root: Path) -> Path:
    (root / "face_crops").mkdir(parents=True)
    for name in ("000001.jpg", "000002.jpg"):
        shutil.copy(ASTRONAUT, root / "face_crops" / name)
    alternate = " ".join("1" if j % 2 == 0 else "-1" for j in range(40))
    lines = ["2", " ".join(CELEBA_ATTRIBUTES), "000001.jpg " + " ".join(["1"] * 40), "000002.jpg " + alternate]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("000001.jpg 1\n000002.jpg 1\n")
    return root


def test_evaluate_celeba_attributes_and_val_fallback(tmp_path: Path, analyzer) -> None:  # noqa: ANN001
    rep = heads.evaluate_dataset("celeba", _celeba(tmp_path / "celeba"), analyzer=analyzer)
    assert rep.split.split == "val"  # test split empty -> val
    a = rep.attributes
    assert a is not None and a.n == 2
    # model: yes on even attributes, no on odd; labels: all yes / yes on even only
    assert a.mean_accuracy == pytest.approx(0.75)
    assert a.attribute("5_o_Clock_Shadow").accuracy == 1.0 and a.attribute("Arched_Eyebrows").accuracy == 0.5
    assert a.mean_auc == pytest.approx(0.5)  # constant scores: odd attributes tie (0.5), even ones undefined
    assert rep.gender is not None and rep.gender.accuracy == 0.0  # both Male=+1, model says female
    assert rep.age is None and rep.race is None and rep.fairness is None


def test_evaluate_lfw_detection_and_gender_distribution(tmp_path: Path, analyzer) -> None:  # noqa: ANN001
    for rel in ("Ada_Lovelace/Ada_Lovelace_0001.jpg", "Alan_Turing/Alan_Turing_0001.jpg"):
        (tmp_path / "lfw" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ASTRONAUT, tmp_path / "lfw" / rel)
    rep = heads.evaluate_dataset("lfw", tmp_path, analyzer=analyzer)
    assert rep.split.split == "all" and rep.split.split_from == "not in training data"
    assert rep.detection.detection_rate == 1.0
    assert rep.gender is None and rep.age is None
    assert rep.predicted_gender is not None and [g.n for g in rep.predicted_gender] == [0, 2]


def test_label_only_dataset_fails_clearly(tmp_path: Path, analyzer) -> None:  # noqa: ANN001
    from facelens.data import AdienceReader

    AdienceReader.write_example(tmp_path)
    shutil.rmtree(tmp_path / "aligned")
    with pytest.raises(DatasetError, match=r"adience: 10 of 10 image files .* missing .* labels only"):
        heads.evaluate_dataset("adience", tmp_path, analyzer=analyzer)


def _write_utk_names(folder: Path, n: int) -> None:
    for i in range(n):
        write_tiny_jpeg(folder / f"{i % 90 + 1}_{i % 2}_{i % 5}_2017010100{i:04d}.jpg.chip.jpg")


@pytest.mark.parametrize("max_samples", [None, 25])
def test_split_reproduces_training_cache(tmp_path: Path, max_samples: int | None) -> None:
    pytest.importorskip("yaml")
    from facelens.train.cache import collect_records
    from facelens.train.config import load_config

    _write_utk_names(tmp_path / "utk", 40)
    spec = f"{{name: utkface, root: '{tmp_path / 'utk'}', id: utk_src"
    spec += f", max_samples: {max_samples}}}" if max_samples else "}"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  datasets: [{spec}]\n  val_fraction: 0.2\n  test_fraction: 0.15\n  seed: 7\n")
    records, _ = collect_records(load_config(recipe))
    for split in ("val", "test"):
        chosen, info = eval_split.select_split("utkface", tmp_path / "utk", split, recipe)
        assert sorted(str(s.path) for s in chosen) == sorted(r.path for r in records if r.split == split)
        assert info.source == "utk_src" and info.seed == 7 and info.split_from == f"recipe {recipe}"
    assert info.n_unused == (40 - max_samples if max_samples else 0)
    chosen, info = eval_split.select_split("utkface", tmp_path / "utk", None, recipe)
    assert info.split == "test"


def test_split_defaults_without_recipe(tmp_path: Path) -> None:
    from facelens.train.cache import assign_splits

    _write_utk_names(tmp_path, 40)
    chosen, info = eval_split.select_split("utkface", tmp_path, "val", None)
    expected = assign_splits(40, 0.1, 0.1, 0, "utkface")
    assert info.split_from == "defaults" and (info.n_val, info.n_test, info.n_train) == (4, 4, 32)
    assert len(chosen) == expected.count("val") == 4
    with pytest.raises(DatasetError, match="split must be val, test or all, not 'bogus'"):
        eval_split.select_split("utkface", tmp_path, "bogus", None)


def test_limit_is_a_seeded_subset_in_reader_order() -> None:
    items = list(range(100))
    a, b = eval_split.limit_samples(items, 10, 1), eval_split.limit_samples(items, 10, 1)
    assert a == b == sorted(a) and len(a) == 10 and a != items[:10]
    assert eval_split.limit_samples(items, None, 0) is items


def test_cli_eval_utkface_writes_json_and_plots(utk_root: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from facelens.cli import main

    out = tmp_path / "res" / "utk.json"
    argv = ["eval", "utkface", "--root", str(utk_root), "--model", str(tiny_model), "--split", "all", "-o", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved and saved["schema"] == heads.SCHEMA
    assert saved["command"].startswith("facelens eval utkface --root ") and f"--model {tiny_model}" in saved["command"]
    assert saved["age"]["mae"] == pytest.approx(18.25) and saved["detection"]["no_face"] == 1
    assert saved["attributes"] is None
    pngs = sorted(p.name for p in out.parent.glob("*.png"))
    assert pngs == ["utk_age.png", "utk_fairness.png", "utk_race_confusion.png"]


def test_cli_eval_missing_images_exit_2(tmp_path: Path, tiny_model: Path, capsys) -> None:  # noqa: ANN001
    from facelens.cli import main
    from facelens.data import FairFaceReader

    FairFaceReader.write_example(tmp_path)
    for sub in ("train", "val"):
        shutil.rmtree(tmp_path / sub)
    assert main(["eval", "fairface", "--root", str(tmp_path), "--model", str(tiny_model)]) == 2
    assert "fairface: 10 of 10 image files" in capsys.readouterr().err


def test_cli_registers_all_dataset_commands() -> None:
    from facelens.cli import build_parser

    parser = build_parser()
    for name in (*heads.DATASET_NAMES, "peer", "widerface", "detection-rate"):
        args = parser.parse_args(["eval", name, "--root", "x"] if name != "detection-rate" else ["eval", name, "x"])
        assert callable(args.func)


@needs_shared
@pytest.mark.shared_data
def test_shared_utkface_default_split_and_label_only_adience() -> None:
    chosen, info = eval_split.select_split("utkface", SHARED / "utkface", "val", None)
    assert info.n_val == len(chosen) > 1000 and info.n_test == info.n_val
    assert np.isclose(info.n_val / (info.n_train + info.n_val + info.n_test), 0.1, atol=0.001)
    samples, _ = eval_split.select_split("adience", SHARED / "adience", None, None)
    with pytest.raises(DatasetError, match="labels only"):
        eval_split._check_images("adience", SHARED / "adience", samples)


def test_predictions_csv_one_row_per_image(utk_root: Path, analyzer, tmp_path: Path) -> None:  # noqa: ANN001
    import csv

    from facelens.eval.predictions import csv_columns

    out = tmp_path / "sub" / "pred.csv"
    rep = heads.evaluate_dataset("utkface", utk_root, split="all", analyzer=analyzer, predictions=out)
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == csv_columns(True)  # the model answers attributes, UTKFace has no labels for them
    assert all(r["true_Young"] == "" for r in rows)
    assert len(rows) == rep.detection.images == 6
    found = [r for r in rows if r["face_found"] == "1"]
    assert len(found) == rep.detection.with_face == 4
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 1 and "40_1_4" in failed[0]["path"] and not failed[0]["age"]
    # the tiny model: female (softmax of -1, 1), asian, age distribution centred on 30
    for r in found:
        assert (r["gender"], r["race"]) == ("female", "asian")
        assert float(r["p_female"]) == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-4)
        assert float(r["age"]) == pytest.approx(30.0, abs=0.01)
        assert float(r["age_low"]) < 30.0 < float(r["age_high"])
        assert float(r["5_o_Clock_Shadow"]) > 0.5 > float(r["Young"])  # even attributes yes, odd ones no
    # labels from the file names; the mean error over the found rows is the report's MAE
    errs = [abs(float(r["age"]) - float(r["true_age"])) for r in found]
    assert np.mean(errs) == pytest.approx(rep.age.mae, abs=1e-3)
    assert {r["true_gender"] for r in rows} <= {"male", "female"}


def test_predictions_csv_has_attribute_columns_for_celeba(tmp_path: Path, analyzer, capsys) -> None:  # noqa: ANN001
    import csv

    from facelens.cli import main

    root, out = _celeba(tmp_path / "celeba"), tmp_path / "celeba.csv"
    assert (
        main(["eval", "celeba", "--root", str(root), "--predictions", str(out), "--model", str(analyzer.heads[0].path)])
        == 0
    )
    capsys.readouterr()
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert float(rows[0]["5_o_Clock_Shadow"]) > 0.5 > float(rows[0]["Arched_Eyebrows"])
    assert [r["true_Arched_Eyebrows"] for r in rows] == ["1", "0"]
    assert rows[0]["true_gender"] == "male" and rows[0]["gender"] == "female" and rows[0]["true_race"] == ""


OUTPUT_PROBLEMS = {
    "o_folder": "-o {t}/folder: is a folder, not a file",
    "o_under_file": "-o {t}/file/x.json: cannot write it",
    "predictions_folder": "--predictions {t}/folder: is a folder, not a file",
    "same_file": "-o and --predictions name the same file {t}/same.json",
    "plots_file": "--plots {t}/file: exists and is not a folder",
}


@pytest.mark.parametrize(("case", "message"), list(OUTPUT_PROBLEMS.items()), ids=list(OUTPUT_PROBLEMS))
def test_cli_checks_every_output_before_the_run(
    case: str, message: str, utk_root: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # noqa: ANN001
    from facelens.cli import main

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation ran although an output cannot be written")

    monkeypatch.setattr(heads, "evaluate_dataset", never)
    out = tmp_path / "out"
    (out / "folder").mkdir(parents=True)
    (out / "file").write_text("not a folder")
    options = {
        "o_folder": ["-o", out / "folder"],
        "o_under_file": ["-o", out / "file" / "x.json"],
        "predictions_folder": ["--predictions", out / "folder"],
        "same_file": ["-o", out / "same.json", "--predictions", out / "same.json"],
        "plots_file": ["--plots", out / "file"],
    }[case]
    argv = ["eval", "utkface", "--root", str(utk_root), "--model", str(tiny_model), *map(str, options)]
    assert main(argv) == 2
    assert f"error: {message.format(t=out)}" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["file", "folder"]  # nothing written, no plots
