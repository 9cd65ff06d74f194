"""Input channels other than RGB: the 5-channel input (RGB + intensity + Canny edges) and grayscale.

**5 channels** (``in_channels=5``, any registered architecture): R, G, B, the intensity
``I = 0.30 R + 0.59 G + 0.11 B`` and a Canny edge map of ``I``. The edge map needs OpenCV on uint8 images, so it
is made on the CPU in the data pipeline, before anything turns the batch into floats: call
:func:`five_channel` on the uint8 ``(N, S, S, 3)`` crops (e.g. in ``CacheBatches.__getitem__``, or once when the
cache is built), then geometric augmentation must warp all five channels with the same grid and photometric
augmentation (brightness, contrast) should touch only the first four. :func:`normalise_channels` turns the
``(N, 5, S, S)`` floats in 0..1 into network input (ImageNet statistics for RGB, the luminance of those for
intensity, edges left as 0/1). The network side is :func:`widen_first_conv`: the input convolution gets two
more input channels whose filters start as the mean of its R, G and B filters (an ImageNet-initialised
MobileNetV2 keeps its RGB filters).

**Grayscale**, two ways: (a) no change to the model: :func:`gray_to_rgb` replicates the gray channel into
three (works with ImageNet weights and every exported model; costs nothing but bandwidth); (b) a 1-channel
input: :func:`widen_first_conv` with ``in_channels=1`` *reduces* the first convolution to one input channel
whose filter is the sum of the R, G and B filters, so on a gray image normalised with one mean and std
(:data:`GRAY_MEAN`, :data:`GRAY_STD`) it responds exactly as the original convolution does to that image
replicated three times. ``custom_cnn``, ``levi_hassner*`` and ``lenet5`` also take ``in_channels`` directly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .models import IMAGENET_MEAN, IMAGENET_STD, MultiTaskNet, create_model

INTENSITY_WEIGHTS: tuple[float, float, float] = (0.30, 0.59, 0.11)
"""R, G, B weights of the intensity channel (not OpenCV's 0.299/0.587/0.114)."""

CANNY_THRESHOLDS: tuple[int, int] = (100, 200)
"""Hysteresis thresholds of :func:`cv2.Canny` on the uint8 intensity image (3x3 Sobel aperture, L1 gradient)."""

GRAY_MEAN: tuple[float] = (round(float(np.dot(INTENSITY_WEIGHTS, IMAGENET_MEAN)), 4),)
"""Mean of the intensity channel: the intensity of the ImageNet mean colour (0.4592)."""

GRAY_STD: tuple[float] = (0.226,)
"""Standard deviation used for the intensity channel (ImageNet's average channel std)."""

FIVE_CHANNEL_MEAN: tuple[float, ...] = (*IMAGENET_MEAN, *GRAY_MEAN, 0.0)
FIVE_CHANNEL_STD: tuple[float, ...] = (*IMAGENET_STD, *GRAY_STD, 1.0)
"""Normalisation of the 5-channel input: ImageNet for RGB, :data:`GRAY_MEAN`/:data:`GRAY_STD`, edges as 0/1."""


def intensity(images: np.ndarray) -> np.ndarray:
    """uint8 intensity ``0.30 R + 0.59 G + 0.11 B`` (rounded) of uint8 ``(..., H, W, 3)`` RGB images."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3) RGB images, got {images.dtype} {images.shape}")
    gray = images.astype(np.float32) @ np.asarray(INTENSITY_WEIGHTS, np.float32)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def canny_edges(images: np.ndarray, thresholds: tuple[int, int] = CANNY_THRESHOLDS) -> np.ndarray:
    """Canny edge maps (uint8, 0 or 255) of the intensity of uint8 ``(H, W, 3)`` or ``(N, H, W, 3)`` images."""
    import cv2

    gray = intensity(images)
    flat = gray.reshape(-1, *gray.shape[-2:])
    edges = np.stack([cv2.Canny(np.ascontiguousarray(g), thresholds[0], thresholds[1]) for g in flat])
    return edges.reshape(gray.shape)


def five_channel(images: np.ndarray, thresholds: tuple[int, int] = CANNY_THRESHOLDS) -> np.ndarray:
    """RGB + intensity + Canny edges: uint8 ``(..., H, W, 3)`` -> uint8 ``(..., H, W, 5)``.

    Run it on the uint8 crops in the data pipeline (CPU, OpenCV), before augmentation and normalisation.
    """
    images = np.asarray(images)
    gray = intensity(images)
    edges = canny_edges(images, thresholds)
    return np.concatenate([images, gray[..., None], edges[..., None]], axis=-1)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Replicate a gray ``(..., H, W)`` or ``(..., H, W, 1)`` uint8 image into ``(..., H, W, 3)`` (option a)."""
    gray = np.asarray(gray)
    if gray.ndim >= 3 and gray.shape[-1] == 1:
        gray = gray[..., 0]
    return np.repeat(gray[..., None], 3, axis=-1)


def channel_stats(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel for 1 (gray), 3 (RGB) or 5 (RGB + intensity + edges) channels."""
    stats = {
        1: (GRAY_MEAN, GRAY_STD),
        3: (IMAGENET_MEAN, IMAGENET_STD),
        5: (FIVE_CHANNEL_MEAN, FIVE_CHANNEL_STD),
    }
    if in_channels not in stats:
        raise ModelError(f"no input statistics for {in_channels} channels (1, 3 or 5)")
    return stats[in_channels]


def normalise_channels(x: torch.Tensor) -> torch.Tensor:
    """Float ``(N, C, H, W)`` in 0..1 with C in (1, 3, 5) -> normalised network input."""
    mean, std = channel_stats(int(x.shape[1]))
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def prepare_channels(images: np.ndarray, in_channels: int = 5) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` RGB crops -> normalised float ``(N, in_channels, H, W)`` (1, 3 or 5 channels).

    The evaluation-time counterpart of ``batches.prepare_batch`` for other channel layouts (no resizing).
    """
    images = np.asarray(images)
    if in_channels == 5:
        arr = five_channel(images)
    elif in_channels == 1:
        arr = intensity(images)[..., None]
    elif in_channels == 3:
        arr = images
    else:
        raise ModelError(f"in_channels must be 1, 3 or 5, not {in_channels}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    return normalise_channels(x)


def input_conv_names(backbone: nn.Module) -> list[str]:
    """Qualified names of the convolutions that read the network input.

    The first :class:`~torch.nn.Conv2d` in module order, or of each member of a ``members`` ModuleDict (as in
    ``stacked_ensemble``, where every member reads the image).
    """
    members = getattr(backbone, "members", None)
    if isinstance(members, nn.ModuleDict):
        return [f"members.{k}.{n}" for k, m in members.items() for n in input_conv_names(m)]
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            return [name]
    raise ModelError(f"{type(backbone).__name__} has no Conv2d to adapt")


def _adapted_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.groups != 1:
        raise ModelError("cannot change the input channels of a grouped convolution")
    old = conv.weight.detach()
    if in_channels == 1:
        weight = old.sum(dim=1, keepdim=True)
    elif in_channels >= old.shape[1]:
        extra = old.mean(dim=1, keepdim=True).expand(-1, in_channels - old.shape[1], -1, -1)
        weight = torch.cat([old, extra], dim=1)
    else:
        raise ModelError(f"cannot go from {old.shape[1]} to {in_channels} input channels (1 or more than RGB)")
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=old.device, dtype=old.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    new.weight.requires_grad_(conv.weight.requires_grad)
    return new


def widen_first_conv(backbone: nn.Module, in_channels: int = 5) -> nn.Module:
    """Give a backbone's input convolution(s) ``in_channels`` inputs, in place (returns ``backbone``).

    More channels than RGB: the RGB filters are kept and every extra channel's filter starts as the mean of the
    RGB filters. One channel: the filter is the sum of the RGB filters (see the module docstring).

    Raises:
        ModelError: For grouped input convolutions or 2 channels.

    """
    for name in input_conv_names(backbone):
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child, _adapted_conv(getattr(parent, child), in_channels))
    return backbone


def create_model_with_channels(
    name: str,
    in_channels: int = 5,
    pretrained: bool = False,
    dropout: float = 0.2,
    tasks: dict[str, int] | None = None,
) -> MultiTaskNet:
    """:func:`~facelens.train.models.create_model`, then :func:`widen_first_conv` to ``in_channels`` inputs."""
    model = create_model(name, pretrained=pretrained, dropout=dropout, tasks=tasks)
    if in_channels != 3:
        widen_first_conv(model.backbone, in_channels)
    return model
