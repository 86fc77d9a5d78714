"""A Hugging Face ``Trainer`` output folder, read-only: ``trainer_state.json`` (in the folder and in its
``checkpoint-*`` folders: the one with the highest ``global_step`` is the latest, while training
too) and ``config.json`` for the model's name. ``training_args.bin`` (a pickle) is never read. Each
folder's summary is kept in the user's cache (``$TRAINKIT_CACHE_DIR/hf/``), keyed by its state files'
and configs' sizes and mtimes."""

from __future__ import annotations

import hashlib
import os

import orjson

from trainkit.foreign.common import HF_CHECKPOINT_PREFIX, HF_STATE, MAX_TAIL, Foreign, cache_folder, entries, finite
from trainkit.runfolder.files import MiB, ReadProblem, read_limited

STATE_LIMIT = 64 * MiB  # log_history grows by a line per logged step
CONFIG_LIMIT = 1 * MiB
CACHE_VERSION = 1
CACHED = ("step", "total_steps", "epoch", "total_epochs", "last_loss", "loss_tail", "best_metric", "best_value",
          "best_where", "model", "stopped_by_trainer", "finished", "early_stopped")  # a summary's fields, cached


def _load(path: str, limit: int, warnings: list[str]) -> dict | None:
    try:
        data = read_limited(path, limit)
    except FileNotFoundError:
        return None
    except ReadProblem as e:
        warnings.append(f"{os.path.basename(path)}: {e}")
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        warnings.append(f"{os.path.basename(path)}: not JSON ({e.msg})")
        return None
    return value if isinstance(value, dict) else None


def state_files(path: str) -> list[str]:
    """``trainer_state.json`` of the folder and of each ``checkpoint-N`` folder."""
    out = []
    names = entries(path)  # (a name it does not list is not there: only the listed ones are asked)
    top = os.path.join(path, HF_STATE)
    if HF_STATE in names and os.path.isfile(top):
        out.append(top)
    for n in names:
        if n.startswith(HF_CHECKPOINT_PREFIX) and n[len(HF_CHECKPOINT_PREFIX):].isdigit():
            p = os.path.join(path, n, HF_STATE)
            if os.path.isfile(p):
                out.append(p)
    return out


def latest_state(path: str, warnings: list[str],
                 seen: list[tuple[float, int]] | None = None) -> tuple[dict | None, str | None]:
    """The trainer state with the highest ``global_step`` (the folder's own when they tie: it is
    written last, by ``save_state``), and its file: the folder's own and the newest checkpoint's
    that reads (the highest ``checkpoint-N``; an unreadable one: the next) are parsed, no other.
    ``seen`` gets each checkpoint's (mtime of its state, N): the run's pace."""
    top = os.path.join(path, HF_STATE)
    checkpoints = sorted(((int(p.split(os.sep)[-2][len(HF_CHECKPOINT_PREFIX):]), p)
                          for p in state_files(path) if p != top), reverse=True)
    if seen is not None:
        for n, p in checkpoints:
            try:
                seen.append((os.stat(p).st_mtime, n))
            except OSError:
                pass
    best, where = None, None
    if os.path.isfile(top):
        s = _load(top, STATE_LIMIT, warnings)
        if s and isinstance(s.get("global_step"), int):
            best, where = s, top
    for _, p in checkpoints:  # newest first: the first that reads is the newest
        s = _load(p, STATE_LIMIT, warnings)
        step = s.get("global_step") if s else None
        if not isinstance(step, int):
            continue
        if best is None or step > best["global_step"]:
            best, where = s, p
        break
    return best, where


def model_name(path: str, state_file: str | None, warnings: list[str]) -> str | None:
    for folder in (path, os.path.dirname(state_file) if state_file else None):
        if folder is None:
            continue
        cfg = _load(os.path.join(folder, "config.json"), CONFIG_LIMIT, warnings)
        if cfg:
            for key in ("_name_or_path", "model_type"):
                if isinstance(cfg.get(key), str) and cfg[key]:
                    return cfg[key]
            arch = cfg.get("architectures")
            if isinstance(arch, list) and arch and isinstance(arch[0], str):
                return arch[0]
    return None


def _stamp(path: str) -> list | None:
    """What a cached summary was read from: the folder's own state, the newest checkpoint's and the
    model configs beside them, each as (name, size, mtime); None when there is no state at all."""
    top = os.path.join(path, HF_STATE)
    newest = max(((int(p.split(os.sep)[-2][len(HF_CHECKPOINT_PREFIX):]), p) for p in state_files(path)
                  if p != top), default=None)
    files = [top, os.path.join(path, "config.json")]
    if newest is not None:
        files += [newest[1], os.path.join(os.path.dirname(newest[1]), "config.json")]
    out = [CACHE_VERSION]
    for p in files:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append([p[len(path):].lstrip(os.sep), st.st_size, st.st_mtime_ns])
    return out if any(isinstance(x, list) and x[0].endswith(HF_STATE) for x in out) else None


def _cache_file(path: str) -> str:
    key = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()  # (realpath: a syscall per part)
    return os.path.join(cache_folder("hf"), f"{key}.json")


def summarize(path: str, f: Foreign) -> None:
    """Fill ``f`` from the latest trainer state; the summary is kept in the user's cache by the state
    files' and configs' sizes and mtimes (a long ``log_history`` is parsed once, not per status)."""
    seen: list[tuple[float, int]] = []
    stamp = _stamp(path)
    cache = _cache_file(path)
    if stamp is not None:
        try:
            cached = orjson.loads(read_limited(cache, 1 * MiB))
            if cached.get("stamp") == stamp:
                for k in CACHED:
                    setattr(f, k, cached["fields"][k])
                f.pace = tuple(cached["pace"]) if cached.get("pace") else None
                return
        except (OSError, ReadProblem, ValueError, KeyError, TypeError, AttributeError):
            pass
    _summarize(path, f, seen)
    if stamp is not None and not f.warnings and f.step is not None:
        try:
            from trainkit.runfolder.files import write_json

            os.makedirs(os.path.dirname(cache), exist_ok=True)
            write_json(cache, {"stamp": stamp, "fields": {k: getattr(f, k) for k in CACHED}, "pace": f.pace})
        except OSError:
            pass  # a cache that cannot be written costs time, never a result


def _summarize(path: str, f: Foreign, seen: list[tuple[float, int]]) -> None:
    state, where = latest_state(path, f.warnings, seen)
    if state is None:
        f.warnings.append(f"no readable {HF_STATE} yet")
        return
    seen.sort(key=lambda x: x[1])
    if len(seen) > 1 and seen[-1][1] > seen[0][1]:  # the checkpoints' states: steps at their times
        f.pace = (*seen[0], *seen[-1])
    f.step = state["global_step"]
    max_steps = state.get("max_steps")
    f.total_steps = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
    f.epoch = finite(state.get("epoch"))
    epochs = state.get("num_train_epochs")
    f.total_epochs = epochs if isinstance(epochs, int) and epochs > 0 else None
    history = [h for h in state.get("log_history") or [] if isinstance(h, dict)]
    losses: list[float] = []
    for h in reversed(history):  # the last losses only (a long run logs thousands)
        v = finite(h.get("loss")) if "loss" in h else None
        if v is not None:
            losses.append(v)
            if len(losses) == MAX_TAIL:
                break
    losses.reverse()
    f.last_loss = losses[-1] if losses else None
    f.loss_tail = losses
    f.best_value = finite(state.get("best_metric"))
    if f.best_value is not None:
        f.best_metric = _best_metric_name(state, history)
        best = state.get("best_model_checkpoint")
        f.best_where = os.path.basename(best.rstrip("/")) if isinstance(best, str) else None
    f.model = model_name(path, where, f.warnings)
    control = ((state.get("stateful_callbacks") or {}).get("TrainerControl") or {}).get("args") or {}
    f.stopped_by_trainer = control.get("should_training_stop") is True
    reached = f.total_steps is not None and f.step >= f.total_steps
    f.finished = reached
    early = (state.get("stateful_callbacks") or {}).get("EarlyStoppingCallback")
    if isinstance(early, dict) and not reached and f.stopped_by_trainer:
        patience = (early.get("args") or {}).get("early_stopping_patience")
        counter = (early.get("attributes") or {}).get("early_stopping_patience_counter")
        f.early_stopped = isinstance(patience, int) and isinstance(counter, int) and counter >= patience


def _best_metric_name(state: dict, history: list[dict]) -> str:
    """``metric_for_best_model`` is in training_args.bin (never read): the eval key whose value
    equals ``best_metric``, else ``eval_loss``."""
    best = state.get("best_metric")
    for h in history:
        if best in h.values():  # (a C-level test; most records are not the best's)
            for k, v in h.items():
                if k.startswith("eval_") and v == best:
                    return k
    return "eval_loss"


def scalars(path: str) -> dict[str, list[tuple[float, float]]]:
    """Every number of ``log_history`` by key, at its step (training and evaluation records)."""
    state, _ = latest_state(path, [])
    out: dict[str, list[tuple[float, float]]] = {}
    for h in (state or {}).get("log_history") or []:
        if not isinstance(h, dict) or not isinstance(h.get("step"), int):
            continue
        for k, v in h.items():
            value = finite(v)
            if k not in ("step",) and value is not None:
                out.setdefault(k, []).append((float(h["step"]), value))
    return out
