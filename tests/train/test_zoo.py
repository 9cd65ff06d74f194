"""The model zoo: every registered architecture builds, trains, has its documented size and exports to ONNX."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facelens.errors import ModelError
from facelens.train import channels, zoo
from facelens.train.export import OPSET, ProbabilityNet
from facelens.train.models import ARCHITECTURES, TASK_OUTPUTS, MultiTaskNet, create_model

ARCHS = sorted(ARCHITECTURES)


def small_input(arch: str, n: int = 2, c: int = 3) -> torch.Tensor:
    s = zoo.arch_info(arch).min_input
    return torch.randn(n, c, s, s, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", ARCHS)
def test_documented_info_matches_the_built_model(arch: str) -> None:
    info = zoo.arch_info(arch)
    model = create_model(arch, pretrained=False, tasks={"gender": 2})
    assert zoo.count_parameters(model) == info.params == zoo.classifier_parameters(arch)
    assert model.backbone.out_features == info.out_features
    assert info.name == arch and info.min_input <= info.input_size
    assert info.pretrained == (arch in zoo.PRETRAINED_AVAILABLE)


def test_every_info_is_registered_and_only_mobilenet_has_offline_weights() -> None:
    assert set(zoo.ARCH_INFO) == set(ARCHITECTURES)
    assert zoo.PRETRAINED_AVAILABLE == {"mobilenet_v2"}
    with pytest.raises(ModelError, match="no ArchInfo"):
        zoo.arch_info("resnet9000")


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_at_the_smallest_input(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False).train()
    out = model(small_input(arch))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, w) for k, w in TASK_OUTPUTS.items()}
    sum(v.square().mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_export_matches_pytorch(arch: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = ProbabilityNet(create_model(arch, pretrained=False)).eval()
    x = small_input(arch)
    path = tmp_path / f"{arch}.onnx"
    names = ["age", "gender", "race", "attributes"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (x[:1],), str(path), dynamo=False, opset_version=OPSET, input_names=["input"], output_names=names,
            dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        )  # fmt: skip
    with torch.no_grad():
        expected = [t.numpy() for t in net(x)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})
    for name, e, g in zip(names, expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-4, err_msg=name)


@pytest.mark.parametrize(("arch", "grid"), [("custom_cnn", 2), ("levi_hassner", 7), ("lenet5", 5)])
def test_native_input_needs_no_grid_pooling(arch: str, grid: int) -> None:
    backbone = ARCHITECTURES[arch](pretrained=False).eval()
    s = zoo.arch_info(arch).input_size
    with torch.no_grad():
        assert tuple(backbone.features(torch.zeros(1, 3, s, s)).shape[-2:]) == (grid, grid)


def test_custom_cnn_count_versus_the_published_one() -> None:
    ours = zoo.arch_info("custom_cnn").params
    assert ours == 1_785_796
    assert zoo.CUSTOM_CNN_REFERENCE_PARAMS - ours == 100 * 512 * (3 * 3 - 2 * 2) == 256_000
    reference = MultiTaskNet(zoo.CustomCNN(grid=3), tasks={"gender": 2})
    assert zoo.count_parameters(reference) == zoo.CUSTOM_CNN_REFERENCE_PARAMS == 2_041_796
    gray = MultiTaskNet(zoo.CustomCNN(in_channels=1), tasks={"gender": 2})
    assert zoo.count_parameters(gray) == ours - 2 * 9 * 8  # two fewer input channels in the first conv


@pytest.mark.parametrize("size", [1, 2, 3, 5, 13, 14])
def test_grid_pool_is_adaptive_average_pooling(size: int) -> None:
    x = torch.randn(2, 4, size, size + 3)
    np.testing.assert_allclose(zoo.GridPool(3)(x).numpy(), F.adaptive_avg_pool2d(x, 3).numpy(), atol=1e-6)


def test_pretrained_without_offline_weights_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert zoo.offline_weights_file("resnet18") is None
    with pytest.raises(ModelError, match=r"resnet18: no ImageNet weights are available offline.*pretrained=false"):
        create_model("resnet18", pretrained=True)
    for arch in ("custom_cnn", "levi_hassner", "lenet5"):
        with pytest.raises(ModelError, match="no ImageNet weights"):
            create_model(arch, pretrained=True)


def test_stacked_ensemble_can_train_only_the_ensemble_layer() -> None:
    torch.manual_seed(0)
    backbone = zoo.stacked_ensemble(trainable="ensemble")
    model = MultiTaskNet(backbone, tasks={"gender": 2}).train()
    assert not backbone.members.training and model.heads.training
    assert zoo.count_parameters(model, trainable_only=True) == 2048 * 2 + 2
    model(small_input("stacked_ensemble"))["gender"].sum().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert model.heads["gender"][1].weight.grad is not None
    with pytest.raises(ModelError, match="trainable"):
        zoo.stacked_ensemble(trainable="some")


def test_stacked_ensemble_takes_ready_members() -> None:
    members = {"a": zoo.lenet5(), "b": zoo.custom_cnn()}
    backbone = zoo.stacked_ensemble(members=members)
    assert backbone.out_features == 84 + 50
    assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, 134)


def test_stacked_ensemble_members_by_name_as_a_recipe_gives_them() -> None:
    net = create_model("stacked_ensemble", pretrained=False, options={"members": ["lenet5", "custom_cnn"]})
    assert list(net.backbone.members) == ["lenet5", "custom_cnn"] and net.backbone.out_features == 84 + 50
    assert net.backbone.cam_layer == "members.lenet5.features"
    assert zoo.stacked_ensemble().cam_layer == "members.resnet18.features"  # the default members
    for members in ([], ["lenet5", "lenet5"], ["lenet6"], ["stacked_ensemble"]):
        with pytest.raises(ModelError, match="members must be distinct registered backbones"):
            zoo.stacked_ensemble(members=members)


# --- channels --------------------------------------------------------------------------------------------------


def square_image(n: int = 2, s: int = 32) -> np.ndarray:
    img = np.zeros((n, s, s, 3), np.uint8)
    img[:, 8:24, 8:24] = (100, 200, 40)
    return img


def test_five_channel_input() -> None:
    img = square_image()
    five = channels.five_channel(img)
    assert five.shape == (2, 32, 32, 5) and five.dtype == np.uint8
    np.testing.assert_array_equal(five[..., :3], img)
    assert five[0, 16, 16, 3] == 152  # round(0.30 * 100 + 0.59 * 200 + 0.11 * 40)
    edges = five[0, ..., 4]
    assert set(np.unique(edges)) == {0, 255}
    assert edges[8:24, 8:24].any() and not edges[:5].any() and not edges[12:20, 12:20].any()
    x = channels.prepare_channels(img, 5)
    assert x.shape == (2, 5, 32, 32)
    assert float(x[0, 4, 0, 0]) == 0.0 and float(x[0, 3, 0, 0]) == pytest.approx(-0.4592 / 0.226, abs=1e-4)
    assert channels.prepare_channels(img, 1).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError):
        channels.five_channel(img[..., 0])


@pytest.mark.parametrize("arch", ARCHS)
def test_widened_first_conv_keeps_rgb_and_averages_the_extra_filters(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False, tasks={"gender": 2}).eval()
    names = channels.input_conv_names(model.backbone)
    old = [model.backbone.get_submodule(n).weight.detach().clone() for n in names]
    x3 = small_input(arch, n=1)
    with torch.no_grad():
        ref = model(x3)["gender"]
        channels.widen_first_conv(model.backbone, 5)
        for n, w in zip(names, old, strict=True):
            new = model.backbone.get_submodule(n).weight
            assert new.shape[1] == 5
            torch.testing.assert_close(new[:, :3], w)
            torch.testing.assert_close(new[:, 3], w.mean(1))
            torch.testing.assert_close(new[:, 4], w.mean(1))
        x5 = torch.cat([x3, torch.zeros_like(x3[:, :2])], 1)
        torch.testing.assert_close(model(x5)["gender"], ref, atol=1e-4, rtol=1e-4)


def test_grayscale_conv_sums_the_rgb_filters() -> None:
    torch.manual_seed(0)
    rgb = create_model("resnet18", pretrained=False, tasks={"gender": 2}).eval()
    gray = copy.deepcopy(rgb)
    channels.widen_first_conv(gray.backbone, 1)
    assert gray.backbone.features[0].weight.shape[1] == 1
    g = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gray(g)["gender"], rgb(g.expand(-1, 3, -1, -1))["gender"], atol=1e-4, rtol=1e-4)
    assert channels.create_model_with_channels("lenet5", 1).backbone.features[0].in_channels == 1
    assert channels.gray_to_rgb(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)
    with pytest.raises(ModelError):
        channels.widen_first_conv(zoo.lenet5(), 2)
