"""Experiment toolkit on top of the training engine: cross-validation, ablations, sweeps, transfer, reports.

Commands (see :mod:`facelens.cli.experiments`)::

    facelens cv --config RECIPE --folds 5 --task gender
    facelens ablate --config RECIPE [--vary model.arch=a,b]
    facelens sweep --config RECIPE --trials 6 --sampler tpe
    facelens transfer --pretrain RECIPE_A --finetune RECIPE_B --task gender
    facelens report RUN_DIR... -o docs/experiments/NAME.md

Every model is trained by :func:`facelens.train.engine.train` on a *view* of the recipe's cache (the same
images, a different ``split`` column; :mod:`.selection`), evaluated with :mod:`facelens.eval.metrics`
(:mod:`.evaluation`) and recorded in a run folder (:mod:`.records`) that makes every experiment resumable.
Tracking (:mod:`.tracking`) is MLflow to a local store by default, or nothing. Needs the ``train`` extra, and
``optuna`` / ``mlflow`` (the ``experiments`` extra) for sweeps / tracking. Importing this package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CVOptions": "cv",
    "run_cv": "cv",
    "AblationOptions": "ablation",
    "AUGMENT_ARMS": "ablation",
    "run_ablation": "ablation",
    "SearchSpace": "sweep",
    "SweepOptions": "sweep",
    "run_sweep": "sweep",
    "TransferOptions": "transfer",
    "run_transfer": "transfer",
    "Limits": "common",
    "ModelResult": "runner",
    "train_and_evaluate": "runner",
    "render_report": "report",
    "create_tracker": "tracking",
    "make_synthetic_cache": "synthetic",
    "ExperimentError": "records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
