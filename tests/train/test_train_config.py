from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from facelens.errors import FaceLensError
from facelens.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

MINIMAL = """
name: t
data:
  datasets:
    - {name: utkface, root: /data/utk}
optim:
  lr: 0.01
  epochs: 3
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


TRAIN_RECIPES = sorted(p for p in RECIPES.glob("*.yaml") if not p.name.startswith("detector"))
"""The multi-task training recipes (``detector*.yaml`` are ``facelens train-detector`` recipes, tested there)."""


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_load(recipe: Path) -> None:
    config = load_config(recipe)
    assert config.data.datasets
    assert config.model.arch


def test_yaml_supplies_values_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.optim.lr == 0.01 and config.optim.epochs == 3
    assert config.optim.batch_size == TrainConfig().optim.batch_size
    assert config.preprocess.size == 112
    assert config.data.datasets[0].key == "utkface"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + "bogus: 1\n", "'bogus'"),
        (MINIMAL.replace("lr: 0.01", "lrr: 0.01"), "'optim.lrr'"),
        (MINIMAL.replace("root: /data/utk", "root: /data/utk, colour: red"), "'data.datasets[0].colour'"),
    ],
)
def test_unknown_key_is_an_error_naming_it(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text))


def test_config_error_is_a_facelens_error() -> None:
    assert issubclass(ConfigError, FaceLensError)


def test_wrong_type_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="optim.epochs"):
        load_config(write(tmp_path, MINIMAL.replace("epochs: 3", "epochs: three")))


def test_invalid_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schedule"):
        load_config(write(tmp_path, MINIMAL + "  schedule: linear\n"))
    with pytest.raises(ConfigError, match="model.frozen_blocks must be >= 0"):
        load_config(write(tmp_path, MINIMAL), ["model.frozen_blocks=-1"])
    assert load_config(write(tmp_path, MINIMAL), ["train.precision=bf16"]).train.precision == "bf16"
    with pytest.raises(ConfigError, match=r"train.precision must be one of \['fp32', 'bf16'\], not 'fp16'"):
        load_config(write(tmp_path, MINIMAL), ["train.precision=fp16"])
    with pytest.raises(ConfigError, match=r"preprocess: detector 'yunet' takes no option 'bogus'; its options: "):
        load_config(write(tmp_path, MINIMAL + "preprocess:\n  detector_options: {pad: auto, bogus: 1}\n"))
    with pytest.raises(ConfigError, match=r"preprocess: unknown detector 'nope'"):
        load_config(write(tmp_path, MINIMAL), ["preprocess.detector=nope"])
    assert load_config(write(tmp_path, MINIMAL), ["optim.ema_decay=0.999"]).optim.ema_decay == 0.999
    for bad in ("1.0", "-0.1"):
        with pytest.raises(ConfigError, match=r"optim.ema_decay must be in \[0, 1\) \(0 = off\), got"):
            load_config(write(tmp_path, MINIMAL), [f"optim.ema_decay={bad}"])


@pytest.mark.parametrize("monitor", ["score", "attr_acc", "age_mae", "loss", "utkface.gender_acc", "utkface.age_mae"])
def test_monitor_names_a_validation_metric_of_the_recipe(tmp_path: Path, monitor: str) -> None:
    assert load_config(write(tmp_path, MINIMAL), [f"train.monitor={monitor}"]).train.monitor == monitor


@pytest.mark.parametrize("monitor", ["val_score", "gender", "utkface.score", "utkface.loss", "celeba.gender_acc"])
def test_monitor_outside_the_recipes_metrics_is_refused(tmp_path: Path, monitor: str) -> None:
    with pytest.raises(ConfigError, match=r"train.monitor .* is not a validation metric of this recipe.*\['utkface'\]"):
        load_config(write(tmp_path, MINIMAL), [f"train.monitor={monitor}"])


def test_overrides(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), ["optim.lr=0.5", "train.max_minutes=30", "model.pretrained=false"])
    assert config.optim.lr == 0.5
    assert config.train.max_minutes == 30.0
    assert config.model.pretrained is False
    with pytest.raises(ConfigError, match="optim.nope"):
        apply_overrides(config, ["optim.nope=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(config, ["optim.lr"])


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), ["optim.loss_weights.age=2.0"])
    again = load_config(save_config(config, tmp_path / "out" / "config.yaml"))
    assert again == config
    assert config_from_dict(config_to_dict(config)) == config


def test_model_options_are_free_keys_with_yaml_values(tmp_path: Path) -> None:
    text = MINIMAL + "model:\n  arch: custom_cnn\n  options: {grid: 3, in_channels: 3}\n"
    config = load_config(write(tmp_path, text))
    assert config.model.options == {"grid": 3, "in_channels": 3}
    assert load_config(save_config(config, tmp_path / "out.yaml")) == config
    assert TrainConfig().model.options == {}
    over = apply_overrides(config, ["model.options.grid=2", "model.options.trainable=ensemble"])
    assert over.model.options == {"grid": 2, "in_channels": 3, "trainable": "ensemble"}
    assert apply_overrides(config, ["model.options={grid: 1}"]).model.options == {"grid": 1}
    assert apply_overrides(config, ["preprocess.detector_options.pad=0"]).preprocess.detector_options["pad"] == 0
    with pytest.raises(ConfigError, match="'model.nope'"):  # only mapping-valued fields take new keys
        apply_overrides(config, ["model.nope=1"])
    with pytest.raises(ConfigError, match="model.options: expected a mapping"):
        load_config(write(tmp_path, MINIMAL + "model:\n  options: [3]\n"))


def test_config_refuses_input_channels_the_engine_cannot_feed(
    make_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    five = dataclasses.replace(config, model=dataclasses.replace(config.model, options={"in_channels": 5}))
    with pytest.raises(ConfigError, match="in_channels"):
        five.validate()
    three = dataclasses.replace(config, model=dataclasses.replace(config.model, options={"in_channels": 3}))
    assert three.validate() is three


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.device=gpu", "train.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', not 'gpu'"),
        ("train.device=cuda:x", "train.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', not 'cuda:x'"),
        ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
        ("optim.lr=-1", "optim.lr must be > 0, got -1.0"),
        ("optim.lr=.nan", "optim.lr must be > 0, got nan"),
        ("train.val_batch_size=0", "train.val_batch_size must be >= 1, got 0"),
        ("train.num_workers=-1", "train.num_workers must be >= 0, got -1"),
        ("train.num_threads=-2", "train.num_threads must be >= 0 (0 = one per CPU core), got -2"),
        ("train.patience=-1", "train.patience must be >= 0 (0 = off), got -1"),
        ("augment.flip=2", "augment.flip must be in [0, 1], got 2.0"),
        ("data.val_fraction=-0.05", "data.val_fraction must be in (0, 1) (every epoch validates on 'val' rows), got"),
        ("data.val_fraction=0", "data.val_fraction must be in (0, 1) (every epoch validates on 'val' rows), got 0.0"),
        ("data.test_fraction=-0.1", "data.test_fraction must be in [0, 1), got -0.1"),
        ("data.datasets=[{name: utkface, root: x, max_samples: -5}]", "data.datasets[0].max_samples must be >= 1 or"),
        ("data.datasets=[{name: utkface, root: x, max_samples: 0}]", "max_samples must be >= 1 or null (all), got 0"),
    ],
)
def test_out_of_range_values_are_one_line_errors(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL), [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_names_are_checked_for_form_only(tmp_path: Path, device: str) -> None:
    # whether the machine has the device is checked when training starts: a checkpoint's config loads anywhere
    assert load_config(write(tmp_path, MINIMAL), [f"train.device={device}"]).train.device == device


def test_float_fields_accept_numbers_yaml_reads_as_strings(tmp_path: Path) -> None:
    text = MINIMAL.replace("lr: 0.01", "lr: 3e-4\n  weight_decay: 1E-2\n  loss_weights: {age: 5e-1}")
    config = load_config(write(tmp_path, text), ["optim.min_lr_ratio=1e-3", "augment.rotate=+1e1"])
    assert config.optim.lr == 3e-4 and config.optim.weight_decay == 0.01 and config.optim.loss_weights["age"] == 0.5
    assert config.optim.min_lr_ratio == 1e-3 and config.augment.rotate == 10.0
    assert load_config(save_config(config, tmp_path / "out.yaml")) == config
    for bad in ("fast", "1e-3x", "inf", "nan"):
        with pytest.raises(ConfigError, match=f"optim.lr: expected a number, got str '{bad}'"):
            load_config(write(tmp_path, MINIMAL), [f"optim.lr={bad}"])
    with pytest.raises(ConfigError, match="optim.epochs: expected an integer, got str '1e1'"):
        load_config(write(tmp_path, MINIMAL), ["optim.epochs=1e1"])
