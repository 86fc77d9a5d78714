"""``metadata.json``: an experiment's lifecycle record (version 1), rewritten atomically.

Fields (all optional but ``version``): ``name``, ``created_at`` (Unix seconds), ``created_from``,
``archived_at`` (set while archived, else null), ``archive`` (the last archive: ``status``,
``reason``, ``original_path``, ``archive_path``, ``method``, ``files``, ``bytes``, ``manifest``),
``restored_at``, ``promoted_to`` (the current production config), ``promotions`` (one record per
promotion; ``replaced_at``/``replaced_by`` once another experiment took the config over) and
``history`` (earlier archive records, each with its ``restored_at``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainkit.runfolder import FORMAT_VERSION, METADATA_FILE, readers
from trainkit.runfolder.files import write_json

METADATA_VERSION = FORMAT_VERSION
# Any object, up to the size an archive's manifest needs (a line per file).
SCHEMA = readers.Schema(METADATA_FILE, {}, limit=readers.LIMITS["metadata"], extra="keep")


def read_metadata(folder: Path, warnings: list[str] | None = None) -> dict:
    """The experiment's metadata ({} when there is none; a malformed file warns and reads as {})."""
    return readers.load(Path(folder) / METADATA_FILE, SCHEMA, [] if warnings is None else warnings) or {}


def new_metadata(name: str, now: float, **fields) -> dict:
    return {"version": METADATA_VERSION, "name": name, "created_at": now, **fields}


def update_metadata(folder: Path, change: Callable[[dict], None]) -> dict:
    """Read, ``change`` in place, write back atomically (creating the file when missing)."""
    meta = read_metadata(folder)
    meta.setdefault("name", Path(folder).name)
    change(meta)
    meta["version"] = METADATA_VERSION
    write_json(Path(folder) / METADATA_FILE, meta)
    return meta


def current_promotion(meta: dict) -> dict | None:
    """The latest promotion record that no later promotion replaced, or None."""
    records = meta.get("promotions")
    if not isinstance(records, list):
        return None
    for rec in reversed(records):
        if isinstance(rec, dict) and rec.get("target") and not rec.get("replaced_at"):
            return rec
    return None
