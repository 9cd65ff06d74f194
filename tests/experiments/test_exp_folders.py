"""Run folders own what they write: the sweep's study, the views, ``--fresh``; bad options claim no folder."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("yaml")

from facelens.cli.experiments import main  # noqa: E402
from facelens.experiments.records import ExperimentError, begin_experiment, clear_experiment  # noqa: E402
from facelens.experiments.synthetic import make_synthetic_cache, tiny_arch, tiny_recipe  # noqa: E402
from facelens.train import engine  # noqa: E402


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A synthetic cache (``tmp_path/cache``) and a one-epoch tiny recipe."""
    with tiny_arch() as arch:
        yield make_synthetic_cache(tmp_path / "cache", n=40), tiny_recipe(tmp_path / "r.yaml", tmp_path, arch=arch)


def _count_train_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}
    original: Callable[..., Any] = engine.train

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "train", counted)
    return calls


def _summary(path: Path) -> dict[str, Any]:
    return json.loads((path / "summary.json").read_text())


# --- sweep studies ------------------------------------------------------------------------------------------


def test_sweep_keeps_its_study_in_its_folder_and_refuses_another_sweeps(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("optuna")
    cache, recipe = setup
    argv = ["sweep", "--config", str(recipe), "--trials", "1", "--cache", str(cache), "--tracking", "none"]
    s1, s2 = tmp_path / "sw" / "s1", tmp_path / "sw" / "s2"
    assert main([*argv, "--out", str(s1)]) == 0
    assert (s1 / "study.db").is_file() and not list((tmp_path / "sw").glob("*.db"))
    assert _summary(s1)["storage"] == f"sqlite:///{s1 / 'study.db'}"
    # same study name, another setup, default storage: its own study, its own trial
    assert main([*argv, "--out", str(s2), "--set", "optim.epochs=2", "--set", "optim.lr=0.001"]) == 0
    trials = _summary(s2)["trials"]
    assert len(trials) == 1 and trials[0]["out_dir"] == str(s2 / "trial_0000") and trials[0]["epochs"] == 2
    # a shared --storage: the second setup is refused before it claims its folder
    shared = ["--storage", f"sqlite:///{tmp_path / 'shared.db'}", "--name", "same"]
    assert main([*argv, *shared, "--out", str(tmp_path / "sw" / "a")]) == 0
    capsys.readouterr()
    other = [*argv, *shared, "--out", str(tmp_path / "sw" / "b"), "--set", "optim.epochs=2"]
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "belongs to another sweep" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sw" / "b").exists()
    assert main([*other, "--fresh"]) == 2  # --fresh never deletes another sweep's study


def test_sweep_folders_of_older_versions_keep_their_study(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from facelens.experiments.sweep import check_study, default_storage

    out = tmp_path / "sweeps" / "s"
    (out / "trial_0000").mkdir(parents=True)
    legacy = f"sqlite:///{tmp_path / 'sweeps' / 's.db'}"
    study = optuna.create_study(study_name="s", storage=legacy)
    trial = study.ask()
    trial.set_user_attr("out_dir", str(out / "trial_0000"))
    study.tell(trial, 0.5)
    assert default_storage(out, "s") == legacy
    assert check_study(legacy, "s", "any", out) is not None  # no recorded setup, all trials here: adopted
    other = tmp_path / "sweeps" / "t"
    (other / "trial_0000").mkdir(parents=True)
    assert default_storage(other, "s") == f"sqlite:///{other / 'study.db'}"
    with pytest.raises(ExperimentError, match="belongs to another sweep"):
        check_study(legacy, "s", "any", other)


def test_sweep_fresh_starts_a_new_study(setup: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    import optuna

    cache, recipe = setup
    out = tmp_path / "sw"
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    argv = ["sweep", "--config", str(recipe), "--cache", str(cache), "--tracking", "none", "--out", str(out)]
    argv += ["--storage", storage, "--name", "s"]
    assert main([*argv, "--trials", "1"]) == 0
    assert main([*argv, "--trials", "1", "--set", "optim.epochs=2", "--fresh"]) == 0
    summary = _summary(out)
    assert [(t["number"], t["epochs"]) for t in summary["trials"]] == [(0, 2)]  # trained again, with 2 epochs
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 1
    assert "optim.epochs=2" in (out / "command.txt").read_text()


# --- --fresh ------------------------------------------------------------------------------------------------


def test_cv_fresh_starts_over(setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache, recipe = setup
    out = tmp_path / "cv"
    argv = ["cv", "--config", str(recipe), "--cache", str(cache), "--tracking", "none", "--out", str(out)]
    assert main([*argv, "--folds", "2"]) == 0
    assert main([*argv, "--folds", "3", "--set", "optim.lr=0.001"]) == 2
    assert "--fresh" in capsys.readouterr().err
    (out / "fold_01" / "extra.bin").write_bytes(b"x")  # inside a model folder of the old experiment: removed too
    assert main([*argv, "--folds", "3", "--set", "optim.lr=0.001", "--fresh"]) == 0
    summary = _summary(out)
    assert summary["folds"] == 3 and len(summary["per_fold"]) == 3
    assert len(json.loads((out / "folds.json").read_text())["folds"]) == 3
    assert not (out / "fold_01" / "extra.bin").exists()
    assert "started over: facelens cv" in (out / "commands.log").read_text()


def test_fresh_removes_only_an_experiments_own_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    begin_experiment(out, "cv", "n", "facelens cv a", {"x": 1})
    for sub in ("fold_01", "arm_02_flip", "trial_0003", "views/abc", "scratch_gray"):
        (out / sub).mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExperimentError, match="notes.txt"):
        begin_experiment(out, "cv", "n", "facelens cv b", {"x": 2}, fresh=True)
    assert (out / "fold_01").is_dir() and (out / "notes.txt").is_file()  # refused: nothing touched
    (out / "notes.txt").unlink()
    (out / "fold_x").symlink_to(tmp_path)  # a link is not something an experiment writes
    with pytest.raises(ExperimentError, match="fold_x"):
        clear_experiment(out)
    (out / "fold_x").unlink()
    begin_experiment(out, "cv", "n", "facelens cv b", {"x": 2}, fresh=True)
    assert sorted(p.name for p in out.iterdir()) == ["command.txt", "commands.log", "experiment.json"]
    other = tmp_path / "other"
    (other / "fold_01").mkdir(parents=True)  # not an experiment folder: never cleared
    with pytest.raises(ExperimentError, match="not an experiment folder"):
        begin_experiment(other, "cv", "n", "facelens cv a", {"x": 1}, fresh=True)
    assert (other / "fold_01").is_dir()


# --- options checked before the folder is claimed -----------------------------------------------------------


def test_ablate_checks_arms_before_claiming_the_folder(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, recipe = setup
    out = tmp_path / "abl"
    argv = ["ablate", "--config", str(recipe), "--cache", str(cache), "--tracking", "none", "--out", str(out)]
    assert main([*argv, "--arms", "none,flp"]) == 2
    assert "flp" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--vary", "model.nope=1,2"]) == 2 and not out.exists()
    assert main([*argv, "--task", "shoe_size"]) == 2 and not out.exists()
    assert main([*argv, "--cache", str(tmp_path / "nowhere")]) == 2 and not out.exists()
    assert main([*argv, "--arms", "none"]) == 0  # the corrected command runs in that folder
    assert [a["name"] for a in _summary(out)["arms"]] == ["none"]


# --- views ----------------------------------------------------------------------------------------------------


def test_views_go_to_the_run_folder_and_old_results_still_resume(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facelens.experiments.records import fingerprint, read_json, write_json

    cache, recipe = setup
    out = tmp_path / "cv"
    argv = ["cv", "--config", str(recipe), "--folds", "2", "--cache", str(cache), "--tracking", "none"]
    assert main([*argv, "--out", str(out)]) == 0
    assert not (cache.parent / "views").exists()  # nothing is written beside a cache passed with --cache
    views = [p for p in (out / "views").iterdir() if (p / "meta.json").is_file()]
    assert len(views) == 2
    for fold in ("fold_01", "fold_02"):  # as an older version wrote them: views beside the cache
        stored = read_json(out / fold / "result.json")
        stored["setup"]["view"] = str(cache.parent / "views" / Path(stored["setup"]["view"]).name)
        stored["fingerprint"] = fingerprint(stored["setup"])
        write_json(out / fold / "result.json", stored)
    (out / "summary.json").unlink()
    calls = _count_train_calls(monkeypatch)
    assert main([*argv, "--out", str(out)]) == 0
    assert calls["n"] == 0 and len(_summary(out)["per_fold"]) == 2  # the recorded models were reused


def test_progress_lines_take_metrics_read_back_from_json() -> None:
    from facelens.experiments.common import metrics_line

    assert metrics_line({"n": 8, "accuracy": 0.75, "precision": None}) == "accuracy 0.7500, precision nan"


# --- report ---------------------------------------------------------------------------------------------------


def test_report_checks_its_output_before_writing(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, recipe = setup
    run = tmp_path / "abl"
    argv = ["ablate", "--config", str(recipe), "--arms", "none", "--cache", str(cache), "--tracking", "none"]
    assert main([*argv, "--out", str(run)]) == 0
    target = tmp_path / "docs"
    target.mkdir()
    assert main(["report", str(run), "-o", str(target)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "docs_files").exists() and list(target.iterdir()) == []
    (tmp_path / "r_files").write_text("not a folder")
    assert main(["report", str(run), "-o", str(tmp_path / "r.md")]) == 2
    assert not (tmp_path / "r.md").exists()
    assert main(["report", str(run), "-o", str(tmp_path / "ok.md")]) == 0
