"""Typed, bounded readers of the run-folder files: nothing a run folder holds makes a reader raise,
hang, or read without bound.

Every reader of the contract goes through here (status, launcher, lock, control, scoring, the
lifecycle, trainmon, serve):

* :func:`read_limited` opens **regular files only** (a directory, FIFO, socket or device is refused,
  and opening never blocks), follows a symlink only when its target stays inside the folder it was
  read from, and reads at most a documented number of bytes per file kind (:data:`LIMITS`).
* :func:`load` parses JSON (or, for a pending run's config, YAML/TOML), refuses nesting deeper than
  :data:`MAX_DEPTH` (orjson reads 1024 levels but writes only 254: a deep value would crash the
  ``--json`` output later) and checks every field against the file's :class:`Schema`: a field of
  the wrong type or out of range is dropped with a warning naming the file and the field; strings
  are cut to a length and stripped of control characters, so what is echoed into a table or
  ``--json`` stays printable and writable.
* The result is the checked object or None, plus the warnings; never an exception.

JSONL files are read incrementally by :class:`trainkit.runfolder.files.JsonlTail`, which uses the same
opening rule and caps each line at :data:`MAX_LINE_BYTES`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from trainkit.runfolder import (
    CONTROL_FILE,
    CURRENT_META_FILE,
    FORMAT_VERSION,
    LAUNCH_FILE,
    LOCK_FILE,
    PROGRESS_FILE,
    RESOLVED_CONFIG_FILE,
    STATUS_FILE,
    SUMMARY_FILE,
    VALIDATION_SCORES_FILE,
    WRITTEN_STATES,
)
from trainkit.runfolder.files import MAX_DEPTH, MiB, ReadProblem, depth, read_limited

MAX_TEXT = 500  # characters of a string echoed from a file (reasons, errors, names)

# Bytes read at most, per file kind (a larger file is not read; the warning says so).
LIMITS = {
    "small": 1 * MiB,  # training_status, progress, meta, control, lock, scores, summary, report
    "launch": 4 * MiB,  # launch.json grows by one entry per launch
    "config": 4 * MiB,  # resolved_config.json
    "user_config": 1 * MiB,  # a pending run's config.yaml/.json/.toml (YAML parses slowly)
    "metadata": 64 * MiB,  # metadata.json holds an archive's manifest (a line per file)
}


# ---------------------------------------------------------------------------------------------
# values


_CONTROL = {c: None for c in range(32) if c not in (9, 10)} | {127: None}


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """Printable (control characters and escapes removed, tabs and newlines kept), at most
    ``limit`` characters."""
    text = value.translate(_CONTROL)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------
# schemas


@dataclass(frozen=True)
class Field:
    """One field: ``kind`` is int, num (finite int or float), str, bool, dict, list or any; ``ok``
    an extra check of the value (with ``why`` saying what it expects); strings are cleaned and cut
    to ``max_len``."""

    kind: str
    ok: Callable[[Any], bool] | None = None
    why: str = ""
    max_len: int = MAX_TEXT


_KIND_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (is_int, "an integer"),
    "num": (is_num, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "any": (lambda v: True, "a value"),
}


@dataclass(frozen=True)
class Schema:
    """The fields of one file kind. ``extra``: what happens to keys the schema does not name:
    ``keep`` (passed through as read), ``numbers`` (kept when they are finite numbers: metric
    values), ``drop``."""

    name: str
    fields: dict[str, Field]
    limit: int = LIMITS["small"]
    extra: str = "keep"


def check(obj: Any, schema: Schema, warnings: list[str], where: str | None = None) -> dict | None:
    """``obj`` with every field of ``schema`` checked: a wrong one is dropped (read as absent) with
    a warning ``<file>: <field> is <what>, expected <what>``. None (with a warning) when ``obj`` is
    not an object."""
    where = where or schema.name
    if not isinstance(obj, dict):
        warnings.append(f"{where}: expected a JSON object, found {_type_name(obj)}")
        return None
    out: dict = {}
    for key, value in obj.items():
        spec = schema.fields.get(key)
        if spec is None:
            if schema.extra == "keep" or (schema.extra == "numbers" and is_num(value)):
                out[key] = value
            continue
        if value is None:
            out[key] = None
            continue
        ok, expected = _KIND_CHECKS[spec.kind]
        if not ok(value) or (spec.ok is not None and not spec.ok(value)):
            shown = _shown(value)
            warnings.append(f"{where}: {key} is {shown}, expected {spec.why or expected}; ignored")
            continue
        out[key] = clean_text(value, spec.max_len) if spec.kind == "str" else value
    version = out.get("version")
    if is_int(version) and version > FORMAT_VERSION:
        warnings.append(f"{where}: format version {version} is newer than this trainkit's ({FORMAT_VERSION}); "
                        "reading the fields it knows")
    return out


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _shown(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return _type_name(v)
    text = repr(v)
    return clean_text(text, 40)


UNUSABLE = object()  # what parse_json returns for a value it refused (the warning says why)


def parse_json(data: bytes, name: str, warnings: list[str]) -> Any:
    """The JSON value in ``data``, or :data:`UNUSABLE` (with a warning): invalid, empty, or nested
    too deep."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        what = "empty" if not data.strip() else ("nested too deep" if "recursion" in str(e).lower()
                                                  else "not valid JSON")
        warnings.append(f"{name}: {what}")
        return UNUSABLE
    if depth(value) > MAX_DEPTH:
        warnings.append(f"{name}: nested deeper than {MAX_DEPTH} levels (or too many values); not read")
        return UNUSABLE
    return value


def load(path: str | os.PathLike, schema: Schema, warnings: list[str], *,
         within: str | os.PathLike | None = None) -> dict | None:
    """The checked object of a JSON file of kind ``schema``; None when the file is missing
    (silently) or unusable (with a warning naming the file). Never raises."""
    name = schema.name or os.path.basename(os.fspath(path))
    try:
        data = read_limited(path, schema.limit, within=within)
    except FileNotFoundError:
        return None
    except ReadProblem as e:
        warnings.append(f"{name}: {e}")
        return None
    if not data.strip():
        warnings.append(f"{name}: empty")
        return None
    value = parse_json(data, name, warnings)
    return None if value is UNUSABLE else check(value, schema, warnings, where=name)


# ---------------------------------------------------------------------------------------------
# the schemas of the contract

def _nonneg(v: Any) -> bool:
    return v >= 0


def _positive(v: Any) -> bool:
    return v > 0


PID = Field("int", lambda v: 0 < v < 2**31, "a process id (1 .. 2^31-1)")
TIME = Field("num", _nonneg, "a Unix time")
EPOCH = Field("int", _nonneg, "an epoch number >= 0")
COUNT = Field("int", _nonneg, "an integer >= 0")

STATUS = Schema(STATUS_FILE, {
    "version": Field("int"),
    "state": Field("str", lambda v: v in WRITTEN_STATES, "one of " + ", ".join(WRITTEN_STATES)),
    "pid": PID,
    "host": Field("str", max_len=255),
    "started_at": TIME,
    "heartbeat_at": TIME,
    "heartbeat_interval_s": Field("num", _positive, "a number > 0"),
    "current_epoch": EPOCH,
    "total_epochs": Field("int", _positive, "an integer >= 1"),
    "step": COUNT,
    "steps_per_epoch": COUNT,
    "loss": Field("num"),
    "lr": Field("num"),
    "throughput": Field("num", _nonneg, "a number >= 0"),
    "eta_s": Field("num", _nonneg, "a number >= 0"),
    "world_size": Field("int", _positive, "an integer >= 1"),
    "device": Field("str", max_len=100),
    "error": Field("str"),
    "stop_reason": Field("str"),
    "control": Field("dict"),
    "alerts": Field("list"),
}, extra="drop")

PROGRESS = Schema(PROGRESS_FILE, {
    "version": Field("int"),
    "completed_epochs": COUNT,
    "total_epochs": Field("int", _positive, "an integer >= 1"),
    "progress_percentage": Field("num", lambda v: 0 <= v <= 100, "a percentage 0..100"),
    "early_stopped": Field("bool"),
    "early_stopped_at_epoch": EPOCH,
    "finished": Field("bool"),
    "updated_at": TIME,
}, extra="drop")

EARLY_STOPPING = Schema("early_stopping", {
    "metric": Field("str", max_len=200),
    "mode": Field("str", lambda v: v in ("min", "max"), "min or max"),
    "patience": Field("int", _positive, "an integer >= 1"),
    "min_delta": Field("num", _nonneg, "a number >= 0"),
}, extra="drop")

RESOLVED_CONFIG = Schema(RESOLVED_CONFIG_FILE, {
    "task": Field("str", max_len=300),
    "epochs": Field("int", _positive, "an integer >= 1"),
    "early_stopping": Field("dict"),
    "heartbeat_s": Field("num", _positive, "a number > 0"),
}, limit=LIMITS["config"], extra="keep")

CURRENT_META = Schema(CURRENT_META_FILE, {
    "version": Field("int"),
    "last_epoch": EPOCH,
    "epochs_done": COUNT,
    "global_step": COUNT,
    "best_loss": Field("num"),
    "best_metric": Field("str", max_len=200),
    "best_epoch": EPOCH,
    "early_stopped_at_epoch": EPOCH,
}, extra="drop")

# validation_scores.json: the epoch's numbers (any key: it holds the epoch record's values)
EPOCH_SCORES = Schema(VALIDATION_SCORES_FILE, {"version": Field("int"), "epoch": EPOCH}, extra="numbers")

LAUNCH_ENTRY = Schema(f"{LAUNCH_FILE} entry", {
    "t": TIME,
    "action": Field("str", lambda v: v in ("launch", "relaunch"), "launch or relaunch"),
    "pid": PID,
    "state_before": Field("str", max_len=50),
    "completed_before": COUNT,
    "reason": Field("str"),
    "host": Field("str", max_len=255),
}, extra="keep")

GIVEN_UP = Schema(f"{LAUNCH_FILE} given_up", {"t": TIME, "reason": Field("str"), "host": Field("str", max_len=255)},
                  extra="drop")

LAUNCH = Schema(LAUNCH_FILE, {"version": Field("int"), "launches": Field("list"), "given_up": Field("dict")},
                limit=LIMITS["launch"], extra="keep")

LOCK = Schema(LOCK_FILE, {
    "pid": PID,
    "host": Field("str", max_len=255),
    "purpose": Field("str", max_len=50),
    "created_at": TIME,
    "pid_started_at": TIME,  # the holder's start time: the same pid with another start time is another process
    "handoff_token": Field("str", max_len=100),
}, extra="drop")

CONTROL = Schema(CONTROL_FILE, {
    "version": Field("int"),
    "request": Field("str", max_len=50),
    "id": Field("str", max_len=200),
    "requested_at": TIME,
}, extra="drop")

SUMMARY = Schema(SUMMARY_FILE, {}, extra="keep")
ANY = Schema("", {}, extra="keep")  # any JSON object of a bounded size (named by its file)

# reports/NAME.json. ``gates_passed`` null: no gate configured (an older report may say true for
# that; readers judge a report by its gates, see trainkit.lifecycle.verdicts). ``model_*``: the
# run's checkpoint it measured (null for a --model module:function report; absent in older ones).
REPORT = Schema("report", {
    "name": Field("str", max_len=200),
    "metric": Field("str", max_len=100),
    "metrics": Field("dict"),
    "gates": Field("dict"),
    "gate_results": Field("list"),
    "gates_passed": Field("bool"),
    "completed": Field("bool"),
    "final_nrmse": Field("num"),
    "model": Field("str", max_len=MAX_TEXT),
    "model_file": Field("str", max_len=MAX_TEXT),
    "model_sha256": Field("str", lambda v: len(v) == 64, "64 hex digits", max_len=64),
    "model_size": Field("int", lambda v: v >= 0, "an integer >= 0"),
    "model_mtime_ns": Field("int"),
    "profile": Field("str", max_len=200),
    "min_ok_fraction": Field("num", lambda v: 0 <= v <= 1, "a number between 0 and 1"),
    "planned": Field("int", lambda v: v >= 0, "an integer >= 0"),
    "done": Field("int", lambda v: v >= 0, "an integer >= 0"),
    "ok": Field("int", lambda v: v >= 0, "an integer >= 0"),
    "error": Field("int", lambda v: v >= 0, "an integer >= 0"),
    "measured_fraction": Field("num", lambda v: 0 <= v <= 1, "a number between 0 and 1"),
    "written_at": TIME,
}, extra="keep")


@dataclass
class LaunchHistory:
    """``launch.json``, checked: the launches (entries that are objects, their fields typed) and
    the give-up record (or None)."""

    launches: list[dict] = field(default_factory=list)
    given_up: dict | None = None


def load_launch(path: str | os.PathLike, warnings: list[str]) -> LaunchHistory:
    data = load(path, LAUNCH, warnings) or {}
    raw = data.get("launches") or []
    launches = [e for e in (check(x, LAUNCH_ENTRY, warnings) for x in raw[:10_000]) if e is not None]
    given = data.get("given_up")
    given_up = check(given, GIVEN_UP, warnings) if given is not None else None
    return LaunchHistory(launches, given_up)


EARLY_STOPPING_DEFAULTS = {"metric": "val_loss", "mode": "min", "patience": 5, "min_delta": 0.0}


def load_early_stopping(config: dict | None, warnings: list[str]) -> dict | None:
    """The ``early_stopping`` section of a (resolved) config, every field checked, a missing or
    unusable one at its default (see :class:`trainkit.config.EarlyStoppingConfig`); None when off."""
    es = (config or {}).get("early_stopping")
    if es is None:
        return None
    checked = check(es, EARLY_STOPPING, warnings, where=f"{RESOLVED_CONFIG.name}: early_stopping")
    if checked is None:
        return None
    return {k: default if checked.get(k) is None else checked[k] for k, default in EARLY_STOPPING_DEFAULTS.items()}


# ---------------------------------------------------------------------------------------------
# a pending run's own config (read, never executed)


def load_config_file(path: str | os.PathLike, warnings: list[str]) -> dict | None:
    """The settings of a run's ``config.yaml``/``.yml``/``.json``/``.toml``, bounded and checked
    like the JSON files (a ``.py`` config is never read: that would mean executing it). None when
    unusable, with a warning naming the file."""
    import tomllib

    import yaml

    name = os.path.basename(os.fspath(path))
    try:
        data = read_limited(path, LIMITS["user_config"])
    except FileNotFoundError:
        return None
    except ReadProblem as e:
        warnings.append(f"{name}: {e}")
        return None
    suffix = os.path.splitext(name)[1].lower()
    try:
        if suffix == ".json":
            value = parse_json(data, name, warnings) if data.strip() else None
            if value is UNUSABLE:
                return None
        else:
            text = data.decode("utf-8")
            value = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError, tomllib.TOMLDecodeError, ValueError):
        warnings.append(f"{name}: cannot be parsed")
        return None
    except RecursionError:
        warnings.append(f"{name}: nested too deep")
        return None
    if value is None:
        warnings.append(f"{name}: empty")
        return None
    if depth(value) > MAX_DEPTH:
        warnings.append(f"{name}: nested deeper than {MAX_DEPTH} levels (or too many values); not read")
        return None
    return check(value, Schema(name, RESOLVED_CONFIG.fields, extra="drop"), warnings)
