"""Tracking: ``--tracking none`` imports no mlflow; MLflow runs get params, per-epoch metrics and artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("yaml")

from facelens.experiments.tracking import NullTracker, create_tracker  # noqa: E402

SCRIPT = """
import json, sys
from facelens.cli.experiments import main
from facelens.experiments.synthetic import make_synthetic_cache, tiny_arch, tiny_recipe
with tiny_arch() as arch:
    cache = make_synthetic_cache("cache", n=24)
    recipe = tiny_recipe("r.yaml", ".", arch=arch)
    rc = main(["ablate", "--config", str(recipe), "--arms", "none", "--cache", str(cache), "--tracking", "none",
               "--out", "runs/a"])
print(json.dumps({"rc": rc, "mlflow": "mlflow" in sys.modules, "optuna": "optuna" in sys.modules}))
"""


def test_tracking_none_imports_no_mlflow(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "mlflow": False, "optuna": False}
    assert isinstance(create_tracker("none"), NullTracker)


def test_mlflow_logs_params_epochs_and_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    import mlflow

    from facelens.cli.experiments import main
    from facelens.experiments.synthetic import make_synthetic_cache, tiny_arch, tiny_recipe

    monkeypatch.chdir(tmp_path)
    uri = f"file:{tmp_path / 'mlruns'}"  # the file store is the quickest to create in a test
    with tiny_arch() as arch:
        cache = make_synthetic_cache("cache", n=24)
        recipe = tiny_recipe("r.yaml", ".", epochs=2, arch=arch)
        argv = ["ablate", "--config", str(recipe), "--arms", "none", "--cache", str(cache), "--out", "runs/a"]
        assert main([*argv, "--tracking", "mlflow", "--tracking-uri", uri]) == 0
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("facelens-ablation")
    runs = client.search_runs([exp.experiment_id])
    child = next(r for r in runs if r.data.tags.get("facelens.kind") == "ablation-arm")
    assert child.data.params["optim.epochs"] == "2" and child.data.params["model.arch"] == arch
    history = client.get_metric_history(child.info.run_id, "val_gender_acc")
    assert sorted(m.step for m in history) == [1, 2]
    assert "test_accuracy" in child.data.metrics
    names = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"best.pt", "curves.png", "config.yaml", "history.jsonl"} <= names
    assert (
        child.data.tags.get("mlflow.parentRunId")
        == next(r for r in runs if r.data.tags.get("facelens.kind") == "ablation").info.run_id
    )
    assert json.loads((tmp_path / "runs" / "a" / "arm_01_none" / "mlflow_run.json").read_text())["run_id"]
