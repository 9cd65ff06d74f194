"""Interrupted cross-validations and sweeps resume where they stopped."""

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
from facelens.experiments.synthetic import make_synthetic_cache, tiny_arch, tiny_recipe  # noqa: E402
from facelens.train import engine  # noqa: E402


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    with tiny_arch() as arch:
        yield (
            make_synthetic_cache(tmp_path / "cache", n=40),
            tiny_recipe(tmp_path / "r.yaml", tmp_path, epochs=2, arch=arch),
        )


def _interrupt_second_epoch(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """Raise KeyboardInterrupt at the start of the ``nth`` second epoch (after epoch 1 was fully saved)."""
    original, seen = engine.mixed_batches, {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if args[5] == 1:
            seen["n"] += 1
            if seen["n"] == nth:
                raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "mixed_batches", wrapped)


def _count_train_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}
    original: Callable[..., Any] = engine.train

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "train", counted)
    return calls


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()]


def test_interrupted_cv_resumes_at_the_next_fold(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, recipe = setup
    out = tmp_path / "cv"
    argv = [
        "cv",
        "--config",
        str(recipe),
        "--folds",
        "5",
        "--cache",
        str(cache),
        "--tracking",
        "none",
        "--out",
        str(out),
    ]
    with monkeypatch.context() as m:
        _interrupt_second_epoch(m, nth=3)  # in fold 3, after its first epoch
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    assert (out / "fold_02" / "result.json").is_file() and not (out / "fold_03" / "result.json").exists()
    assert _epochs(out / "fold_03") == [1] and not (out / "summary.json").exists()
    done = {p: p.stat().st_mtime_ns for p in out.glob("fold_0[12]/result.json")}
    calls = _count_train_calls(monkeypatch)
    assert main(argv) == 0
    assert calls["n"] == 3  # folds 3 (resumed), 4 and 5
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished folds were not redone
    assert _epochs(out / "fold_03") == [1, 2]  # continued from last.pt, not restarted
    assert len(json.loads((out / "summary.json").read_text())["per_fold"]) == 5
    assert "resumed: facelens cv" in (out / "commands.log").read_text()


def test_rerun_with_other_settings_is_refused(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cache, recipe = setup
    argv = ["cv", "--config", str(recipe), "--cache", str(cache), "--tracking", "none", "--out", str(tmp_path / "cv")]
    assert main([*argv, "--folds", "2", "--set", "optim.epochs=1"]) == 0
    assert main([*argv, "--folds", "3", "--set", "optim.epochs=1"]) == 2  # another experiment in the same folder


def test_interrupted_sweep_resumes_the_trial(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("optuna")
    import optuna

    cache, recipe = setup
    out = tmp_path / "sweeps" / "s"
    argv = ["sweep", "--config", str(recipe), "--trials", "3", "--cache", str(cache), "--tracking", "none"]
    argv += ["--out", str(out), "--name", "s"]
    with monkeypatch.context() as m:
        _interrupt_second_epoch(m, nth=2)  # trial 1, after its first epoch
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}")  # in the run folder
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    interrupted = study.trials[1]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    states = [t["state"] for t in summary["trials"]]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3 and summary["requeued"] == 1
    again = summary["trials"][2]
    assert again["params"] == interrupted.params and again["out_dir"] == str(out / "trial_0001")
    assert _epochs(out / "trial_0001") == [1, 2]  # the interrupted trial continued from its checkpoint


def test_pruned_trials_are_recorded(setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    import optuna

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number >= 1)
    cache, recipe = setup
    out = tmp_path / "sweeps" / "p"
    argv = ["sweep", "--config", str(recipe), "--trials", "3", "--sampler", "grid", "--cache", str(cache)]
    assert main([*argv, "--tracking", "none", "--out", str(out)]) == 0
    trials = json.loads((out / "summary.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert trials[1]["pruned_at_epoch"] == 1 and not (out / "trial_0001" / "result.json").exists()
