"""The plan of an evaluation: which (question, sample) items, from which questions, with which model.

A plan is identified by a hash of the questions, the model spec, the number of samples and the
metric. ``precheck.jsonl`` (written before the first item runs) holds the plan's header line and one
line per planned item; a resume whose plan differs is refused with the reason, never mixed.
No torch here: questions are plain JSON values.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trainkit.errors import UserError, first_line
from trainkit.runfolder import PRECHECK_FILE, EvalPaths, readers
from trainkit.runfolder.files import (
    MAX_LINE_BYTES,
    FileFormatError,
    JsonlTail,
    ReadProblem,
    atomic_write,
    dumps,
    open_regular,
)

EVAL_FORMAT_VERSION = 1
METRICS = ("accuracy", "nrmse")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,80}")
_RESERVED = ("id", "question", "answer", "sample_number")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter "
                          "or digit, at most 100 characters)")
    return name


def safe_id(question_id: Any) -> str:
    """The question id as it appears in file names: itself when it is file-safe, else a readable
    slug plus a short hash (so two different ids never share a file)."""
    text = str(question_id)
    if _SAFE_ID.fullmatch(text) and not text.startswith("."):
        return text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40].strip("._") or "id"
    return f"{slug}~{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def conversation_name(question_id: Any, sample_number: int) -> str:
    return f"q{safe_id(question_id)}_s{sample_number}.json"


def key_of(question_id: Any, sample_number: Any) -> tuple[str, int] | None:
    """Items are keyed by (question id as text, sample number); None for a malformed pair."""
    if isinstance(question_id, bool) or not isinstance(question_id, (str, int)):
        return None
    if isinstance(sample_number, bool) or not isinstance(sample_number, int):
        return None
    return str(question_id), sample_number


# ---------------------------------------------------------------------------------------------
# questions


def check_questions(rows: list[Any], source: str) -> list[dict]:
    """Each row must be an object with ``id`` (string or integer, unique), ``question`` and
    ``answer``; other keys are kept. Raises :class:`UserError` naming the row."""
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, 1):
        where = f"{source}: line {n}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, found {type(row).__name__}")
        missing = [k for k in ("id", "question", "answer") if k not in row]
        if missing:
            raise UserError(f"{where}: missing {', '.join(repr(k) for k in missing)} "
                              "(each line is {\"id\", \"question\", \"answer\", ...})")
        qid = row["id"]
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or qid == "":
            raise UserError(f"{where}: 'id' must be a non-empty string or an integer, got {qid!r}")
        if "sample_number" in row:
            raise UserError(f"{where}: 'sample_number' is reserved (trainkit sets it for each sample)")
        if str(qid) in seen:
            raise UserError(f"{where}: duplicate id {qid!r} (first on line {seen[str(qid)]})")
        seen[str(qid)] = n
    if not rows:
        raise UserError(f"{source}: no questions")
    return rows


def load_questions(path: str | Path) -> list[dict]:
    """Read a questions JSONL file (one object per line, blank lines ignored)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such questions file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read questions ({first_line(e)})") from None
    rows = []
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as e:
            raise UserError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
    return check_questions(rows, str(path))


def questions_hash(questions: list[dict]) -> str:
    """sha256 of the questions as canonical JSON (keys sorted), in file order."""
    return hashlib.sha256(orjson.dumps(questions, option=orjson.OPT_SORT_KEYS)).hexdigest()


def plan_hash(questions_digest: str, model: str, samples: int, metric: str) -> str:
    blob = orjson.dumps({"questions": questions_digest, "model": model, "samples": samples, "metric": metric},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class PlanItem:
    question_id: Any
    sample_number: int
    question: Any
    expected: Any
    extras: dict
    file: str

    @property
    def key(self) -> tuple[str, int]:
        return str(self.question_id), self.sample_number

    def model_input(self) -> dict:
        """What the model callable receives (a fresh dict per call): ``id``, ``question``,
        ``sample_number`` and the question's extra keys (never the answer)."""
        return {**self.extras, "id": self.question_id, "question": self.question, "sample_number": self.sample_number}


@dataclass
class Plan:
    name: str
    questions: list[dict]
    questions_source: str
    model: str
    samples: int
    metric: str
    task: str | None = None
    items: list[PlanItem] = field(init=False)
    questions_hash: str = field(init=False)
    plan_hash: str = field(init=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UserError(f"unknown metric {self.metric!r}; one of {', '.join(METRICS)}")
        self.questions_hash = questions_hash(self.questions)
        self.plan_hash = plan_hash(self.questions_hash, self.model, self.samples, self.metric)
        # Sample-major order: every question once before any question twice, so that a partial
        # run already covers the whole question set.
        self.items = []
        for s in range(self.samples):
            for q in self.questions:
                extras = {k: v for k, v in q.items() if k not in _RESERVED}
                self.items.append(PlanItem(q["id"], s, q["question"], q["answer"], extras,
                                           conversation_name(q["id"], s)))

    @property
    def planned(self) -> int:
        return len(self.items)

    def header(self) -> dict:
        return {"kind": "plan", "version": EVAL_FORMAT_VERSION, "name": self.name, "task": self.task,
                "metric": self.metric, "model": self.model, "samples": self.samples,
                "questions": len(self.questions), "questions_source": self.questions_source,
                "questions_hash": self.questions_hash, "plan_hash": self.plan_hash, "planned": self.planned,
                "created_at": time.time()}

    def differences(self, header: dict) -> list[str]:
        """Why the plan recorded in ``header`` is not this plan (empty when it is the same)."""
        out = []
        if header.get("questions_hash") != self.questions_hash:
            out.append(f"questions differ ({header.get('questions')} from {header.get('questions_source')}, "
                       f"hash {str(header.get('questions_hash'))[:12]}, vs {len(self.questions)} from "
                       f"{self.questions_source}, hash {self.questions_hash[:12]})")
        if header.get("model") != self.model:
            out.append(f"model differs ({header.get('model')!r} vs {self.model!r})")
        if header.get("samples") != self.samples:
            out.append(f"samples differ ({header.get('samples')} vs {self.samples})")
        if header.get("metric") != self.metric:
            out.append(f"metric differs ({header.get('metric')!r} vs {self.metric!r})")
        if not out and header.get("plan_hash") != self.plan_hash:
            out.append(f"plan hash differs ({str(header.get('plan_hash'))[:12]} vs {self.plan_hash[:12]})")
        return out


def precheck_lines(plan: Plan) -> bytes:
    lines = [dumps(plan.header())]
    for it in plan.items:
        lines.append(dumps({"kind": "item", "question_id": it.question_id, "sample_number": it.sample_number,
                            "file": it.file, "question": it.question, "answer": it.expected}))
    return b"\n".join(lines) + b"\n"


def write_precheck(paths: EvalPaths, plan: Plan, *, durable: bool = False) -> None:
    """All planned items, atomically, before the first item runs."""
    data = precheck_lines(plan)
    atomic_write(paths.precheck, lambda f: f.write(data), durable=durable)


PLAN_HEADER = readers.Schema(PRECHECK_FILE, {
    "kind": readers.Field("str", max_len=20),
    "version": readers.Field("int"),
    "name": readers.Field("str", max_len=100),
    "task": readers.Field("str", max_len=300),
    "metric": readers.Field("str", lambda v: v in METRICS, "one of " + ", ".join(METRICS)),
    "model": readers.Field("str", max_len=1000),
    "samples": readers.Field("int", lambda v: v >= 1, "an integer >= 1"),
    "questions": readers.Field("int", lambda v: v >= 0, "an integer >= 0"),
    "questions_source": readers.Field("str", max_len=1000),
    "questions_hash": readers.Field("str", max_len=100),
    "plan_hash": readers.Field("str", max_len=100),
    "planned": readers.Field("int", lambda v: v >= 0, "an integer >= 0"),
    "created_at": readers.Field("num"),
}, extra="drop")


def _check_header(header: Any, path: Path) -> dict:
    if not isinstance(header, dict) or header.get("kind") != "plan":
        raise FileFormatError(f"{path}: first line is not a plan header")
    version = header.get("version")
    if version != EVAL_FORMAT_VERSION:
        raise FileFormatError(f"{path}: format version {readers.clean_text(repr(version), 40)}; this trainkit "
                              f"reads version {EVAL_FORMAT_VERSION}")
    problems: list[str] = []
    header = readers.check(header, PLAN_HEADER, problems)
    for k in ("plan_hash", "planned", "metric"):
        if header.get(k) is None:
            raise FileFormatError(f"{path}: plan header lacks a usable {k!r}"
                                  + (f" ({problems[0]})" if problems else ""))
    return header


def read_precheck_header(path: Path) -> dict:
    """The plan header (first line) only. Raises FileNotFoundError or FileFormatError."""
    try:
        fd = open_regular(path)
    except ReadProblem as e:
        raise FileFormatError(f"{path}: {e}") from None
    try:
        head = os.read(fd, MAX_LINE_BYTES + 1)
    finally:
        os.close(fd)
    first = head.split(b"\n", 1)[0]
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise FileFormatError(f"{path}: first line is not valid JSON") from None
    return _check_header(header, path)


def read_precheck(path: Path) -> tuple[dict, list[tuple[str, int]]]:
    """The plan header and the planned item keys, in order (read incrementally: regular files
    only, each line bounded). Raises FileNotFoundError or FileFormatError."""
    tail = JsonlTail(path)
    recs = tail.read()
    if tail.problem:
        raise FileFormatError(f"{path}: {tail.problem}")
    if not Path(path).exists():
        raise FileNotFoundError(path)
    if tail.bad_lines and (not recs or recs[0].get("kind") != "plan"):
        raise FileFormatError(f"{path}: first line is not valid JSON")
    if not recs:
        raise FileFormatError(f"{path}: no plan header")
    header = _check_header(recs[0], path)
    if tail.bad_lines:
        raise FileFormatError(f"{path}: {tail.bad_lines} line(s) are not planned items")
    keys = []
    for n, rec in enumerate(recs[1:], 2):
        key = key_of(rec.get("question_id"), rec.get("sample_number"))
        if key is None:
            raise FileFormatError(f"{path}: line {n} is not a planned item")
        keys.append(key)
    if len(keys) != header["planned"]:
        raise FileFormatError(f"{path}: header plans {header['planned']} items but {len(keys)} are listed")
    return header, keys
