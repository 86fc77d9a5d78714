"""One evaluation item as a Rich renderable (its header, the messages by role, expected vs the
model's answer, the error), the search's words highlighted: drawn by the inspector and by the
side-by-side view of two evaluations."""

from __future__ import annotations

import json

from rich.console import Group
from rich.table import Table
from rich.text import Text

from trainkit.formatting import fmt_sig
from tui.model.evals import Item, latest

HIT_STYLE = "black on yellow"
ROLE_STYLES = {"system": "dim italic", "user": "bold cyan", "assistant": "bold green", "tool": "magenta"}


def _text(v) -> str:
    if v is None:
        return "—"
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def conversation_view(line: Item, rec: dict | None, why: str | None, terms: tuple[str, ...] = ()):
    """The renderable of one item, from its latest record only (its line or its conversation file,
    whichever is newer): header, messages by role, expected vs answer, error; the search's
    ``terms`` highlighted."""
    item, which = latest(line, rec)
    if which == "line":  # the file is from an earlier attempt: none of it is shown
        why, rec = "from an earlier attempt than the line (its rewrite failed; a resume rebuilds it)", None
    head = Text()
    head.append(f"question {item.question_id}  sample {item.sample}  ", style="bold")
    head.append(item.result_text(), style="green" if item.result_text() == "correct" else
                "red" if item.result_text() in ("error", "wrong") else "")
    head.append(f"  latency {fmt_sig(item.latency_s, 3)} s  attempts "
                f"{item.attempts if item.attempts is not None else '-'}", style="dim")
    if rec and rec.get("model"):
        head.append(f"  model {rec.get('model')}", style="dim")
    parts: list = [head, Text("")]
    if rec is None:
        parts.append(Text(f"conversation file: {why}", style="yellow"))
    else:
        for m in rec.get("messages") or []:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role", "?"))
            t = Text(f"{role}: ", style=ROLE_STYLES.get(role, "bold"))
            t.append(_text(m.get("content")))
            parts.append(_marked(t, terms))
    cmp = Table(expand=True, show_edge=False, box=None, padding=(0, 1))
    cmp.add_column("expected", style="cyan", ratio=1)
    cmp.add_column("model's answer", style="green" if item.correct is not False else "red", ratio=1)
    cmp.add_row(_marked(Text(_text(item.expected)), terms), _marked(Text(_text(item.response)), terms))
    parts += [Text(""), cmp]
    error = item.error if rec is None else rec.get("error")
    if error:
        parts += [Text(""), _marked(Text(f"error: {error}", style="bold red"), terms)]
        errors = (rec or {}).get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            parts.append(Text(f"{len(errors)} attempts failed: " + " | ".join(map(str, errors[:5])), style="red"))
        tb = (rec or {}).get("traceback")
        if tb:
            parts.append(Text(str(tb), style="red dim"))
    return Group(*parts)


def _marked(t: Text, terms: tuple[str, ...]) -> Text:
    if terms:
        t.highlight_words(terms, HIT_STYLE, case_sensitive=False)
    return t
