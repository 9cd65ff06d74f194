"""The model zoo: more backbones for :data:`facelens.train.models.ARCHITECTURES`, with documented sizes.

Importing this module registers (``models.py`` imports it, so ``create_model(name)`` knows every name):

- ``custom_cnn``: the low-cost gender CNN (64 px, 7 conv blocks, FC 100 / 50);
- ``levi_hassner``: Levi & Hassner (2015), the age/gender CNN of the Adience benchmark (227 px);
- ``levi_hassner_bn``: the same with batch norm after each pooling and FC 512 / 256;
- ``lenet5``: LeNet-5 (32 px), a sanity-check baseline;
- ``resnet18``, ``resnet34``, ``resnet50``, ``densenet121``, ``squeezenet1_1``: torchvision backbones;
- ``stacked_ensemble``: ResNet18 + SqueezeNet1.1 + DenseNet121 features concatenated (other members by name:
  ``model.options.members``).

Every name (``mobilenet_v2`` included) has an :class:`ArchInfo` in :data:`ARCH_INFO`: native input size, the
smallest input it accepts, and the parameter count of its **2-class classifier** (the backbone plus a
:class:`~facelens.train.models.MultiTaskNet` holding only a 2-way gender head), as measured with torch 2.14 /
torchvision 0.29; ``tests/train/test_zoo.py`` rebuilds each one and checks the count.

ImageNet weights: only MobileNetV2's exist offline (:data:`PRETRAINED_AVAILABLE`). Asking for
``pretrained=True`` on another architecture raises :class:`~facelens.errors.ModelError` (we never silently
train from scratch when ImageNet initialisation was requested), unless torchvision's own weight file for it was
put into ``torch.hub.get_dir()/checkpoints/`` by hand (:func:`offline_weights_file`), in which case it is loaded
from there; nothing is downloaded. The non-torchvision nets (``custom_cnn``, ``levi_hassner*``, ``lenet5``) have
no ImageNet weights at all.

Heads and dropout: a backbone ends at its last hidden layer (after its ReLU). The final "dropout, FC to the
classes" of the published nets is the :class:`~facelens.train.models.MultiTaskNet` head, whose dropout is
``model.dropout`` in the recipe (set it to 0.5 to match the papers).

Input-size independence: the nets with fully connected layers (``custom_cnn``, ``levi_hassner*``, ``lenet5``)
bring their last feature map to the grid their first FC layer was designed for with :class:`GridPool` (adaptive
average pooling written as two matrix products, so ONNX export works for any input size). At the native input
size the map already has that grid and the pooling is skipped, so the network is exactly the published one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .models import TorchvisionFeatures, create_model, register_arch

# --- registry metadata ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchInfo:
    """What a registered architecture is, in numbers.

    Attributes:
        name: Registry name.
        input_size: Native input side in pixels (what the design or the ImageNet weights assume).
        min_input: Smallest input side it accepts (the zoo tests run it there).
        params: Parameters of the 2-class classifier (backbone + one 2-way head), RGB input.
        pretrained: ImageNet weights are available offline (see :data:`PRETRAINED_AVAILABLE`).
        out_features: Width of the backbone's feature vector.
        reference: Where the design comes from, and notes on the count.

    """

    name: str
    input_size: int
    min_input: int
    params: int
    pretrained: bool
    out_features: int
    reference: str = ""


CUSTOM_CNN_REFERENCE_PARAMS = 2_041_796
"""The parameter count published for the low-cost gender CNN (RGB, 2 classes); see :class:`CustomCNN`."""

ARCH_INFO: dict[str, ArchInfo] = {
    info.name: info
    for info in (
        ArchInfo("mobilenet_v2", 224, 32, 2_226_434, True, 1280, "torchvision MobileNetV2 1.0 (recipes use 112 px)"),
        ArchInfo(
            "custom_cnn", 64, 32, 1_785_796, False, 50,
            "low-cost gender CNN; published 2,041,796 = this + 256,000 (3x3 instead of 2x2 final map, see CustomCNN)",
        ),
        ArchInfo("levi_hassner", 227, 64, 11_411_970, False, 512, "Levi & Hassner, CVPR-W 2015 (Caffe ceil pooling)"),
        ArchInfo(
            "levi_hassner_bn", 227, 64, 11_281_602, False, 256,
            "Levi-Hassner + BN, FC 512/256; the study's ~52 M implies a 384x16x16 map into FC 512 (see LeviHassner)",
        ),
        ArchInfo("lenet5", 32, 32, 61_326, False, 84, "LeCun et al. 1998, RGB input, ReLU and max-pooling"),
        ArchInfo("resnet18", 224, 32, 11_177_538, False, 512, "He et al. 2016, torchvision"),
        ArchInfo("resnet34", 224, 32, 21_285_698, False, 512, "He et al. 2016, torchvision"),
        ArchInfo("resnet50", 224, 32, 23_512_130, False, 2048, "He et al. 2016, torchvision"),
        ArchInfo("densenet121", 224, 32, 6_955_906, False, 1024, "Huang et al. 2017, torchvision"),
        ArchInfo("squeezenet1_1", 224, 32, 723_522, False, 512, "Iandola et al. 2016 (v1.1), torchvision"),
        ArchInfo(
            "stacked_ensemble", 224, 32, 18_856_962, False, 2048,
            "ResNet18 + SqueezeNet1.1 + DenseNet121 features (512 + 512 + 1024) into the linear heads",
        ),
    )
}  # fmt: skip
"""Name -> :class:`ArchInfo` for every architecture of the registry."""

PRETRAINED_AVAILABLE: frozenset[str] = frozenset(n for n, i in ARCH_INFO.items() if i.pretrained)
"""Architectures whose ImageNet weights ship offline (a Python package); today only ``mobilenet_v2``."""


def arch_info(name: str) -> ArchInfo:
    """The :class:`ArchInfo` of a registered name.

    Raises:
        ModelError: If the name has no entry.

    """
    if name not in ARCH_INFO:
        raise ModelError(f"no ArchInfo for architecture {name!r}; known: {', '.join(sorted(ARCH_INFO))}")
    return ARCH_INFO[name]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of (shared parameters counted once) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def classifier_parameters(name: str, classes: int = 2) -> int:
    """Parameters of ``name`` as a single-task classifier: backbone + one ``classes``-way head, RGB input."""
    return count_parameters(create_model(name, pretrained=False, tasks={"gender": classes}))


# --- building blocks --------------------------------------------------------------------------------------------


def _pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` averaging matrix of adaptive average pooling along one axis (PyTorch's bin edges)."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class GridPool(nn.Module):
    """Adaptive average pooling to a fixed ``grid x grid`` map, exportable to ONNX for any input size.

    Identical to :func:`torch.nn.functional.adaptive_avg_pool2d`, but computed as ``P_h @ x @ P_w^T`` with
    constant averaging matrices (the TorchScript ONNX exporter only supports adaptive pooling when the output
    divides the input). A map that already has the grid passes through untouched.
    """

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(N, C, H, W)`` to ``(N, C, grid, grid)``."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if (h, w) == (self.grid, self.grid):
            return x
        ph = _pool_matrix(h, self.grid).to(x)
        pw = _pool_matrix(w, self.grid).to(x)
        return torch.matmul(torch.matmul(ph, x), pw.t())


def _conv_block(
    cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, pool: nn.Module | None = None
) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU()]
    return layers + ([pool] if pool is not None else [])


class CustomCNN(nn.Module):
    """The low-cost gender CNN, up to its 50-d hidden layer (the head adds dropout and the class layer).

    Seven blocks of 3x3 convolution (8, 16, 32, 64, 128, 256, 512 filters, stride 1, no padding in blocks 1-3 and
    padding 1 after), each followed by batch norm, ReLU and 2x2 max-pooling with stride 2 (pool padding 1 from
    block 4 on); then flatten, dropout 0.5, FC 100, ReLU, dropout 0.5, FC 50, ReLU. A 64x64 input gives the maps
    62-31, 29-14, 12-6, 6-4, 4-3, 3-2, 2-2 (conv-pool), so the flattened feature is 512 x 2 x 2 = 2048.

    Parameter count (RGB, 2 classes, with the MultiTaskNet head): **1,785,796** = convolutions with bias
    1,573,712 + batch norm (scale, shift) 2,032 + FC 100 204,900 + FC 50 5,050 + FC 2 102. The published
    2,041,796 is exactly 256,000 = 100 x 512 x (3x3 - 2x2) more: it corresponds to a 512 x 3 x 3 final map,
    which is what the output-size formula ``ceil((H + 2p - k) / s) + 1`` gives for blocks 6 and 7 (3 -> 3
    -> 3) when the rule of PyTorch and Caffe that drops a pooling window lying wholly in the padding is not
    applied. Such a window only ever sees padding, so those 256,000 weights would multiply constants. With
    ``grid=3`` (the final map average-pooled to 3x3 by :class:`GridPool`) the count is exactly 2,041,796;
    the registered default is ``grid=2``, the map PyTorch actually computes. Conv bias on or off and batch
    norm's running statistics (buffers, 2,032 values, not parameters) do not explain the gap.

    Args:
        in_channels: 3 (RGB), 1 (grayscale) or 5 (see :mod:`facelens.train.channels`).
        grid: Side of the map fed to FC 100 (2 as computed at 64 px; 3 reproduces the published count).
        dropout: The two dropouts before FC 100 and FC 50.

    """

    FILTERS: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    cam_layer = "features"

    def __init__(self, in_channels: int = 3, grid: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(self.FILTERS):
            pad = 0 if i < 3 else 1
            layers += [
                nn.Conv2d(cin, cout, 3, 1, pad),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2, 2, padding=pad),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = GridPool(grid)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin * grid * grid, 100),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(100, 50),
            nn.ReLU(),
        )
        self.out_features = 50

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, H, W)`` to ``(N, 50)``."""
        return self.classifier(self.pool(self.features(x)))


class LeviHassner(nn.Module):
    """The Levi & Hassner (2015) age/gender CNN, up to its last hidden FC layer.

    conv 96 7x7 stride 4, ReLU, max-pool 3/2, LRN; conv 256 5x5 (pad 2), ReLU, max-pool 3/2, LRN; conv 384 3x3
    (pad 1), ReLU, max-pool 3/2; FC 512, ReLU, dropout 0.5, FC 512, ReLU (the head adds dropout and the class
    layer). Pooling rounds up as in the original Caffe model, so a 227 px input gives 56-28, 28-14, 14-7 and
    FC 512 reads 384 x 7 x 7 = 18,816 values. LRN: size 5, alpha 1e-4, beta 0.75 (Caffe's defaults there).
    Count (RGB, 2 classes): 11,411,970, of which FC 512 alone is 9,634,304.

    With ``batch_norm=True`` (``levi_hassner_bn``) the LRNs are replaced by batch norm after each of the three
    poolings and the FC layers are 512 and 256: 11,281,602 parameters at any input size (the FC input is fixed
    by :class:`GridPool`). The study's figure of about 52 M for this variant at 227 px cannot come from this
    layout: FC 512 dominates the count (384 x h x w x 512), and ~52 M needs h x w = 256, i.e. a 384 x 16 x 16
    map (for instance "same"-padded stride-4 convolution on 256 px without the third pooling: 98,304 x 512 +
    512 = 50,332,160 for FC 512, 51,979,458 in all). We keep the published Levi-Hassner layout.

    Args:
        batch_norm: Batch norm after the poolings instead of LRN, FC 512/256.
        in_channels: Input channels.

    """

    cam_layer = "features"

    def __init__(self, batch_norm: bool = False, in_channels: int = 3) -> None:
        super().__init__()

        def post(channels: int, lrn: bool) -> list[nn.Module]:
            pool = nn.MaxPool2d(3, 2, ceil_mode=True)
            if batch_norm:
                return [pool, nn.BatchNorm2d(channels)]
            return [pool, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)] if lrn else [pool]

        self.features = nn.Sequential(
            *_conv_block(in_channels, 96, 7, stride=4),
            *post(96, True),
            *_conv_block(96, 256, 5, padding=2),
            *post(256, True),
            *_conv_block(256, 384, 3, padding=1),
            *post(384, False),
        )
        fc1, fc2 = (512, 256) if batch_norm else (512, 512)
        self.pool = GridPool(7)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(384 * 7 * 7, fc1), nn.ReLU(), nn.Dropout(0.5), nn.Linear(fc1, fc2), nn.ReLU()
        )
        self.out_features = fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, H, W)`` to ``(N, out_features)``."""
        return self.classifier(self.pool(self.features(x)))


class LeNet5(nn.Module):
    """LeNet-5 up to F6: conv 6 5x5, ReLU, max-pool 2; conv 16 5x5, ReLU, max-pool 2; FC 120, ReLU, FC 84, ReLU.

    Modernised (ReLU and max-pooling for tanh and trainable subsampling; C3 fully connected; C5 as an FC layer
    on the 16 x 5 x 5 map of a 32 px input). Count (RGB, 2 classes): 61,326.
    """

    cam_layer = "features"

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(in_channels, 6, 5, pool=nn.MaxPool2d(2)), *_conv_block(6, 16, 5, pool=nn.MaxPool2d(2))
        )
        self.pool = GridPool(5)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.out_features = 84

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, H, W)`` to ``(N, 84)``."""
        return self.classifier(self.pool(self.features(x)))


# --- torchvision backbones --------------------------------------------------------------------------------------


def offline_weights_file(name: str) -> Path | None:
    """Torchvision's ImageNet weight file of ``name`` if it is already in the torch hub cache, else None.

    Nothing is downloaded; the file must have been copied there by hand (torchvision then checks its hash).
    """
    import torchvision.models as tvm

    weights = tvm.get_model_weights(name).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return path if path.is_file() else None


def _torchvision_net(name: str, pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    weights = None
    if pretrained:
        if offline_weights_file(name) is None:
            raise ModelError(
                f"{name}: no ImageNet weights are available offline (offline weights exist for "
                f"{', '.join(sorted(PRETRAINED_AVAILABLE))}); train it from scratch with model.pretrained=false"
            )
        weights = tvm.get_model_weights(name).DEFAULT
    return tvm.get_model(name, weights=weights)


def _no_imagenet(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ModelError(f"{name} has no ImageNet weights; train it from scratch with model.pretrained=false")


def _resnet(name: str, pretrained: bool) -> TorchvisionFeatures:
    net = _torchvision_net(name, pretrained)
    stem = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
    return TorchvisionFeatures(nn.Sequential(*stem), net.fc.in_features)


@register_arch("custom_cnn")
def custom_cnn(pretrained: bool = False, in_channels: int = 3, grid: int = 2) -> nn.Module:
    """The low-cost gender CNN (:class:`CustomCNN`), 50-d, 64 px; no ImageNet weights."""
    _no_imagenet("custom_cnn", pretrained)
    return CustomCNN(in_channels=in_channels, grid=grid)


@register_arch("levi_hassner")
def levi_hassner(pretrained: bool = False, in_channels: int = 3) -> nn.Module:
    """Levi & Hassner (2015) (:class:`LeviHassner`), 512-d, 227 px; no ImageNet weights."""
    _no_imagenet("levi_hassner", pretrained)
    return LeviHassner(batch_norm=False, in_channels=in_channels)


@register_arch("levi_hassner_bn")
def levi_hassner_bn(pretrained: bool = False, in_channels: int = 3) -> nn.Module:
    """Levi-Hassner with batch norm and FC 512/256 (:class:`LeviHassner`), 256-d, 227 px."""
    _no_imagenet("levi_hassner_bn", pretrained)
    return LeviHassner(batch_norm=True, in_channels=in_channels)


@register_arch("lenet5")
def lenet5(pretrained: bool = False, in_channels: int = 3) -> nn.Module:
    """LeNet-5 (:class:`LeNet5`), 84-d, 32 px; no ImageNet weights."""
    _no_imagenet("lenet5", pretrained)
    return LeNet5(in_channels=in_channels)


@register_arch("resnet18")
def resnet18(pretrained: bool = False) -> nn.Module:
    """Torchvision ResNet18 up to global pooling, 512-d."""
    return _resnet("resnet18", pretrained)


@register_arch("resnet34")
def resnet34(pretrained: bool = False) -> nn.Module:
    """Torchvision ResNet34 up to global pooling, 512-d."""
    return _resnet("resnet34", pretrained)


@register_arch("resnet50")
def resnet50(pretrained: bool = False) -> nn.Module:
    """Torchvision ResNet50 up to global pooling, 2048-d."""
    return _resnet("resnet50", pretrained)


@register_arch("densenet121")
def densenet121(pretrained: bool = False) -> nn.Module:
    """Torchvision DenseNet121 features, final ReLU and global pooling, 1024-d."""
    net = _torchvision_net("densenet121", pretrained)
    return TorchvisionFeatures(nn.Sequential(net.features, nn.ReLU()), net.classifier.in_features)


@register_arch("squeezenet1_1")
def squeezenet1_1(pretrained: bool = False) -> nn.Module:
    """Torchvision SqueezeNet 1.1 fire modules and global pooling, 512-d (its 1x1-conv classifier is dropped)."""
    net = _torchvision_net("squeezenet1_1", pretrained)
    return TorchvisionFeatures(net.features, 512)


ENSEMBLE_MEMBERS: tuple[str, ...] = ("resnet18", "squeezenet1_1", "densenet121")
"""The default members of ``stacked_ensemble`` (registered names), in concatenation order."""


class StackedEnsemble(nn.Module):
    """Several backbones side by side; their features are concatenated for the linear task heads.

    The "ensemble layer" of the stacked model is the :class:`~facelens.train.models.MultiTaskNet` head of each
    task: one linear layer on the concatenated features (2048-d for the default members). Stacking features
    rather than per-member logits keeps one model for all tasks.

    Args:
        members: Name -> backbone (each with ``out_features``); e.g. backbones of separately trained
            checkpoints, ``checkpoint_model.backbone``.
        trainable: ``"all"`` trains end to end; ``"ensemble"`` freezes every member (no gradients, batch norm
            kept in eval mode), so only the heads learn. Freezing is meant for members that were trained before
            (randomly initialised frozen members would only give random features).

    """

    @property
    def cam_layer(self) -> str:
        """Grad-CAM's feature map: the first member's ``features`` (``members.resnet18.features`` by default)."""
        name, first = next(iter(self.members.items()))
        return f"members.{name}.features" if hasattr(first, "features") else f"members.{name}"

    def __init__(self, members: dict[str, nn.Module], trainable: str = "all") -> None:
        super().__init__()
        if trainable not in ("all", "ensemble"):
            raise ModelError(f"stacked_ensemble: trainable must be 'all' or 'ensemble', not {trainable!r}")
        self.members = nn.ModuleDict(members)
        self.trainable = trainable
        self.out_features = sum(int(m.out_features) for m in self.members.values())
        if trainable == "ensemble":
            for p in self.members.parameters():
                p.requires_grad_(False)
            self.members.eval()

    def train(self, mode: bool = True) -> StackedEnsemble:
        """Set training mode; frozen members stay in eval mode."""
        super().train(mode)
        if self.trainable == "ensemble":
            self.members.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 3, H, W)`` to ``(N, out_features)``."""
        return torch.cat([m(x) for m in self.members.values()], dim=1)


@register_arch("stacked_ensemble")
def stacked_ensemble(
    pretrained: bool = False, trainable: str = "all", members: dict[str, nn.Module] | list[str] | None = None
) -> nn.Module:
    """ResNet18 + SqueezeNet1.1 + DenseNet121 (:class:`StackedEnsemble`), 2048-d, or other members.

    Args:
        pretrained: ImageNet-initialised members (raises :class:`ModelError` for a member without offline weights;
            of the registered backbones only ``mobilenet_v2`` has them).
        trainable: ``"all"`` (end to end) or ``"ensemble"`` (members frozen, only the heads train).
        members: Other members: registered architecture names, fresh (a recipe's
            ``model.options.members: [mobilenet_v2, squeezenet1_1]``), or ready backbones by name from Python
            (e.g. ``{"a": checkpoint_model.backbone}``). Default: :data:`ENSEMBLE_MEMBERS`.

    Raises:
        ModelError: If ``members`` is empty, repeats a name, or names an unknown architecture or the ensemble itself.

    """
    from .models import ARCHITECTURES

    if members is None:
        members = ENSEMBLE_MEMBERS
    if not isinstance(members, dict):
        names = list(members)
        bad = [n for n in names if n not in ARCHITECTURES or n == "stacked_ensemble"]
        if not names or bad or len(set(names)) != len(names):
            raise ModelError(
                f"stacked_ensemble: members must be distinct registered backbones (not the ensemble), got {names}; "
                f"known: {', '.join(sorted(set(ARCHITECTURES) - {'stacked_ensemble'}))}"
            )
        members = {name: ARCHITECTURES[name](pretrained=pretrained) for name in names}
    return StackedEnsemble(members, trainable=trainable)
