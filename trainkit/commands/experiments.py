"""``trainkit experiments new|list|compare|archive|restore|promote|leaderboard``: the experiment
lifecycle (formatting only; the work is :mod:`trainkit.lifecycle`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from trainkit.commands._args import add_root_arguments, fmt
from trainkit.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UserError
from trainkit.runfolder import symbol_of

DEFAULT_ROOT = "experiments"
CLASSES = ("active", "success", "failed", "evaluated", "stale", "archived", "promoted")
SYMBOLS = {"active": "▶", "success": "✓", "failed": "✗", "evaluated": "◇", "stale": "~", "archived": "▣",
           "promoted": "★"}

EPILOG = fmt("""
commands:
  new NAME            create ROOT/YYYY-MM-DD-NAME/ with a config, notes.md and metadata.json
  list [ROOT]         every experiment, classified: active, success, failed, evaluated, stale, archived, promoted
  compare A B [...]   configs side by side (differing keys marked), report metrics, best epoch
  archive [ROOT] ...  move chosen experiments into <ROOT>-archive/ (never active ones, never live runs)
  restore NAME ...    move archived experiments back (the undo of archive)
  promote NAME        copy a passing experiment's config to configs/train_<slug>.<ext>, gated on its report
  leaderboard         the promotions in reports/leaderboard.csv, best first

examples:
  trainkit experiments new lr-sweep --from examples/burgers.yaml
  trainkit experiments list --status stale
  trainkit experiments archive --status stale --dry-run
  trainkit experiments promote 2026-11-22-lr-sweep --nrmse-threshold 0.1 --update-leaderboard

Experiments are given by NAME (the folder under ROOT) or by a path to one inside ROOT
(experiments/2026-11-22-x/ works, as tab completion writes it); anything else is refused.
Run 'trainkit experiments COMMAND --help' for a command's options and examples.
""")


def register(sub) -> None:
    p = sub.add_parser("experiments", help="the experiment lifecycle: new, list, compare, archive, promote, ...",
                       description="Manage experiments: one dated folder per idea, classified automatically, "
                                   "archived when done (never lost), promoted to production when it worked.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sp = p.add_subparsers(dest="action", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda args: _no_action(p))
    for add in (_add_new, _add_list, _add_compare, _add_archive, _add_restore, _add_promote, _add_leaderboard):
        add(sp)


def _no_action(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _parser(sp, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return sp.add_parser(name, help=help, description=description, epilog=fmt(epilog),
                         formatter_class=argparse.RawDescriptionHelpFormatter)


def _root_option(p: argparse.ArgumentParser, archive: bool = True) -> None:
    p.add_argument("--root", default=DEFAULT_ROOT, metavar="ROOT", help="folder holding the experiments "
                   "(default: ./experiments)")
    if archive:
        p.add_argument("--archive-dir", metavar="DIR", help="the archive (default: <ROOT>-archive beside ROOT)")


def _day_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--active-days", type=float, default=7.0, metavar="D",
                   help="anything changed within D days keeps an experiment active (default 7)")
    p.add_argument("--stale-days", type=float, default=30.0, metavar="D",
                   help="nothing changed for more than D days and no verdict: stale (default 30)")


def _options(args):
    from trainkit.lifecycle import Options

    if args.active_days < 0 or args.stale_days < 0:
        raise UserError("--active-days and --stale-days must be >= 0")
    return Options(active_days=args.active_days, stale_days=args.stale_days)


# --------------------------------------------------------------------------------------------
# new


def _add_new(sp) -> None:
    p = _parser(sp, "new", "create a dated experiment folder", "Create ROOT/YYYY-MM-DD-NAME/ with the config "
                "(copied byte for byte from --from, else a starter config.yaml), a notes.md template "
                "(hypothesis, config changes, results) and metadata.json.", """
        examples:
          trainkit experiments new lr-sweep                                  # starter config.yaml
          trainkit experiments new wide --from examples/burgers.yaml         # copy a config file
          trainkit experiments new wide2 --from 2026-11-22-wide              # copy another experiment's config

        A NAME that already starts with a date (2026-11-22-x) is used as is. Then train it with
        `trainkit train ROOT/<folder>` (or let `trainkit launch` start it).
        """)
    p.add_argument("name", metavar="NAME", help="the idea's short name (letters, digits, -, _, .)")
    p.add_argument("--from", dest="source", metavar="CONFIG", help="a config file, a run folder or an "
                   "experiment NAME whose config is copied")
    _root_option(p, archive=False)
    p.set_defaults(func=cmd_new)


def cmd_new(args) -> int:
    from trainkit.lifecycle import new_experiment

    made = new_experiment(args.name, root=args.root, from_config=args.source)
    print(f"created {_rel(made.path)}/ with {made.config.name}"
          + (f" (from {made.source})" if made.source else " (starter config)") + ", notes.md, metadata.json")
    print(f"next: edit {_rel(made.notes)}, then `trainkit train {_rel(made.path)}`")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# list


def _add_list(sp) -> None:
    p = _parser(sp, "list", "every experiment with its class and reason", "List the experiments under ROOT with "
                "their class (active, success, failed, evaluated, stale, archived, promoted) and the reason, the "
                "run state, progress, best metric, the run's report and last change.", """
        examples:
          trainkit experiments list                      # ./experiments
          trainkit experiments list runs/ --status failed
          trainkit experiments list --json               # [{"name", "status", "reason", ...}, ...]
          trainkit experiments list --archived           # what is in the archive

        Classification, first rule that applies: live run -> active; in the archive -> archived;
        promoted (metadata.json) -> promoted; changed within --active-days -> active; the last ✓/✗
        line of notes.md -> success/failed; the run's report (reports/default.json, else the one
        written last) with its gates failed -> failed, passed -> success, no gates configured or
        stale (checkpoints/best.pt changed since it was written) -> evaluated; run failed/crashed
        past the launcher's retry cap -> failed; nothing changed for more than --stale-days ->
        stale; else active (no verdict yet). A report is judged by the gates of the run's
        resolved_config.json when they changed after it was written.
        """)
    add_root_arguments(p)
    p.add_argument("--status", choices=CLASSES, help="only experiments of this class")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--archived", action="store_true", help="list the archive instead of ROOT")
    p.add_argument("--archive-dir", metavar="DIR", help="the archive (default: <ROOT>-archive beside ROOT)")
    _day_options(p)
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    import orjson

    from trainkit.lifecycle import list_experiments

    rows = list_experiments(args.root, status=args.status, archived=args.archived, archive_dir=args.archive_dir,
                            options=_options(args), stale_s=args.stale_after)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    print(render_list(rows, args.root, time.time()))
    return EXIT_OK


def render_list(rows, root: str, now: float) -> str:
    from trainkit.formatting import fmt_percent, fmt_sig
    from trainkit.status import format_age

    if not rows:
        return f"no experiments under {root}"
    header = ("NAME", "STATUS", "STATE", "%", "BEST", "REPORT", "CHANGED", "REASON")
    table = []
    for e in rows:
        best = f"{e.best_metric} {fmt_sig(e.best_value)}" if e.best_metric and e.best_value is not None else "-"
        report = report_cell(e)
        state = f"{symbol_of(e.state)} {e.state}" if e.state else "-"
        pct = fmt_percent(e.progress_percentage)  # 199/200: 99.5 %, never 100 %
        changed = "-" if e.last_change is None else format_age(now - e.last_change) + " ago"
        table.append((e.name, f"{SYMBOLS.get(e.status, '?')} {e.status}", state, pct, best, report, changed, e.reason))
    lines = _columns(header, table)
    counts: dict[str, int] = {}
    for e in rows:
        counts[e.status] = counts.get(e.status, 0) + 1
    lines += ["", f"{len(rows)} experiment{'s' if len(rows) != 1 else ''}: "
              + ", ".join(f"{counts[c]} {c}" for c in CLASSES if c in counts)]
    warned = [(e.name, w) for e in rows for w in e.warnings]
    if warned:
        lines += ["", f"{len(warned)} warning(s):"] + [f"  {n}: {w}" for n, w in warned]
    return "\n".join(lines)


def report_cell(e) -> str:
    """The run's report in a cell: ``nrmse 0.0527 passed`` (``qs: ...`` when it is not
    ``default.json``; ``stale`` when best.pt changed since it was written)."""
    from trainkit.formatting import fmt_sig

    if e.report is None:
        return "-"
    value = f"{e.report_metric} {fmt_sig(e.report_value)}" if e.report_metric and e.report_value is not None else "-"
    name = "" if e.report == "default" else f"{e.report}: "
    return f"{name}{value} {e.report_verdict}" if e.report_verdict else f"{name}{value}"


def _columns(header: tuple, rows: list[tuple]) -> list[str]:
    """Left-aligned columns; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + str(r[-1])
            for r in [header, *rows]]


# --------------------------------------------------------------------------------------------
# compare


def _add_compare(sp) -> None:
    p = _parser(sp, "compare", "configs and results side by side", "Show the configs of two or more experiments "
                "side by side (keys that differ marked with *), each one's report metrics and best epoch. "
                "Configs come from resolved_config.json, else the YAML/JSON/TOML config file (never executed).", """
        examples:
          trainkit experiments compare 2026-11-22-base 2026-11-23-wide
          trainkit experiments compare experiments/2026-11-22-base/ 2026-11-23-wide --diff-only
          trainkit experiments compare a b c --json
        """)
    p.add_argument("names", nargs="+", metavar="NAME", help="experiments (under ROOT or archived)")
    _root_option(p)
    p.add_argument("--diff-only", action="store_true", help="show only the keys that differ")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    import orjson

    from trainkit.lifecycle import compare

    c = compare(args.names, root=args.root, archive_dir=args.archive_dir)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(c.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    print(render_compare(c, diff_only=args.diff_only))
    return EXIT_OK


def _cell(v) -> str:
    from trainkit.formatting import fmt_sig
    from trainkit.lifecycle.experiments import MISSING

    if v is MISSING:
        return "-"
    if isinstance(v, float):
        return fmt_sig(v, 6)
    if isinstance(v, (list, dict)):
        import orjson

        return orjson.dumps(v).decode()
    return "null" if v is None else str(v)


def render_compare(c, *, diff_only: bool = False) -> str:
    from trainkit.formatting import fmt_sig

    names = [e.name for e in c.experiments]
    header = ("", "KEY", *names)
    rows = []
    differing = set(c.differing)
    for key in c.keys:
        if diff_only and key not in differing:
            continue
        rows.append(("*" if key in differing else "", key, *(_cell(c.value(i, key)) for i in range(len(names)))))
    reports = sorted({r for e in c.experiments for r in e.reports})

    def report_text(rep: dict | None) -> str:
        if rep is None:
            return "-"
        value = f"{rep['metric']} {fmt_sig(rep['value'])}" if rep.get("value") is not None else "-"
        return f"{value} ({rep.get('verdict') or '?'})"

    if reports:  # the run's report (the one its class comes from), then every report by name
        rows.append(("", "the run's report", *(f"{e.report}: {report_text(e.reports.get(e.report))}" if e.report
                                               else "-" for e in c.experiments)))
    for r in reports:
        rows.append(("", f"report {r}", *(report_text(e.reports.get(r)) for e in c.experiments)))
    rows.append(("", "best epoch", *(f"{e.best_epoch} ({e.best_metric} {fmt_sig(e.best_value)})"
                                     if e.best_epoch is not None and e.best_value is not None else "-"
                                     for e in c.experiments)))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    notes = [f"{e.name}: {e.note}" for e in c.experiments if e.note]
    lines += ["", f"{len(c.differing)} of {len(c.keys)} config keys differ (marked *)"
              + ("; sources: " + ", ".join(f"{e.name}: {e.config_source or '-'}" for e in c.experiments))]
    lines += notes
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# archive / restore


def _add_archive(sp) -> None:
    p = _parser(sp, "archive", "move finished experiments into the archive", "Move the chosen experiments into "
                "<ROOT>-archive/ and record in each metadata.json archived_at, its class and reason, the original "
                "path and a manifest (path, size, sha256 of every file). Live runs are never archived; --status never "
                "selects active experiments (changed within --active-days, or no verdict yet), a NAME is archived "
                "whenever it is not live. The selection is printed before anything moves.", """
        examples:
          trainkit experiments archive --status stale --dry-run        # what would move, with file counts
          trainkit experiments archive --status all --list-only        # just the names
          trainkit experiments archive 2026-11-01-old experiments/2026-11-02-older/
          trainkit experiments archive runs/ --status failed           # ROOT runs/

        --status all selects success, failed, evaluated and stale (a promoted experiment is archived
        only by name). Without NAMEs and without --status nothing is archived. Same filesystem: one atomic
        rename; across filesystems: copy, verify every file, then delete the source; an interrupted
        move is finished (or rolled back) by the next archive. Undo: trainkit experiments restore NAME.
        Exit 0 when everything chosen moved, 1 when a named one did not, 2 on bad input.
        """)
    p.add_argument("targets", nargs="*", metavar="[ROOT] NAME", help="experiments (a first argument that is a "
                   "folder of experiments is ROOT)")
    p.add_argument("--status", choices=("all", "success", "failed", "evaluated", "stale"), help="choose by class")
    p.add_argument("--dry-run", action="store_true", help="print each planned move (files, size); change nothing")
    p.add_argument("--list-only", action="store_true", help="print the names that would be archived, one a line")
    p.add_argument("--root", metavar="ROOT", help="folder holding the experiments (default: ./experiments)")
    p.add_argument("--archive-dir", metavar="DIR", help="the archive (default: <ROOT>-archive beside ROOT)")
    _day_options(p)
    p.set_defaults(func=cmd_archive)


def _split_root(args) -> tuple[str, list[str]]:
    """``[ROOT] [NAME ...]``: the first argument is ROOT when --root is not given and it is a folder
    of experiments (an existing folder that is not itself an experiment of ./experiments)."""
    targets = list(args.targets)
    if args.root is not None:
        return args.root, targets
    if targets and _is_root(targets[0]):
        return targets[0], targets[1:]
    return DEFAULT_ROOT, targets


def _is_root(text: str) -> bool:
    from trainkit.runfolder import METADATA_FILE, NOTES_FILE, RUN_MARKERS

    p = Path(text)
    if not p.is_dir():
        return False
    if os.path.realpath(p.parent) == os.path.realpath(DEFAULT_ROOT):
        return False
    return not any((p / m).exists() for m in (*RUN_MARKERS, NOTES_FILE, METADATA_FILE))


def cmd_archive(args) -> int:
    from trainkit.lifecycle import archive, plan_archive

    root, names = _split_root(args)
    options = dataclasses.replace(_options(args), named=bool(names))  # a named one: archived whenever not live
    plan = plan_archive(root, names, status=args.status, archive_dir=args.archive_dir, options=options)
    if not plan.chosen:
        raise UserError("nothing chosen: name the experiments to archive, or choose them with "
                        "--status all|success|failed|evaluated|stale (add --dry-run to see what would move)")
    if args.list_only:
        for c in plan.selected:
            print(c.name)
        return EXIT_OK
    print(render_plan(plan, dry_run=args.dry_run))
    if args.dry_run:
        return EXIT_OK
    result = _interruptible(lambda: archive(plan, progress=_progress_printer()))
    if result is None:
        return EXIT_INTERRUPTED
    print(render_result(result))
    unfinished = any(not o.moved for o in result.finished)  # an interrupted move rolled back or still pending
    return EXIT_FAILED if result.not_moved or unfinished or (plan.named and plan.skipped) else EXIT_OK


def _add_restore(sp) -> None:
    p = _parser(sp, "restore", "move archived experiments back", "Move archived experiments back under ROOT "
                "(the undo of archive); metadata.json keeps the archive record in its history.", """
        examples:
          trainkit experiments restore 2026-11-01-old
          trainkit experiments restore experiments-archive/2026-11-01-old/ --dry-run
          trainkit experiments list --archived            # what can be restored

        An existing folder under ROOT is never overwritten; a live run is never moved.
        """)
    p.add_argument("names", nargs="+", metavar="NAME", help="archived experiments (NAME or a path in the archive)")
    _root_option(p)
    p.add_argument("--dry-run", action="store_true", help="print what would move; change nothing")
    p.set_defaults(func=cmd_restore)


def cmd_restore(args) -> int:
    from trainkit.lifecycle import plan_restore, restore

    plan = plan_restore(args.root, args.names, archive_dir=args.archive_dir)
    print(render_plan(plan, dry_run=args.dry_run))
    if args.dry_run:
        return EXIT_OK
    result = _interruptible(lambda: restore(plan, progress=_progress_printer()))
    if result is None:
        return EXIT_INTERRUPTED
    print(render_result(result))
    unfinished = any(not o.moved for o in result.finished)
    return EXIT_FAILED if result.not_moved or unfinished or plan.skipped else EXIT_OK


def _interruptible(work):
    """Run a move; on Ctrl-C say that nothing is lost and how to finish (None is returned)."""
    try:
        return work()
    except KeyboardInterrupt:
        print("\ninterrupted: nothing is lost (a move across filesystems is journaled); run the same command "
              "again to finish it", file=sys.stderr)
        return None


def human_bytes(n: int) -> str:
    from trainkit.formatting import fmt_num

    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "B" else f"{fmt_num(size, '.1f')} {unit}"
        size /= 1000
    return f"{n} B"


def render_plan(plan, *, dry_run: bool) -> str:
    lay = plan.layout
    verb = "archive" if plan.op == "archive" else "restore"
    lines = [f"interrupted move of {n} will be finished first" for n in plan.pending]
    if dry_run:
        lines += [f"would move {lay.show(c.src)} -> {lay.show(c.dst)} ({c.files} files, {human_bytes(c.bytes)}): "
                  f"{c.status}: {c.reason}" for c in plan.selected]
    else:
        lines.append(f"{verb}: {len(plan.selected)} selected, {lay.show(plan.source)} -> {lay.show(plan.target)}")
        if plan.selected:
            lines += _columns(("", "NAME", "STATUS", "FILES", "SIZE", "REASON"), [
                ("", c.name, c.status, str(c.files), human_bytes(c.bytes), c.reason) for c in plan.selected])
    if plan.skipped:
        lines.append(f"not selected ({len(plan.skipped)}):")
        lines += [f"  {c.name}: {c.status}: {c.reason} -> {c.why_not}" for c in plan.skipped]
    if dry_run:
        lines.append("dry run: nothing was changed")
    return "\n".join(lines)


def render_result(result) -> str:
    lay = result.plan.layout
    past = "archived" if result.plan.op == "archive" else "restored"
    lines = []
    for o in result.finished:
        lines.append(f"{'finished' if o.moved else 'not finished'} the interrupted move of {o.name}: {o.detail}")
    for o in result.moved:
        lines.append(f"{past} {o.name} -> {lay.show(o.dst)} ({o.detail}, {o.files} files, {human_bytes(o.bytes)})")
    for o in result.not_moved:
        lines.append(f"not {past} {o.name}: {o.detail}")
    lines.append(f"{len(result.moved)} {past}, {len(result.not_moved)} not")
    return "\n".join(lines)


def _progress_printer():
    """Progress of long (cross-filesystem) moves on stderr, when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(p) -> None:
        now = time.monotonic()
        if p.phase == "copy" and now - last[0] < 0.2 and p.files_done < p.files_total:
            return
        last[0] = now
        detail = (f"{p.files_done}/{p.files_total} files, {human_bytes(p.bytes_done)}/{human_bytes(p.bytes_total)}"
                  if p.phase == "copy" else "")
        sys.stderr.write(f"\r\x1b[K{p.phase} {p.name} {detail}")
        sys.stderr.flush()
        if p.phase == "delete":
            sys.stderr.write("\r\x1b[K")

    return show


# --------------------------------------------------------------------------------------------
# promote


def _add_promote(sp) -> None:
    p = _parser(sp, "promote", "copy a passing experiment's config to production", "Promote an experiment: check "
                "that the run's report (reports/default.json, else the one written last; --report NAME) is not "
                "stale, completed and passed its gates (a report with no gates needs --threshold), that the metric "
                "is within --threshold and that it beats the current holder of the production config (named by "
                "the config's own record, configs/.NAME.promotion.json) by --min-improvement; then copy its config "
                "byte for byte to configs/train_<slug>.<ext>, record the promotion beside it and in metadata.json "
                "and (with --update-leaderboard) append a row to reports/leaderboard.csv. A refusal writes "
                "nothing.", """
        examples:
          trainkit experiments promote 2026-11-22-wide --dry-run                  # the checks only
          trainkit experiments promote 2026-11-22-wide --nrmse-threshold 0.1 --auto-promote
          trainkit experiments promote 2026-11-23-wider --min-improvement 0.005 --force --update-leaderboard
          trainkit experiments promote 2026-11-22-chat --metric accuracy --threshold 0.9 --config-name train_chat

        Direction by metric name: nrmse, rmse, mse, mae, loss, *_loss, error, perplexity are lower
        is better; accuracy, exact_match, f1, precision, recall, auc, bleu higher; any other needs
        --mode; the current holder is compared in the direction it was promoted with. A stale report
        (checkpoints/best.pt changed since the evaluation) is refused: re-run `trainkit eval`.
        Without --auto-promote it asks on a terminal (and refuses off one). An existing
        target needs --force and is backed up first (<name>.<UTC time>.bak beside it).
        Exit 0 promoted (or --dry-run: would be), 1 refused by a check, 2 bad input.
        """)
    p.add_argument("name", metavar="NAME", help="the experiment (NAME or a path inside ROOT)")
    _root_option(p)
    p.add_argument("--report", metavar="NAME", help="reports/NAME.json (default: the run's report: default.json, "
                   "else the one written last)")
    p.add_argument("--metric", metavar="NAME", help="the metric to check (default: the report's own)")
    p.add_argument("--mode", choices=("min", "max"), help="the metric's direction when its name does not tell")
    p.add_argument("--threshold", type=float, metavar="X", help="the metric must be within X (<= for min, >= max)")
    p.add_argument("--nrmse-threshold", type=float, metavar="X", help="shorthand for --metric nrmse --threshold X")
    p.add_argument("--min-improvement", type=float, default=0.0, metavar="X",
                   help="must beat the current holder by at least X (absolute; default 0: at least as good)")
    p.add_argument("--auto-promote", action="store_true", help="promote without asking when every check passes")
    p.add_argument("--dry-run", action="store_true", help="run the checks and show what would happen; write nothing")
    p.add_argument("--config-name", metavar="NAME", help="file name in the production folder "
                   "(default: train_<name without its date>.<ext>)")
    p.add_argument("--production-dir", metavar="DIR", help="production folder (default: configs/ beside ROOT)")
    p.add_argument("--force", action="store_true", help="replace an existing production config (backed up first)")
    p.add_argument("--update-leaderboard", action="store_true", help="append a row to the leaderboard")
    p.add_argument("--leaderboard-csv", metavar="FILE", help="the leaderboard (default: reports/leaderboard.csv "
                   "beside ROOT; implies --update-leaderboard)")
    p.set_defaults(func=cmd_promote)


def promote_request(args):
    from trainkit.lifecycle import PromoteRequest

    metric, threshold = args.metric, args.threshold
    if args.nrmse_threshold is not None:
        if metric not in (None, "nrmse") or threshold is not None:
            raise UserError("--nrmse-threshold is --metric nrmse --threshold X; it does not combine with "
                            "another --metric or --threshold")
        metric, threshold = "nrmse", args.nrmse_threshold
    return PromoteRequest(args.name, root=args.root, report=args.report, metric=metric, mode=args.mode,
                          threshold=threshold, min_improvement=args.min_improvement, config_name=args.config_name,
                          production_dir=args.production_dir, archive_dir=args.archive_dir,
                          leaderboard_csv=args.leaderboard_csv, update_leaderboard=args.update_leaderboard,
                          force=args.force)


def cmd_promote(args) -> int:
    from trainkit.lifecycle import check_promotion, promote

    request = promote_request(args)
    plan = check_promotion(request)
    print(render_promotion(plan))
    if not plan.ok:
        print(f"trainkit experiments: not promoted: {plan.refusal}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        print("dry run: nothing was written")
        return EXIT_OK
    if not args.auto_promote:
        if not sys.stdin.isatty():
            raise UserError("not a terminal: pass --auto-promote to promote without asking (--dry-run to check)")
        if input("promote? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not promoted")
            return EXIT_FAILED
    # asked on a terminal: promote what the user saw or nothing; --auto-promote: whatever the check
    # under the target's lock decides (another promotion to the same target may have won meanwhile)
    result = promote(request, expect=None if args.auto_promote else plan)
    if not result.promoted:
        print(f"trainkit experiments: not promoted: {result.reason}", file=sys.stderr)
        return EXIT_FAILED
    lay = plan.layout
    extra = [f"backup {lay.show(result.backup)}"] if result.backup else []
    if result.leaderboard:
        extra.append(f"row appended to {lay.show(result.leaderboard)}")
    print(f"promoted {plan.experiment.name}: {plan.config.name} -> {lay.show(plan.target)} (byte for byte)"
          + (f"; {'; '.join(extra)}" if extra else ""))
    return EXIT_OK


def render_promotion(plan) -> str:
    from trainkit.formatting import fmt_sig

    lay = plan.layout
    lines = [f"promote {plan.experiment.name}: {plan.config.name} -> {lay.show(plan.target)} "
             f"({plan.metric} {fmt_sig(plan.value, 6)}, {'lower' if plan.mode == 'min' else 'higher'} is better)"]
    lines += [f"  {'✓' if c.passed else '✗'} {c.detail}" for c in plan.checks]
    if plan.row is not None:
        prev = f", previous {plan.row['previous_experiment']}" if plan.row["previous_experiment"] else ""
        lines.append(f"  leaderboard: a row in {lay.show(lay.leaderboard)}{prev}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# leaderboard


def _add_leaderboard(sp) -> None:
    p = _parser(sp, "leaderboard", "the promotions, best first", "Show reports/leaderboard.csv (one row per "
                "promotion) as a table, grouped by metric and sorted best first in the direction each was "
                "promoted with (MODE); * marks the current holder of each production config (the config's own "
                "record names it).", """
        examples:
          trainkit experiments leaderboard
          trainkit experiments leaderboard --metric nrmse
          trainkit experiments leaderboard --csv shared/leaderboard.csv --json
        """)
    p.add_argument("--csv", metavar="FILE", help="the leaderboard (default: reports/leaderboard.csv beside ROOT)")
    p.add_argument("--metric", metavar="M", help="only rows of this metric")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _root_option(p, archive=False)
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args) -> int:
    import orjson

    from trainkit.lifecycle import leaderboard

    board = leaderboard(args.csv, root=args.root, metric=args.metric)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(board.rows, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    if not board.exists:
        print(f"no leaderboard at {_rel(board.path)} yet (promote with --update-leaderboard)")
        return EXIT_OK
    if not board.rows:
        print(f"{_rel(board.path)}: no rows" + (f" for {args.metric}" if args.metric else ""))
        return EXIT_OK
    from trainkit.formatting import fmt_sig

    header = ("METRIC", "MODE", "#", "VALUE", "EXPERIMENT", "CONFIG", "DATE", "PREVIOUS")
    rows = [(r.metric, r.mode or "?", str(r.rank), "-" if r.value is None else fmt_sig(r.value, 6),
             r.experiment + (" *" if r.current else ""), r.config, r.date,
             f"{r.previous_experiment} ({fmt_sig(r.previous_value, 6)})" if r.previous_experiment and r.previous_value
             is not None else (r.previous_experiment or "-")) for r in board.rows]
    print("\n".join(_columns(header, rows)))
    print(f"\n* the current holder of its config ({_rel(board.path)})")
    return EXIT_OK


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
