"""Look inside a trained network: Grad-CAM heatmaps, first-layer feature maps and training curves.

Works on PyTorch checkpoints written by ``facelens train`` (an ONNX model has no gradients). A face is found and
aligned exactly as for training and inference: the checkpoint's detector settings and alignment template, the
crop warped straight to the network's input size (as :class:`facelens.heads.runtime.HeadModel` does) and
normalised like ``facelens.train.batches.prepare_batch``.

Grad-CAM (Selvaraju et al., 2017): the gradient of one scalar of the chosen head (the logit of the top class,
or of a named class; the expected age; the logit of one attribute) with respect to the backbone's last
convolutional feature map ``A`` (``K x h x w``) is averaged over space into one weight per channel; the map is
``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the crop and divided by its maximum (all zeros when nothing
speaks for the target). It is drawn over the aligned crop and warped back onto the original photo with the
inverse of the alignment matrix.

Needs the ``train`` extra (torch, matplotlib for :func:`plot_training_curves`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ModelError

TASKS: tuple[str, ...] = ("gender", "age", "race", "attributes")


@dataclass(frozen=True)
class GradCam:
    """One Grad-CAM heatmap.

    Attributes:
        heatmap: ``(S, S)`` float32 in 0..1 over the aligned crop.
        task: Head explained.
        target: What was explained: a class or attribute name, or ``"expected_age"``.
        score: The explained scalar (a logit, or the expected age in years).
        probability: The class or attribute probability (None for age).
        layer: Qualified name of the feature map used.

    """

    heatmap: np.ndarray
    task: str
    target: str
    score: float
    probability: float | None
    layer: str


@dataclass(frozen=True)
class FaceExplanation:
    """The explanation of one face.

    Attributes:
        index: Face number in the image (detector order).
        landmarks: The five landmarks in image pixels.
        matrix: The ``(2, 3)`` image -> crop alignment matrix.
        cam: The Grad-CAM result.
        heatmap_image: The heatmap warped back onto the original image (``H x W`` float32, 0 outside the crop).
        files: Files written for this face.

    """

    index: int
    landmarks: tuple[tuple[float, float], ...]
    matrix: tuple[tuple[float, float, float], ...]
    cam: GradCam
    heatmap_image: np.ndarray
    files: tuple[Path, ...]


@dataclass(frozen=True)
class ExplainResult:
    """Everything :func:`explain_image` produced.

    Attributes:
        faces: One explanation per face (empty when no face was found).
        files: Every file written, including ``explain.json`` and the training curves.
        checkpoint: The checkpoint used.

    """

    faces: tuple[FaceExplanation, ...]
    files: tuple[Path, ...]
    checkpoint: Path


# --- model loading and targets ----------------------------------------------------------------------------------


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.pt`` checkpoint, or a run folder's ``best.pt`` (else ``last.pt``).

    Raises:
        ModelError: For ONNX files and paths holding no checkpoint.

    """
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        raise ModelError(f"{p}: Grad-CAM needs the PyTorch checkpoint (.pt) from 'facelens train', not an ONNX model")
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise ModelError(f"{p}: no best.pt or last.pt in this folder")
    if not p.is_file():
        raise ModelError(f"checkpoint not found: {p}")
    return p


def parse_head(spec: str) -> tuple[str, str | None]:
    """``"gender"``, ``"race:asian"``, ``"attributes:Smiling"`` -> ``(task, name or None)``.

    Raises:
        ModelError: For an unknown task or name, or a name given to ``age``.

    """
    from .labels import CELEBA_ATTRIBUTES, GENDERS, RACES

    task, _, name = spec.partition(":")
    task = task.strip().lower()
    if task not in TASKS:
        raise ModelError(f"unknown head {task!r}; choose from {', '.join(TASKS)}")
    if not name:
        return task, None
    if task == "age":
        raise ModelError("the age head is explained through the expected age; it takes no ':NAME'")
    labels = {"gender": GENDERS, "race": RACES, "attributes": CELEBA_ATTRIBUTES}[task]
    match = [lab for lab in labels if lab.lower() == name.strip().lower()]
    if not match:
        raise ModelError(f"{task} has no {name!r}; choose from {', '.join(labels)}")
    return task, match[0]


def _target(logits: dict[str, Any], task: str, name: str | None) -> tuple[Any, str, float | None]:
    """The scalar to explain, its label and its probability, from batch-of-one logits."""
    import torch

    from .labels import CELEBA_ATTRIBUTES, GENDERS, RACES
    from .train.losses import expected_age

    z = logits[task][0]
    zd = z.detach()
    if task == "age":
        return expected_age(logits[task])[0], "expected_age", None
    labels = {"gender": GENDERS, "race": RACES, "attributes": CELEBA_ATTRIBUTES}[task]
    idx = labels.index(name) if name is not None else int(torch.argmax(zd))
    prob = float(torch.sigmoid(zd[idx]) if task == "attributes" else torch.softmax(zd, dim=0)[idx])
    return z[idx], labels[idx], prob


def cam_layer_name(backbone: Any) -> str:
    """The feature map Grad-CAM uses: the backbone's ``cam_layer``, else ``features``, else the last Conv2d."""
    from torch import nn

    name = getattr(backbone, "cam_layer", None)
    if isinstance(name, str):
        return name
    if isinstance(getattr(backbone, "features", None), nn.Module):
        return "features"
    convs = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ModelError(f"{type(backbone).__name__} has no convolution for Grad-CAM")
    return convs[-1]


def grad_cam(model: Any, x: Any, head: str = "gender", layer: str | None = None) -> GradCam:
    """Grad-CAM of one head for one normalised input.

    Args:
        model: A :class:`facelens.train.models.MultiTaskNet` (put in eval mode here).
        x: ``(1, C, S, S)`` normalised float tensor.
        head: ``gender``, ``race`` or ``attributes`` with an optional ``:NAME`` (default: top class or attribute),
            or ``age`` (expected age).
        layer: Feature map, as a qualified name inside ``model.backbone`` (default :func:`cam_layer_name`).

    Returns:
        The heatmap over the input and what it explains.

    """
    import torch
    import torch.nn.functional as F

    task, name = parse_head(head)
    if task not in model.heads:
        raise ModelError(f"this model has no {task!r} head (heads: {', '.join(model.heads)})")
    layer = layer or cam_layer_name(model.backbone)
    try:
        module = model.backbone.get_submodule(layer)
    except AttributeError as exc:
        raise ModelError(f"the backbone has no layer {layer!r}") from exc
    store: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _inp: Any, out: torch.Tensor) -> None:
        store["act"] = out

    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)  # gradients flow even through frozen backbones
            score, target, prob = _target(model(inp), task, name)
            (grad,) = torch.autograd.grad(score, store["act"])  # leaves the parameters' .grad alone
    finally:
        handle.remove()
    act, grad = store["act"].detach()[0], grad.detach()[0]
    weights = grad.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * act).sum(0))
    cam = F.interpolate(cam[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    cam = cam.clamp_min(0)
    peak = float(cam.max())
    heat = (cam / peak if peak > 0 else torch.zeros_like(cam)).cpu().numpy().astype(np.float32)
    return GradCam(heat, task, target, float(score.detach()), prob, f"backbone.{layer}")


def feature_maps(model: Any, x: Any, layers: int = 3) -> list[tuple[str, np.ndarray]]:
    """Outputs of the first ``layers`` convolutions of the backbone for one input: ``[(name, (C, h, w))]``."""
    import torch
    from torch import nn

    convs = [(n, m) for n, m in model.backbone.named_modules() if isinstance(m, nn.Conv2d)][:layers]
    maps: dict[str, np.ndarray] = {}

    def keeper(name: str) -> Any:
        def hook(_m: Any, _inp: Any, out: torch.Tensor) -> None:  # returns None: the output is left alone
            maps.setdefault(name, out[0].detach().cpu().numpy().copy())

        return hook

    handles = [m.register_forward_hook(keeper(n)) for n, m in convs]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [(f"backbone.{n}", maps[n]) for n, _ in convs if n in maps]


# --- images -----------------------------------------------------------------------------------------------------


def feature_grid(maps: np.ndarray, max_channels: int = 64, cell: int = 48) -> np.ndarray:
    """Tile ``(C, h, w)`` maps (each min-max scaled) into one uint8 gray grid with 2-pixel gaps."""
    maps = np.asarray(maps, np.float32)[:max_channels]
    n = len(maps)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    gap = 2
    grid = np.full((rows * (cell + gap) + gap, cols * (cell + gap) + gap), 255, np.uint8)
    for i, m in enumerate(maps):
        lo, hi = float(m.min()), float(m.max())
        tile = np.zeros_like(m) if hi - lo < 1e-12 else (m - lo) / (hi - lo)
        tile = cv2.resize((tile * 255).astype(np.uint8), (cell, cell), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, cols)
        y, x = gap + r * (cell + gap), gap + c * (cell + gap)
        grid[y : y + cell, x : x + cell] = tile
    return grid


def colorize(heat: np.ndarray) -> np.ndarray:
    """``(H, W)`` values in 0..1 -> ``(H, W, 3)`` uint8 RGB (jet colour map)."""
    u8 = np.clip(np.rint(np.asarray(heat, np.float32) * 255), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a coloured heatmap over an RGB image (only where ``mask`` > 0, when given)."""
    a = np.full(heat.shape, alpha, np.float32) if mask is None else alpha * np.clip(mask, 0, 1).astype(np.float32)
    out = image.astype(np.float32) * (1 - a[..., None]) + colorize(heat).astype(np.float32) * a[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def heatmap_to_image(heat: np.ndarray, matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp a crop heatmap back onto the original image with the inverse alignment matrix.

    Args:
        heat: ``(S, S)`` heatmap over the aligned crop.
        matrix: The ``(2, 3)`` image -> crop matrix used for alignment.
        width: Original image width.
        height: Original image height.

    Returns:
        ``(heatmap, mask)``: ``(height, width)`` float32 arrays; the mask is 1 where the crop covers the image.

    """
    inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    s = heat.shape[0]
    flags = {"flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    back = cv2.warpAffine(np.asarray(heat, np.float32), inv, (width, height), **flags)
    mask = cv2.warpAffine(np.ones((s, s), np.float32), inv, (width, height), **flags)
    return back, mask


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
    return path


def plot_training_curves(history: str | Path, out_png: str | Path) -> Path:
    """Plot ``history.jsonl`` (one JSON object per epoch, as the training engine writes) to a PNG.

    Panels (those with data): losses (``train_loss``, ``val_loss``), accuracies (``val_*_acc``), age MAE
    (``val_age_mae``), learning rate (``lr``).

    Raises:
        ModelError: If the file holds no epochs.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(history).read_text().splitlines() if line.strip()]
    if not rows:
        raise ModelError(f"{history}: no epochs recorded")
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    keys = sorted({k for r in rows for k in r})
    panels = [
        ("loss", [k for k in ("train_loss", "val_loss") if k in keys]),
        ("accuracy", [k for k in keys if k.startswith("val_") and k.endswith("_acc")]),
        ("age MAE (years)", [k for k in ("val_age_mae",) if k in keys]),
        ("learning rate", [k for k in ("lr",) if k in keys]),
    ]
    panels = [(t, ks) for t, ks in panels if ks]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, ks) in zip(axes[0], panels, strict=True):
        for k in ks:
            ax.plot(epochs, [r.get(k, float("nan")) for r in rows], marker="o", ms=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


# --- the whole job ----------------------------------------------------------------------------------------------


def explain_image(
    image: Any,
    checkpoint: str | Path,
    head: str = "gender",
    out_dir: str | Path = "explain",
    landmarks: Sequence[np.ndarray] | None = None,
    detector: Any = None,
    feature_layers: int = 3,
    layer: str | None = None,
    curves: bool = True,
) -> ExplainResult:
    """Grad-CAM (on the crop and on the photo) and feature-map grids for every face of an image.

    Files in ``out_dir`` per face ``i``: ``face{i}_cam_crop.png``, ``face{i}_cam_image.png``,
    ``face{i}_crop.png``, ``face{i}_features{k}.png`` (first ``feature_layers`` convolutions); plus
    ``explain.json`` (targets and scores) and ``training_curves.png`` when a ``history.jsonl`` lies beside the
    checkpoint.

    Args:
        image: A path or anything :func:`facelens.io.load_image` reads.
        checkpoint: A ``.pt`` from ``facelens train`` or its run folder.
        head: What to explain (see :func:`grad_cam`).
        out_dir: Output folder (created).
        landmarks: Five-point landmarks per face in image pixels; detected when None.
        detector: Detector to use instead of the checkpoint's (an object with ``detect(rgb)``).
        feature_layers: How many first convolutions to save as feature-map grids (0: none).
        layer: Grad-CAM feature map inside the backbone (default :func:`cam_layer_name`).
        curves: Plot the training curves when ``history.jsonl`` is found.

    Returns:
        The explanations and the files written.

    """
    import torch

    from .align import alignment_matrix
    from .io import load_image
    from .train.batches import prepare_batch
    from .train.cache import get_template, make_detector
    from .train.engine import load_checkpoint

    ckpt_path = resolve_checkpoint(checkpoint)
    parse_head(head)  # fail before any work
    model, config, _ = load_checkpoint(ckpt_path, "cpu")
    rgb = load_image(image)
    height, width = rgb.shape[:2]
    if landmarks is None:
        pre = config.preprocess
        det = detector if detector is not None else make_detector(pre.detector, dict(pre.detector_options))
        landmarks = [np.asarray(d.landmarks.to_array(), np.float64).reshape(5, 2) for d in det.detect(rgb)]
    size = config.model.input_size
    template = get_template(config.preprocess.template)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faces: list[FaceExplanation] = []
    written: list[Path] = []
    for i, lm in enumerate(landmarks):
        lm = np.asarray(lm, np.float64).reshape(5, 2)
        m = alignment_matrix(lm, size, template)
        crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x = prepare_batch(torch.from_numpy(np.ascontiguousarray(crop[None])), size)
        cam = grad_cam(model, x, head, layer)
        back, mask = heatmap_to_image(cam.heatmap, m, width, height)
        files = [
            _write_rgb(out / f"face{i}_crop.png", crop),
            _write_rgb(out / f"face{i}_cam_crop.png", overlay(crop, cam.heatmap)),
            _write_rgb(out / f"face{i}_cam_image.png", overlay(rgb, back, mask=mask)),
        ]
        for k, (_name, maps) in enumerate(feature_maps(model, x, feature_layers) if feature_layers > 0 else []):
            files.append(_write_rgb(out / f"face{i}_features{k + 1}.png", feature_grid(maps)))
        written += files
        faces.append(
            FaceExplanation(
                i,
                tuple((float(p[0]), float(p[1])) for p in lm),
                tuple((float(r[0]), float(r[1]), float(r[2])) for r in m),
                cam,
                back,
                tuple(files),
            )
        )
    history = ckpt_path.parent / "history.jsonl"
    if curves and history.is_file() and history.stat().st_size > 0:
        written.append(plot_training_curves(history, out / "training_curves.png"))
    summary = {
        "checkpoint": str(ckpt_path),
        "arch": config.model.arch,
        "head": head,
        "faces": [
            {
                "index": f.index,
                "task": f.cam.task,
                "target": f.cam.target,
                "score": round(f.cam.score, 5),
                "probability": None if f.cam.probability is None else round(f.cam.probability, 5),
                "layer": f.cam.layer,
                "files": [p.name for p in f.files],
            }
            for f in faces
        ],
    }
    (out / "explain.json").write_text(json.dumps(summary, indent=2))
    written.append(out / "explain.json")
    return ExplainResult(tuple(faces), tuple(written), ckpt_path)
