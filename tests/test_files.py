"""Atomic JSON rewrites, append-only JSONL and the offset-based tail reader."""

from __future__ import annotations

import os
import threading

import orjson
import pytest

from trainkit.runfolder.files import (
    FileFormatError,
    JsonlTail,
    JsonlWriter,
    atomic_write,
    cleanup_temp_files,
    read_json_object,
    truncate_tail,
    write_json,
)


def test_write_json_replaces_atomically_and_leaves_no_temp(tmp_path):
    p = tmp_path / "s.json"
    write_json(p, {"a": 1})
    write_json(p, {"a": 2, "b": [1, 2]})
    assert read_json_object(p) == {"a": 2, "b": [1, 2]}
    assert [f.name for f in tmp_path.iterdir()] == ["s.json"]


def test_failed_write_keeps_previous_content(tmp_path):
    p = tmp_path / "s.json"
    write_json(p, {"ok": True})

    def boom(f):
        f.write(b'{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(p, boom)
    assert read_json_object(p) == {"ok": True}
    assert [f.name for f in tmp_path.iterdir()] == ["s.json"]


def test_concurrent_reader_never_sees_half_a_file(tmp_path):
    p = tmp_path / "status.json"
    write_json(p, {"i": 0, "pad": "x" * 5000})
    stop = threading.Event()
    bad = []
    reads = [0]

    def reader():  # records every problem (an assert here would only end the thread, unseen)
        while not stop.is_set():
            try:
                obj = orjson.loads(p.read_bytes())
                if not isinstance(obj.get("i"), int):
                    bad.append(obj)
                reads[0] += 1
            except Exception as e:
                bad.append(e)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(300):
        write_json(p, {"i": i, "pad": "x" * (5000 + i)}, durable=False)
    stop.set()
    t.join()
    assert bad == [] and reads[0] > 0


@pytest.mark.parametrize("content,message", [
    (b"", "empty"), (b'{"a": 1', "not valid JSON"), (b"\x00\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
])
def test_read_json_object_errors_name_the_file(tmp_path, content, message):
    p = tmp_path / "x.json"
    p.write_bytes(content)
    with pytest.raises(FileFormatError, match=message) as e:
        read_json_object(p)
    assert "x.json" in str(e.value)


def test_jsonl_tail_reads_only_appended_and_leaves_torn_line(tmp_path):
    p = tmp_path / "m.jsonl"
    tail = JsonlTail(p)
    assert tail.read() == []  # missing file
    w = JsonlWriter(p)
    w.write({"i": 0})
    w.write({"i": 1})
    assert [r["i"] for r in tail.read()] == [0, 1]
    with open(p, "ab") as f:
        f.write(b'{"i": 2}\n{"i": 3, "torn')
    assert [r["i"] for r in tail.read()] == [2]
    with open(p, "ab") as f:
        f.write(b'": true}\n')
    assert tail.read() == [{"i": 3, "torn": True}]
    assert tail.read() == []
    w.close()


def test_jsonl_tail_bounded_chunks_and_long_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    with JsonlWriter(p) as w:
        for i in range(100):
            w.write({"i": i, "pad": "y" * (10 if i != 50 else 5000)})
    tail = JsonlTail(p, max_bytes=256)
    seen = []
    for _ in range(200):
        got = tail.read()
        assert len(got) <= 20
        seen += [r["i"] for r in got]
        if tail.offset == p.stat().st_size:
            break
    assert seen == list(range(100))


def test_jsonl_tail_detects_truncation_and_replacement(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    tail = JsonlTail(p)
    assert len(tail.read()) == 2
    p.write_bytes(b'{"a": 9}\n')  # truncated and rewritten: shorter
    assert tail.read() == [{"a": 9}] and tail.reset
    tmp = tmp_path / "new"
    tmp.write_bytes(b'{"a": 7}\n{"a": 8}\n{"a": 10}\n')
    os.replace(tmp, p)  # replaced: new inode
    assert [r["a"] for r in tail.read()] == [7, 8, 10] and tail.reset


def test_jsonl_tail_skips_bad_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"a": 1}\nnot json\n[1]\n{"a": 2}\n')
    tail = JsonlTail(p)
    assert tail.read() == [{"a": 1}, {"a": 2}] and tail.bad_lines == 2


def test_cleanup_temp_files(tmp_path):
    (tmp_path / ".current.pt.abc.tmp").write_bytes(b"x")
    (tmp_path / "keep.tmp").write_bytes(b"x")
    assert cleanup_temp_files(tmp_path) == 1
    assert sorted(f.name for f in tmp_path.iterdir()) == ["keep.tmp"]


def test_jsonl_tail_sees_a_cut_that_grew_back_past_its_offset(tmp_path):
    """A resume cuts the records written after its checkpoint, then appends new ones: a reader
    whose offset lies inside the new bytes must start over, not read on from the middle."""
    p = tmp_path / "m.jsonl"
    p.write_bytes(b"".join(orjson.dumps({"step": i, "t": 1.0}) + b"\n" for i in range(10)))
    tail = JsonlTail(p)
    assert [r["step"] for r in tail.read()] == list(range(10))
    assert truncate_tail(p, lambda r: r["step"] >= 6) == 4
    with open(p, "ab") as f:  # steps 6.. again (new times), then more: the file is longer than before
        f.write(b"".join(orjson.dumps({"step": i, "t": 2.0}) + b"\n" for i in range(6, 14)))
    again = tail.read()
    assert tail.reset and [r["step"] for r in again] == list(range(14))


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
def test_truncate_tail_cuts_only_the_tail_in_place(tmp_path, block):
    p = tmp_path / "m.jsonl"
    rows = [{"kind": "step", "step": i} for i in range(50)]
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b'{"kind": "st')  # a torn last line
    inode = p.stat().st_ino
    assert truncate_tail(p, lambda r: r["step"] >= 30, block=block) == 20
    assert [orjson.loads(x)["step"] for x in p.read_bytes().splitlines()] == list(range(30))
    assert p.stat().st_ino == inode  # truncated, not rewritten
    assert truncate_tail(p, lambda r: False, block=block) == 0
    assert truncate_tail(tmp_path / "missing.jsonl", lambda r: True) == 0
