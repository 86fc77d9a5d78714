"""Runs that other tools wrote, shown read-only beside trainkit's own: Hugging Face ``Trainer`` output
folders, Lightning ``lightning_logs/version_N`` folders and TensorBoard event folders.

Nothing here writes into those folders or executes anything from them (``training_args.bin`` is
never unpickled, checkpoints are never loaded: only their names are read). :func:`discover` finds
them under ROOT by what they hold; :func:`read` turns one into a :class:`Foreign` summary (steps,
target, epochs, loss, best metric, last write) with a reader per source (:mod:`.hf`,
:mod:`.lightning`, :mod:`.tensorboard`); :func:`judge` (pure) gives its state the way trainkit judges
its own runs: ``finished`` or ``early_stopped`` when the trainer's own state says so, ``running``
while a live process of this host holds one of its files open (:func:`writers`) or it was written
in the last :data:`QUIET_S`, then ``crashed`` when a run with a known target stopped short,
``stopped`` when the target is unknown (Lightning and TensorBoard do not record it). :func:`scalars`
gives every scalar by tag and step, for charts.

TensorBoard event files are read with the ``tensorboard`` package's event file loader (the optional
extra ``pip install ".[tensorboard]"``); without it such folders are listed with a one-line hint.
"""

from __future__ import annotations

import math
import os
import socket

from trainkit.foreign.common import (  # noqa: F401  (the package's names)
    EVENTS_PREFIX,
    HF,
    HF_CHECKPOINT_PREFIX,
    HF_STATE,
    LIGHTNING,
    LIGHTNING_HPARAMS,
    LIGHTNING_LOGS,
    LIGHTNING_METRICS,
    LIGHTNING_VERSION_PREFIX,
    MAX_TAIL,
    QUIET_S,
    SOURCES,
    TENSORBOARD,
    Foreign,
    _names,
    dir_entries,
    entries,
    finite,
    has_events,
    is_real_dir,
    loss_tag,
    may_hold,
    one_look,
    watched_name,
)


def judge(f: Foreign, now: float) -> tuple[str, str]:
    """(state, reason) of a foreign run, from what it says, whether a live process holds its files
    and how long ago it last wrote (pure)."""
    age = None if f.last_write is None else max(0.0, now - f.last_write)
    where = _position(f)
    if f.early_stopped:
        return "early_stopped", f"the trainer stopped early{where}"
    if f.finished:
        return "finished", f"the trainer's target reached{where}"
    if f.held_by is not None:
        return "running", f"pid {f.held_by} writes it{where}"
    if age is not None and age < QUIET_S:
        return "running", f"last write {_age(age)} ago{where}"
    quiet = f"no write for {_age(age)}" if age is not None else "nothing written"
    if f.stopped_by_trainer:
        return "stopped", f"the trainer stopped{where}; {quiet}"
    if f.total_steps or f.total_epochs:
        return "crashed", f"{quiet}, short of its target{where}"
    return "stopped", f"{quiet}{where} (the {f.source} folder does not record a target)"


def eta_s(f: Foreign, state: str) -> float | None:
    """Seconds left of a running run whose target is known in steps, at its pace so far (pure)."""
    if state != "running" or not f.total_steps or f.step is None or f.pace is None:
        return None
    t0, s0, t1, s1 = f.pace
    if s1 <= s0 or t1 <= t0:
        return None
    return max(0.0, (f.total_steps - f.step) * (t1 - t0) / (s1 - s0))


def _position(f: Foreign) -> str:
    if f.step is not None and f.total_steps:
        return f" at step {f.step} of {f.total_steps}"
    if f.step is not None:
        return f" at step {f.step}"
    return ""


def _age(seconds: float) -> str:
    from trainkit.formatting import format_age

    return format_age(seconds)


def progress(f: Foreign) -> tuple[int, int | None, float]:
    """(epochs done, total epochs, percentage): the percentage from steps when the target is in steps
    (never rounded onto 100 before the end), from epochs otherwise; 0 when the target is unknown."""
    from trainkit.formatting import percent_value

    done = int(math.floor(f.epoch + 1e-9)) if f.epoch is not None else 0
    if f.finished or f.early_stopped:
        done = max(done, int(math.ceil(f.epoch or 0)))
        return done, f.total_epochs or done or None, 100.0
    if f.total_steps and f.step is not None:
        return done, f.total_epochs, percent_value(min(f.step, f.total_steps) / f.total_steps * 100, 2)
    if f.total_epochs:
        return done, f.total_epochs, percent_value(min(done, f.total_epochs) / f.total_epochs * 100, 2)
    return done, None, 0.0


# ---------------------------------------------------------------------------------------------
# finding them


def is_hf(path: str) -> bool:
    names = entries(path)
    return HF_STATE in names or any(n.startswith(HF_CHECKPOINT_PREFIX) and may_hold(os.path.join(path, n), HF_STATE)
                                    and os.path.isfile(os.path.join(path, n, HF_STATE)) for n in names)


def model_config_only(path: str) -> bool:
    """A Hugging Face output folder that a trainkit run marker would claim only by its ``config.json``
    (the model's config, written by ``save_model``): it is not a trainkit run. True when the folder
    has ``config.json``, no other trainkit marker, and a ``trainer_state.json`` here or in a checkpoint."""
    from trainkit.runfolder import CONFIG_STEM, RUN_MARKERS

    model_config = CONFIG_STEM + ".json"
    if not (may_hold(path, model_config) and os.path.isfile(os.path.join(path, model_config))):
        return False
    return not any(may_hold(path, m) and os.path.exists(os.path.join(path, m))
                   for m in RUN_MARKERS if m != model_config) and is_hf(path)


def _lightning_versions(logs: str) -> list[str]:
    return [os.path.join(logs, n) for n in _names(logs)
            if n.startswith(LIGHTNING_VERSION_PREFIX) and is_real_dir(os.path.join(logs, n))]


def classify(path: str) -> list[tuple[str, str]]:
    """The foreign runs a folder directly under ROOT holds: [(source, run folder)]. An HF output
    folder is one run (its own TensorBoard logs under ``runs/`` included); a folder holding
    ``lightning_logs/`` (or being one) gives one run per ``version_N``; a folder of event files is
    a run, and so is each subfolder of event files (``SummaryWriter``'s ``runs/<date>_<host>/``)."""
    if is_hf(path):
        return [(HF, path)]
    name = os.path.basename(path.rstrip("/"))
    if name == LIGHTNING_LOGS:
        return [(LIGHTNING, v) for v in _lightning_versions(path)]
    if is_real_dir(os.path.join(path, LIGHTNING_LOGS)):
        return [(LIGHTNING, v) for v in _lightning_versions(os.path.join(path, LIGHTNING_LOGS))]
    if name.startswith(LIGHTNING_VERSION_PREFIX) and any(
            os.path.isfile(os.path.join(path, n)) for n in (LIGHTNING_METRICS, LIGHTNING_HPARAMS)):
        return [(LIGHTNING, path)]
    if has_events(path):
        return [(TENSORBOARD, path)]
    out = []
    for n in _names(path):
        sub = os.path.join(path, n)
        if not n.startswith(".") and is_real_dir(sub) and has_events(sub):
            out.append((TENSORBOARD, sub))
    return out


def discover(root: str, skip: set[str] | None = None, *, folders: list[str] | None = None) -> list[tuple[str, str]]:
    """Every foreign run under ``root`` (folders directly under it, and the runs they hold), sorted
    by path. ``skip``: folders already known as trainkit runs. ``folders``: the non-hidden real
    folders directly under ``root`` that are not trainkit runs, when the caller has listed them
    already (:func:`trainkit.status.scan`): ``root`` is not listed again."""
    out: list[tuple[str, str]] = []
    if folders is None:
        skip = skip or set()
        folders = [p for n in _names(root) if not n.startswith(".")
                   and (p := os.path.join(root, n)) not in skip and is_real_dir(p)]
    for path in folders:
        out.extend(classify(path))
    return sorted(out, key=lambda x: x[1])


def _files(path: str, depth: int):
    """(level, DirEntry) of every entry under ``path`` that is not a folder, ``depth`` levels down
    (0: ``path`` itself); links are not followed, unreadable folders and entries are skipped."""
    stack = [(path, 0)]
    while stack:
        d, level = stack.pop()
        folders = entries(d)  # (within one_look: the listing the other questions got)
        for e in dir_entries(d):
            if not folders.get(e.name, False):
                yield level, e
            elif level < depth:
                stack.append((e.path, level + 1))


def newest_write(path: str, depth: int = 2) -> float | None:
    """The newest modification time of the files under ``path`` (``depth`` levels; links not followed),
    the tool's own: trainkit's lifecycle record (``metadata.json``, written by an archive or a
    restore) is not a sign of training."""
    from trainkit.runfolder import METADATA_FILE

    newest = None
    for level, e in _files(path, depth):
        if level == 0 and e.name == METADATA_FILE:
            continue
        try:
            t = e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        newest = t if newest is None or t > newest else newest
    return newest


def signature(path: str) -> tuple:
    """(path, size, mtime) of the files a foreign run's state is read from (:func:`watched_name`),
    two levels down, never the checkpoints' weights: a reader that keeps its last summary compares
    it to know whether to read the run again."""
    out = []
    for _, e in _files(path, 2):
        if watched_name(e.name):
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            out.append((e.path, st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------
# reading one


def read(source: str, path: str, *, root: str, tail=None) -> Foreign:
    """The summary of one foreign run (never raises: problems become warnings). ``tail``: a long-lived
    reader's :class:`~trainkit.foreign.tensorboard.EventTail` of a TensorBoard run (reads only what
    was appended since its last call)."""
    prefix = root.rstrip(os.sep) + os.sep
    name = path[len(prefix):] if path.startswith(prefix) and ".." not in path.split(os.sep) \
        else os.path.relpath(path, root)
    f = Foreign(source, path, name)
    try:
        if tail is not None and source == TENSORBOARD:
            tail.read()
            tail.apply(f)
        elif source == HF:
            from trainkit.foreign import hf

            hf.summarize(path, f)
        elif source == LIGHTNING:
            from trainkit.foreign import lightning

            lightning.summarize(path, f)
        else:
            from trainkit.foreign import tensorboard

            tensorboard.summarize(path, f)
    except Exception as e:  # a reader of another tool's files: the row says what went wrong
        from trainkit.errors import first_line

        f.warnings.append(f"cannot read this {source} folder ({first_line(e, limit=200)})")
    f.last_write = newest_write(path, depth=3 if source == HF else 2)
    return f


def event_writer(name: str) -> tuple[float, str, int] | None:
    """(time, host, pid) of the process that created an event file, from its name
    (``events.out.tfevents.<time>.<host>.<pid>.<n>[.v2]``; a host name may hold dots)."""
    if not name.startswith(EVENTS_PREFIX):
        return None
    rest = name[len(EVENTS_PREFIX):].removesuffix(".v2")
    stamp, _, tail = rest.partition(".")
    parts = tail.rsplit(".", 2)
    if len(parts) != 3 or not stamp.isdigit() or not parts[1].isdigit():
        return None
    return float(stamp), parts[0], int(parts[1])


def writers(folders: list[str]) -> dict[str, int]:
    """{folder: pid} for the folders that a live process of this host is writing: the process named
    by an event file's name (a ``SummaryWriter`` names its file after its host and pid; it must have
    started before the file was made, so a reused pid does not count), or one (of those this user may
    inspect) holding a file open under the folder. One pass over the processes for all folders."""
    import psutil

    found: dict[str, int] = {}
    if not folders:
        return found
    host = socket.gethostname()
    for folder in folders:
        for sub in (folder, *(os.path.join(folder, n) for n in _names(folder) if is_real_dir(os.path.join(folder, n)))):
            for n in _names(sub):
                who = event_writer(n)
                if who is None or who[1] != host or folder in found:
                    continue
                try:
                    if psutil.Process(who[2]).create_time() <= who[0] + 2:
                        found[folder] = who[2]
                except (psutil.Error, OSError):
                    continue
    parents: dict[str, str] = {}
    left = {_real(p, parents): p for p in folders if p not in found}
    if not left:
        return found
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.info["pid"] == me:
            continue
        try:
            files = proc.open_files()
        except (psutil.Error, OSError):
            continue
        for of in files:  # the folders holding the file, up from it (a lookup each, whatever the number of folders)
            d = os.path.dirname(of.path)
            while len(d) > 1:
                folder = left.get(d)
                if folder is not None and folder not in found:
                    found[folder] = proc.info["pid"]
                d = os.path.dirname(d)
    return found


def _real(path: str, parents: dict[str, str]) -> str:
    """``os.path.realpath(path)``, from its parent's when ``path`` itself is a real folder (not a
    symlink): ``parents`` keeps each parent's, so the folders of one ROOT resolve it once."""
    parent, name = os.path.split(path)
    if not name or not parent or not is_real_dir(path):
        return os.path.realpath(path)
    real = parents.get(parent)
    if real is None:
        real = parents[parent] = os.path.realpath(parent)
    return os.path.join(real, name)


def scalars(source: str, path: str) -> dict[str, list[tuple[float, float]]]:
    """Every scalar of a foreign run, by tag: [(step, value)], in step order."""
    if source == HF:
        from trainkit.foreign import hf

        return hf.scalars(path)
    if source == LIGHTNING:
        from trainkit.foreign import lightning

        return lightning.scalars(path)
    from trainkit.foreign import tensorboard

    return tensorboard.scalars(path)
