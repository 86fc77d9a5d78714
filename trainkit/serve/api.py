"""The server's request -> response logic, without HTTP: a method and a request target in, a
:class:`Response` out. Read-only; every answer is JSON (the page: HTML) and never cached by the
client; any unexpected exception becomes a 500 with one line.

Routes::

    GET /                                   the status page (page.html)
    GET /training/status[?run=NAME]         the compact status of one run (default: the most recently active)
    GET /runs                               what `trainkit status --json` prints

``?text=1`` on those two adds ``text`` to each run: its numbers as every surface prints them
(trainkit.formatting; the page shows these instead of formatting numbers in JavaScript).
    GET /runs/NAME                          one run: status, files, latest epoch record, report summaries
    GET /runs/NAME/metrics?after=N          metrics.jsonl records from byte offset N, and the next offset

The path is split on ``/`` first and each segment percent-decoded once, so an encoded ``/`` or
``..`` stays inside one segment and is then refused by :func:`resolve_run` (404). A run another
tool wrote (``"source"``: hf, lightning, tensorboard) is named by its path under ROOT, which may
hold a ``/``: the client percent-encodes it as one segment (``/runs/pl%2Flightning_logs%2Fversion_0``)
and :func:`trainkit.serve.foreign_runs.resolve` accepts only a real foreign run folder inside ROOT
(no ``..``, hidden part or symlink on the way).

Several ROOTs (``trainkit serve ROOT [ROOT...]``): ``/runs`` lists them all as ``trainkit status``
does, a later ROOT's run whose name is taken named with its ROOT's folder name in front; a NAME is
found in that list (:meth:`Api.locate`: its ROOT and its name there), then resolved inside its own
ROOT by the same checks.

No response shows an absolute path (:class:`PathScrub`): paths inside the first ROOT read relative
to it (a run's ``path`` is its name), those inside a later ROOT start with that ROOT's folder name,
the home folder reads ``~``, and an unexpected error says only that it happened (its details go to
the server's log).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from trainkit.errors import first_line
from trainkit.serve.cache import Memo
from trainkit.serve.runs import (
    METRICS_MAX_BYTES,
    RunIndex,
    Snapshot,
    metrics_page,
    no_status,
    resolve_run,
    run_detail,
    runs_with_text,
    status_line,
)

JSON = "application/json"
HTML = "text/html; charset=utf-8"
ALLOWED = "GET, HEAD"
OFFSET = re.compile(r"[0-9]{1,19}", re.ASCII)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_response(obj: object, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(obj), JSON, headers)


def error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response({"error": message}, status, headers)


class PathScrub:
    """Rewrites the absolute paths a JSON body may hold: the first ROOT's own (as given, resolved)
    become relative to it, a later ROOT's start with its label (its folder name, numbered where an
    earlier ROOT has it: :func:`trainkit.roots.labels`), the home folder and the
    server's working folder become ``~`` and ``.``."""

    def __init__(self, root: str | list[str]) -> None:
        from trainkit.roots import labels

        roots = [root] if isinstance(root, str) else root
        pairs = {os.path.expanduser("~"): "~", os.getcwd(): "."}
        short = labels(roots)  # a later ROOT's folder name, numbered where an earlier ROOT has it
        for r in reversed(roots):  # the first ROOT's wins where two are one folder
            pairs.update({os.path.realpath(r): short[r], os.path.abspath(r): short[r]})
        self._pairs = [(orjson.dumps(k)[1:-1], v.encode()) for k, v in
                       sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True) if len(k) > 1]

    def __call__(self, body: bytes) -> bytes:
        for prefix, short in self._pairs:
            if prefix in body:
                body = body.replace(prefix + b"/", b"" if short == b"." else short + b"/")
                body = body.replace(b'"' + prefix + b'"', b'"' + short + b'"').replace(prefix, short)
        return body


def load_page() -> bytes:
    return resources.files("trainkit.serve").joinpath("page.html").read_bytes()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Api:
    """``root``: one ROOT, or several (a list: listed together, names kept unique)."""

    def __init__(self, root: str | os.PathLike | list, *, stale_s: float | None = None, ttl: float = 1.0,
                 max_bytes: int = METRICS_MAX_BYTES, log: Callable[[str], None] = _stderr) -> None:
        self.index = RunIndex([os.fspath(r) for r in (root if isinstance(root, list) else [root])], stale_s=stale_s)
        self.roots = self.index.roots
        self.root = self.roots[0]
        self.stale_s = stale_s
        self.max_bytes = max_bytes
        self.log = log
        self.memo = Memo(ttl)
        self.page = load_page()
        self.scrub = PathScrub(self.roots)

    def handle(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            return error(405, f"{method} is not allowed: this server is read-only", (("Allow", ALLOWED),))
        try:
            r = self.route(target)
        except Exception as e:  # the details to the log; the client learns only that it failed
            self.log(f"trainkit serve: {method} {target[:200]!r} failed: {first_line(e)}")
            return error(500, f"internal error: {e.__class__.__name__} (the server's log has the details)")
        return r if r.content_type != JSON else Response(r.status, self.scrub(r.body), r.content_type, r.headers)

    def route(self, target: str) -> Response:
        parts = urlsplit(target)
        if not parts.path.startswith("/"):
            return error(404, "not found")
        query = parse_qs(parts.query, keep_blank_values=True)
        segments = [unquote(s) for s in parts.path[1:].split("/")]
        match segments:
            case [""]:
                return Response(200, self.page, HTML)
            case ["training", "status"]:
                return self.training_status(query)
            case ["runs"]:
                if wants_text(query):
                    return Response(200, self.memo.get("index-text", lambda: orjson.dumps(
                        runs_with_text(self.snapshot().runs))))
                return Response(200, self.snapshot().body)
            case ["runs", name]:
                path = self.resolve(name)
                if path is None:
                    return self.foreign_run(name)
                return Response(200, self.memo.get(("run", path), lambda: orjson.dumps(
                    self._named(run_detail(path, stale_s=self.stale_s), name))))
            case ["runs", name, "metrics"]:
                return self.metrics(name, query)
        return error(404, f"not found: {parts.path[:200]}; try /, /training/status, /runs, /runs/NAME, "
                          "/runs/NAME/metrics?after=0")

    def snapshot(self) -> Snapshot:
        return self.memo.get("index", self.index.refresh)

    def locate(self, name: str) -> tuple[str, str] | None:
        """The ROOT of the run ``name`` (as /runs names it) and its name there. One ROOT: itself;
        several: the name as the latest list gave it (a run that appeared since shows within the
        cache's ttl), never a path of the client's making."""
        if len(self.roots) == 1:
            return self.root, name
        return self.snapshot().where.get(name)

    def resolve(self, name: str) -> str | None:
        """The folder of trainkit's run ``name`` (:func:`resolve_run` inside its own ROOT), or None."""
        found = self.locate(name)
        return resolve_run(*found) if found is not None else None

    def training_status(self, query: dict[str, list[str]]) -> Response:
        names = query.get("run")
        if names is not None:
            if len(names) != 1:
                return error(400, "give run= once")
            name = names[0]
            path = self.resolve(name)
            if path is None:
                return no_run(name)
        else:
            name = self.snapshot().active
            path = self.resolve(name) if name is not None else None
            if path is None:  # no run at all (or it went away since the last scan)
                return json_response(no_status())
        text = wants_text(query)
        return Response(200, self.memo.get(("status", path, text), lambda: orjson.dumps(
            {**status_line(path, stale_s=self.stale_s, text=text), "name": name})))

    def foreign_run(self, name: str) -> Response:
        """A run another tool wrote; its name, a path under ROOT, comes percent-encoded as one segment."""
        from trainkit.serve.foreign_runs import detail, resolve

        where = self.locate(name)
        found = resolve(*where) if where is not None else None
        if found is None:
            return no_run(name)
        source, path = found
        return Response(200, self.memo.get(("foreign", path), lambda: orjson.dumps(
            self._named(detail(source, path, where[0]), name))))

    @staticmethod
    def _named(detail: dict, name: str) -> dict:
        """A run's detail with its ``run`` named as /runs names it (a later ROOT's taken name)."""
        run = detail["run"]
        if run.name != name:
            detail["run"] = dataclasses.replace(run, name=name)
        return detail

    def metrics(self, name: str, query: dict[str, list[str]]) -> Response:
        path = self.resolve(name)
        if path is None:
            from trainkit.serve.foreign_runs import resolve

            where = self.locate(name)
            if where is not None and resolve(*where) is not None:
                return error(404, f"{name[:200]!r} is a run another tool wrote: it has no metrics.jsonl; "
                                  "/runs/NAME lists its scalars")
            return no_run(name)
        after = query.get("after", ["0"])
        if len(after) != 1 or not OFFSET.fullmatch(after[0]):
            return error(400, "after must be a non-negative integer: the byte offset `next` of the previous page")
        return json_response(metrics_page(path, int(after[0]), max_bytes=self.max_bytes))


def wants_text(query: dict[str, list[str]]) -> bool:
    return query.get("text", ["0"])[-1] in ("1", "true")


def no_run(name: str) -> Response:
    return error(404, f"no run named {name[:200]!r}")
