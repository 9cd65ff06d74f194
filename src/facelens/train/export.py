"""Export a training checkpoint to a self-describing ONNX model for the facelens runtime.

The exported graph takes the normalised ``(N, 3, S, S)`` float32 input ``input`` and returns PROBABILITIES
(softmax or sigmoid inside the graph): ``age_probs`` ``(N, 101)`` over the years 0..100, ``gender_probs``
``(N, 2)``, ``race_probs`` ``(N, 5)`` and ``attr_probs`` ``(N, 40)``. The batch axis is dynamic. Preprocessing
(input size, ImageNet mean/std, alignment template and crop size), labels, age groups, licence and validation
metrics are stored as :class:`facelens.heads.metadata.ModelMetadata` in the model's ``metadata_props``, together
with the data settings that decided the training run's train/val/test split (``facelens.extra.split``, see
:func:`facelens.eval.split.split_settings`), so that ``facelens eval`` reproduces the held-out split of the run
that was actually trained, ``--set`` overrides included.

:func:`export_onnx` writes nothing at ``--out`` until everything that can fail has succeeded: the graph and its
metadata go to a temporary file beside it, which then replaces ``--out`` in one step.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..eval.split import SPLIT_KEY, split_settings
from ..heads.metadata import InputSpec, ModelMetadata, OutputSpec
from ..labels import AGE_GROUP_SCHEMES, CELEBA_ATTRIBUTES, GENDERS, RACES
from .cache import get_template
from .config import TrainConfig
from .engine import load_checkpoint
from .models import AGE_MIN, IMAGENET_MEAN, IMAGENET_STD, MultiTaskNet

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAMES: dict[str, str] = {
    "age": "age_probs",
    "gender": "gender_probs",
    "race": "race_probs",
    "attributes": "attr_probs",
}
"""Task -> name of its probability output."""

OUTPUT_LABELS: dict[str, tuple[str, ...]] = {
    "age": (),
    "gender": GENDERS,
    "race": RACES,
    "attributes": CELEBA_ATTRIBUTES,
}

LICENSE_TEXT = (
    "Model code: MIT (facelens). {backbone} The weights were trained on UTKFace and CelebA, which are released "
    "for NON-COMMERCIAL RESEARCH PURPOSES ONLY; check their terms before any commercial use of this model. No "
    "training images are included."
)


def license_text(arch: str, pretrained: bool) -> str:
    """The licence note stored in a model's metadata, naming how its backbone was initialised."""
    if pretrained:
        backbone = f"Backbone {arch} initialised from torchvision's ImageNet weights (BSD-3)."
    else:
        backbone = f"Backbone {arch} trained from scratch."
    return LICENSE_TEXT.format(backbone=backbone)


class ProbabilityNet(nn.Module):
    """Wraps a :class:`MultiTaskNet` so that it returns probabilities as a tuple in task order."""

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__()
        self.net = net
        self.tasks = net.tasks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return one probability tensor per task (softmax; sigmoid for attributes)."""
        logits = self.net(x)
        return tuple(
            torch.sigmoid(logits[t]) if t == "attributes" else torch.softmax(logits[t], dim=1) for t in self.tasks
        )


def train_command(config: TrainConfig, recorded: Any = None) -> str:
    """The ``facelens train`` command of a run: the one its checkpoint recorded, else the recipe's plain command.

    Args:
        config: The run's resolved config.
        recorded: The checkpoint's ``"command"`` entry (the command line ``facelens train`` recorded); None for
            checkpoints of older versions, or of runs started from Python.

    """
    if isinstance(recorded, str) and recorded.strip():
        return recorded.strip()
    return f"facelens train --config recipes/{config.name}.yaml"


def build_metadata(
    config: TrainConfig,
    tasks: tuple[str, ...],
    metrics: dict[str, Any],
    version: str,
    test_time_flip: bool = False,
    command: str | None = None,
) -> ModelMetadata:
    """Build the :class:`ModelMetadata` of a model trained with ``config``.

    ``test_time_flip`` tells the head runtime to average each face with its mirror image (two passes per face).
    ``command`` is the training command to record (default: :func:`train_command` of the recipe). The data
    settings that decided the split are stored as ``extra["split"]`` (JSON of
    :func:`facelens.eval.split.split_settings`).
    """
    size = config.model.input_size
    alignment = {**get_template(config.preprocess.template).to_dict(), "size": size}
    datasets = ", ".join(sorted({d.name for d in config.data.datasets}))
    return ModelMetadata(
        name=f"facelens-{config.name}",
        version=version,
        input=InputSpec(name=INPUT_NAME, size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        alignment=alignment,
        outputs=tuple(OutputSpec(OUTPUT_NAMES[t], t, OUTPUT_LABELS[t]) for t in tasks),
        age_min=AGE_MIN,
        age_groups={k: [list(g) for g in v] for k, v in AGE_GROUP_SCHEMES.items()},
        license=license_text(config.model.arch, config.model.pretrained),
        description=(
            f"{config.model.arch} multi-task face model ({', '.join(tasks)}) trained by facelens.train on {datasets}"
        ),
        test_time_flip=test_time_flip,
        metrics=metrics,
        extra={
            "arch": config.model.arch,
            "recipe": config.name,
            "datasets": datasets,
            "train_command": command or train_command(config),
            SPLIT_KEY: json.dumps(split_settings(config.data), sort_keys=True),
        },
    )


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facelens")
    except PackageNotFoundError:
        return "0"


def write_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Replace the ``facelens.*`` metadata of an ONNX file with ``props`` (other keys are kept)."""
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if not p.key.startswith("facelens.")]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.append(p)
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read the :class:`ModelMetadata` of an exported model."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=str(path))


def export_onnx(
    checkpoint: str | Path,
    out_path: str | Path,
    metrics: dict[str, Any] | None = None,
    version: str | None = None,
    int8: bool = False,
    test_time_flip: bool = False,
    calibrate_interval: bool = False,
) -> Path:
    """Export a checkpoint to ONNX with probability outputs and facelens metadata.

    Args:
        checkpoint: A ``.pt`` written by :func:`facelens.train.engine.train`.
        out_path: Destination ``.onnx`` file.
        metrics: Metrics to record (default: the checkpoint's validation metrics).
        version: Model version string (default: the installed facelens version).
        int8: Also quantise weights to int8 (:func:`quantize_int8` with its default operators), in place.
        test_time_flip: Mark the model for test-time flip: the runtime averages every face with its mirror image
            (about twice the head time; measured on the shipped weights in
            ``docs/models/variants/utkface_test_flip.json``, summed up in the README).
        calibrate_interval: Fit the age interval's central mass on the validation faces of the checkpoint's
            training cache (:mod:`facelens.train.calibrate`; the cache must still exist) so that the intervals
            hold the nominal 80% of true ages there.

    Returns:
        ``out_path``. It is only replaced once the whole export succeeded: on an error (e.g. the training cache
        that ``calibrate_interval`` needs is gone) an existing file there is left as it was.

    Raises:
        ConfigError: If ``calibrate_interval`` cannot find the training cache or its validation faces.

    """
    model, config, ckpt = load_checkpoint(checkpoint, "cpu")
    wrapped = ProbabilityNet(model).eval()
    if metrics is None:
        metrics = {f"val_{k}": round(float(v), 5) for k, v in ckpt.get("metrics", {}).items()}
        metrics["epoch"] = int(ckpt.get("epoch", 0))
    command = train_command(config, ckpt.get("command"))
    meta = build_metadata(config, wrapped.tasks, metrics, version or _package_version(), test_time_flip, command)
    if calibrate_interval:  # needs the training cache: may fail, so before anything is written
        from .calibrate import fit_interval_mass, validation_age_probs

        probs, ages = validation_age_probs(checkpoint)
        meta = replace(meta, interval_mass=fit_interval_mass(probs, ages, meta.age_min, meta.interval_coverage))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.{secrets.token_hex(4)}.tmp.onnx")
    try:
        _write_onnx(wrapped, config.model.input_size, tmp)
        write_metadata(tmp, meta.to_props())
        if int8:
            quantize_int8(tmp, tmp)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _write_onnx(wrapped: ProbabilityNet, size: int, path: Path) -> None:
    """Trace ``wrapped`` to an ONNX graph at ``path`` (dynamic batch axis, opset :data:`OPSET`)."""
    names = [OUTPUT_NAMES[t] for t in wrapped.tasks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(
            wrapped,
            (torch.zeros(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
            do_constant_folding=True,
        )


DEFAULT_INT8_OPS: tuple[str, ...] = ("MatMul", "Gemm")
"""Operators :func:`quantize_int8` quantises by default. Measured on this project's MobileNetV2 (112 px, ORT 1.32,
2-core CPU): also quantising ``Conv`` shrinks the file from 9.6 MB to 2.6 MB but ONNX Runtime's ``ConvInteger`` ran
about 10x slower than float and moved probabilities by up to 0.27; the heads alone stay within 0.003."""


def quantize_int8(
    src: str | Path, dst: str | Path, op_types: tuple[str, ...] | None = DEFAULT_INT8_OPS, per_channel: bool = False
) -> Path:
    """Dynamic int8 weight quantisation with ONNX Runtime, keeping the facelens metadata.

    Args:
        src: Float ONNX model.
        dst: Output path (may equal ``src``).
        op_types: Operator types to quantise (:data:`DEFAULT_INT8_OPS`; ``None`` = ONNX Runtime's default set,
            which includes ``Conv``).
        per_channel: Quantise weights per output channel.

    Returns:
        ``dst``.

    """
    import shutil
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q.onnx"
        quantize_dynamic(
            src,
            out,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=list(op_types) if op_types else None,
        )
        meta = {k: v for k, v in props.items() if k.startswith("facelens.")}
        meta["facelens.extra.quantization"] = "dynamic-int8"
        meta["facelens.extra.quantized_ops"] = ",".join(op_types) if op_types else "onnxruntime-default"
        write_metadata(out, meta)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(out, dst)
    return dst
