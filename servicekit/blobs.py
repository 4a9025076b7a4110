"""The blob store: issued PDFs and uploaded materials, content-addressed by SHA-256.

* A blob's name is its SHA-256, so writing the same bytes twice is harmless (a retried
  handler, a redelivered event) and a blob can never silently change: ``get`` re-hashes.
* Writes are atomic: a temporary file in the same folder, ``fsync``, ``os.replace``, then an
  ``fsync`` of the folder. The blob is written **before** the database transaction that refers
  to it commits, so a committed document always has its bytes; a crash in between leaves only
  an unreferenced blob (garbage, never a dangling row).
* Garbage is collected by ``servicekit.blob_gc`` (``ecourt blobs gc SERVICE``): a file older
  than a grace period that no declared column refers to. ``put`` of bytes already stored
  touches the file's mtime, so a blob a request in flight is about to refer to again is young
  and protected by the grace however old it was.
* ``LocalBlobStore`` keeps the files under a folder per service (documents:
  ``DOCUMENTS_BLOB_DIR``, default ``<data dir>/documents``), fanned out by the first two hex
  digits. With several replicas on several hosts that folder must be shared storage (a
  volume every replica mounts), or the store replaced by an object store behind the same two
  methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol


class BlobMissing(LookupError):
    """No blob with that hash, or its bytes no longer match the hash."""


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, sha256: str) -> bytes: ...


class LocalBlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a lowercase hex SHA-256")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_of(sha256)
        if self._reuse(path, len(data)):
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
        return sha256

    @staticmethod
    def _reuse(path: Path, size: int) -> bool:
        """Whether ``path`` already holds the bytes; if so its mtime is now, so the garbage
        collector's grace protects it until the caller's transaction has committed (a file
        the collector removed meanwhile is written again)."""
        try:
            if os.lstat(path).st_size != size:
                return False
            os.utime(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def get(self, sha256: str) -> bytes:
        try:
            data = self.path_of(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobMissing(f"blob {sha256} is missing") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobMissing(f"blob {sha256} is corrupted (its bytes no longer match)")
        return data

    def check_writable(self) -> None:
        """Readiness: the folder exists and a file can be created in it."""
        with tempfile.TemporaryFile(dir=self.root):
            pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
