"""The metadata every facelens ONNX model carries, so preprocessing travels with the weights.

Stored as ONNX ``metadata_props`` (string key -> string value). Keys are prefixed ``facelens.``; structured values
are JSON. :meth:`ModelMetadata.from_props` refuses a model without the required keys, with a message that names
what is missing, and one whose values cannot be used (three positive ``std`` values, labels for every class
output, at least one measured metric...); :func:`facelens.heads.runtime.read_metadata` also checks them against the
graph's own inputs and outputs. The training code writes it with :meth:`ModelMetadata.to_props` at export time.

Optional ``facelens.extra.*`` keys are free-form strings kept in :attr:`ModelMetadata.extra` (the card lists them).
The exporter writes ``recipe``, ``datasets``, ``train_command`` and ``split``: JSON of the data settings that decided
the training run's train/val/test split (:func:`facelens.eval.split.split_settings`), from which ``facelens eval``
reproduces the held-out split; models without it fall back to ``recipes/<recipe>.yaml``.

Outputs are probabilities (softmax / sigmoid are part of the exported graph). Each output has a ``task``:

- ``age``: ``(N, K)`` distribution over integer years ``age_min .. age_min + K - 1``.
- ``gender``: ``(N, 2)`` softmax over :data:`facelens.labels.GENDERS` (labels: those two, in output order).
- ``race``: ``(N, 5)`` softmax over :data:`facelens.labels.RACES` (labels: those five, in output order).
- ``attributes``: ``(N, K)`` independent sigmoids, one per label (the shipped model: the 40
  :data:`facelens.labels.CELEBA_ATTRIBUTES`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError
from ..labels import GENDERS, RACES

SCHEMA_VERSION = "1"
TASKS = ("age", "gender", "race", "attributes")
REQUIRED_KEYS = (
    "facelens.schema",
    "facelens.name",
    "facelens.input",
    "facelens.alignment",
    "facelens.outputs",
    "facelens.metrics",
)
CLASS_LABELS: dict[str, tuple[str, ...]] = {"gender": GENDERS, "race": RACES}
"""The labels (in any order) a gender or race output must carry."""


@dataclass(frozen=True)
class InputSpec:
    """How to turn an aligned uint8 RGB crop into the model's input tensor.

    ``x = (pixel / 255 - mean) / std`` per channel, layout NCHW float32, channel order RGB.
    """

    name: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    color: str = "RGB"


@dataclass(frozen=True)
class OutputSpec:
    """One output tensor of the model and the task it answers."""

    name: str
    task: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to run a head model, read from / written to ONNX metadata.

    The age interval of a face spans the central ``interval_mass`` of its predicted distribution (None: the
    nominal ``interval_coverage`` itself). ``facelens export --calibrate-interval`` fits ``interval_mass`` on the
    validation faces of the training data so that the intervals hold ``interval_coverage`` of their true ages.
    """

    name: str
    version: str
    input: InputSpec
    alignment: dict[str, Any]
    outputs: tuple[OutputSpec, ...]
    age_min: int = 0
    age_groups: dict[str, list[list[int]]] = field(default_factory=dict)
    interval_coverage: float = 0.8
    interval_mass: float | None = None
    test_time_flip: bool = False
    license: str = ""
    description: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this model answers, in output order."""
        return tuple(o.task for o in self.outputs)

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` key/value strings."""
        props = {
            "facelens.schema": SCHEMA_VERSION,
            "facelens.name": self.name,
            "facelens.version": self.version,
            "facelens.input": json.dumps(
                {
                    "name": self.input.name,
                    "size": self.input.size,
                    "mean": list(self.input.mean),
                    "std": list(self.input.std),
                    "layout": self.input.layout,
                    "color": self.input.color,
                }
            ),
            "facelens.alignment": json.dumps(self.alignment),
            "facelens.outputs": json.dumps(
                [{"name": o.name, "task": o.task, "labels": list(o.labels)} for o in self.outputs]
            ),
            "facelens.age": json.dumps(
                {
                    "min": self.age_min,
                    "groups": self.age_groups,
                    "interval_coverage": self.interval_coverage,
                    **({} if self.interval_mass is None else {"interval_mass": self.interval_mass}),
                }
            ),
            "facelens.test_time_flip": "true" if self.test_time_flip else "false",
            "facelens.license": self.license,
            "facelens.description": self.description,
            "facelens.metrics": json.dumps(self.metrics),
        }
        props.update({f"facelens.extra.{k}": v for k, v in self.extra.items()})
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelMetadata:
        """Parse ONNX ``metadata_props``.

        Args:
            props: The key/value strings.
            source: Name of the file, for error messages.

        Raises:
            ModelError: If a required key is missing or a value is malformed.

        """
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise ModelError(
                f"{source} is not a facelens model: its ONNX metadata lacks {', '.join(missing)} "
                "(export it with facelens.train.export so input size, normalisation, alignment and labels "
                "travel with the weights)"
            )
        if props["facelens.schema"] != SCHEMA_VERSION:
            raise ModelError(f"{source}: metadata schema {props['facelens.schema']!r} is not supported")
        flip = props.get("facelens.test_time_flip", "false")
        if flip not in ("true", "false"):
            raise ModelError(f"{source}: facelens.test_time_flip must be 'true' or 'false', not {flip!r}")
        try:
            inp = json.loads(props["facelens.input"])
            outs = json.loads(props["facelens.outputs"])
            age = json.loads(props.get("facelens.age", "{}"))
            if not (isinstance(inp, dict) and isinstance(outs, list) and isinstance(age, dict)):
                raise TypeError("facelens.input and facelens.age must be JSON objects, facelens.outputs a list")
            outputs = tuple(OutputSpec(o["name"], o["task"], tuple(o.get("labels", ()))) for o in outs)
            meta = cls(
                name=props["facelens.name"],
                version=props.get("facelens.version", ""),
                input=InputSpec(
                    name=inp["name"],
                    size=int(inp["size"]),
                    mean=tuple(float(v) for v in inp["mean"]),  # type: ignore[arg-type]
                    std=tuple(float(v) for v in inp["std"]),  # type: ignore[arg-type]
                    layout=inp.get("layout", "NCHW"),
                    color=inp.get("color", "RGB"),
                ),
                alignment=json.loads(props["facelens.alignment"]),
                outputs=outputs,
                age_min=int(age.get("min", 0)),
                age_groups=age.get("groups", {}),
                interval_coverage=float(age.get("interval_coverage", 0.8)),
                interval_mass=None if age.get("interval_mass") is None else float(age["interval_mass"]),
                test_time_flip=flip == "true",
                license=props.get("facelens.license", ""),
                description=props.get("facelens.description", ""),
                metrics=json.loads(props.get("facelens.metrics", "{}")),
                extra={k[len("facelens.extra.") :]: v for k, v in props.items() if k.startswith("facelens.extra.")},
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed facelens metadata ({type(exc).__name__}: {exc})") from exc
        if problem := meta.problem():
            raise ModelError(f"{source}: {problem}")
        return meta

    def problem(self) -> str | None:
        """What makes this metadata unusable by the runtime, or None when nothing does."""
        inp, tasks = self.input, [o.task for o in self.outputs]
        if inp.layout != "NCHW" or inp.color != "RGB":
            return "only NCHW RGB inputs are supported"
        if inp.size < 1:
            return f"input size must be at least 1 pixel, not {inp.size}"
        if len(inp.mean) != 3 or len(inp.std) != 3:
            return f"input mean and std need one value per RGB channel, got {list(inp.mean)} and {list(inp.std)}"
        if not all(math.isfinite(v) for v in inp.mean) or not all(math.isfinite(v) and v > 0 for v in inp.std):
            return f"input mean must be finite and std positive, got {list(inp.mean)} and {list(inp.std)}"
        if not self.outputs:
            return "no outputs: a head model answers at least one task"
        if unknown := [t for t in tasks if t not in TASKS]:
            return f"unknown output task(s) {unknown}; known: {TASKS}"
        if dup := sorted({t for t in tasks if tasks.count(t) > 1}):
            return f"more than one output answers {dup}"
        for o in self.outputs:
            if o.task in CLASS_LABELS and sorted(o.labels) != sorted(CLASS_LABELS[o.task]):
                return (
                    f"output {o.name!r} ({o.task}) must be labelled {list(CLASS_LABELS[o.task])}, not {list(o.labels)}"
                )
            if o.task == "attributes" and (not o.labels or len(set(o.labels)) != len(o.labels)):
                return f"output {o.name!r} (attributes) needs one distinct label per attribute, got {list(o.labels)}"
        for key, value in (("interval_coverage", self.interval_coverage), ("interval_mass", self.interval_mass)):
            if value is not None and not 0 < value < 1:
                return f"age {key} must lie between 0 and 1, not {value}"
        if not isinstance(self.metrics, dict) or not self.metrics:
            return "facelens.metrics holds no measured metric (a shipped model carries its validation numbers)"
        return None
