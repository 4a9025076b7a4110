"""documents's own settings and collaborators, from environment variables.

* ``ECOURT_PUBLIC_BASE_URL``   where the public reaches this service (the QR code and
  ``verify_url`` point at ``<base>/verify/<code>``); default
  ``http://127.0.0.1:8080/api/documents`` (the embedded suite's gateway)
* ``DOCUMENTS_BLOB_DIR``       the blob store's folder; default ``<ECOURT_DATA_DIR>/documents``
* ``DOCUMENTS_CJK_FONT``       a TrueType CJK font file (see ``fonts.py`` for the default)
* ``DOCUMENTS_MAX_UPLOAD_MB``  the largest PDF ``POST /verify`` accepts (20)
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from servicekit.blobs import LocalBlobStore
from servicekit.config import data_dir
from servicekit.service import Runtime
from services.documents import codes, fonts
from services.documents.render import Renderer

DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8080/api/documents"
EXTRAS_KEY = "documents"


@dataclass(frozen=True)
class DocumentsSettings:
    public_base_url: str
    blob_dir: Path
    font_path: str | None
    max_upload_bytes: int

    @classmethod
    def from_env(cls) -> DocumentsSettings:
        blob_dir = os.environ.get("DOCUMENTS_BLOB_DIR") or str(data_dir() / "documents")
        return cls(
            public_base_url=os.environ.get("ECOURT_PUBLIC_BASE_URL",
                                           DEFAULT_PUBLIC_BASE_URL).rstrip("/"),
            blob_dir=Path(blob_dir),
            font_path=os.environ.get("DOCUMENTS_CJK_FONT") or None,
            max_upload_bytes=int(float(os.environ.get("DOCUMENTS_MAX_UPLOAD_MB", "20"))
                                 * 1024 * 1024),
        )

    def verify_url(self, code: str) -> str:
        return f"{self.public_base_url}/verify/{codes.display(code)}"


@dataclass
class Documents:
    """The running service's collaborators: settings, blob store and (lazily) the renderer."""

    settings: DocumentsSettings
    blobs: LocalBlobStore
    _renderer: Renderer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def renderer(self) -> Renderer:
        with self._lock:
            if self._renderer is None:
                self._renderer = Renderer(fonts.load(self.settings.font_path))
            return self._renderer


def documents_of(rt: Runtime) -> Documents:
    """The service's collaborators, made once per runtime (tests may put their own first)."""
    found = rt.extras.get(EXTRAS_KEY)
    if found is None:
        settings = DocumentsSettings.from_env()
        found = Documents(settings, LocalBlobStore(settings.blob_dir))
        rt.extras[EXTRAS_KEY] = found
    return found  # type: ignore[return-value]
