"""Experiment tracking: a small interface, a no-op tracker, and an MLflow tracker (imported only when used).

``--tracking none`` selects :class:`NullTracker`, which imports nothing. ``--tracking mlflow`` (the default)
selects :class:`MlflowTracker`, logging to a local store: ``sqlite:///mlruns/mlflow.db`` with artifacts in
``mlruns/artifacts/`` unless ``--tracking-uri`` says otherwise (view it with ``mlflow ui --backend-store-uri
URI``). ``file:./mlruns`` works too (MLflow 3 keeps its file store in maintenance mode and refuses it unless
``MLFLOW_ALLOW_FILE_STORE=true``, which is set when such a URI is asked for explicitly). Every trained
model becomes one MLflow run, nested under the experiment's parent run: parameters (the flattened recipe),
validation metrics per epoch (``step`` = epoch), final test metrics, and artifacts (``config.yaml``,
``history.jsonl``, the learning-curve plot, and ``best.pt`` unless ``log_model`` is off). The MLflow run id
is stored in the model's folder so a resumed model logs to the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .records import ExperimentError

TRACKERS = ("mlflow", "none")
DEFAULT_URI = "sqlite:///mlruns/mlflow.db"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (lists are rendered as strings)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    out[prefix[:-1]] = data if isinstance(data, (int, float, str, bool)) or data is None else json.dumps(data)
    return out


class Tracker(Protocol):
    """What the experiment commands need from a tracking backend."""

    def run(self, name: str, params: dict[str, Any], tags: dict[str, str], key_dir: Path | None = None) -> Any:
        """Context manager around one (nested) tracked run; ``key_dir`` remembers its id for resuming."""
        ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics of the current run."""
        ...

    def log_artifact(self, path: str | Path) -> None:
        """Attach a file of the current run."""
        ...


class NullTracker:
    """Tracks nothing (``--tracking none``); imports no tracking library."""

    log_model = False

    @contextlib.contextmanager
    def run(
        self, name: str, params: dict[str, Any], tags: dict[str, str], key_dir: Path | None = None
    ) -> Iterator[None]:
        """Do nothing around the block."""
        yield None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Drop the metrics."""

    def log_artifact(self, path: str | Path) -> None:
        """Drop the file."""


class MlflowTracker:
    """Logs to MLflow (a local store by default).

    Args:
        uri: Tracking URI.
        experiment: MLflow experiment name.
        log_model: Attach ``best.pt`` of every trained model.

    """

    def __init__(self, uri: str = DEFAULT_URI, experiment: str = "facelens", log_model: bool = True) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ExperimentError(
                "MLflow is not installed: pip install 'facelens[experiments]', or pass --tracking none"
            ) from exc
        self._mlflow = mlflow
        self.log_model = log_model
        artifacts = None
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        elif uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///") :])
            db.parent.mkdir(parents=True, exist_ok=True)
            artifacts = str((db.parent / "artifacts").resolve())
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=artifacts)
        mlflow.set_experiment(experiment)

    @contextlib.contextmanager
    def run(
        self, name: str, params: dict[str, Any], tags: dict[str, str], key_dir: Path | None = None
    ) -> Iterator[Any]:
        """Start (or resume, via ``key_dir/mlflow_run.json``) a run, nested when another one is active."""
        mlflow = self._mlflow
        key = Path(key_dir) / "mlflow_run.json" if key_dir is not None else None
        run_id = None
        if key is not None and key.is_file():
            run_id = json.loads(key.read_text()).get("run_id")
        nested = mlflow.active_run() is not None
        try:
            active = mlflow.start_run(run_id=run_id, run_name=None if run_id else name, nested=nested)
        except Exception:  # noqa: BLE001 - a stale id (store deleted): start a new run instead
            active = mlflow.start_run(run_name=name, nested=nested)
            run_id = None
        with active as run:
            if key is not None:
                key.parent.mkdir(parents=True, exist_ok=True)
                key.write_text(json.dumps({"run_id": run.info.run_id}))
            if run_id is None:
                items = {k: ("" if v is None else str(v)[:500]) for k, v in flatten(params).items()}
                names = sorted(items)
                for s in range(0, len(names), 100):
                    mlflow.log_params({k: items[k] for k in names[s : s + 100]})
                mlflow.set_tags(tags)
            yield run

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log finite numeric metrics."""
        clean = {
            k.replace("@", "_"): float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
        }
        if clean:
            self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path) -> None:
        """Attach a file if it exists."""
        if Path(path).is_file():
            self._mlflow.log_artifact(str(path))


def create_tracker(kind: str, uri: str | None = None, experiment: str = "facelens", log_model: bool = True) -> Any:
    """Build a tracker: ``"none"`` -> :class:`NullTracker`, ``"mlflow"`` -> :class:`MlflowTracker`.

    Raises:
        ExperimentError: For an unknown kind, or MLflow missing.

    """
    if kind == "none":
        return NullTracker()
    if kind == "mlflow":
        return MlflowTracker(uri or DEFAULT_URI, experiment, log_model)
    raise ExperimentError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")
