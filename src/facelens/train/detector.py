"""Training a face detector on WIDER FACE-format annotations: ``facelens train-detector``.

The detectors are torchvision's two-stage Faster R-CNN and its anchor-free FCOS, both on an FPN over the
MobileNetV2 features (ImageNet-initialised from the offline weights file, see
:func:`facelens.train.models.ensure_imagenet_weights`), built by name from :data:`DETECTOR_ARCHS`. Data: a
``wider_face_{split}_bbx_gt.txt`` label file and its images folder; the images present on disk are split, by
image and seeded, into a training part and a held-out part (``holdout.txt`` in the output folder) that the final
evaluation, and ``facelens eval widerface --images OUT/holdout.txt``, score with the WIDER protocol.

Output folder (``train.out_dir``):

- ``config.yaml``: the resolved config.
- ``last.pt``: model, optimizer, scheduler and epoch; written every epoch (``--resume`` continues from it).
- ``detector.pt``: the final weights with their config: what the ``"trained"`` detection backend loads
  (:class:`facelens.detect.trained.TrainedDetector`).
- ``history.jsonl``: training losses per epoch; ``holdout.txt``; ``metrics.json``: the held-out AP.

No checkpoint is chosen by its held-out score: the held-out images are the test set, and the last epoch ships.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DatasetError, FaceLensError
from ..io import load_image
from .checkpoint import check_out_dir
from .config import ConfigError, config_to_dict, from_mapping, load_dataclass, save_config
from .engine import CosineWithWarmup, fit_epochs_to_budget, prepare_run
from .models import ensure_imagenet_weights

RUN_FILES: tuple[str, ...] = ("last.pt", "detector.pt")
"""Files that make an output folder hold a detector run (a fresh run refuses it without ``overwrite``)."""

CHECKPOINT_FORMAT = "facelens.detector/1"


# --- config -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorDataConfig:
    """Where the annotated images are and how they are split.

    Attributes:
        root: WIDER FACE root folder.
        split: Which WIDER split's files to read (``"train"`` or ``"val"``; the shared subset is ``"val"``).
        annotations: Label file; empty means ``ROOT/wider_face_split/wider_face_{split}_bbx_gt.txt``.
        images: Images folder; empty means ``ROOT/WIDER_{split}/images``.
        holdout_fraction: Share of the present images held out for the final evaluation.
        seed: Seed of that split.
        min_face: Faces smaller than this (width or height, original pixels) are left out of training.
        max_images: Use at most this many present images (0: all), before splitting.

    """

    root: str = "../shared/data/wider_face"
    split: str = "val"
    annotations: str = ""
    images: str = ""
    holdout_fraction: float = 0.3
    seed: int = 0
    min_face: float = 8.0
    max_images: int = 0


@dataclass(frozen=True)
class DetectorModelConfig:
    """The network, created by name from :data:`DETECTOR_ARCHS`.

    Attributes:
        arch: A key of :data:`DETECTOR_ARCHS`.
        pretrained: Initialise the MobileNetV2 backbone from ImageNet (offline file).
        min_size: Shorter image side(s) the model resizes to; several values = random choice per training
            image (multi-scale training); inference uses the last.
        max_size: Cap on the longer side after resizing.
        freeze_blocks: With ``pretrained``, the first this many MobileNetV2 feature blocks are not trained.
        options: Further keyword arguments of the architecture's factory.

    """

    arch: str = "fasterrcnn_mobilenet_v2_fpn"
    pretrained: bool = True
    min_size: tuple[int, ...] = (480,)
    max_size: int = 640
    freeze_blocks: int = 4
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectorOptimConfig:
    """SGD with momentum and a per-step cosine schedule with linear warm-up.

    Attributes:
        lr: Peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        batch_size: Images per step.
        epochs: Passes over the training images.
        warmup_steps: Steps of linear warm-up.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        grad_clip: Clip the gradient norm to this (0 disables).
        flip: Probability of a horizontal flip per training image.

    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 2
    epochs: int = 12
    warmup_steps: int = 50
    min_lr_ratio: float = 0.01
    grad_clip: float = 10.0
    flip: float = 0.5


@dataclass(frozen=True)
class DetectorLoopConfig:
    """The training loop.

    Attributes:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        seed: Seed of initialisation, image order and augmentation.
        num_threads: Torch intra-op threads; 0 uses every core.
        out_dir: Output folder.
        max_minutes: Time budget of the run (0: none). After each epoch, if the remaining epochs would not fit at
            the measured epoch time, the cosine schedule is shortened so that the run ends, with a decayed
            learning rate, within the budget (a few minutes are kept for the held-out evaluation).
        fast_dev_run: If > 0, only this many steps per epoch and this many held-out images (smoke tests).
        eval_score: Score threshold of the held-out evaluation (low, as AP needs the whole ranking).

    """

    device: str = "auto"
    seed: int = 0
    num_threads: int = 0
    out_dir: str = "runs/detector"
    max_minutes: float = 0.0
    fast_dev_run: int = 0
    eval_score: float = 0.02


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Everything ``facelens train-detector`` needs; YAML recipes supply the values."""

    name: str = "detector"
    data: DetectorDataConfig = field(default_factory=DetectorDataConfig)
    model: DetectorModelConfig = field(default_factory=DetectorModelConfig)
    optim: DetectorOptimConfig = field(default_factory=DetectorOptimConfig)
    train: DetectorLoopConfig = field(default_factory=DetectorLoopConfig)

    def validate(self) -> DetectorTrainConfig:
        """Check values that types cannot express.

        Raises:
            ConfigError: On an unknown architecture or an out-of-range value.

        """
        if self.model.arch not in DETECTOR_ARCHS:
            raise ConfigError(f"model.arch {self.model.arch!r} is unknown; known: {', '.join(sorted(DETECTOR_ARCHS))}")
        if not 0.0 < self.data.holdout_fraction < 1.0:
            raise ConfigError(f"data.holdout_fraction must be in (0, 1), got {self.data.holdout_fraction}")
        if not self.model.min_size or min(self.model.min_size) < 32 or self.model.max_size < 32:
            raise ConfigError("model.min_size and model.max_size must be at least 32")
        if self.optim.batch_size < 1 or self.optim.epochs < 1:
            raise ConfigError("optim.batch_size and optim.epochs must be at least 1")
        return self


def load_detector_config(path: str | Path, overrides: Sequence[str] = ()) -> DetectorTrainConfig:
    """Read a detector recipe (YAML) and apply ``key=value`` overrides with dotted keys.

    Raises:
        ConfigError: If the file is missing or invalid, or holds an unknown key or bad value.

    """
    return load_dataclass(DetectorTrainConfig, path, overrides).validate()


# --- architectures ------------------------------------------------------------------------------------------

DETECTOR_ARCHS: dict[str, Callable[..., nn.Module]] = {}
"""Detector architecture name -> factory ``(config: DetectorModelConfig, **options) -> nn.Module``."""


def register_detector_arch(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that makes a detector architecture creatable by name with :func:`create_detector_model`."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        DETECTOR_ARCHS[name] = factory
        return factory

    return wrap


def create_detector_model(config: DetectorModelConfig, pretrained: bool | None = None) -> nn.Module:
    """Build the architecture ``config.arch`` (``pretrained`` overrides ``config.pretrained``).

    Raises:
        ConfigError: If the name is unknown or ``config.options`` holds an argument the factory does not take.

    """
    if config.arch not in DETECTOR_ARCHS:
        raise ConfigError(f"unknown detector architecture {config.arch!r}; known: {', '.join(sorted(DETECTOR_ARCHS))}")
    use_pretrained = config.pretrained if pretrained is None else pretrained
    try:
        return DETECTOR_ARCHS[config.arch](config, pretrained=use_pretrained, **config.options)
    except TypeError as exc:
        raise ConfigError(f"model.options {config.options} do not fit {config.arch!r}: {exc}") from None


def mobilenet_v2_fpn(pretrained: bool, freeze_blocks: int, channels: int, extra_blocks: nn.Module | None) -> nn.Module:
    """MobileNetV2 features with an FPN over the ends of its 1/8, 1/16 and 1/32 stages.

    With ``pretrained`` the batch norms are frozen (tiny detection batches cannot estimate their statistics)
    and the first ``freeze_blocks`` blocks are not trained.
    """
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import FrozenBatchNorm2d

    weights, norm = None, nn.BatchNorm2d
    if pretrained:
        ensure_imagenet_weights()
        weights, norm = MobileNet_V2_Weights.IMAGENET1K_V1, FrozenBatchNorm2d
    features = mobilenet_v2(weights=weights, norm_layer=norm).features
    if pretrained:
        for block in list(features)[:freeze_blocks]:
            block.requires_grad_(False)
    # Block 6 ends the stride-8 stage (32 channels), 13 the stride-16 (96), 18 is the final 1x1 conv (1280).
    return BackboneWithFPN(features, {"6": "0", "13": "1", "18": "2"}, [32, 96, 1280], channels, extra_blocks)


@register_detector_arch("fasterrcnn_mobilenet_v2_fpn")
def fasterrcnn_mobilenet_v2_fpn(config: DetectorModelConfig, pretrained: bool, fpn_channels: int = 128) -> nn.Module:
    """Faster R-CNN (the two-stage detector one of the studies fine-tuned) with face-sized anchors.

    Four FPN levels (strides 8, 16, 32, 64) with anchors of 12-20, 32-48, 80-128 and 200-320 px (two sizes and
    aspect ratios 1.0 and 1.3 (taller than wide) per level), one class besides background.
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = mobilenet_v2_fpn(pretrained, config.freeze_blocks, fpn_channels, None)
    anchors = AnchorGenerator(sizes=((12, 20), (32, 48), (80, 128), (200, 320)), aspect_ratios=((1.0, 1.3),) * 4)
    return FasterRCNN(
        backbone,
        num_classes=2,
        min_size=config.min_size,
        max_size=config.max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        box_score_thresh=0.01,
        box_detections_per_img=300,
    )


@register_detector_arch("fcos_mobilenet_v2_fpn")
def fcos_mobilenet_v2_fpn(config: DetectorModelConfig, pretrained: bool, fpn_channels: int = 128) -> nn.Module:
    """FCOS, anchor-free (one point per location, sizes by FPN level), on the same MobileNetV2 FPN."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = mobilenet_v2_fpn(
        pretrained, config.freeze_blocks, fpn_channels, LastLevelP6P7(fpn_channels, fpn_channels)
    )
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((1.0,),) * 5)
    return FCOS(
        backbone,
        num_classes=2,
        min_size=config.min_size,
        max_size=config.max_size,
        anchor_generator=anchors,
        score_thresh=0.01,
        detections_per_img=300,
    )


# --- data ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WiderSample:
    """One annotated image: ``rel`` as in the label file, ``boxes`` ``(N, 4)`` ``x1, y1, x2, y2``."""

    path: Path
    rel: str
    boxes: np.ndarray


def load_samples(config: DetectorDataConfig) -> list[WiderSample]:
    """The annotated images present on disk, in label-file order (at most ``max_images``).

    Raises:
        DatasetError: If the label file is missing or malformed, or no listed image is present.

    """
    from ..eval.widerface import read_annotations

    root = Path(config.root)
    ann = (
        Path(config.annotations)
        if config.annotations
        else root / "wider_face_split" / f"wider_face_{config.split}_bbx_gt.txt"
    )
    images = Path(config.images) if config.images else root / f"WIDER_{config.split}" / "images"
    samples = [WiderSample(images / rel, rel, boxes) for rel, boxes in read_annotations(ann).items()]
    samples = [s for s in samples if s.path.is_file()]
    if not samples:
        raise DatasetError(f"none of the images listed in {ann} is present under {images}")
    return samples[: config.max_images] if config.max_images > 0 else samples


def split_samples(
    samples: Sequence[WiderSample], fraction: float, seed: int
) -> tuple[list[WiderSample], list[WiderSample]]:
    """Seeded split by image into (training, held-out); at least one image on each side."""
    if len(samples) < 2:
        raise DatasetError(f"need at least 2 annotated images to hold some out, found {len(samples)}")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_out = min(len(samples) - 1, max(1, round(len(samples) * fraction)))
    held = set(order[:n_out].tolist())
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 RGB (any strides, read-only too; copied) -> float ``(3, H, W)`` in 0..1."""
    return torch.from_numpy(np.array(rgb, order="C")).permute(2, 0, 1).float().div_(255.0)


def training_target(sample: WiderSample, min_face: float, flip: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Image tensor (3, H, W) in 0..1 and the Faster R-CNN/FCOS target of one sample, optionally mirrored."""
    rgb = load_image(sample.path)
    boxes = sample.boxes[
        ((sample.boxes[:, 2] - sample.boxes[:, 0]) >= min_face)
        & ((sample.boxes[:, 3] - sample.boxes[:, 1]) >= min_face)
    ].copy()
    if flip:
        rgb = rgb[:, ::-1]
        boxes[:, [0, 2]] = rgb.shape[1] - boxes[:, [2, 0]]
    image = image_tensor(rgb)
    target = {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.ones(len(boxes), dtype=torch.int64),
    }
    return image, target


# --- inference ----------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: nn.Module, rgb: np.ndarray, score_threshold: float = 0.5) -> np.ndarray:
    """Run a detector on one RGB uint8 image.

    Returns:
        ``(N, 5)`` float64 rows ``x1, y1, x2, y2, score`` in the image's pixels, by descending score.

    """
    device = next(model.parameters()).device
    image = image_tensor(rgb).to(device)
    out = model([image])[0]
    keep = out["scores"] >= score_threshold
    rows = torch.cat([out["boxes"][keep], out["scores"][keep, None]], dim=1).double().cpu().numpy()
    return rows[np.argsort(-rows[:, 4], kind="stable")]


def save_detector(model: nn.Module, config: DetectorTrainConfig, path: Path, metrics: dict[str, Any]) -> Path:
    """Write the weights, config and held-out metrics that :func:`load_detector` reads."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config_to_dict(config),
        "model": model.state_dict(),
        "metrics": metrics,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_detector(path: str | Path, device: str = "cpu") -> tuple[nn.Module, DetectorTrainConfig]:
    """Rebuild a detector written by :func:`train_detector` (``detector.pt`` or ``last.pt``), in eval mode.

    Raises:
        FaceLensError: If the file is missing or is not a facelens detector checkpoint.

    """
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise FaceLensError(f"cannot read detector checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise FaceLensError(f"{path} is not a facelens detector checkpoint (train one with facelens train-detector)")
    config = from_mapping(DetectorTrainConfig, ckpt["config"]).validate()
    model = create_detector_model(config.model, pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), config


# --- training -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorTrainResult:
    """The outcome of :func:`train_detector`.

    Attributes:
        detector: ``detector.pt``, the file the ``"trained"`` backend loads.
        holdout: ``holdout.txt``, the held-out image paths (one per line, relative to the images folder).
        metrics: Held-out AP (``ap_easy``/``ap_medium``/``ap_hard``; all three equal when the data has no
            official difficulty lists) and timings.
        epochs_run: Epochs completed, including resumed ones.
        stopped: ``"completed"`` or ``"time_budget"``.

    """

    detector: Path
    holdout: Path
    metrics: dict[str, Any]
    epochs_run: int
    stopped: str


def evaluate_holdout(model: nn.Module, config: DetectorTrainConfig, samples: Sequence[WiderSample]) -> dict[str, Any]:
    """AP of the model on held-out samples, with the official WIDER difficulty lists when the root has them.

    Returns:
        The :class:`~facelens.eval.widerface.WiderFaceResult` as a dict, plus ``"protocol"`` and ``"ms_per_image"``.

    """
    from ..eval.widerface import evaluate_detections, ground_truth_from_boxes, load_ground_truth

    protocol = "official easy/medium/hard lists"
    try:
        gt = load_ground_truth(Path(config.data.root)).select(s.rel for s in samples)
    except FaceLensError:  # no .mat lists, or they do not cover these images (e.g. the train split)
        protocol = "all annotated faces (no official difficulty lists found)"
        gt = ground_truth_from_boxes(Path(config.data.root), {s.rel: s.boxes for s in samples})
    model.eval()
    t0 = time.perf_counter()
    dets = {s.rel: predict(model, load_image(s.path), config.train.eval_score) for s in samples}
    ms = 1000.0 * (time.perf_counter() - t0) / max(1, len(samples))
    return {**evaluate_detections(gt, dets).to_dict(), "protocol": protocol, "ms_per_image": round(ms, 1)}


def train_detector(
    config: DetectorTrainConfig,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    overwrite: bool = False,
) -> DetectorTrainResult:
    """Train a face detector as the config says, then score it on the held-out images.

    Args:
        config: The resolved config.
        resume: Continue from ``<out_dir>/last.pt`` when it exists.
        progress: Show a tqdm progress bar per epoch.
        on_epoch_end: Called with the 1-based epoch and its mean training losses.
        overwrite: Start afresh even if ``out_dir`` holds an earlier run (``last.pt`` or ``detector.pt``), whose
            files are then replaced; without it (or ``resume``) such a folder is refused.

    Returns:
        Where the detector is and its held-out metrics.

    Raises:
        ConfigError: If ``out_dir`` holds an earlier run and neither ``resume`` nor ``overwrite`` is set.

    """
    from tqdm import tqdm

    start = time.perf_counter()
    tc, oc = config.train, config.optim
    resume_from = check_out_dir(Path(tc.out_dir), resume, overwrite, RUN_FILES)
    device, out = prepare_run(tc.device, tc.num_threads, tc.out_dir)
    train_set, holdout = split_samples(load_samples(config.data), config.data.holdout_fraction, config.data.seed)
    if tc.fast_dev_run > 0:
        holdout = holdout[: tc.fast_dev_run]
    holdout_path = out / "holdout.txt"
    holdout_path.write_text("".join(f"{s.rel}\n" for s in holdout), encoding="utf-8")
    save_config(config, out / "config.yaml")

    torch.manual_seed(tc.seed)
    model = create_detector_model(config.model).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay)
    steps = math.ceil(len(train_set) / oc.batch_size)
    if tc.fast_dev_run > 0:
        steps = min(steps, tc.fast_dev_run)
    total = oc.epochs * steps
    schedule = CosineWithWarmup(min(oc.warmup_steps, total - 1), total, oc.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    last_path, first_epoch = out / "last.pt", 0
    if resume_from is not None:
        ckpt = torch.load(resume_from, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        first_epoch = ckpt["epoch"]
        schedule.total = total  # the horizon follows optim.epochs on resume (load_state_dict restored it)
    else:
        for name in (*RUN_FILES, "history.jsonl", "metrics.json"):  # a fresh run leaves nothing of an earlier one
            (out / name).unlink(missing_ok=True)

    budget = tc.max_minutes * 60.0 if tc.max_minutes > 0 else math.inf
    stopped, epochs_run, planned = "completed", first_epoch, oc.epochs
    for epoch in range(first_epoch, oc.epochs):
        if epoch >= planned:
            stopped = "time_budget"
            break
        t_epoch = time.perf_counter()
        rng = np.random.default_rng([tc.seed, epoch])
        torch.manual_seed(tc.seed * 1000 + epoch)  # the model's own random choices (sampling, scales)
        order = rng.permutation(len(train_set))
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{oc.epochs}", disable=not progress, unit="step")
        for step in bar:
            picked = order[step * oc.batch_size : (step + 1) * oc.batch_size]
            pairs = [training_target(train_set[i], config.data.min_face, rng.random() < oc.flip) for i in picked]
            images = [img.to(device) for img, _ in pairs]
            targets = [{k: v.to(device) for k, v in t.items()} for _, t in pairs]
            losses = model(images, targets)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if oc.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, oc.grad_clip)
            optimizer.step()
            scheduler.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}")
        metrics = {k: v / steps for k, v in sums.items()}
        record = {
            "epoch": epoch + 1,
            **metrics,
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - t_epoch,
        }
        with open(out / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save({**ckpt, "epoch": epoch + 1, "config": config_to_dict(config)}, last_path)
        epochs_run = epoch + 1
        planned = fit_epochs_to_budget(planned, epochs_run, record["seconds"], time.perf_counter() - start, budget, 300)
        schedule.total = planned * steps
        if on_epoch_end is not None:
            on_epoch_end(epochs_run, metrics)

    result = evaluate_holdout(model, config, holdout)
    result.update(train_images=len(train_set), holdout_images=len(holdout), epochs=epochs_run)
    result["train_minutes"] = round((time.perf_counter() - start) / 60.0, 1)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    detector = save_detector(model, config, out / "detector.pt", result)
    return DetectorTrainResult(detector, holdout_path, result, epochs_run, stopped)
