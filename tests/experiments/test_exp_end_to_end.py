"""Every experiment command end to end on a tiny synthetic cache, then the report on the runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("yaml")

from facelens.cli.experiments import main  # noqa: E402
from facelens.experiments.synthetic import make_synthetic_cache, tiny_arch, tiny_recipe  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Run cv, ablate, transfer (and sweep, if optuna is installed) once; tests inspect the folders."""
    root = tmp_path_factory.mktemp("e2e")
    with tiny_arch() as arch:
        cache = make_synthetic_cache(root / "cache", n=48)
        recipe = tiny_recipe(root / "r.yaml", root, epochs=2, arch=arch)
        a = tiny_recipe(root / "a.yaml", root, weights=(0.0, 1.0), name="celeba_gender", arch=arch)
        b = tiny_recipe(root / "b.yaml", root, weights=(1.0, 0.0), name="utk_gender", arch=arch)
        common = ["--cache", str(cache), "--tracking", "none"]
        out = {k: root / "runs" / k for k in ("cv", "ablation", "sweep", "transfer")}
        assert main(["cv", "--config", str(recipe), "--folds", "5", "--out", str(out["cv"]), *common]) == 0
        assert main(["ablate", "--config", str(recipe), "--out", str(out["ablation"]), *common]) == 0
        argv = ["transfer", "--pretrain", str(a), "--finetune", str(b), "--out", str(out["transfer"]), *common]
        argv.append("--single-task")
        assert main(argv) == 0
        try:
            import optuna  # noqa: F401
        except ImportError:
            del out["sweep"]
        else:
            argv = ["sweep", "--config", str(recipe), "--trials", "3", "--out", str(out["sweep"]), *common]
            assert main([*argv, "--best-out", str(root / "best.yaml")]) == 0
        yield out


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_cv_reports_every_fold_and_mean_std(runs: dict[str, Path]) -> None:
    s = _summary(runs["cv"])
    assert len(s["per_fold"]) == 5 and s["subject_disjoint"] is True
    for key in ("accuracy", "tpr", "fpr", "precision", "roc_auc"):
        values = [f["test"][key] for f in s["per_fold"] if f["test"][key] is not None]
        if values:
            assert s["mean_std"][key]["mean"] == pytest.approx(float(np.mean(values)))
    plan = json.loads((runs["cv"] / "folds.json").read_text())
    tests = [set(f["test"]) for f in plan["folds"]]
    assert sum(len(t) for t in tests) == len(set().union(*tests)) == plan["n_rows"]  # a partition
    for f in plan["folds"]:  # model selection never sees the held-out fold
        assert not set(f["test"]) & (set(f["train"]) | set(f["val"]))
    ids = np.load(Path(plan["cache"]) / "labels.npz")["identity"]
    for f in plan["folds"]:  # subject-disjoint
        assert not {ids[r] for r in f["test"]} & {ids[r] for r in f["train"] + f["val"]}
    assert (runs["cv"] / "command.txt").read_text().startswith("facelens cv --config ")
    assert (runs["cv"] / "fold_05" / "result.json").is_file()


def test_ablation_has_all_augmentation_arms(runs: dict[str, Path]) -> None:
    s = _summary(runs["ablation"])
    names = [a["name"] for a in s["arms"]]
    assert names == ["none", "flip", "rotation", "brightness_contrast", "warp", "zoom", "all"]
    aug = {a["name"]: a["extra"]["augment"] for a in s["arms"]}
    assert all(v == 0 for v in aug["none"].values())
    assert aug["flip"]["flip"] > 0 and aug["flip"]["rotate"] == 0 and aug["zoom"]["scale"] > 0
    assert all(v > 0 for v in aug["all"].values())
    assert len({a["n_test"] for a in s["arms"]}) == 1  # same evaluation rows for every arm


def test_transfer_cross_dataset_and_gray(runs: dict[str, Path]) -> None:
    s = _summary(runs["transfer"])
    assert set(s["models"]) == {"pretrain", "finetune", "scratch", "scratch_gray"}
    assert s["pretrain_sources"] == ["celeba"] and s["finetune_sources"] == ["utkface"]
    assert {"pretrain_on_b", "scratch_on_gray"} <= set(s["evaluations"])
    assert s["evaluations"]["pretrain_on_b"]["n"] == s["models"]["scratch"]["test"]["n"]
    assert s["single_task"] is True
    for model in s["models"].values():  # only the gender labels reached the engine
        assert "gender_acc" in model["val"] and not {"age_mae", "race_acc", "attr_acc"} & set(model["val"])
    assert "single-task" in (runs["transfer"] / "command.txt").read_text()


def test_sweep_writes_study_and_best_recipe(runs: dict[str, Path]) -> None:
    if "sweep" not in runs:
        pytest.skip("optuna not installed")
    from facelens.train.config import load_config

    s = _summary(runs["sweep"])
    assert len(s["trials"]) == 3 and s["metric"] == "gender_acc"
    assert Path(s["storage"].removeprefix("sqlite:///")).is_file()
    best = load_config(runs["sweep"] / "best.yaml")
    params = s["best"]["params"]
    assert best.optim.lr == pytest.approx(params["optim.lr"]) and best.model.dropout == pytest.approx(
        params["model.dropout"]
    )
    assert (runs["sweep"].parent.parent / "best.yaml").read_text() == (runs["sweep"] / "best.yaml").read_text()


def test_report_renders_tables_plots_and_commands(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "docs" / "report.md"
    assert main(["report", *map(str, runs.values()), "-o", str(out), "--note", "Tiny synthetic runs."]) == 0
    text = out.read_text()
    for run in runs.values():
        assert (run / "command.txt").read_text().strip() in text
    cv = _summary(runs["cv"])
    acc = cv["mean_std"]["accuracy"]
    assert f"{acc['mean']:.3f} ± {acc['std']:.3f}" in text  # numbers come from the runs
    assert "| fold 5 |" in text and "| warp |" in text and "cross-dataset" in text and "## Architectures" in text
    pngs = sorted((tmp_path / "docs" / "report_files").glob("*.png"))
    assert len(pngs) >= 4
    for png in pngs:
        assert f"report_files/{png.name}" in text and png.read_bytes()[:4] == b"\x89PNG"
    assert "facelens report " in text and "Tiny synthetic runs." in text
