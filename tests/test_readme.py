"""README.md, true line by line: every command block runs, in the README's order, in a temp folder
(with the repository's examples shrunk so that a block that trains takes a second), and the output
the README shows still appears; the command synopses name exactly the options of each command's
--help, `status --json`'s fields are all named, and the package tree names every module.

How to write the README so that this test reads it (say what you mean with the block's language):
- ```sh        commands, one a line (`\\` continues a line): each must exit 0, or one of the codes
                a comment on its line names ("exit 3 ...");
- ```console   `$ command` lines, each followed by the output it shows: the output must appear, line
                by line; `...` stands for any text within a line, and a line of `...` for any lines;
- ```LANG file=NAME   a file the reader makes (e.g. ```python file=mymodels.py): written to NAME;
- ```text, yaml, python, json ...   not run (synopses, trees, formats, snippets);
- an HTML comment on the line before a sh/console block, `<!-- readme-test: skip (REASON) -->`,
  skips it with the reason (a GPU, Slurm, a browser, a terminal UI, minutes of work, an
  illustration of runs made elsewhere).
In commands and outputs, `2026-11-22` is the day the runs were made (today, here).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

README = ROOT / "README.md"
TODAY_IN_README = "2026-11-22"
RUN_LANGS = ("sh", "console")

# the examples, shrunk: same keys and epochs, tiny data and models, gates any model passes, no early
# stop, and no monitor alerts (a loaded machine's throughput dips would put a ⚠ before a run's name)
TINY_EXAMPLES = {
    "burgers.yaml": {"model": {"width": 16, "depth": 1}, "data": {"n_train": 64, "n_val": 32, "nx": 16},
                     "early_stopping": {"patience": 1000}, "monitor": {"alerts": False},
                     "eval": {"gates": {"nrmse": {"max": 10.0}}}},
    "arith_chat.yaml": {"model": {"width": 16, "depth": 1, "heads": 2, "block_size": 48},
                        "data": {"n_train": 64, "n_val": 16, "digits": 1},
                        "monitor": {"samples_every_steps": 0, "layers_every_steps": 0, "alerts": False},
                        "eval": {"gates": {"accuracy": {"min": 0.0}}}},
}


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    attrs: dict[str, str]
    text: str
    skip: str | None = None  # the reason, from the comment before it

    @property
    def label(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'no language'})"


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)(.*)$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        attrs = dict(a.split("=", 1) for a in m.group(2).split() if "=" in a)
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = re.match(r"^<!--\s*readme-test:\s*skip\s*\((.*)\)\s*-->$", prev.strip())
        out.append(Block(start + 1, m.group(1), attrs, "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return out


ALL = blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in ALL if b.lang in RUN_LANGS or "file" in b.attrs]


# ---------------------------------------------------------------------------------------------
# commands and their expected output


def commands(text: str) -> list[str]:
    """The lines of a sh block, with `\\` continuations joined; blank and comment lines dropped."""
    out, pending = [], ""
    for line in text.split("\n"):
        if line.rstrip().endswith("\\"):
            pending += (line.rstrip()[:-1].strip() if pending else line.rstrip()[:-1].rstrip()) + " "
            continue
        line = pending + (line.strip() if pending else line)
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def console(text: str) -> list[tuple[str, list[str]]]:
    """``[(command, shown output lines)]`` of a console block."""
    out: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise AssertionError(f"console block: output before any `$ command`: {lines[i]!r}")
        cmd = lines[i][2:]
        while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        while shown and not shown[-1].strip():
            shown.pop()
        out.append((cmd, shown))
    return out


def allowed_codes(command: str) -> set[int]:
    comment = command.partition(" #")[2]
    return {0} | {int(n) for n in re.findall(r"\bexits? (\d+)", comment)}


def _norm(line: str) -> str:
    return " ".join(line.split())


def line_pattern(shown: str) -> re.Pattern:
    parts = [re.escape(_norm(p)) for p in _norm(shown).split("...")]
    return re.compile(r"\s*(?:.*?)\s*".join(parts) if len(parts) > 1 else parts[0])


def output_mismatch(shown: list[str], actual: str) -> str | None:
    """None when every shown line appears in ``actual`` in order (consecutively, but where a line
    of ``...`` allows any lines); else what is missing."""
    got = [_norm(x) for x in actual.splitlines()]
    pos, gap = 0, False
    for want in shown:
        if _norm(want) == "...":
            gap = True
            continue
        pattern = line_pattern(want)
        candidates = range(pos, len(got)) if gap else range(pos, min(pos + 1, len(got)))
        found = next((k for k in candidates if pattern.fullmatch(got[k])), None)
        if found is None:
            return f"missing {want!r}" + (" (right after the previous line)" if not gap else "")
        pos, gap = found + 1, False
    return None


# ---------------------------------------------------------------------------------------------
# the folder the blocks run in


def today(text: str) -> str:
    return text.replace(TODAY_IN_README, dt.date.today().isoformat())


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Outcome:
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Session:
    folder: Path
    env: dict
    results: dict[int, Outcome] = field(default_factory=dict)


def make_folder(folder: Path, cache: Path) -> Session:
    (folder / ".venv").symlink_to(ROOT / ".venv")  # `. .venv/bin/activate`, `.venv/bin/trainkit`
    examples = folder / "examples"
    examples.mkdir()
    for f in (ROOT / "examples").iterdir():
        if f.name in TINY_EXAMPLES:
            cfg = _merge(yaml.safe_load(f.read_text(encoding="utf-8")), TINY_EXAMPLES[f.name])
            (examples / f.name).write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        elif f.is_file():
            (examples / f.name).write_bytes(f.read_bytes())
    env = dict(os.environ)
    env.update({"PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "TRAINKIT_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    for k in ("RANK", "WORLD_SIZE", "VIRTUAL_ENV"):
        env.pop(k, None)
    return Session(folder, env)


def run(session: Session, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", today(command)], cwd=session.folder, env=session.env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_block(session: Session, b: Block) -> Outcome:
    t0 = time.monotonic()
    if "file" in b.attrs:
        target = session.folder / b.attrs["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(today(b.text) + "\n", encoding="utf-8")
        return Outcome(True, f"wrote {b.attrs['file']}")
    if b.lang == "sh":
        for cmd in commands(b.text):
            done = run(session, cmd)
            if done.returncode not in allowed_codes(cmd):
                return Outcome(False, f"`{cmd}` exited {done.returncode}:\n{done.stdout[-3000:]}",
                               time.monotonic() - t0)
        return Outcome(True, seconds=time.monotonic() - t0)
    for cmd, shown in console(b.text):
        done = run(session, cmd)
        problem = output_mismatch([today(x) for x in shown], done.stdout)
        if problem:
            return Outcome(False, f"`{cmd}` (exit {done.returncode}): {problem}; its output:\n{done.stdout[-3000:]}",
                           time.monotonic() - t0)
    return Outcome(True, seconds=time.monotonic() - t0)


@pytest.fixture(scope="module")
def session(tmp_path_factory, cache_dir) -> Session:
    """Every runnable block, in the README's order, once: each block's test reads its outcome."""
    s = make_folder(tmp_path_factory.mktemp("readme"), cache_dir)
    for b in RUNNABLE:
        if b.skip is None:
            s.results[b.line] = run_block(s, b)
    return s


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: f"line{b.line}")
def test_readme_block(session, block):
    if block.skip is not None:
        pytest.skip(f"{block.label}: {block.skip}")
    outcome = session.results[block.line]
    assert outcome.ok, f"{block.label}: {outcome.detail}"


# ---------------------------------------------------------------------------------------------
# what the README says about the commands, checked against them


def test_every_block_says_what_it_is():
    """A block without a language could be a command nobody runs: say sh, console, text, ..."""
    unnamed = [b.label for b in ALL if not b.lang]
    assert unnamed == [], "give these blocks a language (sh, console, text, yaml, python, json): " + \
        ", ".join(unnamed)
    marked = [b.label for b in ALL if b.skip is not None and b.lang not in RUN_LANGS]
    assert marked == [], "a skip comment before a block that is not run: " + ", ".join(marked)
    assert sum(1 for b in RUNNABLE if b.skip is None) >= 8  # the README's walk-through is run


def synopses() -> list[tuple[int, list[str], set[str]]]:
    """``(line, command path, options)`` of every synopsis in a text block: a line starting with
    ``trainkit COMMAND`` or ``trainmon``, with its indented continuation lines."""
    out = []
    for b in ALL:
        if b.lang != "text":
            continue
        current = None
        for k, line in enumerate(b.text.split("\n")):
            m = re.match(r"^(trainkit (?:experiments )?[a-z|]+|trainmon)\b(.*)$", line)
            if m:
                current = (b.line + 1 + k, m.group(1).split(), set(re.findall(r"--[a-z][a-z-]*", m.group(2))))
                out.append(current)
            elif current is not None and line.startswith(" "):
                current[2].update(re.findall(r"--[a-z][a-z-]*", line))
            else:
                current = None
    return out


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def options_of(path: list[str]) -> set[str]:
    """The long options of ``trainkit COMMAND [SUB]`` (its parser) or of ``trainmon`` (its --help)."""
    if path == ["trainmon"]:
        import contextlib
        import io

        from tui.cli import parse

        text = io.StringIO()
        with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
            parse(["--help"])
        return set(re.findall(r"--[a-z][a-z-]*", text.getvalue().partition("\n\n")[0])) - {"--help"}
    from trainkit.cli import build_parser

    parser = build_parser()
    for name in path[1:]:
        parser = _subparser(parser, name)
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}


def test_every_synopsis_names_exactly_the_options_of_its_command():
    found = synopses()
    assert len(found) >= 15, found
    wrong = []
    for line, path, shown in found:
        names = path[-1].split("|")
        for name in names:
            real = options_of([*path[:-1], name] if path != ["trainmon"] else path)
            if shown != real:
                wrong.append(f"README.md:{line} {' '.join(path[:-1] + [name])}: missing {sorted(real - shown)}, "
                             f"not an option {sorted(shown - real)}")
    assert wrong == []


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def test_status_json_fields_are_named():
    from trainkit.status import RunStatus

    text = _section(README.read_text(encoding="utf-8"), "## `trainkit status`")
    missing = [f.name for f in dataclasses.fields(RunStatus) if f"`{f.name}`" not in text]
    assert missing == [], f"trainkit status --json fields the README does not name: {missing}"


def tree_modules(text: str) -> set[str]:
    """The modules the Development tree names: ``pkg/mod.py`` (``mod.py`` at the top)."""
    tree = next(b for b in ALL if b.lang == "text" and b.text.startswith("trainkit/\n"))
    names, package = set(), ""
    for line in tree.text.split("\n")[1:]:
        tokens = line.split()
        if not tokens:
            continue
        indent = len(line) - len(line.lstrip())
        if tokens[0].endswith("/"):
            package = tokens[0]
        elif indent <= 2:
            package = ""
        names.update(package + t for t in tokens if re.fullmatch(r"\w+\.py", t))
    return names


def test_the_package_tree_names_every_module():
    named = tree_modules(README.read_text(encoding="utf-8"))
    package = ROOT / "trainkit"
    real = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    real -= {p for p in real if p.endswith("__init__.py") and "/" in p}  # a package's __init__ may go unnamed
    assert sorted(real - named) == [], "modules missing from the README's tree (## Development)"
    assert sorted(named - real - {p for p in named if p.endswith("__init__.py")}) == [], \
        "the README's tree names modules that do not exist"


# ---------------------------------------------------------------------------------------------
# the reader itself


@pytest.mark.parametrize("shown,actual,problem", [
    (["a  b"], "a b\n", None),
    (["x ... z"], "x yyy z\n", None),
    (["...", "end"], "1\n2\nend\n", None),
    (["a", "c"], "a\nb\nc\n", "missing 'c' (right after the previous line)"),
    (["a", "...", "c"], "a\nb\nc\n", None),
    (["nope"], "a\n", "missing 'nope' (right after the previous line)"),
])
def test_output_matching(shown, actual, problem):
    assert output_mismatch(shown, actual) == problem


def test_commands_and_exit_codes():
    assert commands("a \\\n  b  # c\n# only a comment\n\nd\n") == ["a b  # c", "d"]
    assert allowed_codes("trainkit run x   # exit 3 if the gate fails") == {0, 3}
    assert console("$ a \\\n  b\nout\n$ c\n") == [("a b", ["out"]), ("c", [])]
