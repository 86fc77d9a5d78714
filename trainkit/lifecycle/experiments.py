"""New experiments, the list of experiments with their classification, and side-by-side comparison."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainkit.config import CONFIG_LIMIT
from trainkit.errors import UserError
from trainkit.lifecycle.classification import CLASSES, DEFAULTS, Options
from trainkit.lifecycle.facts import Experiment, inspect
from trainkit.lifecycle.layout import Layout, check_name, experiment_dir, experiment_folders
from trainkit.lifecycle.metadata import new_metadata
from trainkit.lifecycle.verdicts import read_run_reports, the_report
from trainkit.runfolder import (
    CONFIG_STEM,
    CONFIG_SUFFIXES,
    DEFAULT_ROOT,
    METADATA_FILE,
    NOTES_FILE,
    RESOLVED_CONFIG_FILE,
    RUN_NAME,
    RunPaths,
)
from trainkit.runfolder.files import ReadProblem, dumps, read_limited
from trainkit.status import load_json

STARTER_CONFIG = """\
# A trainkit config: `trainkit train --help` lists every key with its type, default and meaning.
task: burgers
epochs: 10
"""

NOTES_TEMPLATE = """\
# {name}

## Hypothesis

What do you expect to happen, and why?

## Config changes

{changes}

## Results

<!-- End with a line starting with ✓ (it worked) or ✗ (it did not) and a few words:
     the last such line is the verdict `trainkit experiments list` shows. -->
"""


# --------------------------------------------------------------------------------------------
# new


@dataclass
class NewExperiment:
    path: Path
    config: Path
    notes: Path
    metadata: Path
    source: Path | None  # the config copied in (None: the starter config)


def config_source(ref: str, layout: Layout) -> Path:
    """``--from``: a config file, a run folder, or the NAME of an experiment (under ROOT or archived)."""
    p = Path(ref)
    if p.is_dir():
        cfg = RunPaths(p).config_file()
        if cfg is None:
            raise UserError(f"{ref}: a folder without a config file (config.yaml/.yml/.json/.toml/.py)")
        return cfg
    if p.is_file():
        if p.suffix.lower() not in CONFIG_SUFFIXES:
            raise UserError(f"{ref}: not a config file ({', '.join(CONFIG_SUFFIXES)})")
        return p
    if "/" not in ref and not ref.startswith("."):
        for base in (layout.root, layout.archive):
            if (base / ref).is_dir():
                return config_source(str(base / ref), layout)
    raise UserError(f"{ref}: no such config file or experiment")


def check_new_name(name: str) -> str:
    """A NAME for ``new``: letters, digits, ``-``, ``_`` and ``.``, not starting with a dot (a folder
    name every shell, tab completion and filesystem takes as it is), or :class:`UserError`."""
    check_name(name)
    bad = sorted({c for c in name if not (c.isalnum() or c in "-_.")})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:8])
        raise UserError(f"{name!r}: an experiment name may hold letters, digits, '-', '_' and '.' only "
                        f"(not {shown})")
    return name


def new_experiment(name: str, *, root: str | os.PathLike = DEFAULT_ROOT, from_config: str | None = None,
                   today: dt.date | None = None, now: float | None = None) -> NewExperiment:
    """Create ``ROOT/YYYY-MM-DD-NAME/`` (NAME as given when it already starts with a date) with the
    config (copied byte for byte from ``from_config``, else a starter ``config.yaml``), a
    ``notes.md`` template and ``metadata.json``. The folder appears complete or not at all."""
    layout = Layout.at(root)
    check_new_name(name)
    folder_name = name if RUN_NAME.fullmatch(name) else f"{(today or dt.date.today()).isoformat()}-{name}"
    check_name(folder_name)
    final = layout.root / folder_name
    if os.path.lexists(final):
        raise UserError(f"{layout.show(final)} already exists")
    source = config_source(from_config, layout) if from_config else None
    try:  # a regular file only (a FIFO or a device is refused), bounded
        data = read_limited(source, CONFIG_LIMIT, within=os.sep) if source else STARTER_CONFIG.encode()
    except ReadProblem as e:
        raise UserError(f"{source}: {e}") from None
    config_name = CONFIG_STEM + (source.suffix.lower() if source else ".yaml")
    from trainkit.lifecycle.moves import remove_tree, rename_noreplace

    layout.root.mkdir(parents=True, exist_ok=True)
    staging = layout.root / f".{folder_name}.new-{os.getpid()}"
    staging.mkdir()
    try:  # plain writes: the folder appears complete by one rename, or not at all
        changes = f"Config copied from `{source}`." if source else "Starter config: edit config.yaml."
        (staging / config_name).write_bytes(data)
        (staging / NOTES_FILE).write_text(NOTES_TEMPLATE.format(name=folder_name, changes=changes), encoding="utf-8")
        (staging / METADATA_FILE).write_bytes(dumps(new_metadata(
            folder_name, time.time() if now is None else now, created_from=str(source) if source else None)) + b"\n")
        try:
            rename_noreplace(staging, final)
        except FileExistsError:
            raise UserError(f"{layout.show(final)} already exists") from None
    except BaseException:
        if staging.exists():
            remove_tree(staging)
        raise
    return NewExperiment(final, final / config_name, final / NOTES_FILE, final / METADATA_FILE, source)


# --------------------------------------------------------------------------------------------
# list


def list_experiments(root: str | os.PathLike = DEFAULT_ROOT, *, status: str | None = None, archived: bool = False,
                     archive_dir: str | os.PathLike | None = None, now: float | None = None,
                     options: Options = DEFAULTS, stale_s: float | None = None) -> list[Experiment]:
    """Every experiment under ROOT (or in its archive), classified, sorted by name; ``status``
    keeps one class only."""
    layout = Layout.at(root, archive_dir=archive_dir)
    if status is not None and status not in CLASSES:
        raise UserError(f"--status {status!r}: choose one of {', '.join(CLASSES)}")
    base = layout.archive if archived else layout.root
    if not base.is_dir():
        if archived:
            return []
        raise UserError(f"{root}: no such folder")
    now = time.time() if now is None else now
    host = socket.gethostname()
    out = []
    for name in experiment_folders(base):
        exp, _, _ = inspect(base / name, now=now, options=options, in_archive=archived, host=host, stale_s=stale_s)
        if status is None or exp.status == status:
            out.append(exp)
    return out


# --------------------------------------------------------------------------------------------
# compare

MISSING = object()


@dataclass
class Compared:
    name: str
    path: Path
    config_source: str | None  # resolved_config.json, config.yaml, ...; None: nothing readable
    config: dict[str, Any]  # flattened: "model.width" -> 64
    note: str | None = None  # why the config could not be read
    reports: dict[str, dict] = field(default_factory=dict)  # name -> {metric, value, gates_passed, verdict, ...}
    report: str | None = None  # the run's report (pick_report)
    best_epoch: int | None = None
    best_metric: str | None = None
    best_value: float | None = None
    completed_epochs: int | None = None


@dataclass
class Comparison:
    experiments: list[Compared]
    keys: list[str]  # every config key of any of them, sorted
    differing: list[str]  # the keys whose values differ (a key missing in one differs)

    def value(self, i: int, key: str) -> Any:
        return self.experiments[i].config.get(key, MISSING)

    def to_json(self) -> dict:
        return {"differing": self.differing, "experiments": [
            {"name": e.name, "path": str(e.path), "config_source": e.config_source, "note": e.note,
             "config": e.config, "reports": e.reports, "report": e.report, "best_epoch": e.best_epoch,
             "best_metric": e.best_metric, "best_value": e.best_value, "completed_epochs": e.completed_epochs}
            for e in self.experiments]}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_config(folder: Path) -> tuple[str | None, dict, str | None]:
    """(source, mapping, note): ``resolved_config.json`` (without ``_meta``), else the config file
    when it is YAML/JSON/TOML (a ``config.py`` is never executed)."""
    warnings: list[str] = []
    resolved = load_json(folder / RESOLVED_CONFIG_FILE, warnings)
    if resolved is not None:
        return RESOLVED_CONFIG_FILE, {k: v for k, v in resolved.items() if k != "_meta"}, None
    cfg = RunPaths(folder).config_file()
    if cfg is None:
        return None, {}, warnings[0] if warnings else "no config file"
    if cfg.suffix == ".py":
        return None, {}, f"{cfg.name} is not executed; train it once to compare its resolved config"
    from trainkit.config import load_file, resolve, to_dict

    try:
        data = load_file(cfg)
    except (UserError, ValueError) as e:
        return None, {}, str(e)
    try:  # the top-level defaults, as training would apply them (model/data stay as written)
        return f"{cfg.name} + defaults", to_dict(resolve(data, source=cfg.name)), None
    except (UserError, ValueError):
        return cfg.name, data, None


def compare(refs: list[str], *, root: str | os.PathLike = DEFAULT_ROOT,
            archive_dir: str | os.PathLike | None = None) -> Comparison:
    """The configs of two or more experiments (under ROOT, or archived) side by side, the keys that
    differ, each one's reports (judged: passed, failed, no gates, incomplete, stale; ``report``: the
    run's report) and best epoch."""
    if len(refs) < 2:
        raise UserError("compare needs at least two experiments")
    layout = Layout.at(root, archive_dir=archive_dir)
    folders = []
    for ref in refs:
        try:
            folders.append(experiment_dir(layout.root, ref))
        except UserError:
            try:
                folders.append(experiment_dir(layout.archive, ref, where="in"))
            except UserError:
                folders.append(experiment_dir(layout.root, ref, elsewhere=layout.archive))
    return compare_folders(folders)


def compare_folders(folders: list[Path]) -> Comparison:
    """:func:`compare` of experiment folders already found (trainmon's runs, under any of its ROOTs
    or their archives), in the order given."""
    if len(folders) < 2:
        raise UserError("compare needs at least two experiments")
    items = []
    for folder in folders:
        source, cfg, note = read_config(folder)
        c = Compared(folder.name, folder, source, flatten(cfg), note)
        judged = read_run_reports(str(folder), [])
        chosen = the_report(judged)
        c.report = chosen.name if chosen else None
        for r in judged:
            metrics = r.report.get("metrics") if isinstance(r.report.get("metrics"), dict) else {}
            c.reports[r.name] = {"metric": r.fact.metric, "value": r.fact.value, "gates_passed": r.fact.gates_passed,
                                 "completed": r.fact.completed, "verdict": r.fact.judged, "detail": r.fact.detail,
                                 "metrics": metrics}
        meta = load_json(RunPaths(folder).current_meta, []) or {}
        c.best_epoch = meta.get("best_epoch") if isinstance(meta.get("best_epoch"), int) else None
        c.best_metric = meta.get("best_metric") if isinstance(meta.get("best_metric"), str) else None
        c.best_value = meta.get("best_loss") if isinstance(meta.get("best_loss"), (int, float)) else None
        c.completed_epochs = meta.get("epochs_done") if isinstance(meta.get("epochs_done"), int) else None
        items.append(c)
    keys = sorted(set().union(*(c.config for c in items)))
    differing = [k for k in keys if len({_canon(c.config.get(k, MISSING)) for c in items}) > 1]
    return Comparison(items, keys, differing)


def _canon(v: Any) -> str:
    if v is MISSING:
        return "\0missing"
    import orjson

    return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
