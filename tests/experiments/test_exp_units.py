"""Unit tests of the experiment toolkit: folds, subsets, views, metrics, arms, command lines, records, hooks."""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("yaml")

from facelens.experiments.records import ExperimentError, begin_experiment  # noqa: E402
from facelens.experiments.selection import (  # noqa: E402
    get_task,
    gray_images,
    holdout,
    keep_only,
    kfold,
    make_view,
    select_rows,
    strata,
)
from facelens.experiments.synthetic import make_synthetic_cache, tiny_arch, tiny_recipe  # noqa: E402


def test_kfold_is_a_stratified_subject_disjoint_partition() -> None:
    rows = np.arange(100, 200)
    strat = np.array([0] * 70 + [1] * 30)
    ids = np.full(300, None, dtype=object)
    ids[100:200] = [f"p{i // 4}" for i in range(100)]  # 25 subjects of 4 rows
    folds = kfold(rows, strat, 5, seed=0, ids=ids)
    assert sorted(np.concatenate(folds).tolist()) == rows.tolist()
    for f in folds:
        rest = np.setdiff1d(rows, f)
        assert not {ids[r] for r in f} & {ids[r] for r in rest}
    plain = kfold(rows, strat, 5, seed=0)
    assert all(5 <= int((strat[f - 100] == 1).sum()) <= 7 for f in plain)  # 30 positives spread 6 per fold
    assert [f.tolist() for f in plain] == [f.tolist() for f in kfold(rows, strat, 5, seed=0)]  # seeded
    kept, held = holdout(rows, strat, 0.1, seed=1)
    assert len(held) == 10 and not set(kept) & set(held)
    with pytest.raises(ExperimentError):
        kfold(rows[:3], strat[:3], 5, seed=0)


def test_select_rows_filters_and_subsamples_stratified(tmp_path: Path) -> None:
    cache = make_synthetic_cache(tmp_path / "c", n=40)
    labels = dict(np.load(cache / "labels.npz"))
    task = get_task("race")
    rows = select_rows(labels, ("utkface", "celeba"), ("train", "val"), task)
    assert set(labels["dataset"][rows]) == {"utkface"}  # only UTKFace rows carry race
    assert set(labels["split"][rows]) == {"train", "val"}
    sub = select_rows(labels, ("utkface", "celeba"), ("train", "val", "test"), get_task("gender"), limit=20, seed=3)
    assert len(sub) == 20 and sub.tolist() == sorted(sub.tolist())
    age = strata(labels, get_task("age_group"), "utkface")
    assert (age[labels["dataset"] == "celeba"] == -1).all() and (age[labels["dataset"] == "utkface"] >= 0).all()
    with pytest.raises(ExperimentError):
        get_task("shoe_size")


def test_views_link_or_convert_the_images(tmp_path: Path) -> None:
    from facelens.train.cache import open_cache

    cache = make_synthetic_cache(tmp_path / "c", n=24)
    split = np.array(["train"] * 10 + ["val"] * 4 + ["test"] * 4 + ["none"] * 6)
    view = make_view(cache, split, tmp_path / "views")
    assert (view / "images.npy").is_symlink() and make_view(cache, split, tmp_path / "views") == view
    opened = open_cache(view)
    assert opened.labels["split"].tolist() == split.tolist() and len(opened) == 24
    gray = make_view(cache, split, tmp_path / "views", gray=True)
    g = open_cache(gray)
    assert len(g) == 18 and g.labels["base_row"].tolist() == list(range(18))
    src = np.load(cache / "images.npy")[:18]
    assert np.array_equal(g.images, gray_images(src)) and (g.images[..., 0] == g.images[..., 2]).all()
    red = gray_images(np.array([[[255, 0, 0]]], np.uint8))
    assert red.shape == (1, 1, 3) and len(set(red.ravel().tolist())) == 1 and abs(int(red[0, 0, 0]) - 76) <= 1


def test_task_metrics_match_hand_counts() -> None:
    from facelens.experiments.evaluation import task_metrics

    labels = {"gender": np.array([1, 1, 1, 0, 0, 0, -1], np.int8)}
    rows = np.arange(7)
    preds = {"gender": np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.5])}
    m = task_metrics(get_task("gender"), labels, rows, preds, "utkface")
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    assert (
        m["tpr"] == pytest.approx(2 / 3) and m["fpr"] == pytest.approx(1 / 3) and m["precision"] == pytest.approx(2 / 3)
    )
    assert m["roc_auc"] == pytest.approx(7 / 9)
    ages = {"age": np.array([10.0, 30.0, np.nan])}
    a = task_metrics(get_task("age"), ages, np.arange(3), {"age": np.array([12.0, 20.0, 5.0])}, "utkface")
    assert a["n"] == 2 and a["mae"] == pytest.approx(6.0) and a["group_exact"] == 0.5 and a["group_one_off"] == 1.0
    race = {"race": np.array([0, 1, 2, 2], np.int8)}
    probs = np.eye(5)[[0, 1, 2, 0]] * 0.9 + 0.02
    r = task_metrics(get_task("race"), race, np.arange(4), {"race": probs}, "utkface")
    assert r["accuracy"] == 0.75 and r["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert not math.isnan(r["roc_auc"])


def test_augmentation_arms_switch_one_group_on() -> None:
    from facelens.experiments.ablation import AUGMENT_ARMS, augment_arm
    from facelens.train.config import AugmentConfig, TrainConfig

    config = TrainConfig(augment=AugmentConfig(rotate=0.0))  # a recipe without rotation: the arm uses the default
    assert augment_arm(config, "rotation") == AugmentConfig(0, 0, AugmentConfig().rotate, 0, 0, 0)
    assert augment_arm(config, "none") == AugmentConfig(0, 0, 0, 0, 0, 0)
    bc = augment_arm(config, "brightness_contrast")
    assert bc.brightness == 0.2 and bc.contrast == 0.2 and bc.flip == 0 and bc.shift == 0
    assert set(AUGMENT_ARMS) == {"none", "flip", "rotation", "brightness_contrast", "warp", "zoom", "all"}
    with pytest.raises(ExperimentError):
        augment_arm(config, "cutout")


def test_command_line_reproduces_the_arguments() -> None:
    from facelens.cli.experiments import command_line, register

    parser = argparse.ArgumentParser(prog="facelens")
    register(parser.add_subparsers(dest="command"))
    argv = [
        "cv",
        "--config",
        "r.yaml",
        "--folds",
        "10",
        "--set",
        "optim.lr=0.01",
        "--set",
        "a.b=c d",
        "--no-identities",
    ]
    line = command_line(parser.parse_args(argv))
    assert line.startswith("facelens cv ") and "'a.b=c d'" in line
    assert parser.parse_args(shlex.split(line)[1:]) == parser.parse_args(argv)
    report = parser.parse_args(["report", "runs/a", "runs/b", "-o", "x.md"])
    assert command_line(report) == "facelens report runs/a runs/b --output x.md"


def test_a_run_folder_refuses_another_experiment(tmp_path: Path) -> None:
    begin_experiment(tmp_path, "cv", "n", "facelens cv a", {"x": 1})
    begin_experiment(tmp_path, "cv", "n", "facelens cv a", {"x": 1})  # resuming is fine
    with pytest.raises(ExperimentError):
        begin_experiment(tmp_path, "cv", "n", "facelens cv b", {"x": 2})
    begin_experiment(tmp_path, "cv", "n", "facelens cv b", {"x": 2}, fresh=True)
    assert (tmp_path / "command.txt").read_text().strip() == "facelens cv b"


def test_epoch_callback_can_stop_the_engine(tmp_path: Path) -> None:
    from facelens.experiments.runner import read_history, run_engine
    from facelens.train.config import load_config

    seen: list[tuple[int, dict]] = []
    with tiny_arch() as arch:
        cache = make_synthetic_cache(tmp_path / "c", n=24)
        config = load_config(tiny_recipe(tmp_path / "r.yaml", tmp_path, epochs=3, arch=arch))
        assert run_engine(config, cache, on_epoch_end=lambda e, m: seen.append((e, m)) or e == 2) is None
        assert [e for e, _ in seen] == [1, 2] and "val_gender_acc" in seen[0][1] and "epoch" not in seen[0][1]
        assert [h["epoch"] for h in read_history(config.train.out_dir)] == [1, 2]  # the stopping epoch is saved
        assert run_engine(config, cache).epochs_run == 3  # and a rerun continues after it
    assert [h["epoch"] for h in read_history(config.train.out_dir)] == [1, 2, 3]


def test_run_folders_fingerprint_recipes_without_empty_new_fields(tmp_path: Path) -> None:
    import dataclasses

    from facelens.experiments.records import fingerprint, recipe_dict
    from facelens.train.config import config_to_dict, load_config

    config = load_config(tiny_recipe(tmp_path / "r.yaml", tmp_path))
    plain = config_to_dict(config)
    assert plain["model"].pop("options") == {} and plain["optim"].pop("balance_classes") == []
    assert fingerprint(recipe_dict(config)) == fingerprint(plain)  # folders made before model.options still resume
    grid = dataclasses.replace(config, model=dataclasses.replace(config.model, options={"grid": 3}))
    assert recipe_dict(grid)["model"]["options"] == {"grid": 3}
    assert fingerprint(recipe_dict(grid)) != fingerprint(plain)
    balanced = dataclasses.replace(config, optim=dataclasses.replace(config.optim, balance_classes=("race",)))
    assert recipe_dict(balanced)["optim"]["balance_classes"] == ["race"]
    assert fingerprint(recipe_dict(balanced)) != fingerprint(plain)


def test_bad_model_option_fails_before_any_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facelens.cli.experiments import main

    with tiny_arch() as arch:
        recipe = tiny_recipe(tmp_path / "r.yaml", tmp_path, arch=arch)
        argv = ["ablate", "--config", str(recipe), "--set", "model.options.grid=3", "--tracking", "none"]
        assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "model.options.grid" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "cache").exists()


def test_keep_only_hides_the_other_tasks(tmp_path: Path) -> None:
    labels = dict(np.load(make_synthetic_cache(tmp_path / "c", n=20) / "labels.npz"))
    g = keep_only(labels, "gender")
    assert np.isnan(g["age"]).all() and (g["race"] == -1).all() and (g["attributes"] == -1).all()
    assert (g["gender"] == labels["gender"]).all()
    smiling = keep_only(labels, "Smiling")
    assert (smiling["gender"] == -1).all() and (smiling["attributes"][:, 31] == labels["attributes"][:, 31]).all()
    assert (np.delete(smiling["attributes"], 31, axis=1) == -1).all()
    assert (keep_only(labels, "age_group")["age"][:10] == labels["age"][:10]).all()
