"""TensorBoard event files (``events.out.tfevents.*`` from ``SummaryWriter``, Lightning's
``TensorBoardLogger``, Hugging Face's ``report_to="tensorboard"``, Keras), read-only, with the
``tensorboard`` package's event file loader (the optional extra ``pip install ".[tensorboard]"``).

Scalars are read by tag and step, both the TF1 form (``simple_value``) and the TF2 one (a scalar
tensor of the ``scalars`` plugin), from the package's raw loader (records parsed as ``Event``). An
event file is read from its start (the loader keeps no offset across processes), so a one-shot
reader (``trainkit status``) keeps each file's summary in the user's cache
(``$TRAINKIT_CACHE_DIR/tensorboard/``, keyed by the file's path, size and mtime): an unchanged file
costs a stat. A long-lived reader (trainmon) holds an :class:`EventTail`, whose loaders read only
what was appended since the last call.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import orjson

from trainkit.foreign.common import EVENTS_PREFIX, MAX_TAIL, Foreign, cache_folder, entries, finite, loss_tag

HINT = 'TensorBoard event files: install the reader with pip install ".[tensorboard]" (or pip install tensorboard)'
CACHE_VERSION = 2  # the summary's layout (unchanged by the faster loader)


class ReaderMissing(RuntimeError):
    """The ``tensorboard`` package is not installed."""


class _Loader:
    """The ``tensorboard`` package's raw event file loader (TFRecord framing and checksums, resuming
    where the last ``Load`` stopped) with each record parsed as an ``Event``. Its ``EventFileLoader``
    would also migrate every scalar into a tensor summary first: six times slower, for nothing here."""

    def __init__(self, path: str) -> None:
        try:
            from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
            from tensorboard.compat.proto.event_pb2 import Event
        except ImportError:
            raise ReaderMissing(HINT) from None
        self.raw, self.parse = RawEventFileLoader(path), Event.FromString

    def Load(self):  # noqa: N802 (the loader's own name)
        for record in self.raw.Load():
            yield self.parse(record)


def _loader(path: str) -> _Loader:
    return _Loader(path)


def _tensor_scalar(value) -> float | None:
    try:
        from tensorboard.util import tensor_util

        return finite(tensor_util.make_ndarray(value.tensor).item())
    except (ValueError, TypeError, ImportError):
        return None


def scalar_values(event) -> list[tuple[str, float]]:
    """(tag, value) of every scalar in one event."""
    out = []
    for v in event.summary.value:
        kind = v.WhichOneof("value")
        if kind == "simple_value":
            x = finite(v.simple_value)
        elif kind == "tensor" and (v.metadata.plugin_data.plugin_name in ("scalars", "") and
                                   len(v.tensor.tensor_shape.dim) == 0):
            x = _tensor_scalar(v)
        else:
            x = None
        if x is not None:
            out.append((v.tag, x))
    return out


def event_files(path: str) -> list[str]:
    names = sorted(n for n in entries(path) if n.startswith(EVENTS_PREFIX))
    return [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]


@dataclass
class FileSummary:
    """What one event file holds: per tag its count, last (step, value) and the last values."""

    tags: dict[str, dict] = field(default_factory=dict)
    max_step: int | None = None

    def add(self, step: int, tag: str, value: float) -> None:
        t = self.tags.setdefault(tag, {"n": 0, "last_step": step, "last_value": value, "tail": [],
                                       "min": value, "min_step": step})
        t["n"] += 1
        if value < t["min"]:
            t["min"], t["min_step"] = value, step
        t["last_step"], t["last_value"] = step, value
        t["tail"].append(value)
        if len(t["tail"]) > MAX_TAIL:
            del t["tail"][0]
        if self.max_step is None or step > self.max_step:
            self.max_step = step


class EventTail:
    """Incremental reading of a folder's event files: each :meth:`read` returns the scalars appended
    since the last call ``[(tag, step, value)]`` and keeps the summary up to date (trainmon)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loaders: dict[str, object] = {}
        self.summary = FileSummary()
        self.first: tuple[float, int] | None = None  # (wall time, step) of the first scalar read
        self.last: tuple[float, int] | None = None  # and of the latest: the run's pace

    def read(self, limit: int = 200_000) -> list[tuple[str, int, float]]:
        out: list[tuple[str, int, float]] = []
        for file in event_files(self.path):
            loader = self.loaders.get(file)
            if loader is None:
                loader = self.loaders[file] = _loader(file)
            for event in loader.Load():
                values = scalar_values(event)
                for tag, value in values:
                    self.summary.add(int(event.step), tag, value)
                    out.append((tag, int(event.step), value))
                if values:
                    self.last = (float(event.wall_time), int(event.step))
                    self.first = self.first or self.last
                if len(out) >= limit:  # bounded work per call: the rest on the next one
                    return out
        return out

    def apply(self, f: Foreign) -> None:
        """Fill a :class:`Foreign` from what was read so far (its pace from the events' wall times)."""
        apply(self.summary, f)
        if self.first is not None and self.last is not None and self.last[1] > self.first[1]:
            f.pace = (*self.first, *self.last)


def _cache_file(event_file: str) -> str:
    key = hashlib.sha1(os.path.abspath(event_file).encode()).hexdigest()  # (realpath: a syscall per part)
    return os.path.join(cache_folder("tensorboard"), f"{key}.json")


def file_summary(event_file: str) -> FileSummary:
    """The summary of one event file, from the cache when the file has not changed since."""
    st = os.stat(event_file)
    stamp = [CACHE_VERSION, st.st_size, st.st_mtime_ns]
    cache = _cache_file(event_file)
    try:
        with open(cache, "rb") as f:
            cached = orjson.loads(f.read(4 * 1024 * 1024))
        if cached.get("stamp") == stamp:
            return FileSummary(cached["tags"], cached["max_step"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    summary = FileSummary()
    for event in _loader(event_file).Load():
        for tag, value in scalar_values(event):
            summary.add(int(event.step), tag, value)
    try:
        from trainkit.runfolder.files import write_json

        os.makedirs(os.path.dirname(cache), exist_ok=True)
        write_json(cache, {"stamp": stamp, "tags": summary.tags, "max_step": summary.max_step})
    except OSError:
        pass  # a cache that cannot be written costs time, never a result
    return summary


def merged(summaries: list[FileSummary]) -> FileSummary:
    out = FileSummary()
    for s in summaries:  # file order: a restart's file comes after the first one
        for tag, t in s.tags.items():
            have = out.tags.get(tag)
            if have is None:
                out.tags[tag] = {**t, "tail": list(t["tail"])}
            else:
                have["n"] += t["n"]
                have["last_step"], have["last_value"] = t["last_step"], t["last_value"]
                have["tail"] = (have["tail"] + t["tail"])[-MAX_TAIL:]
                if t["min"] < have["min"]:
                    have["min"], have["min_step"] = t["min"], t["min_step"]
        if s.max_step is not None and (out.max_step is None or s.max_step > out.max_step):
            out.max_step = s.max_step
    return out


def apply(summary: FileSummary, f: Foreign) -> None:
    """Fill a :class:`Foreign` from a summary of scalars."""
    f.step = summary.max_step
    name = loss_tag(sorted(summary.tags))
    if name is not None:
        t = summary.tags[name]
        f.last_loss, f.loss_tail = t["last_value"], list(t["tail"])
    val = [tag for tag in sorted(summary.tags) if "loss" in tag.lower() and
           any(w in tag.lower() for w in ("val", "eval", "valid"))]
    if val:  # the lowest validation loss and its step
        t = summary.tags[val[0]]
        f.best_metric, f.best_value, f.best_where = val[0], t["min"], f"step {t['min_step']}"


def summary_of(path: str) -> FileSummary:
    """The summary of a folder's event files (each from the cache when unchanged)."""
    return merged([file_summary(p) for p in event_files(path)])


def summarize(path: str, f: Foreign) -> FileSummary | None:
    try:
        summary = summary_of(path)
    except ReaderMissing as e:
        f.warnings.append(str(e))
        return None
    apply(summary, f)
    return summary


def scalars(path: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    tail = EventTail(path)
    for tag, step, value in tail.read(limit=10**9):
        out.setdefault(tag, []).append((float(step), value))
    for points in out.values():
        points.sort(key=lambda p: p[0])
    return out
