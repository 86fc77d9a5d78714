"""Reading the end of an append-only JSONL file without reading the whole of it."""

from __future__ import annotations

import os

import orjson

from trainkit.runfolder.files import JsonlTail, ReadProblem, open_regular

BLOCK = 64 * 1024
FIRST_BLOCK = 4 * 1024  # the first read from the end: ~30 short records; later reads grow to BLOCK


def tail_records(path: str, want: int, keep: callable, *, max_bytes: int = 4 * 1024 * 1024
                 ) -> tuple[list[dict], int, int, str | None]:
    """The last ``want`` records for which ``keep(record)`` holds, read backwards from the end in
    blocks (at most ``max_bytes``). Returns (records oldest first, the offset just after the last
    complete line, bad lines seen, why nothing could be read: None when the file is missing or
    read). A file that is not a regular one, or whose last line is longer than ``max_bytes``, is
    a problem the caller shows; it is never taken for an empty log."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return [], 0, 0, None
    except ReadProblem as e:
        return [], 0, 0, str(e)
    try:
        size = os.fstat(fd).st_size
        pos, carry, found, bad, end, block = size, b"", [], 0, None, FIRST_BLOCK
        while pos > 0 and len(found) < want and size - pos < max_bytes:
            start = max(0, pos - block)
            block = BLOCK
            data = os.pread(fd, pos - start, start) + carry
            pos = start
            if end is None:
                cut = data.rfind(b"\n")
                if cut < 0:
                    carry = data
                    continue
                end = start + cut + 1
                data = data[:cut]
            lines = data.split(b"\n")
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(rec, dict) and keep(rec):
                    found.append(rec)
                    if len(found) >= want:
                        break
        problem = None
        if end is None and size > 0 and size - pos >= max_bytes:
            problem = f"its last line is longer than {max_bytes // 2 ** 20} MiB: not read"
            end = size  # later reads start after it (the rest of a line that long is a bad line)
        return found[::-1], end or 0, bad, problem
    finally:
        os.close(fd)


def tail_from_end(path: str, want: int, keep: callable) -> tuple[list[dict], JsonlTail]:
    """The last ``want`` kept records and a :class:`JsonlTail` positioned after them, so later
    reads see only what is appended from now on."""
    records, end, bad, problem = tail_records(path, want, keep)
    tail = JsonlTail(path, max_bytes=4 * 1024 * 1024)
    tail.offset = end
    tail.bad_lines = bad
    tail.problem = problem
    return records, tail
