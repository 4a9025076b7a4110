"""Collect a blob store's garbage: blobs no committed row refers to.

A blob is written *before* the transaction that refers to it commits (``servicekit.blobs``),
so a crash or a refused request (a duplicate organization, a rejected letter) leaves a file
nothing refers to. Left alone, a signed-in user could fill the disk with them. A file is
garbage when it is older than the grace period (``ECOURT_BLOB_GC_GRACE_HOURS``, 24 by default,
at least 1) and no column the service declares (``ServiceDefinition.blob_columns``) holds its
hash. Why that is safe against a request in flight:

* the request's ``put`` comes before its commit; a new file is young, and ``put`` of bytes
  already stored touches the old file, so it is young again too: the grace covers the time
  from ``put`` to commit;
* a file still old when looked at is first renamed aside (``.gc-<hash>``, atomic) and only
  then looked at again: a ``put`` that touched it before the rename shows as a moved mtime
  (the file is put back), a ``put`` after the rename finds no file and writes a new one. A
  ``.gc-`` file left by a collector that died there is put back by the next run;
* leftovers of a ``put`` that died (``.tmp-*``) older than the grace go too;
* only the store's own layout is looked at (``<root>/<2 hex>/<64 hex>``); symbolic links are
  never followed nor removed, and any other name is left alone.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData, select

from servicekit.blobs import LocalBlobStore
from servicekit.config import env_float
from servicekit.db import Database

log = logging.getLogger(__name__)

GRACE_ENV = "ECOURT_BLOB_GC_GRACE_HOURS"
DEFAULT_GRACE_HOURS = 24.0
#: below this a slow request's blob could go between its ``put`` and its commit
MIN_GRACE_HOURS = 1.0
#: hashes looked up in the database per query
BATCH = 500
TMP_PREFIX = ".tmp-"
ASIDE_PREFIX = ".gc-"

_FANOUT = re.compile(r"[0-9a-f]{2}")
_HASH = re.compile(r"[0-9a-f]{64}")


def grace_seconds() -> float:
    """The grace period from the environment (a ConfigError below one hour)."""
    return env_float(GRACE_ENV, DEFAULT_GRACE_HOURS, minimum=MIN_GRACE_HOURS) * 3600


def sha256_columns(metadata: MetaData) -> set[str]:
    """Every ``table.column`` of ``metadata`` whose name ends in ``sha256``: what a service
    must declare as blob columns (or that the check in the tests flags)."""
    return {f"{table.name}.{column.name}" for table in metadata.tables.values()
            for column in table.columns if column.name.lower().endswith("sha256")}


@dataclass
class Report:
    """What a collection found and removed (no hashes, no names: nothing personal)."""

    examined: int = 0
    removed: int = 0
    bytes_freed: int = 0
    temporaries_removed: int = 0
    kept_referenced: int = 0
    kept_young: int = 0
    kept_touched: int = 0
    restored: int = 0
    dry_run: bool = False

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (f"{verb} {self.removed} unreferenced blob(s) and {self.temporaries_removed} "
                f"leftover temporary file(s), {self.bytes_freed} bytes; examined "
                f"{self.examined}, kept {self.kept_referenced} referenced, {self.kept_young} "
                f"younger than the grace, {self.kept_touched} touched meanwhile")


@dataclass(frozen=True)
class _Candidate:
    path: Path
    sha256: str
    mtime_ns: int
    size: int


def _layout(root: Path) -> Iterator[os.DirEntry[str]]:
    """The regular files of the fan-out folders, never through a symbolic link."""
    with os.scandir(root) as top:
        folders = [e for e in top if _FANOUT.fullmatch(e.name)
                   and e.is_dir(follow_symlinks=False)]
    for folder in sorted(folders, key=lambda e: e.name):
        with os.scandir(folder.path) as entries:  # listed first: the caller renames in it
            files = [e for e in entries if e.is_file(follow_symlinks=False)]
        yield from files


def _referenced(db: Database, metadata: MetaData, columns: tuple[str, ...],
                hashes: list[str]) -> set[str]:
    found: set[str] = set()
    with db.transaction() as session:
        for name in columns:
            table, column = name.split(".", 1)
            col = metadata.tables[table].c[column]
            found.update(session.scalars(select(col).where(col.in_(hashes)).distinct()))
    return found


def holds_references(db: Database, metadata: MetaData, columns: tuple[str, ...]) -> bool:
    """Whether any declared column holds a blob's hash at all. A service's database that
    holds none while its store holds old blobs is most likely not its database (a wrong URL,
    a fresh restore): collecting then would delete every filing, so the command refuses."""
    with db.transaction() as session:
        for name in columns:
            table, column = name.split(".", 1)
            col = metadata.tables[table].c[column]
            if session.scalar(select(col).where(col.is_not(None)).limit(1)) is not None:
                return True
    return False


def collect(store: LocalBlobStore, db: Database, metadata: MetaData,
            columns: tuple[str, ...], *, grace: float | None = None,
            dry_run: bool = False, now: float | None = None) -> Report:
    """Remove ``store``'s files older than ``grace`` seconds that none of ``columns``
    (``table.column`` of ``metadata``) refers to; ``dry_run`` only counts them."""
    grace = grace_seconds() if grace is None else grace
    cutoff_ns = int(((time.time() if now is None else now) - grace) * 1e9)
    report = Report(dry_run=dry_run)
    if not dry_run:
        report.restored = _restore_aside(store.root)
    old: list[_Candidate] = []
    for entry in _layout(store.root):
        st = entry.stat(follow_symlinks=False)
        name = entry.name
        if name.startswith(TMP_PREFIX):
            if st.st_mtime_ns < cutoff_ns and _remove_temporary(Path(entry.path),
                                                                st.st_mtime_ns, dry_run):
                report.temporaries_removed += 1
                report.bytes_freed += st.st_size
            continue
        if not (_HASH.fullmatch(name) and name.startswith(Path(entry.path).parent.name)):
            continue
        report.examined += 1
        if st.st_mtime_ns >= cutoff_ns:
            report.kept_young += 1
            continue
        old.append(_Candidate(Path(entry.path), name, st.st_mtime_ns, st.st_size))
    for start in range(0, len(old), BATCH):
        batch = old[start:start + BATCH]
        referenced = _referenced(db, metadata, columns, [c.sha256 for c in batch])
        for candidate in batch:
            if candidate.sha256 in referenced:
                report.kept_referenced += 1
            elif _remove(candidate.path, candidate.mtime_ns, dry_run):
                report.removed += 1
                report.bytes_freed += candidate.size
            else:
                report.kept_touched += 1
    log.info("blob gc of %s: %s", store.root.name, report.line())
    return report


def _remove(path: Path, mtime_ns: int, dry_run: bool) -> bool:
    """Unlink ``path`` unless its mtime moved since it was seen as ``mtime_ns``: renamed aside
    first, so a ``put`` touching it cannot slip between the last look and the unlink."""
    if dry_run:
        return _unchanged(path, mtime_ns)
    aside = path.with_name(ASIDE_PREFIX + path.name)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if not _unchanged(aside, mtime_ns):
        _put_back(aside, path)
        return False
    os.unlink(aside)
    return True


def _remove_temporary(path: Path, mtime_ns: int, dry_run: bool) -> bool:
    """A dead ``put``'s temporary file: nobody touches it, a live ``put`` only renames it."""
    if not _unchanged(path, mtime_ns):
        return False
    if dry_run:
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _unchanged(path: Path, mtime_ns: int) -> bool:
    """Still a regular file with the mtime it was seen with."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_mtime_ns == mtime_ns and stat.S_ISREG(st.st_mode)


def _put_back(aside: Path, path: Path) -> None:
    """The same bytes are at ``path`` already (a ``put`` wrote them again) or go back there."""
    if path.exists():
        os.unlink(aside)
    else:
        os.replace(aside, path)


def _restore_aside(root: Path) -> int:
    """Put back what a collector that died between its rename and its unlink set aside: it
    may have been touched by a ``put`` meanwhile; this run looks at it again."""
    restored = 0
    for entry in _layout(root):
        original = entry.name[len(ASIDE_PREFIX):]
        if entry.name.startswith(ASIDE_PREFIX) and _HASH.fullmatch(original):
            _put_back(Path(entry.path), Path(entry.path).with_name(original))
            restored += 1
    return restored
