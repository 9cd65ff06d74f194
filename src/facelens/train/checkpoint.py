"""Training checkpoints: reading them safely, guarding a run folder, and checking that a resume fits.

A checkpoint (``last.pt`` / ``best.pt`` of :func:`facelens.train.engine.train`) is a dict with at least ``model``
(the network's state dict) and ``config`` (the resolved training config as a plain mapping). Everything here
turns what would be a torch or pickle traceback into a one-line :class:`~facelens.train.config.ConfigError` or
:class:`~facelens.errors.ModelError`:

- :func:`read_checkpoint` / :func:`load_checkpoint`: a file that is not a facelens training checkpoint (a random
  file, an ONNX model, a plain state dict) is refused by name.
- :func:`check_out_dir`: a fresh run never replaces the checkpoints of another run unless asked to
  (``overwrite``); ``resume`` continues it instead.
- :func:`check_resumable`: a resumed run must use the recipe the checkpoint was trained with, except for the
  settings of :data:`RESUMABLE_KEYS` (how long and where to run, not what to train).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .config import ConfigError, TrainConfig, config_to_dict, from_mapping
from .models import MultiTaskNet, create_model, freeze_blocks

CHECKPOINT_NAMES: tuple[str, ...] = ("last.pt", "best.pt")
"""The checkpoint files of a run folder; a folder holding one of them holds a run."""

RESUMABLE_KEYS: frozenset[str] = frozenset(
    {
        "name",
        "data.cache_dir",
        "preprocess.workers",
        "preprocess.chunk_size",
        "optim.epochs",
        "train.max_minutes",
        "train.fit_to_budget",
        "train.patience",
        "train.device",
        "train.num_workers",
        "train.num_threads",
        "train.out_dir",
        "train.val_batch_size",
        "train.log_every",
    }
)
"""Config keys a resumed run may change: the length of the run (``optim.epochs``, which extends or shortens the
schedule, ``train.max_minutes``, ``train.fit_to_budget``, ``train.patience``) and where or how fast it runs (device,
threads, workers, folders, validation batch size, logging). Every other key (data, splits, preprocessing, network,
optimiser, schedule, augmentation, seed, precision, ``train.fast_dev_run``...) defines what is trained and must
match the checkpoint."""


def build_model(config: TrainConfig, pretrained: bool | None = None) -> MultiTaskNet:
    """The network a config describes: ``model.arch`` with its ``options``, ``dropout`` and ``frozen_blocks``.

    Args:
        config: The training config.
        pretrained: Overrides ``model.pretrained`` (False when rebuilding a checkpoint: its weights follow).

    """
    m = config.model
    pretrained = m.pretrained if pretrained is None else pretrained
    model = create_model(m.arch, pretrained=pretrained, dropout=m.dropout, options=m.options)
    freeze_blocks(model, m.frozen_blocks)
    return model


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint's dict, refusing files that are not facelens training checkpoints.

    Args:
        path: The ``.pt`` file.
        device: ``map_location`` of its tensors.

    Returns:
        The checkpoint dict (it has ``model`` and ``config``).

    Raises:
        ModelError: If the file is missing, cannot be unpickled by torch, or is not a dict with a ``model``
            state dict and a ``config`` mapping (an ONNX file, a plain state dict, any other file).

    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - pickle and torch raise many types for a foreign file
        raise ModelError(f"{path} is not a facelens training checkpoint ({type(exc).__name__})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("config"), dict)):
        kind = "a state dict" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelError(
            f"{path} is not a facelens training checkpoint ({kind} without 'model' and 'config'; "
            "facelens train writes best.pt and last.pt)"
        )
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], path: str | Path) -> TrainConfig:
    """The training config saved in a checkpoint dict, with the checkpoint's path in any error.

    Keys and types are checked, value ranges are not (:meth:`TrainConfig.validate`): a checkpoint trained when a rule
    was looser still loads (and exports); a resumed run validates the new config it is given.
    """
    try:
        return from_mapping(TrainConfig, ckpt["config"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: its saved config is not a facelens training config: {exc}") from None


def load_state(module: Any, state: Any, path: str | Path, what: str = "network") -> None:
    """``module.load_state_dict(state)`` with a one-line error instead of torch's multi-line size report.

    Raises:
        ModelError: If the state does not fit ``module`` (another architecture or head width, missing keys).

    """
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{path}: its saved {what} does not fit this recipe's {what} ({first.rstrip(':. ')})"
        ) from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[MultiTaskNet, TrainConfig, dict]:
    """Rebuild the network of a checkpoint (without downloading or reading ImageNet weights).

    Returns:
        The model in eval mode, its training config, and the raw checkpoint dict.

    Raises:
        ModelError: If ``path`` is not a facelens training checkpoint, or its weights do not fit its config.
        ConfigError: If its saved config is not a valid training config.

    """
    ckpt = read_checkpoint(path, device)
    config = checkpoint_config(ckpt, path)
    model = build_model(config, pretrained=False)
    load_state(model, ckpt["model"], path)
    return model.to(device).eval(), config, ckpt


def init_weights(model: MultiTaskNet, checkpoint: str | Path) -> int:
    """Copy into ``model`` every weight of a checkpoint whose name and shape match (transfer initialisation).

    Weights the checkpoint lacks or holds with another shape (e.g. a head of another width) keep their values.

    Returns:
        The number of tensors copied.

    Raises:
        ModelError: If ``checkpoint`` is not a training checkpoint, or no backbone weight matches (another
            architecture: only head biases could match).

    """
    state = read_checkpoint(checkpoint)["model"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("backbone.") for k in usable):
        raise ModelError(f"{checkpoint}: no backbone weight of this checkpoint matches the network to initialise")
    model.load_state_dict(usable, strict=False)
    return len(usable)


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically (to a temporary file, then renamed)."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


# --- run folders and resuming --------------------------------------------------------------------------------


def check_out_dir(out: Path, resume: bool, overwrite: bool, names: tuple[str, ...] = CHECKPOINT_NAMES) -> Path | None:
    """Refuse to start a fresh run over the checkpoints of an earlier one.

    Args:
        out: The run folder (``train.out_dir``); not created here.
        resume: Continue the run in ``out`` from its ``last.pt``.
        overwrite: Start afresh even if ``out`` holds checkpoints (they are replaced).
        names: The files that make a folder hold a run (the detector's: ``last.pt`` and ``detector.pt``).

    Returns:
        ``out/last.pt`` when the run is to be resumed from it, else None (a fresh run).

    Raises:
        ConfigError: If ``out`` holds ``last.pt`` or ``best.pt`` and neither ``resume`` nor ``overwrite`` is set, or
            ``resume`` is set and ``out`` holds ``best.pt`` without the ``last.pt`` needed to continue.

    """
    found = [name for name in names if (out / name).is_file()]
    if resume and "last.pt" in found:
        return out / "last.pt"
    if not found or overwrite:
        return None
    if resume:
        raise ConfigError(f"{out} holds {', '.join(found)} but no last.pt to resume from: replace it with --overwrite")
    raise ConfigError(
        f"{out} already holds a training run ({', '.join(found)}): continue it with --resume, replace it with "
        "--overwrite, or choose another --out"
    )


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of a plain config mapping (a list of mappings gives ``len(key)`` and ``key[i].*`` keys)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        out = {f"len({prefix})": len(node)}
        for i, value in enumerate(node):
            out |= _flatten(value, f"{prefix}[{i}]")
        return out
    return {prefix: node}


def config_differences(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted config keys whose values differ between two configs, with ``(old, new)`` values.

    When a list of sections changes length (``len(data.datasets)``), the entries only one side has are not listed.
    """
    a, b = _flatten(config_to_dict(old)), _flatten(config_to_dict(new))
    missing = object()
    diffs = {k: (a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k, missing) != b.get(k, missing)}
    return {k: v for k, v in diffs.items() if (k in a and k in b) or f"len({k.partition('[')[0]})" not in diffs}


def check_resumable(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Refuse to resume ``ckpt`` (read from ``path``) with a recipe that trains something else.

    Raises:
        ConfigError: If the checkpoint was a smoke run (``train.fast_dev_run``) and the new run is not; if the weight
            average (``optim.ema_decay``) or ``train.monitor`` changed (each with its own message); or if any key
            outside :data:`RESUMABLE_KEYS` differs (all of them named, with both values).

    """
    old = checkpoint_config(ckpt, path)
    if old.train.fast_dev_run > 0 and config.train.fast_dev_run != old.train.fast_dev_run:
        raise ConfigError(
            f"{path} is a smoke run (train.fast_dev_run={old.train.fast_dev_run}: that many batches per epoch), not "
            "a run to continue: start afresh with --overwrite"
        )
    if (old.optim.ema_decay > 0) != (config.optim.ema_decay > 0):
        raise ConfigError(
            f"{path} was trained {'with' if old.optim.ema_decay > 0 else 'without'} a weight average "
            f"(optim.ema_decay={old.optim.ema_decay}): resume with that value"
        )
    if ckpt.get("monitor", old.train.monitor) != config.train.monitor:
        raise ConfigError(
            f"{path} picked its best epoch by train.monitor={ckpt.get('monitor', old.train.monitor)!r}, not "
            f"{config.train.monitor!r}: resume with that value, or start a fresh run"
        )
    changed = {k: v for k, v in config_differences(old, config).items() if k not in RESUMABLE_KEYS}
    if changed:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(
            f"cannot resume {path} with another recipe ({shown}): only how long and where the run goes may change "
            "(optim.epochs, train.max_minutes, train.patience, train.device...: RESUMABLE_KEYS in "
            "facelens.train.checkpoint); restore the others, or start afresh with --overwrite"
        )


def restore(
    ckpt: dict[str, Any],
    path: Path,
    model: nn.Module,
    ema: Any | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Load a ``last.pt`` dict into the training state of a resumed run, with one-line errors.

    Args:
        ckpt: The checkpoint dict (checked with :func:`check_resumable`).
        path: Where it was read (for messages).
        model: The network the optimiser steps (the raw weights when a weight average is kept).
        ema: The :class:`~facelens.train.ema.WeightEMA`, or None.
        optimizer: The optimiser.
        scheduler: The learning-rate schedule.

    Raises:
        ModelError: If a saved state does not fit (e.g. the network's code changed since the checkpoint).

    """
    load_state(model, ckpt["model"] if ema is None else ckpt["train_model"], path)
    if ema is not None:
        load_state(ema.module, ckpt["model"], path, "weight average")
        ema.load(ckpt["model"], ckpt["ema_updates"])
    load_state(optimizer, ckpt["optimizer"], path, "optimizer state")
    load_state(scheduler, ckpt["scheduler"], path, "schedule")
