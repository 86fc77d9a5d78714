"""Reading the end of an append-only JSONL file without reading the whole of it."""

from __future__ import annotations

import os

import orjson

from trainkit.runfolder.files import JsonlTail, ReadProblem, open_regular

BLOCK = 64 * 1024
FIRST_BLOCK = 4 * 1024  # the first read from the end: ~30 short records; later reads grow to BLOCK


def tail_records(path: str, want: int, keep: callable, *, max_bytes: int = 4 * 1024 * 1024
                 ) -> tuple[list[dict], int, int]:
    """The last ``want`` records for which ``keep(record)`` holds, read backwards from the end in
    blocks (at most ``max_bytes``). Returns (records oldest first, the offset just after the last
    complete line, bad lines seen). A missing or unreadable file gives ([], 0, 0)."""
    try:
        fd = open_regular(path)
    except (FileNotFoundError, ReadProblem):
        return [], 0, 0
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
        return found[::-1], end or 0, bad
    finally:
        os.close(fd)


def tail_from_end(path: str, want: int, keep: callable) -> tuple[list[dict], JsonlTail]:
    """The last ``want`` kept records and a :class:`JsonlTail` positioned after them, so later
    reads see only what is appended from now on."""
    records, end, bad = tail_records(path, want, keep)
    tail = JsonlTail(path, max_bytes=4 * 1024 * 1024)
    tail.offset = end
    tail.bad_lines = bad
    return records, tail
