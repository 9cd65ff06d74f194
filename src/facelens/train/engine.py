"""The training loop: cache -> batches -> multi-task network -> checkpoints.

:func:`train` builds (or reuses) the preprocessing cache, then trains with AdamW and a per-step learning-rate
schedule, validating after every epoch. Output folder (``train.out_dir``):

- ``config.yaml``: the resolved config (also embedded in every checkpoint).
- ``last.pt``: model, optimizer, scheduler, epoch, best score, early-stopping counter; written every epoch. With
  ``optim.ema_decay``, ``model`` is the moving average of the weights (:mod:`facelens.train.ema`; what is validated
  and exported) and ``train_model`` the raw weights the optimiser steps.
- ``best.pt``: a copy of the checkpoint with the best validation ``score`` (or ``train.monitor``; see
  :class:`~facelens.train.losses.MetricAccumulator`).
- ``history.jsonl``: one line of training and validation metrics per epoch.

A fresh run refuses a folder that already holds ``last.pt`` or ``best.pt`` (``overwrite=True`` replaces them,
``resume=True`` continues them with the same recipe; see :mod:`facelens.train.checkpoint`).

Hooks: ``on_epoch_end(epoch, metrics)`` is called after every epoch has been saved (``metrics`` is that epoch's
``history.jsonl`` record without ``epoch``), and stops training when it returns True (for pruning, live
tracking...); ``init_from`` starts a fresh run from another checkpoint's weights (transfer fine-tuning).

Batches (:mod:`facelens.train.batches`): every training batch holds a fixed share of each source
(``DatasetSpec.weight``, normalised); an epoch is ``ceil(train samples / batch size)`` steps; augmentation happens
on whole batches in torch. Runs are seeded: batch order, augmentation and dropout depend only on ``train.seed``
and the epoch, so a resumed run continues as the uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .batches import CacheBatches, augment_batch, mixed_batches, prepare_batch
from .cache import build_cache, open_cache
from .checkpoint import (
    build_model,
    check_out_dir,
    check_resumable,
    init_weights,
    load_checkpoint,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from .config import LOWER_IS_BETTER, ConfigError, TrainConfig, config_to_dict, save_config
from .ema import WeightEMA
from .losses import MetricAccumulator, balanced_class_weights, multitask_loss
from .models import TASK_OUTPUTS, check_arch_options

EpochCallback = Callable[[int, dict[str, float]], bool | None]
"""``on_epoch_end(epoch, metrics)`` of :func:`train`: the 1-based epoch and its ``history.jsonl`` record (training
loss, steps, seconds, learning rate, ``val_<metric>`` values) without ``epoch``; returning True stops training."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        best_checkpoint: ``best.pt`` (best validation ``score``, or ``train.monitor``).
        last_checkpoint: ``last.pt`` (most recent epoch; resume from it).
        best_metrics: Validation metrics of the best epoch.
        best_epoch: That epoch (1-based).
        epochs_run: Epochs completed in total, including those of earlier runs that were resumed.
        wall_seconds: Wall-clock time of this call.
        stopped: Why training ended: ``"completed"``, ``"early_stopping"``, ``"time_budget"`` or ``"callback"``
            (``on_epoch_end`` asked to stop).
        cache: The cache folder used.

    """

    best_checkpoint: Path
    last_checkpoint: Path
    best_metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    wall_seconds: float
    stopped: str
    cache: Path


# --- device, seeds ------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`.

    Raises:
        ConfigError: If ``name`` is not a device, or names a CUDA device (or MPS) this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"train.device: {name!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r}, but CUDA is not available on this machine: use 'auto' or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device={name!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={name!r}, but MPS is not available on this machine: use 'auto' or 'cpu'")
    return device


def prepare_run(device: str, num_threads: int, out_dir: str) -> tuple[torch.device, Path]:
    """Resolve the device (before anything is created), set the torch thread count, create the output folder."""
    resolved = resolve_device(device)
    configure_threads(num_threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return resolved, out


def configure_threads(num_threads: int) -> int:
    """Set torch's intra-op threads (0 = one per CPU core, which is fastest for 2-core machines)."""
    n = num_threads if num_threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of ``train.precision``: bfloat16 for ``"bf16"``, disabled (float32) for ``"fp32"``."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# --- optimisation -------------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices/kernels only (not on biases and norm parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: ``"cosine"`` (linear warm-up, cosine decay) or ``"onecycle"`` (OneCycleLR)."""
    o = config.optim
    total = max(1, o.epochs * steps_per_epoch)
    if o.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=o.lr, total_steps=total + 1)
    warm = min(int(round(o.warmup_epochs * steps_per_epoch)), total - 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, CosineWithWarmup(warm, total, o.min_lr_ratio))


class CosineWithWarmup:
    """Learning-rate factor per step: linear warm-up, then cosine decay to ``min_ratio`` at ``total`` steps.

    A callable object rather than a closure so that ``LambdaLR.state_dict`` saves it, including a horizon
    shortened by :func:`train` to fit a time budget.
    """

    def __init__(self, warmup: int, total: int, min_ratio: float) -> None:
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        """Return the factor of the peak learning rate at ``step``."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def fit_epochs_to_budget(
    planned: int, done: int, epoch_seconds: float, elapsed: float, budget: float, reserve: float
) -> int:
    """Number of epochs to plan for so that the run ends within ``budget`` seconds (never more than planned).

    Args:
        planned: Epochs currently planned.
        done: Epochs completed.
        epoch_seconds: Measured time of one epoch (training and validation).
        elapsed: Seconds spent so far.
        budget: Total seconds allowed.
        reserve: Seconds kept free for the work after the last epoch.

    Returns:
        ``planned``, or fewer (at least ``done``) when the remaining epochs would not fit.
    """
    if not math.isfinite(budget) or epoch_seconds <= 0:
        return planned
    fit = int((budget - reserve - elapsed) // epoch_seconds)
    return max(done, min(planned, done + fit))


# --- loops --------------------------------------------------------------------------------------------------


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.train.channels_last else torch.contiguous_format


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _loader(ds: CacheBatches, batches: list[list[int]], workers: int, device: torch.device) -> Any:
    return torch.utils.data.DataLoader(
        ds, sampler=batches, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda"
    )


@torch.no_grad()
def iter_outputs(
    model: nn.Module,
    ds: CacheBatches,
    rows: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    max_batches: int = 0,
    progress: bool = False,
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Run ``model`` (in eval mode, no augmentation) over cache rows in ``val_batch_size`` batches.

    Runs under ``torch.no_grad()`` (the decorator applies to every step of the generator): no autograd graph.

    Yields:
        ``(labels, logits)`` per batch: the batch's label tensors (image removed) and the model's outputs.
    """
    from tqdm import tqdm

    model.eval()
    bs = config.train.val_batch_size
    batches = [rows[i : i + bs].tolist() for i in range(0, len(rows), bs)]
    if max_batches > 0:
        batches = batches[:max_batches]
    loader = _loader(ds, batches, 0, device)
    fmt = _memory_format(config)
    for batch in tqdm(loader, total=len(batches), desc="validate", disable=not progress, leave=False):
        batch = _to_device(batch, device)
        yield batch, model(prepare_batch(batch.pop("image"), config.model.input_size).contiguous(memory_format=fmt))


def evaluate_rows(
    model: nn.Module,
    ds: CacheBatches,
    rows: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    max_batches: int = 0,
    progress: bool = False,
    sources: np.ndarray | None = None,
) -> dict[str, float]:
    """Compute the validation metrics of ``model`` on some cache rows (see :class:`MetricAccumulator`).

    Args:
        model: The network.
        ds: The cache.
        rows: Cache rows to evaluate.
        config: The training config (input size, batch size, loss settings).
        device: Where to run.
        max_batches: Evaluate at most this many batches per source (0: all).
        progress: Show a progress bar.
        sources: The source (``dataset`` column of the cache) of each of ``rows``. With two or more sources, each
            metric is also reported per source as ``"{source}.{metric}"``: pooled ``gender_acc`` mixes UTKFace
            faces with CelebA's (labelled through ``Male``), which are far easier.

    Returns:
        The pooled metrics (and ``score``), plus the per-source ones.

    """
    if sources is None:
        sources = np.full(len(rows), "", dtype=object)
    pooled, parts = MetricAccumulator(), {}
    with torch.no_grad():
        for source in dict.fromkeys(sources.tolist()):  # in order of appearance
            acc = parts[source] = MetricAccumulator()
            for batch, out in iter_outputs(model, ds, rows[sources == source], config, device, max_batches, progress):
                loss, _ = multitask_loss(out, batch, config.optim)
                acc.update(out, batch, float(loss))
                pooled.update(out, batch, float(loss))
    metrics = pooled.compute()
    if len(parts) > 1:
        for source, acc in parts.items():
            metrics |= {f"{source}.{k}": v for k, v in acc.compute().items() if k not in ("loss", "score")}
    return metrics


def monitored(metrics: dict[str, float], monitor: str) -> float:
    """The value of ``train.monitor`` in one epoch's validation metrics, negated where lower is better.

    Raises:
        ConfigError: If the metrics hold no such value (e.g. no validation face carries its label).
    """
    name = monitor
    if name not in metrics and not any("." in key for key in metrics):
        name = monitor.rpartition(".")[2]  # a single validation source reports its metrics pooled only
    if name not in metrics:
        raise ConfigError(f"train.monitor {monitor!r} is not among this run's validation metrics {sorted(metrics)}")
    value = metrics[name]
    return -value if name.rpartition(".")[2] in LOWER_IS_BETTER else value


def check_rows(
    cache: Path,
    labels: dict[str, np.ndarray],
    train_rows: dict[str, np.ndarray],
    weights: dict[str, float],
    n_val: int,
    every_source: bool,
) -> None:
    """Refuse a cache the config cannot train on before training starts.

    Args:
        cache: The cache folder (for messages).
        labels: Its labels.
        train_rows: Source id -> its training rows.
        weights: Source id -> batch weight.
        n_val: Number of validation rows.
        every_source: Require training rows for every source with weight > 0 (else for one at least).

    Raises:
        ConfigError: If no source (or, with ``every_source``, some source) with weight > 0 has training rows, or the
            cache has no validation rows (``best.pt`` and early stopping follow the validation metrics).

    """
    empty = [key for key, rows in train_rows.items() if weights[key] > 0 and len(rows) == 0]
    held = dict(zip(*np.unique(labels["dataset"][labels["split"] == "train"], return_counts=True), strict=True))
    if len(empty) == sum(w > 0 for w in weights.values()) or (every_source and empty):
        raise ConfigError(
            f"no training samples for the source(s) {empty} (weight > 0) in the cache {cache}, which holds training "
            f"rows of { {str(k): int(v) for k, v in held.items()} or 'no source' }: check their root, options and "
            "max_samples, or build the cache from this recipe"
        )
    if n_val == 0:
        raise ConfigError(
            f"the cache {cache} has no validation rows: the loop picks best.pt and early-stops on them (set "
            "data.val_fraction > 0, or use sources with a validation split)"
        )


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    cache: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    init_from: str | Path | None = None,
    overwrite: bool = False,
    require_sources: bool = False,
    command: str | None = None,
) -> TrainResult:
    """Train a multi-task network as the config says.

    Args:
        config: The resolved training config.
        resume: Continue from ``<out_dir>/last.pt`` (model, optimizer, scheduler, epoch, early-stopping
            state); a larger ``optim.epochs`` extends the run. The config must be the one the checkpoint was
            trained with, except for the keys of :data:`~facelens.train.checkpoint.RESUMABLE_KEYS`. Without a
            checkpoint there, training starts afresh.
        progress: Show tqdm progress bars.
        cache: Use this finished cache folder instead of building (or finding) the one the config describes.
        on_epoch_end: Called as ``on_epoch_end(epoch, metrics)`` after each epoch's checkpoint and history line
            are written (see :data:`EpochCallback`); returning True ends training with ``stopped="callback"``.
        init_from: A checkpoint whose weights (every tensor whose name and shape match, see :func:`init_weights`)
            initialise a fresh run, with a fresh optimizer and schedule. Ignored when resuming from ``last.pt``,
            which already holds the initialised and trained weights.
        overwrite: Start afresh even if ``out_dir`` holds the checkpoints of an earlier run (they are replaced);
            without it (or ``resume``) such a folder is refused.
        require_sources: Refuse a ``cache`` in which a source with weight > 0 has no training rows (as
            ``facelens train --cache`` does). Always checked when the cache is built from the config; off by
            default for a given cache, since an experiment's view may keep one task's rows only.
        command: The command line that started the run, kept in the checkpoints (``facelens export`` stores it
            in the model as its ``train_command``).

    Returns:
        Where the checkpoints are and how training went.

    Raises:
        ConfigError: Before any folder or cache is made: ``model.options`` names an option the architecture does not
            take, ``model.frozen_blocks`` asks for more blocks than the backbone has, ``train.device`` is not on
            this machine, ``out_dir`` holds another run (see ``resume`` and ``overwrite``) or the resumed
            checkpoint was trained with another recipe. Before training: the cache has no validation rows, or (see
            ``require_sources``) a source has no training rows.
        ModelError: If ``init_from`` holds no backbone weight of this network, or a checkpoint does not fit it.

    """
    from tqdm import tqdm

    check_arch_options(config.model.arch, config.model.options)
    if config.model.frozen_blocks:
        build_model(config, pretrained=False)  # an impossible freeze fails now, not after the cache is built
    start = time.perf_counter()
    tc, oc = config.train, config.optim
    resolve_device(tc.device)  # a device this machine lacks fails now, not after the cache is built
    last_path, best_path = Path(tc.out_dir) / "last.pt", Path(tc.out_dir) / "best.pt"
    resume_from = check_out_dir(Path(tc.out_dir), resume, overwrite)
    ckpt = read_checkpoint(resume_from) if resume_from is not None else None
    if ckpt is not None:
        check_resumable(ckpt, config, last_path)

    cache_path = Path(cache) if cache is not None else build_cache(config, progress=progress).path
    labels = open_cache(cache_path).labels
    ds = CacheBatches(cache_path, labels)
    is_train = labels["split"] == "train"
    train_rows = {s.key: np.flatnonzero(is_train & (labels["dataset"] == s.key)) for s in config.data.datasets}
    weights = {s.key: s.weight for s in config.data.datasets}
    val_rows = np.flatnonzero(labels["split"] == "val")
    val_sources = sorted(set(labels["dataset"][val_rows].tolist()))
    check_rows(cache_path, labels, train_rows, weights, len(val_rows), require_sources or cache is None)
    device, out = prepare_run(tc.device, tc.num_threads, tc.out_dir)  # the data is usable: now the folder
    monitor_source = tc.monitor.rpartition(".")[0]
    if monitor_source and monitor_source not in val_sources:  # else monitored() could read another source's value
        raise ConfigError(
            f"train.monitor {tc.monitor!r}: {monitor_source} has no validation rows (those are {val_sources})"
        )
    n_train = sum(len(r) for r in train_rows.values())
    steps = max(1, math.ceil(n_train / oc.batch_size))
    if tc.fast_dev_run > 0:
        steps = min(steps, tc.fast_dev_run)

    train_all = np.concatenate(list(train_rows.values()))
    class_weights = {
        task: balanced_class_weights(labels[task][train_all], TASK_OUTPUTS[task]).to(device)
        for task in oc.balance_classes
    }

    torch.manual_seed(tc.seed)
    fmt = _memory_format(config)
    model = build_model(config).to(device, memory_format=fmt)
    ema = WeightEMA(model, oc.ema_decay) if oc.ema_decay > 0 else None
    optimizer = make_optimizer(model, oc.lr, oc.weight_decay)
    scheduler = make_scheduler(optimizer, config, steps)
    first_epoch, best_score, best_epoch, bad_epochs, planned = 0, -math.inf, 0, 0, oc.epochs
    best_metrics: dict[str, float] = {}
    if ckpt is not None:
        restore(ckpt, last_path, model, ema, optimizer, scheduler)
        first_epoch, best_score = ckpt["epoch"], ckpt["best_score"]
        best_epoch, bad_epochs, best_metrics = ckpt["best_epoch"], ckpt["bad_epochs"], ckpt["best_metrics"]
        if ckpt["planned_epochs"] < ckpt["config"]["optim"]["epochs"]:  # shortened to fit a time budget
            planned = min(planned, ckpt["planned_epochs"])
        if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            scheduler.lr_lambdas[0].total = planned * steps  # the horizon follows optim.epochs on resume
        init_from = ckpt.get("init_from")
    else:
        if init_from is not None:
            init_weights(model, init_from)
        for name in ("last.pt", "best.pt", "history.jsonl"):  # a fresh run (overwrite) leaves nothing of another
            (out / name).unlink(missing_ok=True)
    save_config(config, out / "config.yaml")

    budget = tc.max_minutes * 60.0 if tc.max_minutes > 0 else math.inf
    stopped, epochs_run = "completed", first_epoch
    gen = torch.Generator(device=device)
    schedule = scheduler.lr_lambdas[0] if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR) else None
    for epoch in range(first_epoch, oc.epochs):
        if epoch >= planned:
            stopped = "time_budget"
            break
        t_epoch = time.perf_counter()
        torch.manual_seed(tc.seed * 1000 + epoch)
        gen.manual_seed(tc.seed * 1000 + epoch)
        model.train()
        batches = mixed_batches(train_rows, weights, oc.batch_size, steps, tc.seed, epoch)
        loader = _loader(ds, batches, tc.num_workers, device)
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{planned}", disable=not progress, unit="batch")
        run_loss, seen = 0.0, 0
        for step, batch in enumerate(bar):
            batch = _to_device(batch, device)
            x = augment_batch(batch.pop("image"), config.augment, config.model.input_size, gen)
            x = x.contiguous(memory_format=fmt)
            with autocast(device, tc.precision):
                loss, parts = multitask_loss(model(x), batch, oc, class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if oc.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), oc.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            run_loss, seen = run_loss + loss.item(), seen + 1
            if step % tc.log_every == 0:
                bar.set_postfix(loss=f"{run_loss / seen:.3f}", **{k: f"{v:.3f}" for k, v in parts.items()})
            if time.perf_counter() - start > budget:
                stopped = "time_budget"
                break
        bar.close()
        train_seconds = time.perf_counter() - t_epoch
        val_sources_of_rows = labels["dataset"][val_rows]
        metrics = evaluate_rows(
            model if ema is None else ema.module, ds, val_rows, config, device, tc.fast_dev_run, progress,
            val_sources_of_rows,
        )  # fmt: skip
        raw = {} if ema is None else evaluate_rows(
            model, ds, val_rows, config, device, tc.fast_dev_run, progress, val_sources_of_rows
        )  # fmt: skip
        value = monitored(metrics, tc.monitor)
        improved = value > best_score
        if improved:
            best_score, best_epoch, best_metrics, bad_epochs = value, epoch + 1, metrics, 0
        else:
            bad_epochs += 1
        last = time.perf_counter() - t_epoch  # the latest epoch tracks the machine's current speed
        if stopped != "time_budget" and tc.fit_to_budget and isinstance(schedule, CosineWithWarmup):
            elapsed = time.perf_counter() - start
            fitted = fit_epochs_to_budget(planned, epoch + 1, last, elapsed, budget, reserve=last / 4)
            if fitted < planned:
                planned, schedule.total = fitted, fitted * steps
                tqdm.write(
                    f"time budget: epoch {epoch + 1} took {last / 60:.1f} min, so the schedule now ends after epoch "
                    f"{planned} to finish within train.max_minutes={tc.max_minutes:g} (it never grows back: other "
                    "load on the machine costs epochs; train.fit_to_budget=false keeps the planned ones)"
                )
        payload = {
            "model": model.state_dict() if ema is None else ema.state_dict(),
            "train_model": None if ema is None else model.state_dict(),
            "ema_updates": 0 if ema is None else ema.updates,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
            "planned_epochs": planned,
            "config": config_to_dict(config),
            "metrics": metrics,
            "best_score": best_score,
            "monitor": tc.monitor,
            "best_epoch": best_epoch,
            "best_metrics": best_metrics,
            "bad_epochs": bad_epochs,
            "cache": str(cache_path),
            "init_from": None if init_from is None else str(init_from),
            "command": command,
        }
        save_checkpoint(payload, last_path)
        epochs_run = epoch + 1
        if improved:
            shutil.copyfile(last_path, best_path)
        record = {
            "epoch": epoch + 1,
            "train_loss": run_loss / max(seen, 1),
            "train_steps": seen,
            "train_seconds": round(train_seconds, 1),
            "lr": scheduler.get_last_lr()[0],
            **{f"val_{k}": v for k, v in metrics.items()},
            **{f"val_raw_{k}": v for k, v in raw.items()},
        }
        with open(out / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        tqdm.write(f"epoch {epoch + 1}: {shown}" + (" (best)" if improved else ""))
        if on_epoch_end is not None and on_epoch_end(epoch + 1, {k: v for k, v in record.items() if k != "epoch"}):
            stopped = "callback"
            break
        if stopped == "time_budget":
            break
        if tc.patience > 0 and bad_epochs >= tc.patience:
            stopped = "early_stopping"
            break
    return TrainResult(
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        best_metrics=best_metrics,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        wall_seconds=time.perf_counter() - start,
        stopped=stopped,
        cache=cache_path,
    )


def evaluate_checkpoint(
    checkpoint: str | Path, split: str = "test", device: str = "auto", progress: bool = True
) -> dict[str, float]:
    """Metrics of a checkpoint on one split of the cache it was trained on (``"test"`` for the final report).

    Raises:
        ConfigError: If that split has no samples in the cache.

    """
    dev = resolve_device(device)
    model, config, ckpt = load_checkpoint(checkpoint, dev)
    cache = open_cache(ckpt["cache"])
    rows = np.flatnonzero(cache.labels["split"] == split)
    if len(rows) == 0:
        raise ConfigError(f"the cache {cache.path} has no {split!r} samples")
    ds = CacheBatches(cache.path, cache.labels)
    return evaluate_rows(model, ds, rows, config, dev, progress=progress, sources=cache.labels["dataset"][rows])
