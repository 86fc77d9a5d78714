"""The packages' shape: no import cycles (trainkit and tui), torch only where it is needed, trainmon
never importing trainkit's commands, the contract's names in its one package, and every view of a
state drawn from the one states table. Read from the source (AST), so a lazy import inside a
function counts too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from trainkit import runfolder

PACKAGE = Path(__file__).resolve().parents[1] / "trainkit"
TUI = PACKAGE.parent / "tui"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*packages: Path) -> dict[str, Path]:
    return {module_name(p): p for package in packages or (PACKAGE,) for p in package.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The trainkit modules ``name`` imports (anywhere in the file). ``from a.b import c`` names
    the submodule ``a.b.c`` when there is one, else ``a.b``. (A package's ``__init__`` that
    re-exports its submodules is not a cycle by itself: a submodule that imports from the
    package's ``__init__`` makes one.)"""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:  # `import a.b.func`-like names: the nearest module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph(*packages: Path) -> dict[str, set[str]]:
    mods = modules(*packages)
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_no_import_cycles_inside_trainkit():
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


TORCH_FREE = ["trainkit.cli", "trainkit.config", "trainkit.runfolder", "trainkit.runfolder.files",
              "trainkit.runfolder.readers", "trainkit.runfolder.control", "trainkit.runfolder.lock",
              "trainkit.runfolder.live", "trainkit.status", "trainkit.status_table", "trainkit.launcher",
              "trainkit.registry", "trainkit.pipeline", "trainkit.early_stopping", "trainkit.formatting",
              "trainkit.errors", "trainkit.evaluation.plan", "trainkit.evaluation.items", "trainkit.evaluation.writer",
              "trainkit.evaluation.runner", "trainkit.evaluation.scoring", "trainkit.evaluation.report",
              "trainkit.evaluation.display", "trainkit.evaluation.run", "trainkit.testing",
              "trainkit.serve", "trainkit.serve.api", "trainkit.serve.runs", "trainkit.serve.server",
              "trainkit.lifecycle", "trainkit.lifecycle.experiments", "trainkit.lifecycle.archiving",
              "trainkit.lifecycle.promotion", "trainkit.monitor", "trainkit.integrations", "trainkit.slurm",
              "trainkit.runfolder.writer", "trainkit.integrations.common",
              "trainkit.run_control", "trainkit.tasks", "trainkit.tasks.defaults",
              "trainkit.foreign", "trainkit.foreign.hf", "trainkit.foreign.lightning", "trainkit.foreign.tensorboard",
              *(f"trainkit.commands.{p.stem}" for p in (PACKAGE / "commands").glob("*.py"))]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_does_not_import_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports torch"


CONTRACT_NAMES = {v for k, v in vars(runfolder).items()
                  if (k.endswith("_FILE") or k.endswith("_DIR")) and isinstance(v, str)} | set(runfolder.EPOCH_FILES)


def test_contract_names_are_spelled_only_in_runfolder():
    """A string that IS a contract name (or a path ending in one) lives in the contract package
    (trainkit/runfolder/) only; help texts and messages that merely mention a file are docs."""
    offenders = []
    for name, path in modules(PACKAGE, TUI).items():
        if name == "trainkit.runfolder" or name.startswith("trainkit.runfolder."):
            continue
        if name == "trainkit.foreign.common":  # other tools' own names (Lightning's checkpoints/), read-only
            continue
        tree = ast.parse(path.read_text())
        keys = {id(k) for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys if k is not None}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in keys:
                tail = node.value.rstrip("/").rsplit("/", 1)[-1]
                if tail in CONTRACT_NAMES - {"epochs"} and " " not in node.value:  # also a config key
                    offenders.append(f"{name}:{node.lineno}: {node.value!r}")
    assert offenders == []


def test_no_import_cycles_across_trainkit_and_trainmon():
    graph = import_graph(PACKAGE, TUI)
    assert any(n.startswith("tui.") for n in graph)
    assert cycles(graph) == []


def test_trainmon_never_imports_trainkit_commands():
    """trainmon acts through the same functions the commands use (trainkit's core), never through a
    command module (argument parsing, printing, exit codes)."""
    graph = import_graph(PACKAGE, TUI)
    offenders = sorted(f"{n} -> {m}" for n, deps in graph.items() if n == "tui" or n.startswith("tui.")
                       for m in deps if m == "trainkit.commands" or m.startswith("trainkit.commands."))
    assert offenders == []


def test_every_contract_file_is_in_the_files_table():
    names = {f.name for f in runfolder.FILES}
    beside_root = {runfolder.PRODUCTION_DIR, runfolder.LEADERBOARD_FILE}  # files of ROOT's parent, not of a run
    assert CONTRACT_NAMES - beside_root <= names
    for f in runfolder.FILES:
        assert f.kind in (runfolder.JSON, runfolder.JSONL, runfolder.TEXT, runfolder.BINARY, runfolder.FOLDER), f
    outputs = {p.name for p in runfolder.RunPaths(Path("run")).outputs()}
    assert runfolder.CONFIG_STEM + ".yaml" not in outputs and runfolder.NOTES_FILE not in outputs  # inputs stay
    assert {runfolder.METRICS_FILE, runfolder.CHECKPOINTS_DIR, runfolder.EVALS_DIR} <= outputs


def test_every_state_has_a_symbol_label_style_and_order():
    table = runfolder.STATE_TABLE
    assert [s.name for s in table] == list(runfolder.STATES) and len(set(runfolder.STATES)) == len(table)
    for s in table:
        assert len(s.symbol) == 1 and s.label and s.style and isinstance(s.order, int), s
        assert not (s.live and s.complete), s
    assert sorted(s.order for s in table) == list(range(len(table)))  # a total order, no ties
    from tui.model.views import RunView

    for s in runfolder.STATES:  # every view draws every state from the table (a missing one raised KeyError)
        v = RunView(name="r", path="/r", state=s)
        assert (v.symbol, v.label) == (runfolder.symbol_of(s), runfolder.label_of(s))
