"""Promotion of an experiment's config to production, gated on its evaluation report, and the
leaderboard of promotions.

A promotion is checked first (:func:`check_promotion`, read only): the run is not live; the run's
report (:func:`~trainkit.lifecycle.classification.pick_report`, or ``--report NAME``) is not stale
(its model is still ``checkpoints/best.pt``), completed, and passed its gates (judged by the
config's current gates when they changed since; a report with no gate needs an explicit
``threshold``); the metric (default: the report's own) is within ``threshold``; and it beats the
current holder of the target by at least ``min_improvement`` (absolute, in the direction the
holder was promoted with; MLflow's threshold + min_improvement). An existing target also needs
``force``.

The holder of ``configs/NAME`` is whoever the production config's own record names: the sidecar
``configs/.NAME.promotion.json`` written beside it at each promotion (experiment, its folder, the
metric, mode and value, the sha256 of the bytes promoted), wherever that experiment lives (another
experiments folder sharing ``configs/`` included). A config promoted before sidecars existed falls
back on the ``metadata.json`` records under ROOT and its archive.

:func:`promote` checks again under ROOT's lock and the target's lock and, only when every check
passes, backs up the old target, copies the config byte for byte, writes the sidecar, records the
promotion in ``metadata.json`` (and marks the previous holder's record replaced) and appends a
leaderboard row (values in full precision, ``repr``; the mode of the promotion in ``mode``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.errors import UserError
from trainkit.evaluation.report import checkpoint_of, limit_text, measured
from trainkit.formatting import fmt_sig
from trainkit.lifecycle.classification import GATES_FAILED, INCOMPLETE, NO_GATES, PASSED, STALE_REPORT
from trainkit.lifecycle.facts import lock_holder
from trainkit.lifecycle.layout import Layout, check_name, experiment_dir, experiment_folders, held, root_lock, slug
from trainkit.lifecycle.metadata import read_metadata, update_metadata
from trainkit.lifecycle.moves import sha256_file
from trainkit.lifecycle.verdicts import RunReport, read_run_reports, report_value, the_report
from trainkit.runfolder import DEFAULT_ROOT, LIVE, METADATA_FILE, REPORTS_DIR, RunPaths, readers
from trainkit.runfolder.files import MiB, ReadProblem, atomic_write, read_limited, write_json
from trainkit.status import run_status

MIN, MAX = "min", "max"
# The direction of a metric by its name; any other metric needs mode="min"|"max" (--mode).
DIRECTIONS = {"nrmse": MIN, "rmse": MIN, "mse": MIN, "mae": MIN, "loss": MIN, "error": MIN, "perplexity": MIN,
              "accuracy": MAX, "exact_match": MAX, "f1": MAX, "precision": MAX, "recall": MAX, "auc": MAX,
              "bleu": MAX}
COLUMNS = ("date", "experiment", "config", "metric", "value", "previous_experiment", "previous_value",
           "improvement", "mode")
EPS = 1e-12
SIDECAR_VERSION = 1
MAX_CONFIG_BYTES = 16 * MiB  # a config (or a production config backed up) larger than this is not copied
MAX_LEADERBOARD_BYTES = 64 * MiB  # reports/leaderboard.csv read at most (a row per promotion)


def metric_mode(metric: str, mode: str | None = None) -> str:
    """``min`` or ``max`` for ``metric``: ``mode`` when given, else by name (``*_loss`` is min)."""
    if mode is not None:
        if mode not in (MIN, MAX):
            raise UserError(f"--mode {mode!r}: choose min or max")
        return mode
    found = DIRECTIONS.get(metric) or (MIN if metric.endswith("_loss") else None)
    if found is None:
        raise UserError(f"is a higher or a lower {metric!r} better? pass --mode max or --mode min")
    return found


def improvement(value: float, previous: float, mode: str) -> float:
    """How much ``value`` beats ``previous`` (positive: better) in the metric's direction."""
    return previous - value if mode == MIN else value - previous


@dataclass(frozen=True)
class PromoteRequest:
    """What the user asked for (``trainkit experiments promote`` flags)."""

    name: str
    root: str | os.PathLike = DEFAULT_ROOT
    report: str | None = None  # reports/<report>.json; default: the run's report (pick_report)
    metric: str | None = None  # default: the report's own metric
    mode: str | None = None  # min | max for metrics not in DIRECTIONS
    threshold: float | None = None  # the metric must be within it (<= for min, >= for max)
    min_improvement: float = 0.0  # over the current holder of the target, in the metric's direction
    config_name: str | None = None  # default: train_<slug><suffix>
    production_dir: str | os.PathLike | None = None
    archive_dir: str | os.PathLike | None = None
    leaderboard_csv: str | os.PathLike | None = None
    update_leaderboard: bool = False  # also implied by leaderboard_csv
    force: bool = False  # replace an existing target (backed up first)


@dataclass
class Holder:
    """The experiment whose promotion currently owns the target file."""

    experiment: str | None  # None: the target exists but no promotion record names it
    folder: Path | None = None  # None: the experiment is no longer where the record says
    record: dict | None = None
    value: float | None = None  # in the request's metric
    file_matches: bool = False  # the target still has the bytes that were promoted
    mode: str | None = None  # the direction it was promoted with (for the request's metric)
    date: str | None = None  # its leaderboard row's date (None: unknown)

    def describe(self) -> str:
        if self.experiment is None:
            return "not promoted by trainkit"
        edited = "" if self.file_matches else ", edited since"
        return f"promoted from {self.experiment}{edited}"


@dataclass
class Check:
    name: str  # live | gates | threshold | improvement | target
    passed: bool
    detail: str


@dataclass
class PromotionPlan:
    request: PromoteRequest
    layout: Layout
    experiment: Path
    report: Path
    metric: str
    mode: str
    value: float
    metrics: dict
    config: Path
    target: Path
    backup: Path | None
    holder: Holder | None
    improvement: float | None
    checks: list[Check] = field(default_factory=list)
    row: dict | None = None  # the leaderboard row (None: the leaderboard is not updated)
    model_sha256: str | None = None  # the model the report measured (the run's checkpoint), when known

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def refusal(self) -> str | None:
        failed = [c.detail for c in self.checks if not c.passed]
        return "; ".join(failed) if failed else None

    def key(self) -> tuple:
        """What a user confirmed: the same key means the same promotion."""
        holder = self.holder.experiment if self.holder else None
        return (str(self.config), sha256_file(self.config), str(self.target), self.target.exists(), holder,
                self.metric, self.value)


@dataclass
class PromoteResult:
    plan: PromotionPlan
    promoted: bool
    reason: str | None = None  # why not
    backup: Path | None = None
    leaderboard: Path | None = None


# --------------------------------------------------------------------------------------------
# checking (read only)


def choose_report(folder: Path, name: str | None) -> RunReport:
    """``reports/<name>.json``, or the run's report (the rule of ``pick_report``), judged."""
    warnings: list[str] = []
    reports = read_run_reports(folder, warnings)
    if name is not None:
        check_name(name)
        found = next((r for r in reports if r.name == name), None)
        if found is None:
            why = f" ({warnings[0]})" if warnings and (folder / REPORTS_DIR / f"{name}.json").exists() else ""
            raise UserError(f"{folder.name}: no readable report {REPORTS_DIR}/{name}.json{why}")
        return found
    chosen = the_report(reports)
    if chosen is None:
        raise UserError(f"{folder.name}: no evaluation report in {REPORTS_DIR}/ (run `trainkit eval` first)"
                        + (f"; {warnings[0]}" if warnings else ""))
    return chosen


def target_name(config: Path, experiment: str, config_name: str | None) -> str:
    if config_name is None:
        return f"train_{slug(experiment)}{config.suffix}"
    check_name(config_name)
    suffix = Path(config_name).suffix
    if not suffix:
        return config_name + config.suffix
    if suffix.lower() != config.suffix.lower():
        raise UserError(f"--config-name {config_name}: the config is a {config.suffix} file; "
                        f"it is copied byte for byte, so the name must end in {config.suffix}")
    return config_name


def sidecar_path(target: Path) -> Path:
    """``configs/.NAME.promotion.json``: the production config's own record of its promotion."""
    return target.with_name(f".{target.name}.promotion.json")


def read_sidecar(target: Path) -> dict | None:
    rec = readers.load(sidecar_path(target), readers.ANY, [])
    return rec if rec is not None and isinstance(rec.get("experiment"), str) and rec["experiment"] else None


def _legacy_record(layout: Layout, target: Path) -> tuple[Path, dict] | None:
    """The latest promotion to ``target`` that no later one replaced, from the ``metadata.json`` of
    the experiments under ROOT and in the archive (for a target promoted before sidecars)."""
    best: tuple[float, Path, dict] | None = None
    for base in (layout.root, layout.archive):
        for name in experiment_folders(base):
            folder = base / name
            if not (folder / METADATA_FILE).is_file():
                continue
            for rec in read_metadata(folder).get("promotions") or []:
                if isinstance(rec, dict) and rec.get("target") == str(target) and not rec.get("replaced_at"):
                    at = rec.get("promoted_at") if isinstance(rec.get("promoted_at"), (int, float)) else 0.0
                    if best is None or at >= best[0]:
                        best = (at, folder, rec)
    return None if best is None else (best[1], best[2])


def _holder_folder(rec: dict) -> Path | None:
    """Where the holder's folder is now: where it was promoted from, else in that root's archive."""
    for key in ("experiment_path", "archive_path"):
        p = rec.get(key)
        if isinstance(p, str) and p and Path(p).is_dir():
            return Path(p)
    return None


def find_holder(layout: Layout, target: Path, metric: str) -> Holder | None:
    """Who holds ``target``: the experiment its sidecar names (wherever it lives), else the legacy
    ``metadata.json`` record under ROOT or its archive; a target without either is held by an
    unknown; None: no target and no record."""
    side = read_sidecar(target)
    if side is not None:
        name, folder, rec, date = side["experiment"], _holder_folder(side), side, side.get("date")
    else:
        found = _legacy_record(layout, target)
        if found is None:
            return Holder(None) if target.exists() else None
        folder, rec = found
        name, date = folder.name, None
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    value = metrics.get(metric, rec.get("value") if rec.get("metric") == metric else None)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    matches = target.is_file() and rec.get("sha256") == sha256_file(target)
    mode = rec.get("mode") if rec.get("metric") == metric and rec.get("mode") in (MIN, MAX) else None
    return Holder(name, folder, rec, float(value) if ok else None, matches, mode,
                  date if isinstance(date, str) else None)


def check_promotion(request: PromoteRequest, *, now: float | None = None) -> PromotionPlan:
    """Every check of a promotion and what it would write; writes nothing. Bad input (an unknown
    experiment, no report, a metric the report lacks) raises :class:`UserError`."""
    r = request
    now = time.time() if now is None else now
    layout = Layout.at(r.root, archive_dir=r.archive_dir, production_dir=r.production_dir,
                       leaderboard_csv=r.leaderboard_csv)
    layout.check_apart("the production folder", layout.production)
    folder = experiment_dir(layout.root, r.name, elsewhere=layout.archive)
    chosen = choose_report(folder, r.report)
    report_path, report, judged = chosen.path, chosen.report, chosen.judgement
    metric = r.metric or (report.get("metric") if isinstance(report.get("metric"), str) else None)
    if not metric:
        raise UserError(f"{report_path}: names no metric; pass --metric")
    mode = metric_mode(metric, r.mode)
    value = report_value(report, metric)
    metrics = {k: v for k, v in (report.get("metrics") or {}).items() if isinstance(v, (int, float))} \
        if isinstance(report.get("metrics"), dict) else {}
    if value is None:
        have = ", ".join(sorted(metrics)) or "none"
        raise UserError(f"{report_path}: has no value for {metric!r} (its metrics: {have})")
    metrics.setdefault(metric, value)
    config = RunPaths(folder).config_file()
    if config is None:
        raise UserError(f"{folder.name}: no config file (config.yaml/.yml/.json/.toml/.py) to promote")
    if not _inside(config, folder):
        raise UserError(f"{folder.name}: {config.name} is a symbolic link out of the experiment "
                        f"(to {os.path.realpath(config)}); only the experiment's own file is promoted")
    target = layout.production / target_name(config, folder.name, r.config_name)
    holder = find_holder(layout, target, metric)
    rel = f"{REPORTS_DIR}/{report_path.name}"
    shown = f"{metric} {fmt_sig(value, 6)}"
    checks: list[Check] = []

    run = run_status(folder, now=now)
    locked = lock_holder(str(folder), host=socket.gethostname(), ignore_own=False) \
        if RunPaths(folder).lock.exists() else None
    if run.state in LIVE or locked:
        checks.append(Check("live", False, f"{folder.name} is live ({run.state if run.state in LIVE else locked}); "
                                           "promote it once it is done"))
    checks.append(_gates_check(rel, report, judged, r.threshold, metric))

    if r.threshold is not None:
        within = value <= r.threshold + EPS if mode == MIN else value >= r.threshold - EPS
        sign = "<=" if mode == MIN else ">="
        checks.append(Check("threshold", within, f"{shown} {sign} threshold {limit_text(r.threshold)}" if within else
                            f"{shown} is {'over' if mode == MIN else 'under'} the threshold {limit_text(r.threshold)}"))

    gain = None
    if holder is not None and holder.experiment is not None:
        if holder.value is None:
            ok = r.min_improvement <= 0
            checks.append(Check("improvement", ok, f"the current holder {holder.experiment} has no {metric} value; "
                                + ("not compared" if ok else "cannot check --min-improvement")))
        elif holder.mode is not None and holder.mode != mode:
            checks.append(Check("improvement", False, f"the current holder {holder.experiment} was promoted with "
                                f"{metric} {holder.mode} ({'lower' if holder.mode == MIN else 'higher'} is better), "
                                f"this promotion ranks {metric} {mode}; pass --mode {holder.mode} to compare them"))
        else:
            gain = improvement(value, holder.value, mode)
            ok = gain >= r.min_improvement - EPS
            checks.append(Check("improvement", ok, f"{shown} vs {fmt_sig(holder.value, 6)} of {holder.experiment} "
                                f"(the current holder): improvement {fmt_sig(gain, 6)} {'>=' if ok else '<'} the "
                                f"minimum {limit_text(r.min_improvement)}"))
    else:
        checks.append(Check("improvement", True, f"nothing promoted as {layout.show(target)} yet"))

    backup = None
    if target.exists():
        if r.force:
            stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            backup = _free(target.with_name(f"{target.name}.{stamp}.bak"))
            held_by = holder.describe() if holder else "unknown"
            checks.append(Check("target", True, f"{layout.show(target)} exists ({held_by}); "
                                                f"backed up to {backup.name} first (--force)"))
        else:
            checks.append(Check("target", False, f"{layout.show(target)} exists "
                                                 f"({holder.describe() if holder else 'unknown'}); "
                                                 "pass --force to replace it (it is backed up first)"))
    row = None
    if r.update_leaderboard or r.leaderboard_csv is not None:
        prev = holder.experiment if holder else None
        row = {"date": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "experiment": folder.name, "config": layout.show(target), "metric": metric, "value": repr(float(value)),
               "previous_experiment": prev or "",
               "previous_value": "" if holder is None or holder.value is None else repr(float(holder.value)),
               "improvement": "" if gain is None else repr(float(gain)), "mode": mode}
    digest = report.get("model_sha256") if isinstance(report.get("model_sha256"), str) else None
    return PromotionPlan(r, layout, folder, report_path, metric, mode, value, metrics, config, target, backup, holder,
                         gain, checks, row, digest)


def _gates_check(rel: str, report: dict, j, threshold: float | None, metric: str) -> Check:
    """The report's verdict as a promotion check: stale, incomplete or failed refuse; no gate needs
    an explicit threshold (and every planned item measured, as a gate would)."""
    ckpt = checkpoint_of(report.get("model"))
    about = "" if ckpt is not None or not isinstance(report.get("model"), str) else \
        f" (it measured the model {report['model']}, not the run's checkpoint)"
    regated = " (by the current gates of resolved_config.json)" if j.regated else ""
    if j.verdict == STALE_REPORT:
        return Check("gates", False, f"report {rel} is stale: {j.detail.split('; ')[0]}")
    if j.verdict == INCOMPLETE:
        return Check("gates", False, f"report {rel}: the evaluation did not complete")
    if j.verdict == GATES_FAILED:
        return Check("gates", False, f"report {rel}: gates not passed{regated}: {j.detail.split('; ')[0]}")
    if j.verdict == PASSED:
        return Check("gates", True, f"report {rel}: gates passed{regated}{about}")
    assert j.verdict == NO_GATES
    if threshold is None:
        return Check("gates", False, f"report {rel}: evaluated, no gates configured; promote needs a passed gate "
                                     "(eval.gates) or an explicit --threshold")
    ok, planned, fraction = measured(report)
    if fraction is None or fraction < j.min_ok_fraction:
        return Check("gates", False, f"report {rel}: no gates, and {metric} was measured over {ok} of {planned} items "
                                     f"(< min_ok_fraction {limit_text(j.min_ok_fraction)})")
    return Check("gates", True, f"report {rel}: no gates configured; --threshold decides{about}")


def _inside(path: Path, folder: Path) -> bool:
    """``path`` resolves inside ``folder`` (a symlink out of the experiment does not)."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, base]) == base


def _read(path: Path, within: Path) -> bytes:
    """The bytes of a regular file, bounded, following a symlink only inside ``within``."""
    try:
        return read_limited(path, MAX_CONFIG_BYTES, within=within)
    except (ReadProblem, FileNotFoundError) as e:
        raise UserError(f"{path}: {e if isinstance(e, ReadProblem) else 'no such file'}; not promoted") from None


def _free(path: Path) -> Path:
    n, out = 1, path
    while os.path.lexists(out):
        out = path.with_name(f"{path.name}.{n}")
        n += 1
    return out


# --------------------------------------------------------------------------------------------
# promoting


def promote(request: PromoteRequest, *, expect: PromotionPlan | None = None, now: float | None = None) -> PromoteResult:
    """Promote when every check passes (checked again under ROOT's lock; with ``expect``, the plan
    a user confirmed, refused if anything it showed changed meanwhile). A refusal writes nothing."""
    plan = check_promotion(request, now=now)
    if not plan.ok:
        return PromoteResult(plan, False, plan.refusal)
    plan.layout.production.mkdir(parents=True, exist_ok=True)
    target_lock = plan.layout.production / f".{plan.target.name}.lock"  # experiments folders sharing configs/
    with root_lock(plan.layout, "promote"), held(target_lock, "promote"):
        plan = check_promotion(request, now=now)
        if not plan.ok:
            return PromoteResult(plan, False, plan.refusal)
        if expect is not None and plan.key() != expect.key():
            return PromoteResult(plan, False, "the config, the target or its holder changed since the check; "
                                              "check again")
        _write(plan, time.time() if now is None else now)
    return PromoteResult(plan, True, None, plan.backup, plan.layout.leaderboard if plan.row else None)


def _copy_bytes(data: bytes, path: Path, mode: int) -> None:
    """Atomically write ``data`` to ``path`` with the permission bits of ``mode``."""
    def write(f) -> None:
        os.fchmod(f.fileno(), stat.S_IMODE(mode))
        f.write(data)

    atomic_write(path, write, sync_dir=True)


def _write(plan: PromotionPlan, now: float) -> None:
    data = _read(plan.config, plan.experiment)
    plan.layout.production.mkdir(parents=True, exist_ok=True)
    if plan.backup is not None:
        _copy_bytes(_read(plan.target, plan.layout.production), plan.backup, plan.target.stat().st_mode)
    _copy_bytes(data, plan.target, plan.config.stat().st_mode)
    holder = plan.holder
    previous = None
    if holder is not None and holder.experiment is not None:
        previous = {"experiment": holder.experiment, "metric": plan.metric, "value": holder.value,
                    "promoted_at": (holder.record or {}).get("promoted_at"), "file_matched": holder.file_matches}
    record = {"promoted_at": now, "target": str(plan.target), "production_config": plan.layout.show(plan.target),
              "config": plan.config.name,
              "sha256": sha256_file(plan.target), "report": f"{REPORTS_DIR}/{plan.report.name}", "metric": plan.metric,
              "mode": plan.mode, "value": plan.value, "metrics": plan.metrics, "threshold": plan.request.threshold,
              "min_improvement": plan.request.min_improvement, "improvement": plan.improvement,
              "backup": str(plan.backup) if plan.backup else None, "previous": previous}

    def replace_old(meta: dict) -> None:
        for rec in meta.get("promotions") or []:
            if isinstance(rec, dict) and rec.get("target") == str(plan.target) and not rec.get("replaced_at"):
                rec["replaced_at"] = now
                rec["replaced_by"] = plan.experiment.name

    write_json(sidecar_path(plan.target), {
        "version": SIDECAR_VERSION, "config": plan.target.name, "sha256": record["sha256"],
        "experiment": plan.experiment.name, "experiment_path": str(plan.experiment),
        "archive_path": str(plan.layout.archive / plan.experiment.name), "root": str(plan.layout.root),
        "promoted_at": now, "date": plan.row["date"] if plan.row else None, "report": record["report"],
        "model_sha256": plan.model_sha256, "metric": plan.metric, "mode": plan.mode, "value": plan.value,
        "metrics": plan.metrics, "previous": previous})
    if holder is not None and holder.folder is not None and holder.folder != plan.experiment \
            and holder.folder.is_dir():
        update_metadata(holder.folder, replace_old)

    def add(meta: dict) -> None:
        replace_old(meta)
        if not isinstance(meta.get("promotions"), list):
            meta["promotions"] = []
        meta["promotions"].append(record)
        meta["promoted_to"] = str(plan.target)

    update_metadata(plan.experiment, add)
    if plan.row is not None:
        append_row(plan.layout.leaderboard, plan.row)


# --------------------------------------------------------------------------------------------
# the leaderboard


def append_row(path: Path, row: dict) -> None:
    """Append one row to the leaderboard CSV, writing the header when the file is new.

    The whole new file is written to a temp file and renamed over the old one (under a lock beside
    it): a reader sees the old or the new file, never a torn row, also on network filesystems where
    O_APPEND is not atomic; and the header is decided under the lock, so it is written exactly once.
    A file with other columns keeps them; a column of :data:`COLUMNS` it lacks is added to its
    header (older rows read it as empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with held(path.with_name(f".{path.name}.lock"), "leaderboard"):
        try:
            old = read_limited(path, MAX_LEADERBOARD_BYTES)
        except FileNotFoundError:
            old = b""
        except ReadProblem as e:
            raise UserError(f"{path}: {e}; no row appended") from None
        if old.strip():
            first, _, rest = old.partition(b"\n")
            header = next(csv.reader(io.StringIO(first.decode("utf-8", errors="replace"))))
            missing = [c for c in COLUMNS if c not in header and row.get(c) not in (None, "")]
            if missing:  # a file from before a column existed: the header grows; older rows read it empty
                header += missing
                line = io.StringIO()
                csv.writer(line, lineterminator="\n").writerow(header)
                old = line.getvalue().encode() + rest
            if not old.endswith(b"\n"):
                old += b"\n"
        else:
            header, old = list(COLUMNS), b""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if not old:
            w.writerow(header)
        w.writerow([row.get(col, "") for col in header])
        mode = path.stat().st_mode if old else 0o644
        _copy_bytes(old + buf.getvalue().encode(), path, mode)


@dataclass
class LeaderRow:
    rank: int
    date: str
    experiment: str
    config: str
    metric: str
    value: float | None
    previous_experiment: str
    previous_value: float | None
    improvement: float | None
    current: bool  # this promotion holds its config now (the config's own record names it)
    mode: str | None = None  # min | max: as promoted (older rows: by the metric's name; None: unknown)


@dataclass
class Leaderboard:
    path: Path
    exists: bool
    rows: list[LeaderRow] = field(default_factory=list)


def _float(text: str | None) -> float | None:
    try:
        v = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) else None


def _row_mode(row: dict) -> str | None:
    mode = row.get("mode")
    if mode in (MIN, MAX):
        return mode
    try:
        return metric_mode(row.get("metric") or "")
    except UserError:
        return None


def _current_holders(raw: list[dict], layout: Layout, csv_path: Path) -> dict[str, tuple[str, str | None]]:
    """config (as the CSV names it) -> (holder experiment, its row's date or None), read from each
    production config's own record (legacy: the metadata.json records under ROOT and its archive)."""
    out: dict[str, tuple[str, str | None]] = {}
    for config in {r.get("config") or "" for r in raw}:
        if not config:
            continue
        p = Path(config)
        candidates = [p] if p.is_absolute() else [layout.root.parent / p, csv_path.parent.parent / p]
        for target in candidates:
            side = read_sidecar(target)
            if side is not None:
                date = side.get("date")
                out[config] = (side["experiment"], date if isinstance(date, str) else None)
                break
        else:
            for target in candidates:
                found = _legacy_record(layout, target)
                if found is not None:
                    out[config] = (found[0].name, None)
                    break
    return out


def leaderboard(csv_path: str | os.PathLike | None = None, *, root: str | os.PathLike = DEFAULT_ROOT,
                metric: str | None = None) -> Leaderboard:
    """The leaderboard rows, grouped by metric (and mode) and sorted best first within each, by the
    mode each was promoted with (a row without one: by the metric's name; unknown: ascending);
    ``current`` marks the row of each config's current holder (its own record says who);
    ``metric`` keeps one metric only."""
    layout = Layout.at(root)
    path = Path(csv_path) if csv_path is not None else layout.leaderboard
    try:
        text = read_limited(path, MAX_LEADERBOARD_BYTES).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return Leaderboard(path, False)
    except ReadProblem as e:
        raise UserError(f"{path}: {e}") from None
    raw = list(csv.DictReader(io.StringIO(text)))
    holders = _current_holders(raw, layout, path)
    current: dict[str, int] = {}  # config -> the index of its holder's row (the latest matching one)
    for i, r in enumerate(raw):
        held_by = holders.get(r.get("config") or "")
        if held_by and r.get("experiment") == held_by[0] and (held_by[1] is None or r.get("date") == held_by[1]):
            current[r.get("config") or ""] = i
    rows = []
    for i, r in enumerate(raw):
        m = r.get("metric") or ""
        if metric is not None and m != metric:
            continue
        rows.append(LeaderRow(0, r.get("date") or "", r.get("experiment") or "", r.get("config") or "", m,
                              _float(r.get("value")), r.get("previous_experiment") or "",
                              _float(r.get("previous_value")), _float(r.get("improvement")),
                              current.get(r.get("config") or "") == i, _row_mode(r)))

    def key(row: LeaderRow):
        sign = -1.0 if row.mode == MAX else 1.0
        return (row.metric, row.mode or "", row.value is None, sign * row.value if row.value is not None else 0.0,
                row.date)

    rows.sort(key=key)
    for i, row in enumerate(rows):
        same = i > 0 and (rows[i - 1].metric, rows[i - 1].mode) == (row.metric, row.mode)
        row.rank = rows[i - 1].rank + 1 if same else 1
    return Leaderboard(path, True, rows)
