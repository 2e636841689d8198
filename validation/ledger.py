"""The record of raw files that passed their suite, so each file is validated once rather than on every run.

Computing one day reads every raw file up to that day (lifetime totals, all labels that had arrived), so
validating all of them on every run would cost as much as the whole history. Instead each file that passes is
recorded with its size, modification time and a SHA-256 of its bytes (taken before it was read for validation),
and with a fingerprint of the suite that passed it: the suite's code, the raw schemas, the thresholds, the Great
Expectations version, and whether it was its source's first file. A later run skips a file only when the suite
fingerprint is the same and either its size and modification time are the recorded ones (as make and rsync
judge files), or its bytes hash to the recorded digest. Anything else is validated again. A missing or unreadable
record means every file is validated: the record can only save work, never let a changed file through, short of
someone rewriting a file while deliberately restoring its size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stamp:
    """What a file looked like when it was read for validation."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Stamp:
        stat = path.stat()
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return cls(size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=digest)


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


class Ledger:
    """Passed files by absolute path: their stamp and the fingerprint of the suite they passed."""

    def __init__(self, path: Path, suite: str) -> None:
        self.path = path
        self.suite = suite
        self._entries: dict[str, dict[str, object]] = self._load()
        self._dirty = False

    def passed(self, file: Path, first: bool) -> bool:
        entry = self._entries.get(str(file.resolve()))
        if not entry or entry.get("suite") != self._suite(first):
            return False
        stat = file.stat()
        if entry.get("size") != stat.st_size:
            return False
        if entry.get("mtime_ns") == stat.st_mtime_ns:
            return True
        if entry.get("sha256") == Stamp.of(file).sha256:  # touched, same bytes
            entry["mtime_ns"] = stat.st_mtime_ns
            self._dirty = True
            return True
        return False

    def record(self, file: Path, stamp: Stamp, first: bool) -> None:
        self._entries[str(file.resolve())] = {
            "size": stamp.size,
            "mtime_ns": stamp.mtime_ns,
            "sha256": stamp.sha256,
            "suite": self._suite(first),
        }
        self._dirty = True

    def save(self) -> None:
        """Write the record (temporary file, then rename); nothing to do when nothing changed."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._dirty = False

    def _suite(self, first: bool) -> str:
        return fingerprint(self.suite, str(first))

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
