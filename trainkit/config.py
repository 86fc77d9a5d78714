"""Typed training configuration: schema, file loaders, ``--set`` overrides, resume checks.

Precedence: CLI (``--epochs``, ``--set key.sub=value``) > config file > the task's own defaults
(:mod:`trainkit.tasks.defaults`, a task's ``defaults``) > the schema's defaults, key by key. Every
field has a docstring in its ``metadata["help"]``; ``schema_help()`` turns the schema into help text.
Bad input raises :class:`UserError` with a one-line message (the CLI exits 2 with it).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import os
import sys
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from trainkit.errors import UserError, first_line
from trainkit.runfolder import CONFIG_SUFFIXES, RunPaths
from trainkit.runfolder.files import FileFormatError, MiB, ReadProblem, read_json_object, read_limited
from trainkit.tasks.defaults import builtin_defaults

LOCKED_FIELDS = ("task", "model", "data", "profile")


def setting(default: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A dataclass field with a help text (shown by ``schema_help`` and ``trainkit train --help``);
    a callable default (a class, ``dict``) is a default factory. Task and profile schemas use it too."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class EarlyStoppingConfig:
    metric: str = setting("val_loss", "epoch metric to monitor (a key of the epoch record, e.g. val_loss, nrmse)")
    mode: Literal["min", "max"] = setting("min", "min: lower is better; max: higher is better")
    patience: int = setting(5, "epochs without an improvement of more than min_delta before stopping")
    min_delta: float = setting(0.0, "smallest change that counts as an improvement")


@dataclass
class CheckpointConfig:
    every_steps: int = setting(0, "also checkpoint every N optimizer steps (0 = at epoch ends only)")


@dataclass
class ScheduleConfig:
    name: Literal["constant", "cosine", "linear"] = setting("constant", "learning-rate decay after warmup")
    warmup_steps: int = setting(0, "linear warmup from 0 to lr over this many steps")
    min_lr: float = setting(0.0, "floor of the decayed learning rate")


@dataclass
class GateConfig:
    min: float | None = setting(None, "the metric must be >= this")
    max: float | None = setting(None, "the metric must be <= this")


@dataclass
class GatesConfig:
    nrmse: GateConfig | None = setting(None, "gate on the evaluation NRMSE (lower is better), e.g. {max: 0.10}")
    accuracy: GateConfig | None = setting(None, "gate on the evaluation accuracy (0..1), e.g. {min: 0.8}")


@dataclass
class EvalConfig:
    gates: GatesConfig = setting(GatesConfig, "thresholds the evaluation must meet (reports/NAME.json: gates_passed)")
    min_ok_fraction: float = setting(1.0, "share of the planned items (0..1) that must be answered without error "
                                          "for a gate to pass (1 = all of them; error items are not measured)")


@dataclass
class MonitorConfig:
    samples_every_steps: int = setting(500, "answer the sample prompts every N optimizer steps into samples.jsonl "
                                            "(0 = off; on when the task or the profile has prompts)")
    prompts: str | None = setting(None, "a JSONL file of {prompt, expected} to sample instead of the task's own")
    max_new_tokens: int = setting(24, "longest sample answer, in tokens")
    alerts: bool = setting(True, "append alerts to alerts.jsonl (non-finite loss, spikes, exploding gradients, "
                                 "throughput collapse, stalls)")
    stop_on_nonfinite: bool = setting(True, "a non-finite loss fails the run (state failed, with the reason)")
    spike_factor: float = setting(4.0, "a loss above this many times its moving average is a spike")
    spike_window: int = setting(50, "logged steps in the moving average of the loss and the throughput")
    grad_norm_max: float = setting(1.0e4, "a global gradient norm above this is exploding")
    throughput_drop: float = setting(0.25, "throughput below this share of its moving average is a collapse")
    stall_s: float = setting(300.0, "no optimizer step for this many seconds is a stall")
    layers_every_steps: int = setting(500, "per-layer gradient norm, weight norm and update ratio into layers.jsonl "
                                           "every N steps (0 = off)")
    keep_alerts: int = setting(5, "latest alerts kept in training_status.json")


@dataclass
class TrainConfig:
    task: str = setting(help="built-in task (burgers, arith-chat) or an import string module:function; the "
                             "task's own defaults apply under the file's keys (listed above)")
    epochs: int = setting(10, "total number of epochs (a target, never 'N more')")
    seed: int = setting(0, "seed of model init, data order and dropout (the data itself is generated from data.seed)")
    batch_size: int = setting(32, "samples per optimizer step")
    lr: float = setting(1e-3, "peak learning rate")
    optimizer: Literal["adamw", "adam", "sgd"] = setting("adamw", "optimizer")
    weight_decay: float = setting(0.0, "weight decay")
    momentum: float = setting(0.9, "momentum (sgd only)")
    grad_clip: float = setting(0.0, "clip the gradient norm to this value (0 = off)")
    lr_schedule: ScheduleConfig = setting(ScheduleConfig, "learning rate as a pure function of the step")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    early_stopping: EarlyStoppingConfig | None = setting(None, "absent or null = no early stopping")
    checkpoint: CheckpointConfig = setting(CheckpointConfig, "checkpoint interval")
    log_every_steps: int = setting(10, "write a step record to metrics.jsonl every N steps")
    heartbeat_s: float = setting(5.0, "rewrite training_status.json at least this often (seconds)")
    system_every_s: float = setting(10.0, "append a system.jsonl sample this often (seconds)")
    deterministic: bool = setting(True, "deterministic CUDA kernels, for a bit-identical resume (CPU: always)")
    profile: str | None = setting(None, "data profile: plain_sft, emoji_think, an entry point of trainkit.profiles "
                                        "or module:Class (null: the task's plain data)")
    monitor: MonitorConfig = setting(MonitorConfig, "the training monitor: inference samples, alerts, layer health")
    model: dict = setting(dict, "task-specific model settings")
    data: dict = setting(dict, "task-specific data settings")
    eval: EvalConfig = setting(EvalConfig, "evaluation after training (trainkit eval / trainkit run)")


_FIELD_CHECKS: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: v >= 1, "must be >= 1"),
    "batch_size": (lambda v: v >= 1, "must be >= 1"),
    "lr": (lambda v: v > 0 and math.isfinite(v), "must be a positive number"),
    "log_every_steps": (lambda v: v >= 1, "must be >= 1"),
    "heartbeat_s": (lambda v: v > 0, "must be > 0"),
    "system_every_s": (lambda v: v > 0, "must be > 0"),
    "every_steps": (lambda v: v >= 0, "must be >= 0"),
    "patience": (lambda v: v >= 1, "must be >= 1"),
    "min_delta": (lambda v: v >= 0, "must be >= 0"),
    "warmup_steps": (lambda v: v >= 0, "must be >= 0"),
    "grad_clip": (lambda v: v >= 0, "must be >= 0"),
    "weight_decay": (lambda v: v >= 0, "must be >= 0"),
    "samples_every_steps": (lambda v: v >= 0, "must be >= 0"),
    "layers_every_steps": (lambda v: v >= 0, "must be >= 0"),
    "max_new_tokens": (lambda v: v >= 1, "must be >= 1"),
    "spike_factor": (lambda v: v > 1, "must be > 1"),
    "spike_window": (lambda v: v >= 2, "must be >= 2"),
    "grad_norm_max": (lambda v: v > 0, "must be > 0"),
    "throughput_drop": (lambda v: 0 < v < 1, "must be between 0 and 1"),
    "stall_s": (lambda v: v > 0, "must be > 0"),
    "keep_alerts": (lambda v: v >= 1, "must be >= 1"),
    "min_ok_fraction": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
}


class CliValue(str):
    """A raw string from the command line; converted to the schema's type instead of rejected."""


# ---------------------------------------------------------------------------------------------
# schema -> values


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", dict: "a mapping"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check (and for CLI strings convert) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, CliValue) and value.lower() in ("null", "none")):
            return None
        return _coerce(value, args[0], where, source)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, CliValue) or not isinstance(value, dict):
            raise _type_error(value, tp, where, source)
        return build(tp, value, source, prefix=where + ".")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return str(value)
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UserError(f"{source}: {where}: {value!r} is not one of {_type_name(tp)}{hint}")
    if isinstance(value, CliValue):
        return _from_cli(value, tp, where, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 as a string; accept what float() reads
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:
        if isinstance(value, dict):
            return dict(value)
    else:
        return value
    raise _type_error(value, tp, where, source)


def _from_cli(raw: CliValue, tp: Any, where: str, source: str) -> Any:
    try:
        if tp is bool:
            low = raw.lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is str:
            return str(raw)
        if tp is dict:
            parsed = yaml.safe_load(raw)
            if isinstance(parsed, dict):
                return parsed
            raise ValueError
    except ValueError:
        raise _type_error(raw, tp, where, source) from None
    return _parse_scalar(raw)


def _type_error(value: Any, tp: Any, where: str, source: str) -> UserError:
    shown = repr(str(value)) if isinstance(value, CliValue) else f"{value!r} ({type(value).__name__})"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return UserError(f"{source}: {where}: expected {_type_name(tp)}, got {shown}")


def _parse_scalar(raw: str) -> Any:
    """A ``--set`` value for a key without a schema (task model/data settings without one)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def build(cls: type, values: dict, source: str, prefix: str = "") -> Any:
    """Instantiate the dataclass ``cls`` from ``values``: unknown keys named with a suggestion,
    types checked, defaults filled in, missing required keys named."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {prefix}{near[0]!r}?)" if near else ""
            raise UserError(f"{source}: unknown key {prefix}{key!r}{hint}")
    kwargs = {}
    for name, f in fields.items():
        where = prefix + name
        if name in values:
            v = _coerce(values[name], hints[name], where, source)
            check = _FIELD_CHECKS.get(name)
            if check and isinstance(v, (int, float)) and not check[0](v):
                raise UserError(f"{source}: {where}: {v!r} {check[1]}")
            kwargs[name] = v
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: missing required key {where!r}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def schema_help(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """``key (type, default): help`` lines for the schema, nested sections indented by their path."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        nested = tp if dataclasses.is_dataclass(tp) else (inner[0] if inner else None)
        if f.default is not dataclasses.MISSING:
            default = "null" if f.default is None else repr(f.default)
        elif f.default_factory is not dataclasses.MISSING and not nested:
            default = repr(f.default_factory())
        else:
            default = "required" if not nested else ""
        type_text = _type_name(tp) if not nested else ("mapping or null" if f.default is None else "mapping")
        lines.append(f"  {prefix}{f.name:<{28 - len(prefix)}} {type_text}{', ' + default if default else ''}: "
                     f"{f.metadata.get('help', '')}")
        if nested:
            lines.extend(schema_help(nested, prefix + f.name + "."))
    return lines


# ---------------------------------------------------------------------------------------------
# files and overrides


CONFIG_LIMIT = 16 * MiB  # a YAML/JSON/TOML config read at most


def load_file(path: str | Path) -> dict:
    """Read a config file into a plain mapping. A ``.py`` file is executed (only ever called for a
    config the user asked to run) and must define ``config`` as a mapping or a TrainConfig."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise UserError(f"{path}: unsupported config type {suffix or '(none)'!r}; use one of "
                          + ", ".join(CONFIG_SUFFIXES))
    if not path.is_file():
        raise UserError(f"{path}: no such config file" if not path.exists() else f"{path}: not a file")
    try:
        if suffix == ".py":
            data = _load_py(path)
        else:
            text = read_limited(path, CONFIG_LIMIT, within=os.sep).decode("utf-8")  # a linked config is fine
            if suffix in (".yaml", ".yml"):
                data = yaml.safe_load(text)
            elif suffix == ".json":
                data = orjson.loads(text) if text.strip() else None
            else:
                data = tomllib.loads(text)
    except UserError:
        raise
    except ReadProblem as e:  # a FIFO, a device, larger than CONFIG_LIMIT
        raise UserError(f"{path}: cannot read config ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read config ({first_line(e)})") from None
    except (yaml.YAMLError, orjson.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        detail = first_line(e, lines=3).partition(": ")[2]  # the parser's own words, without its class
        raise UserError(f"{path}: cannot parse config: {detail}") from None
    if data is None:
        raise UserError(f"{path}: config is empty (at least 'task: <name>' is needed)")
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = to_dict(data)
    if not isinstance(data, dict):
        raise UserError(f"{path}: config must be a mapping of keys, found {type(data).__name__}")
    return data


def _load_py(path: Path) -> Any:
    name = f"trainkit_user_config_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: report it as one line
        raise UserError(f"{path}: error while executing config: {first_line(e)}") from None
    finally:
        sys.modules.pop(name, None)
    if not hasattr(module, "config"):
        raise UserError(f"{path}: a .py config must define a variable named 'config'")
    return module.config


def parse_set(items: list[str]) -> list[tuple[list[str], CliValue]]:
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value (e.g. --set lr=3e-4)")
        parts = key.strip().split(".")
        if any(not p for p in parts):
            raise UserError(f"--set {item!r}: empty part in key {key!r}")
        out.append((parts, CliValue(raw.strip())))
    return out


def apply_overrides(data: dict, overrides: list[tuple[list[str], CliValue]]) -> dict:
    """Put ``--set`` values into a copy of the raw mapping; typing happens in :func:`build`."""
    data = _deepcopy(data)
    for parts, value in overrides:
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
                node[p] = child
            node = child
        node[parts[-1]] = value
    return data


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def resolve(file_data: dict, *, source: str, epochs: int | None = None, sets: list[str] = (),
            task_defaults: Callable[[Any], dict] = builtin_defaults) -> TrainConfig:
    """schema defaults < the task's defaults (``task_defaults(task name)``: the built-in tasks' by
    default; the session passes one that also imports a user's task) < file < CLI, key by key.
    ``model`` and ``data`` stay as given (command-line values still raw strings) until
    :func:`resolve_sections` checks them against the task's own schemas."""
    data = apply_overrides(file_data, parse_set(list(sets)))
    if epochs is not None:
        data["epochs"] = epochs
    data = with_defaults(task_defaults(data.get("task")), data)
    src = source if not sets and epochs is None else f"{source} (with command-line overrides)"
    return build(TrainConfig, data, src)


def with_defaults(defaults: dict, data: dict) -> dict:
    """``data`` over ``defaults``, key by key inside mappings (a value given, ``null`` included, wins)."""
    out = _deepcopy(defaults)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = with_defaults(out[key], value)
        else:
            out[key] = value
    return out


def resolve_sections(cfg: TrainConfig, *, model_schema: type | None, data_schema: type | None,
                     source: str) -> TrainConfig:
    """Check (and type) ``cfg.model`` and ``cfg.data`` against the task's schemas, in place."""
    cfg.model = _resolve_section(model_schema, cfg.model, "model", source)
    cfg.data = _resolve_section(data_schema, cfg.data, "data", source)
    return cfg


def _resolve_section(schema: type | None, values: dict, name: str, source: str) -> dict:
    if schema is None:  # a user task without a schema: values pass through, CLI strings parsed
        return {k: _parse_scalar(v) if isinstance(v, CliValue) else v for k, v in values.items()}
    return to_dict(build(schema, values, source, prefix=name + "."))


def check_value(name: str, value: Any, source: str) -> Any:
    """The range check of a top-level numeric key (``epochs``...) on its own, e.g. for an argument
    that is only passed on to another command."""
    check = _FIELD_CHECKS.get(name)
    if check and isinstance(value, (int, float)) and not check[0](value):
        raise UserError(f"{source}: {value!r} {check[1]}")
    return value


def default_cache_dir() -> Path:
    """``$TRAINKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/trainkit``, else ``~/.cache/trainkit``."""
    env = os.environ.get("TRAINKIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trainkit"


def read_resolved(paths: RunPaths) -> dict | None:
    """The run's ``resolved_config.json`` (``_meta`` included); None when the run has none yet. An
    unreadable or malformed one raises :class:`UserError` naming the file (the one loud reader;
    ``trainkit status`` reads it tolerantly instead)."""
    try:
        return read_json_object(paths.resolved_config)
    except FileNotFoundError:
        return None
    except (FileFormatError, OSError) as e:
        raise UserError(f"{paths.resolved_config}: cannot read the run's config ({e})") from None


def without_meta(data: dict) -> dict:
    """A resolved config's settings, without ``_meta`` (and any other ``_`` key)."""
    return {k: v for k, v in data.items() if not k.startswith("_")}


def locked_differences(old: dict, new: dict) -> list[str]:
    """``field: old -> new`` for every locked field (task, model.*, data.*) that differs."""
    out = []
    for key in LOCKED_FIELDS:
        out.extend(_diff(old.get(key), new.get(key), key))
    return out


def changed_fields(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(path, old, new) for every leaf that differs (locked fields excluded)."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new)):
        if key in LOCKED_FIELDS or key.startswith("_"):
            continue
        _collect(old.get(key), new.get(key), key, out)
    return out


def _collect(a: Any, b: Any, path: str, out: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _collect(a.get(k), b.get(k), f"{path}.{k}", out)
    elif a != b:
        out.append((path, a, b))


def _diff(a: Any, b: Any, path: str) -> list[str]:
    found: list[tuple[str, Any, Any]] = []
    _collect(a, b, path, found)
    return [f"{p}: {x!r} (run) vs {y!r} (requested)" for p, x, y in found]
