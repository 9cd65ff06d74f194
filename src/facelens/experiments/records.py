"""Run folders of the experiment commands: metadata, the exact command, and result JSON files.

Every experiment writes into one folder (``--out``, default ``runs/{cv,ablations,sweeps,transfer}/<name>``):

- ``experiment.json``: kind (``cv``, ``ablation``, ``sweep``, ``transfer``), name, recipe, options, and the
  fingerprint that a resumed run must match.
- ``command.txt``: the exact command line that produced the folder (the first one; a resumed run appends its
  own command to ``commands.log`` with a timestamp).
- one sub-folder per trained model (fold, arm, trial) with the engine's checkpoints, ``history.jsonl`` and a
  ``result.json`` written when that model is trained and evaluated, so an interrupted experiment resumes at
  the first model without one.
- ``views/``: the cache views the models train on (:func:`~facelens.experiments.common.views_dir`), and for a
  sweep ``study.db`` (its Optuna study, unless ``--storage`` names another).
- ``summary.json``: the aggregated results the report renders.

``--fresh`` (:func:`clear_experiment`) removes exactly these files and folders before it starts over, and refuses
a folder that holds anything else.

Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import FaceLensError

SCHEMA_VERSION = 1


class ExperimentError(FaceLensError):
    """An experiment cannot run: wrong options, a run folder of another experiment, missing data."""

    code = "experiment_error"


def jsonable(value: Any) -> Any:
    """Plain JSON form of ``value``: non-finite floats become ``None``, tuples lists, paths strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def recipe_dict(config: Any) -> dict[str, Any]:
    """A training config as run folders record and fingerprint it: its plain form, minus fields at their empty default.

    ``model.options`` and ``optim.balance_classes`` came after the first run folders were written; leaving them out
    while they are empty keeps the fingerprints of those folders, so they still resume.
    """
    from ..train.config import config_to_dict

    data = config_to_dict(config)
    for section, key in (("model", "options"), ("optim", "balance_classes")):
        if data.get(section, {}).get(key) in ({}, []):
            del data[section][key]
    return data


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def fingerprint(data: Any) -> str:
    """Short stable hash of a JSON-able value (sorted keys)."""
    return hashlib.sha256(json.dumps(jsonable(data), sort_keys=True).encode()).hexdigest()[:16]


OWN_FILES = frozenset(
    {
        "experiment.json",
        "command.txt",
        "commands.log",
        "summary.json",
        "folds.json",
        "requeued.json",
        "best.yaml",
        "mlflow_run.json",
        "study.db",
        "study.db-journal",
        "study.db-wal",
        "study.db-shm",
    }
)
"""Files the experiment commands write at the top of a run folder (plus ``*.tmp`` while one is written)."""

OWN_FOLDERS = re.compile(r"views|fold_\d+|arm_\d+_[\w-]*|trial_\d+|pretrain|finetune|scratch|scratch_gray")
"""Sub-folders the experiment commands write in a run folder: views and one folder per model."""


def own_entry(entry: Path) -> bool:
    """Whether ``entry`` (a child of a run folder) is a file or folder the experiment commands write there."""
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return OWN_FOLDERS.fullmatch(entry.name) is not None
    name = entry.name.removesuffix(".tmp")
    return entry.is_file() and name in OWN_FILES


def clear_experiment(out_dir: str | Path) -> list[str]:
    """Remove what an earlier experiment wrote in its run folder, so that a new one starts over there.

    Only the files and folders the experiment commands write (:data:`OWN_FILES`, :data:`OWN_FOLDERS`) are removed,
    and only when the folder is an experiment folder (has ``experiment.json``) holding nothing else; otherwise
    nothing is touched.

    Args:
        out_dir: The run folder (may be missing or empty).

    Returns:
        The names removed.

    Raises:
        ExperimentError: If the folder holds anything else, or is not an experiment folder.

    """
    out = Path(out_dir)
    if not out.is_dir():
        if out.exists() or out.is_symlink():
            raise ExperimentError(f"{out} is not a folder")
        return []
    entries = sorted(out.iterdir())
    if not entries:
        return []
    if not (out / "experiment.json").is_file():
        raise ExperimentError(
            f"{out} is not an experiment folder (no experiment.json) and is not empty; --fresh only starts over "
            "in a folder an experiment command made: choose another --out"
        )
    unknown = [e.name for e in entries if not own_entry(e)]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ExperimentError(
            f"{out} holds files no experiment command wrote ({shown}); --fresh removes only an experiment's own "
            "files: move those away or choose another --out"
        )
    for e in entries:
        if e.is_dir():
            shutil.rmtree(e)
        else:
            e.unlink()
    return [e.name for e in entries]


def begin_experiment(
    out_dir: str | Path, kind: str, name: str, command: str, setup: dict[str, Any], fresh: bool = False
) -> Path:
    """Create (or reopen, to resume) the folder of one experiment and record its command.

    Args:
        out_dir: The run folder.
        kind: ``"cv"``, ``"ablation"``, ``"sweep"`` or ``"transfer"``.
        name: Experiment name (the recipe's ``name`` unless given).
        command: The exact command line.
        setup: Everything that defines the experiment (resolved recipe, options); its fingerprint must match
            when the folder is reopened.
        fresh: Start over: first remove everything an earlier experiment wrote in the folder (see
            :func:`clear_experiment`), whichever experiment it was; without it, a folder that holds a different
            experiment is an error.

    Returns:
        The folder.

    Raises:
        ExperimentError: If the folder holds another experiment and ``fresh`` is false, or ``fresh`` is true and
            the folder holds files that no experiment command wrote.

    """
    out = Path(out_dir)
    meta_path = out / "experiment.json"
    fp = fingerprint({"kind": kind, "setup": setup})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if fresh:
        clear_experiment(out)
    elif meta_path.is_file():
        meta = read_json(meta_path)
        if meta.get("fingerprint") != fp:
            raise ExperimentError(
                f"{out} holds a different experiment ({meta.get('kind')} {meta.get('name')!r}, other settings); "
                "choose another --out, or pass --fresh to start over in it (removes its results)"
            )
        with open(out / "commands.log", "a", encoding="utf-8") as f:
            f.write(f"{stamp} resumed: {command}\n")
        return out
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        meta_path,
        {"schema": SCHEMA_VERSION, "kind": kind, "name": name, "created": stamp, "fingerprint": fp, "setup": setup},
    )
    (out / "command.txt").write_text(command + "\n", encoding="utf-8")
    with open(out / "commands.log", "a", encoding="utf-8") as f:
        f.write(f"{stamp} {'started over' if fresh else 'started'}: {command}\n")
    return out


def load_experiment(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder: ``experiment.json``, ``summary.json`` (if written) and the command.

    Raises:
        ExperimentError: If the folder has no ``experiment.json``.

    """
    run = Path(run_dir)
    if not (run / "experiment.json").is_file():
        raise ExperimentError(f"{run} is not an experiment folder (no experiment.json)")
    meta = read_json(run / "experiment.json")
    summary = read_json(run / "summary.json") if (run / "summary.json").is_file() else None
    command = (run / "command.txt").read_text(encoding="utf-8").strip() if (run / "command.txt").is_file() else ""
    return {"path": run, "meta": meta, "summary": summary, "command": command}
