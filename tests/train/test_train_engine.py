from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from facelens.errors import ModelError
from facelens.train.batches import augment_batch, mixed_batches, prepare_batch
from facelens.train.config import VAL_METRICS, AugmentConfig, ConfigError, TrainConfig, load_config
from facelens.train.engine import autocast, build_model, load_checkpoint, monitored, train

SIZE = 32  # the tiny cache's crop size (conftest.SIZE)


def test_fast_dev_run_trains_checkpoints_and_resumes(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = make_config(tmp_path)
    result = train(config, progress=False, cache=tiny_cache)
    out = Path(config.train.out_dir)
    assert result.best_checkpoint == out / "best.pt" and result.best_checkpoint.is_file()
    assert result.last_checkpoint.is_file() and result.epochs_run == 1 and result.stopped == "completed"
    assert {"age_mae", "gender_acc", "race_acc", "attr_acc", "male_acc", "score"} <= set(result.best_metrics)
    assert load_config(out / "config.yaml") == config  # the resolved config beside the checkpoints
    model, cfg, ckpt = load_checkpoint(result.last_checkpoint)
    assert cfg == config and ckpt["epoch"] == 1
    assert {"model", "optimizer", "scheduler", "epoch", "config"} <= set(ckpt)

    longer = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=2))
    resumed = train(longer, resume=True, progress=False, cache=tiny_cache)
    assert resumed.epochs_run == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert torch.load(resumed.last_checkpoint, weights_only=False)["epoch"] == 2
    # resuming a finished run does nothing more
    assert train(longer, resume=True, progress=False, cache=tiny_cache).epochs_run == 2


def test_time_budget_stops_cleanly(tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]) -> None:
    config = make_config(tmp_path, max_minutes=1e-6, fast_dev_run=0)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=5))
    result = train(config, progress=False, cache=tiny_cache)
    assert result.stopped == "time_budget" and result.epochs_run == 1 and result.last_checkpoint.is_file()


def test_mixed_batches_follow_the_weights() -> None:
    sources = {"a": np.arange(0, 100), "b": np.arange(100, 110), "empty": np.arange(0)}
    batches = mixed_batches(sources, {"a": 3.0, "b": 1.0, "empty": 1.0}, batch_size=8, steps=10, seed=0, epoch=0)
    assert len(batches) == 10 and all(len(b) == 8 for b in batches)
    assert all(sum(r >= 100 for r in b) == 2 for b in batches)  # 8 * 1/4 from b, oversampled
    assert batches == mixed_batches(sources, {"a": 3.0, "b": 1.0}, 8, 10, seed=0, epoch=0)
    assert batches != mixed_batches(sources, {"a": 3.0, "b": 1.0}, 8, 10, seed=0, epoch=1)
    a_rows = [r for b in batches for r in b if r < 100]
    assert len(set(a_rows)) == 60  # a permutation: no repeats within the first pass


def test_augment_batch_is_seeded_and_normalised() -> None:
    images = torch.randint(0, 256, (4, SIZE, SIZE, 3), dtype=torch.uint8)
    a = augment_batch(images, AugmentConfig(), 24, torch.Generator().manual_seed(1))
    b = augment_batch(images, AugmentConfig(), 24, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 24, 24) and torch.equal(a, b)
    off = AugmentConfig(flip=0, scale=0, rotate=0, shift=0, brightness=0, contrast=0)
    plain = augment_batch(images, off, SIZE, torch.Generator())
    torch.testing.assert_close(plain, prepare_batch(images, SIZE), atol=1e-5, rtol=0)
    flipped = augment_batch(images, dataclasses.replace(off, flip=1.0), SIZE, torch.Generator())
    torch.testing.assert_close(flipped, prepare_batch(images, SIZE).flip(-1), atol=1e-5, rtol=0)


def test_prepare_batch_uses_imagenet_normalisation() -> None:
    grey = torch.full((1, 8, 8, 3), 124, dtype=torch.uint8)
    x = prepare_batch(grey, 8)
    expected = (124 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 0, 0], expected)
    assert prepare_batch(grey, 4).shape == (1, 3, 4, 4)


def test_missing_training_data_is_a_clear_error(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    from facelens.train.config import ConfigError

    config = make_config(tmp_path)
    only_missing = dataclasses.replace(
        config.data, datasets=(dataclasses.replace(config.data.datasets[0], id="nothing"),)
    )
    with pytest.raises(ConfigError, match="no training samples"):
        train(dataclasses.replace(config, data=only_missing), progress=False, cache=tiny_cache)


def test_fit_epochs_to_budget() -> None:
    from facelens.train.engine import fit_epochs_to_budget

    # 10 planned, 2 done, 10 min per epoch, 25 min spent of 90, 2 min reserve: 6 more fit
    assert fit_epochs_to_budget(10, 2, 600.0, 1500.0, 5400.0, 120.0) == 8
    assert fit_epochs_to_budget(10, 2, 60.0, 1500.0, 5400.0, 120.0) == 10  # never more than planned
    assert fit_epochs_to_budget(10, 2, 600.0, 5300.0, 5400.0, 120.0) == 2  # never fewer than done
    assert fit_epochs_to_budget(10, 2, 600.0, 1500.0, float("inf"), 0.0) == 10


def test_cosine_schedule_horizon_is_checkpointed() -> None:
    from facelens.train.engine import CosineWithWarmup, make_scheduler

    config = load_config_for_schedule()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, config, steps_per_epoch=10)
    lam = sched.lr_lambdas[0]
    assert isinstance(lam, CosineWithWarmup) and lam.total == 40 and lam.warmup == 5
    assert lam(0) == pytest.approx(1 / 6) and lam(5) == pytest.approx(1.0) and lam(40) == pytest.approx(0.01)
    lam.total = 20
    state = sched.state_dict()
    fresh = make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), config, 10)
    fresh.load_state_dict(state)
    assert fresh.lr_lambdas[0].total == 20


def load_config_for_schedule() -> TrainConfig:
    from facelens.train.config import OptimConfig

    return TrainConfig(optim=OptimConfig(epochs=4, warmup_epochs=0.5, min_lr_ratio=0.01))


def _with(config: TrainConfig, out_dir: Path, **sections: object) -> TrainConfig:
    """``config`` writing to ``out_dir``, with fields of sections replaced: ``optim={"lr": 0.0}``."""
    new = {name: dataclasses.replace(getattr(config, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(config, train=dataclasses.replace(config.train, out_dir=str(out_dir)), **new)


def test_on_epoch_end_sees_every_saved_epoch_and_can_stop(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", optim={"epochs": 3}, model={"arch": "lenet5"})
    seen: list[tuple[int, dict[str, float]]] = []

    def stop_after_two(epoch: int, metrics: dict[str, float]) -> bool:
        assert torch.load(Path(config.train.out_dir) / "last.pt", weights_only=False)["epoch"] == epoch  # saved
        seen.append((epoch, metrics))
        return epoch == 2

    result = train(config, progress=False, cache=tiny_cache, on_epoch_end=stop_after_two)
    assert result.stopped == "callback" and result.epochs_run == 2
    assert [e for e, _ in seen] == [1, 2]
    history = [json.loads(line) for line in (Path(config.train.out_dir) / "history.jsonl").read_text().splitlines()]
    assert [{"epoch": e, **m} for e, m in seen] == history  # the history records, as they were written
    assert {"train_loss", "lr", "val_score", "val_gender_acc"} <= set(seen[0][1])
    resumed = train(config, resume=True, progress=False, cache=tiny_cache, on_epoch_end=lambda e, m: None)
    assert resumed.stopped == "completed" and resumed.epochs_run == 3


def test_init_from_starts_from_another_checkpoints_weights(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "a", model={"arch": "lenet5"})  # a small, fast network
    source = train(config, progress=False, cache=tiny_cache).best_checkpoint
    trained = torch.load(source, weights_only=False)["model"]
    frozen = _with(config, tmp_path / "b", optim={"lr": 0.0})  # learning rate 0: the weights stay as initialised

    def weights(result_dir: str) -> dict[str, torch.Tensor]:
        model, _, _ = load_checkpoint(Path(result_dir) / "last.pt")
        return {k: v for k, v in model.named_parameters()}

    result = train(frozen, progress=False, cache=tiny_cache, init_from=source)
    assert torch.load(result.last_checkpoint, weights_only=False)["init_from"] == str(source)
    assert all(torch.equal(p, trained[k]) for k, p in weights(frozen.train.out_dir).items())
    scratch = _with(frozen, tmp_path / "c")
    train(scratch, progress=False, cache=tiny_cache)
    assert not all(torch.equal(p, trained[k]) for k, p in weights(scratch.train.out_dir).items())

    other = _with(scratch, tmp_path / "d", model={"arch": "custom_cnn"})
    with pytest.raises(ModelError, match="no backbone weight"):
        train(other, progress=False, cache=tiny_cache, init_from=source)


def test_model_options_reach_the_network_and_its_checkpoint(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    from facelens.train.config import ConfigError

    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "custom_cnn", "options": {"grid": 3}})
    result = train(config, progress=False, cache=tiny_cache)
    model, cfg, _ = load_checkpoint(result.best_checkpoint)  # rebuilt with grid=3, or the weights would not fit
    assert cfg.model.options == {"grid": 3} and model.backbone.pool.grid == 3
    assert model.backbone.classifier[2].in_features == 512 * 3 * 3

    bad = _with(config, tmp_path / "bad", model={"options": {"gird": 3}})
    with pytest.raises(ConfigError, match=r"model\.options\.gird.*grid"):
        train(bad, progress=False)  # no cache given: the option is refused before one is built

    too_many = _with(make_config(tmp_path), tmp_path / "frozen", model={"frozen_blocks": 99})
    with pytest.raises(ConfigError, match="frozen_blocks=99"):
        train(too_many, progress=False)  # refused before a cache is built, like the unknown option


def test_frozen_blocks_keep_their_weights_and_adapt_their_batchnorm_statistics(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", model={"frozen_blocks": 2})
    torch.manual_seed(config.train.seed)  # what train() does before building the network
    initial = build_model(config).state_dict()
    trained = torch.load(train(config, progress=False, cache=tiny_cache).last_checkpoint, weights_only=False)["model"]
    prefix = [f"backbone.features.{i}." for i in range(2)]
    frozen = [k for k in initial if k.startswith(tuple(prefix))]
    params = [k for k in frozen if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.equal(initial[k], trained[k]) for k in params)
    for key in ("backbone.features.0.1.running_mean", "backbone.features.2.conv.0.0.weight", "heads.gender.1.weight"):
        assert not torch.equal(initial[key], trained[key]), key  # BN statistics, later blocks and heads train
    model, cfg, _ = load_checkpoint(tmp_path / "run" / "best.pt")  # the checkpoint rebuilds with its frozen blocks
    assert cfg.model.frozen_blocks == 2
    assert not any(p.requires_grad for p in model.backbone.features[:2].parameters())


def test_bf16_precision_autocasts_the_forward_pass_and_keeps_float32_weights(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with autocast(torch.device("cpu"), precision):
            assert (a @ b).dtype == dtype, precision
    weights = {}
    for precision in ("fp32", "bf16"):
        config = _with(make_config(tmp_path), tmp_path / precision)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision))
        checkpoint = train(config, progress=False, cache=tiny_cache).last_checkpoint
        weights[precision] = torch.load(checkpoint, weights_only=False)["model"]
    conv = "backbone.features.0.0.weight"
    assert weights["bf16"][conv].dtype == torch.float32  # master weights stay float32
    assert not torch.equal(weights["bf16"][conv], weights["fp32"][conv])  # the steps did run in bfloat16
    torch.testing.assert_close(weights["bf16"][conv], weights["fp32"][conv], atol=0.05, rtol=0.05)


def test_channels_last_changes_memory_order_not_results(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    results = {
        flag: train(make_config(tmp_path / str(flag), channels_last=flag), progress=False, cache=tiny_cache)
        for flag in (True, False)
    }
    for flag, result in results.items():
        weights = torch.load(result.last_checkpoint, weights_only=False)["model"]
        conv = next(w for w in weights.values() if w.ndim == 4 and w.shape[-1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last if flag else torch.contiguous_format)
    # the same arithmetic in another order: continuous metrics agree (accuracies of a barely trained model
    # can flip on logits near 0, so they are not compared)
    nhwc, nchw = results[True].best_metrics, results[False].best_metrics
    for key in ("loss", "age_mae"):
        assert nhwc[key] == pytest.approx(nchw[key], rel=1e-2), key
    model, _, _ = load_checkpoint(results[True].best_checkpoint)  # loads into a plain NCHW model
    assert all(p.is_contiguous() for p in model.parameters())


def test_validation_reports_every_metric_per_source_beside_the_pooled_ones(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    result = train(_with(make_config(tmp_path), tmp_path / "run"), progress=False, cache=tiny_cache)
    m = result.best_metrics
    # the tiny cache validates 3 UTKFace-like rows (age, gender, race) and 3 CelebA-like rows (attributes, gender)
    assert {"utk.gender_acc", "utk.race_acc", "utk.age_mae", "celeba.gender_acc", "celeba.attr_acc"} <= set(m)
    assert not {"utk.attr_acc", "celeba.race_acc", "utk.score", "celeba.loss"} & set(m)
    assert m["gender_acc"] == pytest.approx((m["utk.gender_acc"] + m["celeba.gender_acc"]) / 2)  # 3 rows each
    assert m["race_acc"] == m["utk.race_acc"] and m["attr_acc"] == m["celeba.attr_acc"]
    assert {k for k in m if "." not in k} == set(VAL_METRICS)  # what train.monitor may name
    history = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[-1])
    assert "val_utk.gender_acc" in history


def test_monitored_metric_is_signed_so_that_larger_is_better() -> None:
    metrics = {"score": 2.0, "age_mae": 5.0, "utk.age_mae": 4.0, "utk.gender_acc": 0.9}
    assert monitored(metrics, "score") == 2.0 and monitored(metrics, "utk.gender_acc") == 0.9
    assert monitored(metrics, "age_mae") == -5.0 and monitored(metrics, "utk.age_mae") == -4.0
    assert monitored({"gender_acc": 0.8, "score": 0.8}, "utk.gender_acc") == 0.8  # one source: pooled = its own
    with pytest.raises(ConfigError, match=r"train.monitor 'utk.attr_acc' is not among this run's validation metrics"):
        monitored(metrics, "utk.attr_acc")


def test_monitor_picks_the_best_epoch_and_is_kept_on_resume(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path, monitor="utk.age_mae"), tmp_path / "run", optim={"epochs": 3})
    result = train(config, progress=False, cache=tiny_cache)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    maes = [h["val_utk.age_mae"] for h in history]
    assert len(maes) == 3 and len(set(maes)) == 3  # the epochs differ, so the choice below means something
    assert result.best_epoch == 1 + maes.index(min(maes))
    assert result.best_metrics["utk.age_mae"] == min(maes)
    ckpt = torch.load(result.last_checkpoint, weights_only=False)
    assert ckpt["monitor"] == "utk.age_mae" and ckpt["best_score"] == -min(maes)
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, monitor="score"))
    other = _with(other, tmp_path / "run", optim={"epochs": 4})
    with pytest.raises(ConfigError, match="picked its best epoch by train.monitor='utk.age_mae'"):
        train(other, resume=True, progress=False, cache=tiny_cache)


def test_monitor_on_a_source_without_validation_rows_is_refused_before_training(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = make_config(tmp_path)
    spec = dataclasses.replace(config.data.datasets[1], id="other")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, datasets=(*config.data.datasets, spec)))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, monitor="other.attr_acc")).validate()
    with pytest.raises(
        ConfigError, match=r"'other.attr_acc': other has no validation rows \(those are \['celeba', 'utk'\]\)"
    ):
        train(config, progress=False, cache=tiny_cache)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_weight_ema_copies_first_then_averages() -> None:
    from facelens.train.ema import WeightEMA

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(net, 0.75)
    assert not any(p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    net.train()(torch.randn(4, 3))  # moves the BatchNorm statistics and its step counter
    ema.update(net)
    assert torch.equal(ema.module[0].weight, net[0].weight) and ema.updates == 1  # the first update copies
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    net(torch.randn(4, 3))
    ema.update(net)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 3), 0.75 * 1.0 + 0.25 * 3.0))
    assert ema.module[1].num_batches_tracked.item() == 2  # integer buffers are copied, not averaged
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(net, 1.0)


def test_ema_weights_are_validated_saved_and_resumed(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(
        make_config(tmp_path), tmp_path / "run", optim={"epochs": 2, "ema_decay": 0.5}, model={"arch": "lenet5"}
    )
    result = train(config, progress=False, cache=tiny_cache)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert {"val_score", "val_raw_score", "val_raw_utk.age_mae"} <= set(history[0])
    ckpt = torch.load(result.last_checkpoint, weights_only=False)
    steps = history[0]["train_steps"] + history[1]["train_steps"]
    assert ckpt["ema_updates"] == steps and ckpt["train_model"] is not None
    diff = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.equal(v, ckpt["train_model"][k])]
    assert diff  # the saved (and exported) weights are the average, not the raw ones
    model, _, _ = load_checkpoint(result.last_checkpoint)
    assert torch.equal(model.state_dict()[diff[0]], ckpt["model"][diff[0]])
    longer = _with(config, tmp_path / "run", optim={"epochs": 3, "ema_decay": 0.5})
    assert train(longer, resume=True, progress=False, cache=tiny_cache).epochs_run == 3
    assert torch.load(result.last_checkpoint, weights_only=False)["ema_updates"] > steps
    plain = _with(config, tmp_path / "run", optim={"epochs": 4, "ema_decay": 0.0})
    with pytest.raises(ConfigError, match=r"trained with a weight average \(optim.ema_decay=0.5\)"):
        train(plain, resume=True, progress=False, cache=tiny_cache)


def test_a_fresh_run_refuses_a_folder_that_holds_a_run_unless_overwrite(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "lenet5"})
    train(config, progress=False, cache=tiny_cache)
    before = (tmp_path / "run" / "best.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"run already holds a training run \(last.pt, best.pt\): continue it with"):
        train(config, progress=False, cache=tiny_cache)
    assert (tmp_path / "run" / "best.pt").read_bytes() == before
    (tmp_path / "run" / "last.pt").unlink()
    with pytest.raises(ConfigError, match="holds best.pt but no last.pt to resume from"):
        train(config, resume=True, progress=False, cache=tiny_cache)
    reseeded = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=3))
    result = train(reseeded, progress=False, cache=tiny_cache, overwrite=True)
    assert result.last_checkpoint.is_file() and (tmp_path / "run" / "best.pt").read_bytes() != before


def test_resume_accepts_only_run_settings_and_names_every_other_change(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "lenet5"})
    train(config, progress=False, cache=tiny_cache)
    other = _with(config, tmp_path / "run", model={"arch": "custom_cnn", "dropout": 0.3}, optim={"epochs": 2})
    with pytest.raises(ConfigError) as err:
        train(other, resume=True, progress=False, cache=tiny_cache)
    message = str(err.value)
    assert "model.arch: 'lenet5' -> 'custom_cnn'; model.dropout: 0.1 -> 0.3)" in message and "\n" not in message
    assert "optim.epochs" not in message.split("):")[0]  # epochs may change
    with pytest.raises(ConfigError, match=r"optim.lr: 0.001 -> 0.01\)"):
        train(_with(config, tmp_path / "run", optim={"lr": 0.01, "epochs": 2}), resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"another recipe \(len\(data.datasets\): 2 -> 1\): only how long"):
        one = dataclasses.replace(config.data, datasets=config.data.datasets[:1])
        train(dataclasses.replace(config, data=one), resume=True, progress=False)
    assert not (tmp_path / "cache").exists()  # refused before a cache is built
    run_settings = {"patience": 3, "max_minutes": 30.0, "num_threads": 1, "val_batch_size": 4}
    allowed = _with(
        make_config(tmp_path, **run_settings), tmp_path / "run", model={"arch": "lenet5"}, optim={"epochs": 2}
    )
    assert train(allowed, resume=True, progress=False, cache=tiny_cache).epochs_run == 2


def test_a_smoke_checkpoint_cannot_be_resumed_as_a_full_run(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "lenet5"})  # fast_dev_run=2
    train(config, progress=False, cache=tiny_cache)
    full = _with(make_config(tmp_path, fast_dev_run=0), tmp_path / "run", model={"arch": "lenet5"}, optim={"epochs": 2})
    with pytest.raises(ConfigError, match=r"run/last.pt is a smoke run \(train.fast_dev_run=2: that many batches"):
        train(full, resume=True, progress=False, cache=tiny_cache)


def test_a_checkpoint_whose_weights_do_not_fit_is_a_one_line_error(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "lenet5"})
    last = train(config, progress=False, cache=tiny_cache).last_checkpoint
    ckpt = torch.load(last, weights_only=False)
    ckpt["model"]["heads.race.1.weight"] = torch.zeros(5, 3)  # e.g. the network's code changed since
    torch.save(ckpt, last)
    longer = _with(config, tmp_path / "run", optim={"epochs": 2})
    pattern = r"last.pt: its saved network does not fit this recipe's network \(Error\(s\) in loading state_dict"
    with pytest.raises(ModelError, match=pattern) as err:
        train(longer, resume=True, progress=False, cache=tiny_cache)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match=pattern):
        load_checkpoint(last)


@pytest.mark.parametrize("kind", ["random", "onnx", "state_dict", "missing"])
def test_load_checkpoint_refuses_files_that_are_not_training_checkpoints(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pt"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "onnx":
        path.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x032.0" + bytes(100))
    elif kind == "state_dict":
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    expected = "no such checkpoint file" if kind == "missing" else "is not a facelens training checkpoint"
    with pytest.raises(ModelError, match=expected):
        load_checkpoint(path)


def test_a_cache_without_validation_rows_is_refused_before_training(
    tmp_path: Path, make_config: Callable[..., TrainConfig]
) -> None:
    from conftest import make_tiny_cache

    cache = make_tiny_cache(tmp_path / "noval")
    labels = dict(np.load(cache / "labels.npz"))
    labels["split"] = np.where(labels["split"] == "val", "train", labels["split"])
    np.savez(cache / "labels.npz", **labels)
    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "lenet5"})
    with pytest.raises(ConfigError, match="has no validation rows: the loop picks best.pt and early-stops on them"):
        train(config, progress=False, cache=cache)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_require_sources_refuses_a_cache_without_rows_of_a_weighted_source(
    tmp_path: Path, tiny_cache: Path, make_config: Callable[..., TrainConfig]
) -> None:
    config = _with(make_config(tmp_path), tmp_path / "run", model={"arch": "lenet5"})
    extra = dataclasses.replace(config.data.datasets[1], id="missing")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, datasets=(*config.data.datasets, extra)))
    with pytest.raises(ConfigError, match=r"no training samples for the source\(s\) \['missing'\] \(weight > 0\)"):
        train(config, progress=False, cache=tiny_cache, require_sources=True)
    assert train(config, progress=False, cache=tiny_cache).epochs_run == 1  # a view may lack a source's rows
