"""YAML values into typed config dataclasses: the rules every facelens recipe is read by.

A mapping read from YAML becomes a (frozen) dataclass only if every key is a field and every value fits the
field's annotation (``float``, ``int``, ``bool``, ``str``, tuples, dicts, nested dataclasses, ``X | None``);
anything else is a :class:`ConfigError` naming the dotted key. :mod:`facelens.train.config` (training recipes)
and the detector's recipe type are read this way.

This module needs PyYAML but not torch.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import FaceLensError

C = TypeVar("C")
"""A config dataclass type (:class:`facelens.train.config.TrainConfig`, or another recipe type)."""


class ConfigError(FaceLensError):
    """A training recipe is malformed: unknown key, wrong type, or an invalid value."""

    code = "config_error"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _mismatch(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")


def _not_bool(*types: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, types) and not isinstance(value, bool)


_SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    float: ("a number", _not_bool(int, float)),
    int: ("an integer", _not_bool(int)),
    bool: ("true/false", lambda value: isinstance(value, bool)),
    str: ("a string", _not_bool(str, int, float)),
}
"""Scalar annotation -> (what the error message expects, the check a YAML value must pass)."""

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
"""A decimal number written as a string; float fields accept it (YAML 1.1 reads ``1e-3`` as a string)."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting lists to tuples, ints to floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _mismatch(where, "a mapping", value)
        return _from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(where, "a list", value)
        (item_tp, *_) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _mismatch(where, "a mapping", value)
        _, val_tp = typing.get_args(tp)
        return {str(k): (v if val_tp is Any else _coerce(v, val_tp, f"{where}.{k}")) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)  # PyYAML (YAML 1.1) reads 3e-4 and 1e-3, without a dot, as strings
    if tp in _SCALARS:
        expected, accepts = _SCALARS[tp]
        if not accepts(value):
            raise _mismatch(where, expected, value)
        return tp(value)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _from_dict(cls: Any, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; allowed here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field (e.g. a dataset's name) is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def from_mapping(cls: type[C], data: Any, validate: bool = False) -> C:
    """Build the config dataclass ``cls`` (:class:`TrainConfig` or another recipe type) from a plain mapping.

    Args:
        cls: The dataclass; its fields say which keys and value types are allowed.
        data: The mapping, as read from YAML.
        validate: Also call ``validate()`` on the result.

    Raises:
        ConfigError: On an unknown key, a value of the wrong type, or (with ``validate``) an invalid value.

    """
    if not isinstance(data, dict):
        raise ConfigError(f"a training config must be a mapping, got {type(data).__name__}")
    config = _from_dict(cls, data)
    return config.validate() if validate else config


def config_to_dict(config: Any) -> Any:
    """Plain (YAML/JSON-ready) form of a config dataclass: tuples become lists."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, dict):
        return {str(k): config_to_dict(v) for k, v in config.items()}
    return config


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: C, overrides: list[str] | tuple[str, ...], validate: bool = True) -> C:
    """Apply ``key=value`` overrides with dotted keys (``optim.lr=0.001``); values are parsed as YAML.

    Keys of mapping-valued fields may be new (``model.options.grid=3``); every other key must exist.

    Args:
        config: A config dataclass (:class:`TrainConfig` or another recipe type).
        overrides: The ``key=value`` strings, applied in order.
        validate: Call ``validate()`` on the result.

    Raises:
        ConfigError: If an override is not ``key=value`` or names an unknown key.

    """
    data = config_to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r} in override {item!r}")
            node = node[part]
        if parts[-1] not in node and not _is_mapping_field(config, parts[:-1]):
            raise ConfigError(f"unknown config key {key.strip()!r} in override {item!r}")
        node[parts[-1]] = _parse_value(text)
    return from_mapping(type(config), data, validate)


def _is_mapping_field(config: Any, path: list[str]) -> bool:
    """Whether ``path`` is (or lies inside) a mapping-valued field such as ``model.options``, whose keys are free."""
    node = config
    for part in path:
        if not dataclasses.is_dataclass(node):
            break
        node = getattr(node, part)
    return isinstance(node, dict)


def load_dataclass(
    cls: type[C],
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    validate: bool = False,
    kind: str = "config",
) -> C:
    """Read a YAML recipe into the config dataclass ``cls`` and apply overrides.

    Args:
        cls: The dataclass (:class:`TrainConfig` or another recipe type).
        path: The YAML file.
        overrides: ``key=value`` strings with dotted keys, applied after the file.
        validate: Call ``validate()`` on the file's config and again after the overrides.
        kind: What the file is, for the message when it cannot be read (``"cannot read <kind> <path>"``).

    Returns:
        The config.

    Raises:
        ConfigError: If the file is missing, is not valid YAML, or holds an unknown key or bad value; the
            message starts with the file's path.

    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        config = from_mapping(cls, data or {}, validate)
        return apply_overrides(config, overrides, validate) if overrides else config
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
