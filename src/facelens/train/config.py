"""Typed training configuration, read from YAML recipes.

A recipe (``recipes/*.yaml``) only supplies values: every section and key must be a field of the dataclasses
below, and anything else is an error that names the offending key. Missing keys take the defaults written
here. The resolved configuration (defaults filled in, overrides applied) is written as ``config.yaml`` beside
every checkpoint, so a run can be repeated from its output folder alone.

Overrides use dotted keys with YAML-parsed values, e.g. ``optim.lr=0.002`` or ``train.max_minutes=30``.

This module needs PyYAML but not torch.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FaceLensError
from .typed_yaml import ConfigError, apply_overrides, config_to_dict, from_mapping, load_dataclass  # noqa: F401 - re-exported

TASK_NAMES: tuple[str, ...] = ("age", "gender", "race", "attributes")
"""The tasks of the multi-task network, in output order."""

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""Values of ``train.precision``: float32 throughout, or bfloat16 autocast for the forward pass and losses."""


VAL_METRICS: tuple[str, ...] = ("age_mae", "gender_acc", "race_acc", "attr_acc", "male_acc", "loss", "score")
"""Validation metrics of the training loop (:class:`facelens.train.losses.MetricAccumulator`), pooled over sources."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"age_mae", "loss"})
"""Validation metrics where smaller is better; every other one is maximised."""


def _in(rule: str, default: Any, note: str = "") -> Any:
    """A field whose value :meth:`TrainConfig.validate` checks: ``rule`` is ``">= 1"``, ``"> 0"``, ``"in [0, 1)"``..."""
    return field(default=default, metadata={"range": rule, "note": note})


def _holds(value: float, rule: str) -> bool:
    """Whether ``value`` satisfies a rule of :func:`_in` (NaN satisfies none)."""
    op, _, bound = rule.partition(" ")
    if op in (">=", ">"):
        return value >= float(bound) if op == ">=" else value > float(bound)
    lo, hi = (float(x) for x in bound[1:-1].split(","))
    return (lo <= value if bound[0] == "[" else lo < value) and (value <= hi if bound[-1] == "]" else value < hi)


def _ranged(node: Any, prefix: str = "") -> typing.Iterator[tuple[str, Any, str, str]]:
    """``(dotted key, value, rule, note)`` of every field declared with :func:`_in` and set (not None), in order."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _ranged(value, f"{prefix}{f.name}.")
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                yield from _ranged(item, f"{prefix}{f.name}[{i}].")
        elif "range" in f.metadata and value is not None:
            yield f"{prefix}{f.name}", value, f.metadata["range"], f.metadata["note"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset reader to draw samples from.

    Attributes:
        name: Registry name of the reader in :mod:`facelens.data` (``"utkface"``, ``"celeba"``...).
        root: Dataset root folder. ``~`` and ``$VARS`` (``${VARS}``) are expanded; a relative path is
            taken from the current working directory (run from the repository root).
        options: Keyword options for the reader (e.g. ``{"images": "face_crops"}`` for CelebA).
        id: Unique label of this source in the cache and in batch mixing; defaults to ``name``. Needed when
            the same reader is used twice with different options.
        weight: Share of every training batch drawn from this source (weights are normalised over sources).
        max_samples: Use at most this many samples (a seeded random subset, kept in reader order), at least 1;
            ``None`` uses all.

    """

    name: str
    root: str
    options: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    weight: float = 1.0
    max_samples: int | None = _in(">= 1", None, " or null (all)")

    @property
    def key(self) -> str:
        """The source label: :attr:`id`, or :attr:`name` when no id is given."""
        return self.id or self.name

    @property
    def path(self) -> Path:
        """:attr:`root` with ``~`` and ``$VARS`` expanded (relative paths stay relative to the working directory)."""
        return Path(os.path.expandvars(self.root)).expanduser()


@dataclass(frozen=True)
class DataConfig:
    """Which data to train on and how to split it.

    Attributes:
        datasets: The sources.
        val_fraction: For sources without an official split (UTKFace): seeded random share put in ``"val"``; more
            than 0, since every epoch is validated (``best.pt`` and early stopping follow the validation metrics).
        test_fraction: Likewise for ``"test"`` (held out for the final report; never used in training).
        seed: Seed of that random split (independent of the training seed, so splits stay fixed across runs).
        cache_dir: Folder of the preprocessed caches (one sub-folder per cache key).

    """

    datasets: tuple[DatasetSpec, ...] = ()
    val_fraction: float = _in("in (0, 1)", 0.1, " (every epoch validates on 'val' rows)")
    test_fraction: float = _in("in [0, 1)", 0.1)
    seed: int = 0
    cache_dir: str = "cache"


@dataclass(frozen=True)
class PreprocessConfig:
    """How faces are found and cropped; must match what the runtime does at inference.

    Attributes:
        size: Side of the aligned square crops stored in the cache.
        template: Name of the alignment template in :data:`facelens.align.TEMPLATES`.
        detector: Detector backend name for :func:`facelens.detect.create_detector`.
        detector_options: Options of that detector.
        workers: Worker processes for detection and alignment (0 runs in the calling process).
        chunk_size: Samples per task sent to a worker; also the granularity of resuming.

    """

    size: int = _in(">= 1", 112)
    template: str = "facelens-loose-v1"
    detector: str = "yunet"
    detector_options: dict[str, Any] = field(
        default_factory=lambda: {"pad": "auto", "max_side": 640, "score_threshold": 0.6}
    )
    workers: int = _in(">= 0", 2)
    chunk_size: int = _in(">= 1", 64)


@dataclass(frozen=True)
class ModelConfig:
    """The network.

    Attributes:
        arch: Backbone name in :data:`facelens.train.models.ARCHITECTURES`.
        pretrained: Start the backbone from ImageNet weights (read offline, see
            ``models.ensure_imagenet_weights``).
        input_size: Side of the network input; cached crops are resized to it when it differs from
            ``preprocess.size`` (the exported model records this size).
        dropout: Dropout before every head.
        options: Keyword options of the architecture's factory, e.g. ``{grid: 3}`` for ``custom_cnn`` or
            ``{trainable: ensemble, members: [resnet18, squeezenet1_1]}`` for ``stacked_ensemble``. Every key
            must be a parameter of that factory (:func:`facelens.train.models.arch_options` lists them); an
            unknown one is a :class:`ConfigError` naming it, raised before training starts. ``pretrained`` is
            not an option (it is the field above).
        frozen_blocks: Keep the first this many blocks of the backbone's ``features`` stack at their initial
            (ImageNet) weights: they get no gradients, so backpropagation stops before them, which is where a
            MobileNetV2 at 128 px spends most of its backward pass (``python -m facelens.train.bench
            --frozen-blocks 0 4``). Their BatchNorm statistics still adapt to the training faces. 0 trains
            everything; only backbones with a ``features`` sequence (the torchvision ones) can freeze blocks.

    """

    arch: str = "mobilenet_v2"
    pretrained: bool = True
    input_size: int = _in(">= 1", 112)
    dropout: float = _in("in [0, 1)", 0.2)
    options: dict[str, Any] = field(default_factory=dict)
    frozen_blocks: int = _in(">= 0", 0)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, schedule and losses.

    Attributes:
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        batch_size: Training batch size.
        epochs: Number of epochs (an epoch is one pass over as many samples as the training split has).
        schedule: ``"cosine"`` (linear warm-up, then cosine decay to ``min_lr_ratio * lr``) or ``"onecycle"``.
        warmup_epochs: Warm-up length for ``"cosine"`` (fractions allowed).
        min_lr_ratio: Final learning rate of ``"cosine"`` as a fraction of ``lr``.
        label_smoothing: Label smoothing for gender and race, and target smoothing for the attribute BCE.
        loss_weights: Weight of every task's loss in the total.
        age_sigma: Standard deviation in years of the Gaussian label distribution for age (DLDL).
        age_l1_weight: Weight of the L1 loss on the expected age, relative to the age KL term.
        grad_clip: Gradient norm clipping threshold (0 disables).
        balance_classes: Tasks (``"gender"``, ``"race"``) whose cross-entropy weights each class by the inverse
            of its frequency among the labelled training rows (weights averaging 1), so rare classes count as
            much as common ones. Empty: unweighted.
        ema_decay: Keep an exponential moving average of the weights (parameters and BatchNorm statistics,
            updated after every step with this decay, e.g. 0.999; ``torch.optim.swa_utils.AveragedModel``). The
            average is what is validated, selected, saved as ``model`` in the checkpoints and exported; the raw
            weights are validated too (``val_raw_*`` in the history). 0 (default): off.

    """

    lr: float = _in("> 0", 1e-3)
    weight_decay: float = _in(">= 0", 0.01)
    batch_size: int = _in(">= 1", 64)
    epochs: int = _in(">= 1", 10)
    schedule: str = "cosine"
    warmup_epochs: float = _in(">= 0", 0.5)
    min_lr_ratio: float = _in("in [0, 1]", 0.01)
    label_smoothing: float = _in("in [0, 1)", 0.1)
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"age": 1.0, "gender": 1.0, "race": 1.0, "attributes": 1.0}
    )
    age_sigma: float = _in("> 0", 2.0)
    age_l1_weight: float = _in(">= 0", 0.1)
    grad_clip: float = _in(">= 0", 5.0, " (0 = off)")
    balance_classes: tuple[str, ...] = ()
    ema_decay: float = _in("in [0, 1)", 0.0, " (0 = off)")


@dataclass(frozen=True)
class AugmentConfig:
    """Batch augmentations applied in torch to training batches only (see ``batches.augment_batch``).

    Attributes:
        flip: Probability of a horizontal flip.
        scale: Maximum relative zoom in or out (0.1 = 0.9 to 1.1).
        rotate: Maximum rotation in degrees.
        shift: Maximum shift as a fraction of the crop side.
        brightness: Maximum relative brightness change.
        contrast: Maximum relative contrast change.

    """

    flip: float = _in("in [0, 1]", 0.5)
    scale: float = _in("in [0, 1)", 0.1)
    rotate: float = _in(">= 0", 10.0)
    shift: float = _in(">= 0", 0.05)
    brightness: float = _in("in [0, 1]", 0.2)
    contrast: float = _in("in [0, 1]", 0.2)


@dataclass(frozen=True)
class LoopConfig:
    """The training loop.

    Attributes:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; whether
            the machine has it is checked when training starts (a checkpoint's config loads anywhere).
        seed: Seed of model initialisation, batch order and augmentation.
        patience: Stop after this many epochs without a better validation score (0 disables).
        num_workers: DataLoader worker processes for batch assembly (0: in the training process).
        num_threads: Torch intra-op threads; 0 uses every CPU core.
        out_dir: Output folder (checkpoints, ``config.yaml``, ``history.jsonl``).
        max_minutes: Wall-clock budget of the training loop; it stops cleanly (checkpoint and validation) once
            it is spent. 0 disables.
        fit_to_budget: With ``max_minutes`` and the cosine schedule: after each epoch, if the remaining epochs
            would not fit in the budget at the measured epoch time, end the schedule earlier (fewer epochs, LR
            decayed properly) instead of being cut off at a high learning rate.
        fast_dev_run: If > 0, run only this many training and validation batches per epoch (smoke tests).
        val_batch_size: Batch size of validation.
        channels_last: Keep the model's weights and the batches in NHWC memory order. Same arithmetic, but
            oneDNN's convolutions run faster that way: 1.5x more MobileNetV2 training steps per second at
            112 px on the 2-core dev CPU (`python -m facelens.train.bench --memory-format contiguous channels_last`).
        precision: ``"fp32"``, or ``"bf16"``: run the forward pass and the losses under bfloat16 autocast
            (weights, gradients and the optimiser stay float32; validation runs in float32). Faster on CPUs with
            bfloat16 instructions (AVX512-BF16, AMX) and on recent GPUs; measure with
            ``python -m facelens.train.bench --precision fp32 bf16`` and a few real epochs before relying on it
            (on the 2-core dev VM the benchmark's ~1.2x did not show in the real loop).
        log_every: Update the progress bar's loss display every this many steps.
        monitor: The validation metric that picks ``best.pt`` and drives ``patience``: ``"score"`` (the default,
            see :class:`~facelens.train.losses.MetricAccumulator`), a pooled metric of :data:`VAL_METRICS`
            (e.g. ``"attr_acc"``), or one source alone as ``"SOURCE.METRIC"`` with a dataset id of the recipe
            (e.g. ``"utkface.gender_acc"``; pooled gender also counts CelebA's ``Male``). ``age_mae`` and ``loss``
            are minimised, the others maximised.

    """

    device: str = "auto"
    seed: int = 0
    patience: int = _in(">= 0", 4, " (0 = off)")
    num_workers: int = _in(">= 0", 0)
    num_threads: int = _in(">= 0", 0, " (0 = one per CPU core)")
    out_dir: str = "runs/facelens"
    max_minutes: float = _in(">= 0", 0.0, " (0 = no budget)")
    fit_to_budget: bool = True
    fast_dev_run: int = _in(">= 0", 0, " (0 = off)")
    val_batch_size: int = _in(">= 1", 256)
    channels_last: bool = True
    precision: str = "fp32"
    log_every: int = _in(">= 1", 10)
    monitor: str = "score"


@dataclass(frozen=True)
class TrainConfig:
    """A complete training recipe."""

    name: str = "facelens"
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def validate(self) -> TrainConfig:
        """Check values that types alone do not catch.

        Returns:
            ``self``, so calls can be chained.

        Raises:
            ConfigError: On the first invalid value.

        """
        if not self.data.datasets:
            raise ConfigError("data.datasets is empty: a recipe needs at least one dataset")
        keys = [d.key for d in self.data.datasets]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"data.datasets: source ids must be unique (set 'id'), got {keys}")
        if any(d.weight < 0 for d in self.data.datasets) or sum(d.weight for d in self.data.datasets) <= 0:
            raise ConfigError("data.datasets: weights must be >= 0 and not all zero")
        if not 0 <= self.data.val_fraction + self.data.test_fraction < 1:
            raise ConfigError("data.val_fraction + data.test_fraction must be in [0, 1)")
        for key, value, rule, note in _ranged(self):
            if not _holds(value, rule):
                raise ConfigError(f"{key} must be {rule}{note}, got {value!r}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.train.device):
            raise ConfigError(
                f"train.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', not {self.train.device!r}"
            )
        if self.optim.schedule not in ("cosine", "onecycle"):
            raise ConfigError(f"optim.schedule must be 'cosine' or 'onecycle', not {self.optim.schedule!r}")
        unknown = sorted(set(self.optim.loss_weights) - set(TASK_NAMES))
        if unknown:
            raise ConfigError(f"optim.loss_weights: unknown task(s) {unknown}; tasks are {list(TASK_NAMES)}")
        if self.model.options.get("in_channels", 3) != 3:
            raise ConfigError(
                f"model.options.in_channels: the training engine feeds RGB batches (3 channels), not "
                f"{self.model.options['in_channels']}; gray images train as three equal channels, and 1- or 5-channel "
                "zoo networks (facelens.train.channels) are for use outside 'facelens train'"
            )
        if not set(self.optim.balance_classes) <= {"gender", "race"}:
            raise ConfigError(
                f"optim.balance_classes: only 'gender' and 'race', got {list(self.optim.balance_classes)}"
            )
        self._check_detector()
        if self.train.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {list(PRECISIONS)}, not {self.train.precision!r}")
        self._check_monitor()
        return self

    def _check_detector(self) -> None:
        from ..detect import check_detector_options

        try:
            check_detector_options(self.preprocess.detector, self.preprocess.detector_options)
        except FaceLensError as exc:
            raise ConfigError(f"preprocess: {exc}") from None

    def _check_monitor(self) -> None:
        source, _, metric = self.train.monitor.rpartition(".")
        ids = [d.key for d in self.data.datasets]
        per_source = [m for m in VAL_METRICS if m not in ("loss", "score")]
        if (not source and metric in VAL_METRICS) or (source in ids and metric in per_source):
            return
        raise ConfigError(
            f"train.monitor {self.train.monitor!r} is not a validation metric of this recipe: use one of "
            f"{list(VAL_METRICS)} or SOURCE.METRIC with SOURCE in {ids} and METRIC in {per_source}"
        )


# --- reading and writing -----------------------------------------------------------------------------------


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain mapping (as read from YAML).

    Raises:
        ConfigError: On an unknown key, a value of the wrong type, or an invalid value.

    """
    return from_mapping(TrainConfig, data, validate=True)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML training recipe and apply overrides (:func:`load_dataclass` with validation).

    Args:
        path: The YAML file.
        overrides: ``key=value`` strings with dotted keys, applied after the file.

    Returns:
        The validated config.

    Raises:
        ConfigError: If the file is missing, is not valid YAML, or holds an unknown key or bad value.

    """
    return load_dataclass(TrainConfig, path, overrides, validate=True, kind="training config")


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None, width=110)
    path.write_text(f"# resolved facelens training config\n{text}", encoding="utf-8")
    return path
