"""Preparing a run folder for a training session: which folder, what config, resume or start over.

Nothing here imports torch: it decides, the engine trains.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainkit import config as C
from trainkit.files import FileFormatError, fsync_dir, read_json_object, write_json
from trainkit.runfolder import FORMAT_VERSION, RunPaths

RUN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}-.+")


def slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug or "run"


def looks_like_run_dir(folder: Path) -> bool:
    return (RUN_NAME.fullmatch(folder.name) is not None or folder.parent.name == "experiments"
            or (folder / "resolved_config.json").exists() or (folder / "checkpoints").is_dir())


def choose_run_dir(config_path: Path, run_dir: str | None, *, today: dt.date | None = None,
                   root: Path = Path("experiments")) -> Path:
    """``--run-dir``; else the config's folder when it is a run folder's ``config.*``;
    else ``experiments/<date>-<config stem>``."""
    if run_dir:
        return Path(run_dir)
    if config_path.stem == "config" and looks_like_run_dir(config_path.parent.resolve()):
        return config_path.parent
    today = today or dt.date.today()
    return root / f"{today.isoformat()}-{slugify(config_path.stem)}"


@dataclass
class Request:
    """What the user asked for, resolved: the config and where it came from."""

    config: C.TrainConfig
    paths: RunPaths
    source: str
    config_file: Path | None
    sets: list[str] = field(default_factory=list)
    epochs_arg: int | None = None


def resolve_request(target: str, *, run_dir: str | None, epochs: int | None, sets: list[str]) -> Request:
    """TARGET is a config file, or a run folder (resumed from its ``resolved_config.json``, which
    is read, never executed; a folder with only a config file uses that file)."""
    path = Path(target)
    if path.is_dir():
        paths = RunPaths(Path(run_dir) if run_dir else path)
        resolved = path / "resolved_config.json"
        if resolved.exists():
            try:
                data = read_json_object(resolved)
            except (FileFormatError, OSError) as e:
                raise C.ConfigError(f"{resolved}: cannot read ({e})") from None
            data = {k: v for k, v in data.items() if not k.startswith("_")}
            cfg = C.resolve(data, source=str(resolved), epochs=epochs, sets=sets)
            return Request(cfg, paths, str(resolved), None, list(sets), epochs)
        config_file = RunPaths(path).config_file()
        if config_file is None:
            raise C.ConfigError(f"{path}: not a run folder (no resolved_config.json and no config.yaml/.yml/"
                                ".json/.toml/.py)")
        path = config_file
    elif not path.exists():
        raise C.ConfigError(f"{path}: no such config file or run folder")
    data = C.load_file(path)
    cfg = C.resolve(data, source=str(path), epochs=epochs, sets=sets)
    paths = RunPaths(choose_run_dir(path, run_dir))
    return Request(cfg, paths, str(path), path, list(sets), epochs)


def read_previous_config(paths: RunPaths) -> dict | None:
    try:
        data = read_json_object(paths.resolved_config)
    except FileNotFoundError:
        return None
    except (FileFormatError, OSError) as e:
        raise C.ConfigError(f"{paths.resolved_config}: cannot read the run's config ({e}); "
                            "use --fresh to start over") from None
    return data


def check_resume(paths: RunPaths, new: dict, previous: dict | None) -> list[tuple[str, object, object]]:
    """Refuse a resume whose locked fields (task, model, data) differ; return the other changes."""
    if previous is None:
        return []
    diffs = C.locked_differences(previous, new)
    if diffs:
        raise C.ConfigError(f"cannot resume {paths.root}: locked field changed: {'; '.join(diffs)} "
                            "(use --fresh to start over, or another --run-dir)")
    return C.changed_fields(previous, new)


def write_resolved(req: Request, previous: dict | None, changes: list[tuple[str, object, object]],
                   *, at_epoch: int) -> None:
    meta = dict((previous or {}).get("_meta") or {})
    history = list(meta.get("history") or [])
    if changes:
        history.append({"t": time.time(), "at_epoch": at_epoch,
                        "changes": [{"field": f, "old": a, "new": b} for f, a, b in changes]})
    meta.update({
        "version": FORMAT_VERSION,
        "source": req.source,
        "overrides": req.sets,
        "epochs_arg": req.epochs_arg,
        "written_at": time.time(),
        "history": history,
    })
    write_json(req.paths.resolved_config, {**C.to_dict(req.config), "_meta": meta})


def snapshot_config(req: Request) -> None:
    """Keep a copy of the config file in the run folder (``config.<ext>``) if it has none, so the
    folder is self-contained. An existing run config is never overwritten."""
    if req.config_file is None or req.paths.config_file() is not None:
        return
    dest = req.paths.root / f"config{req.config_file.suffix.lower()}"
    if dest.resolve() != req.config_file.resolve():
        shutil.copy2(req.config_file, dest)


def move_aside(run_dir: Path, items: list[Path], *, now: float | None = None) -> Path | None:
    """Move each existing path of ``items`` (inside ``run_dir``) into a new
    ``superseded/<UTC time>/`` folder, keeping its path relative to the run folder. Never deletes,
    never overwrites. Returns that folder, or None when there was nothing to move."""
    present = [p for p in items if p.exists()]
    if not present:
        return None
    stamp = dt.datetime.fromtimestamp(now or time.time(), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = RunPaths(run_dir).superseded
    dest, n = base / stamp, 1
    while dest.exists():
        n += 1
        dest = base / f"{stamp}-{n}"
    for p in present:
        target = dest / p.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
    fsync_dir(run_dir)
    return dest


def move_outputs_aside(paths: RunPaths, *, now: float | None = None) -> Path | None:
    """``--fresh`` for training: move every training output aside (inputs stay in place)."""
    return move_aside(paths.root, paths.outputs(), now=now)
