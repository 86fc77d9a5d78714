"""``trainkit score EVAL_DIR [--json]``: the summary of an evaluation, recomputed from its files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainkit.commands._args import fmt
from trainkit.errors import UserError
from trainkit.runfolder import PRECHECK_FILE, RunPaths

SCORE_EPILOG = fmt("""
examples:
  trainkit score experiments/2026-11-22-burgers/evals/default
  trainkit score runs/x/evals/smoke --json | jq .accuracy

Reads precheck.jsonl, responses.jsonl and sessions.jsonl only (a torn last line is ignored), so it
works on a finished evaluation, an interrupted one or one still running; the result is what
`trainkit eval` writes as test_summary.json. It writes nothing. Exit codes: 0, 2 bad input.
""")


def register(sub) -> None:
    s = sub.add_parser("score", help="recompute an evaluation's summary from its files",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Recompute an evaluation's summary from its files alone.", epilog=SCORE_EPILOG)
    s.add_argument("eval_dir", metavar="EVAL_DIR", help="an evaluation folder, RUN_DIR/evals/NAME")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_score)


def _not_an_eval(folder: Path) -> UserError:
    evals = sorted(RunPaths(folder).evals.glob(f"*/{PRECHECK_FILE}")) if folder.is_dir() else []
    hint = (" evaluations there: " + ", ".join(str(p.parent) for p in evals[:5])) if evals else ""
    what = "no such folder" if not folder.exists() else "not an evaluation folder (no precheck.jsonl)"
    return UserError(f"{folder}: {what}{';' + hint if hint else ''}")


def format_summary(folder: Path, s: dict) -> list[str]:
    metric = s["metric"]
    value = s.get(metric)
    shown = f"{value:.6g}" if isinstance(value, (int, float)) else "- (no ok item)"
    latency = s.get("mean_latency_s")
    return [
        f"evaluation {folder}  (task {s.get('task') or '-'}, model {s.get('model')})",
        f"  planned {s['planned']}  done {s['done']}  ok {s['ok']}  error {s['error']}  "
        f"{'complete' if s['completed'] else 'incomplete'}",
        f"  {metric} {shown}" + (f"  ({s['correct']} correct)" if "correct" in s else ""),
        f"  duration {s['duration_s']:.1f}s over {s['sessions']} session(s)"
        + (f", mean latency {latency * 1000:.1f} ms" if isinstance(latency, (int, float)) else ""),
    ]


def cmd_score(args: argparse.Namespace) -> int:
    import orjson

    from trainkit.evaluation.scoring import read_eval_dir, summarize
    from trainkit.runfolder.files import FileFormatError

    folder = Path(args.eval_dir)
    try:
        files = read_eval_dir(folder)
    except FileNotFoundError:
        raise _not_an_eval(folder) from None
    except (FileFormatError, OSError) as e:
        raise UserError(f"{folder}: cannot score: {e}") from None
    summary = summarize(files.header, files.planned, files.records, files.sessions)
    for note in files.notes:
        print(f"trainkit score: note: {note}", file=sys.stderr)
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print("\n".join(format_summary(folder, summary)))
    return 0
