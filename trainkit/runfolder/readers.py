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
import operator
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
from trainkit.runfolder.files import (
    MAX_DEPTH,
    MAX_NODES,
    MiB,
    ReadProblem,
    depth,
    read_limited,
    read_limited_or_none,
)

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
    text = value if value.isprintable() else value.translate(_CONTROL)  # printable: nothing to remove
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

    def __post_init__(self) -> None:
        kind, ok = _KIND_CHECKS[self.kind][0], self.ok
        accepts = kind if ok is None else (lambda v: kind(v) and ok(v))
        object.__setattr__(self, "accepts", accepts)  # the kind's test, then the field's own (the rule)


_EXACT_TYPES = {"int": (int,), "num": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,), "list": (list,)}

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "plans", {})  # (keys, value types) -> _Plan or None: see _fields


def check(obj: Any, schema: Schema, warnings: list[str], where: str | None = None) -> dict | None:
    """``obj`` with every field of ``schema`` checked: a wrong one is dropped (read as absent) with
    a warning ``<file>: <field> is <what>, expected <what>``. None (with a warning) when ``obj`` is
    not an object."""
    where = where or schema.name
    if not isinstance(obj, dict):
        warnings.append(f"{where}: expected a JSON object, found {_type_name(obj)}")
        return None
    out, _ = _fields(obj, schema, where, warnings)
    _version_note(out, where, warnings)
    return out


def _fields(obj: dict, schema: Schema, where: str, warnings: list[str]) -> tuple[dict, bool]:
    """The checked fields of ``obj`` (see :func:`check`), and whether any value of ``obj`` is a
    non-empty object or list (only then can it be nested deeper than :data:`MAX_DEPTH`).

    The files of one kind come with the same keys and value types run after run (one writer), so
    the checks are planned once per (keys, types) and then run a group at a time (every number of
    the file that must be finite in one pass, every one that must be >= 0 in another...). Where a
    plan finds anything wrong, or a value of a type it did not plan for, the file is checked field
    by field (:func:`_fields_one_by_one`, the rule itself), which says what is wrong."""
    sig = (tuple(obj), tuple(map(type, obj.values())))
    plans = schema.plans
    plan = plans.get(sig, _UNPLANNED)
    if plan is _UNPLANNED:
        if len(plans) >= 256:  # files of many shapes: start over rather than grow without bound
            plans.clear()
        plan = plans[sig] = _Plan.make(schema, *sig)
    if plan is not None:
        checked = plan.apply(obj)
        if checked is not None:
            return checked
    return _fields_one_by_one(obj, schema, where, warnings)


def _fields_one_by_one(obj: dict, schema: Schema, where: str, warnings: list[str]) -> tuple[dict, bool]:
    out: dict = {}
    fields, extra = schema.fields, schema.extra
    nested = False
    for key, value in obj.items():
        if isinstance(value, (dict, list)) and value:  # an empty one adds a level, never 64
            nested = True
        spec = fields.get(key)
        if spec is None:
            if extra == "keep" or (extra == "numbers" and is_num(value)):
                out[key] = value
            continue
        if value is None:
            out[key] = None
        elif spec.accepts(value):
            out[key] = clean_text(value, spec.max_len) if spec.kind == "str" else value
        else:
            expected = _KIND_CHECKS[spec.kind][1]
            warnings.append(f"{where}: {key} is {_shown(value)}, expected {spec.why or expected}; ignored")
    return out, nested


_UNPLANNED = object()
_JSON_TYPES = frozenset({int, float, bool, str, type(None), dict, list})


def _values(keys: list[str]) -> Callable[[dict], tuple] | None:
    """A function giving the values of ``keys`` as a tuple (one C call), None for no keys."""
    if not keys:
        return None
    if len(keys) == 1:
        key = keys[0]
        return lambda obj: (obj[key],)
    return operator.itemgetter(*keys)


@dataclass(frozen=True)
class _Plan:
    """The checks of one shape of file (its keys and value types), by group; see :func:`_fields`."""

    finite: Callable[[dict], tuple] | None  # num fields: must be finite
    nonneg: Callable[[dict], tuple] | None  # fields whose rule is >= 0
    positive: Callable[[dict], tuple] | None  # fields whose rule is > 0
    calls: tuple  # (key, ok): the other rules, one call each
    texts: tuple  # (key, max_len): strings, cleaned and cut
    drop: tuple  # keys the schema drops
    numbers: tuple  # extra numbers: kept when finite
    containers: Callable[[dict], tuple] | None  # objects and lists: nested when one is not empty

    @staticmethod
    def make(schema: Schema, keys: tuple, types: tuple) -> _Plan | None:
        """The plan, or None when a value's type calls for the one-by-one check (a subclass, or
        a type that is not the field's kind: that check says what is wrong)."""
        finite, nonneg, positive, containers = [], [], [], []
        calls, texts, drop, numbers = [], [], [], []
        for key, t in zip(keys, types, strict=True):
            if t not in _JSON_TYPES:
                return None
            if t is dict or t is list:
                containers.append(key)
            spec = schema.fields.get(key)
            if spec is None:
                if schema.extra == "numbers" and (t is int or t is float):
                    numbers.append(key)
                elif schema.extra != "keep":
                    drop.append(key)
                continue
            if t is type(None):
                continue
            if spec.kind != "any" and t not in _EXACT_TYPES[spec.kind]:
                return None
            if spec.kind == "num":
                finite.append(key)
            numeric = spec.kind in ("int", "num")
            if spec.ok is _nonneg and numeric:
                nonneg.append(key)
            elif spec.ok is _positive and numeric:
                positive.append(key)
            elif spec.ok is not None:
                calls.append((key, spec.ok))
            if spec.kind == "str":
                texts.append((key, spec.max_len))
        return _Plan(_values(finite), _values(nonneg), _values(positive), tuple(calls), tuple(texts), tuple(drop),
                     tuple(numbers), _values(containers))

    def apply(self, obj: dict) -> tuple[dict, bool] | None:
        """(checked object, nested) when every planned check passes, else None."""
        if self.finite is not None and not all(map(math.isfinite, self.finite(obj))):
            return None
        if self.nonneg is not None and min(self.nonneg(obj)) < 0:
            return None
        if self.positive is not None and min(self.positive(obj)) <= 0:
            return None
        for key, ok in self.calls:
            if not ok(obj[key]):
                return None
        out = dict(obj)
        for key in self.drop:
            del out[key]
        for key in self.numbers:
            if not math.isfinite(out[key]):
                del out[key]
        for key, limit in self.texts:
            value = out[key]
            if len(value) > limit or not value.isprintable():
                out[key] = clean_text(value, limit)
        return out, self.containers is not None and any(self.containers(obj))


def _version_note(out: dict, where: str, warnings: list[str]) -> None:
    version = out.get("version")
    if is_int(version) and version > FORMAT_VERSION:
        warnings.append(f"{where}: format version {version} is newer than this trainkit's ({FORMAT_VERSION}); "
                        "reading the fields it knows")


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
        _invalid(data, e, name, warnings)
        return UNUSABLE
    if depth(value) > MAX_DEPTH:
        _too_deep(name, warnings)
        return UNUSABLE
    return value


def _invalid(data: bytes, e: orjson.JSONDecodeError, name: str, warnings: list[str]) -> None:
    what = "empty" if not data.strip() else ("nested too deep" if "recursion" in str(e).lower() else "not valid JSON")
    warnings.append(f"{name}: {what}")


def _too_deep(name: str, warnings: list[str]) -> None:
    warnings.append(f"{name}: nested deeper than {MAX_DEPTH} levels (or too many values); not read")


def load(path: str | os.PathLike, schema: Schema, warnings: list[str], *,
         within: str | os.PathLike | None = None) -> dict | None:
    """The checked object of a JSON file of kind ``schema``; None when the file is missing
    (silently) or unusable (with a warning naming the file). Never raises."""
    name = schema.name or os.path.basename(os.fspath(path))
    try:
        data = read_limited_or_none(path, schema.limit, within=within)
    except ReadProblem as e:
        warnings.append(f"{name}: {e}")
        return None
    if data is None:
        return None
    if not data or data.isspace():  # (what `not data.strip()` says, without the copy)
        warnings.append(f"{name}: empty")
        return None
    try:
        value = orjson.loads(data)  # straight from the bytes
    except orjson.JSONDecodeError as e:
        _invalid(data, e, name, warnings)
        return None
    if type(value) is not dict:  # the rare case: as parse_json and check say it
        if depth(value) > MAX_DEPTH:
            _too_deep(name, warnings)
            return None
        return check(value, schema, warnings, where=name)
    # The depth check folded into the type check: one pass over the fields finds whether any value
    # is nested at all; only then is the value walked (a flat object is never deeper than 1).
    found: list[str] = []
    out, nested = _fields(value, schema, name, found)
    if (nested or len(value) >= MAX_NODES) and depth(value) > MAX_DEPTH:
        _too_deep(name, warnings)
        return None
    if found:
        warnings.extend(found)
    version = out.get("version")
    if version is not None and (type(version) is not int or version > FORMAT_VERSION):  # the rare case
        _version_note(out, name, warnings)
    return out


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
