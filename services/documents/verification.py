"""Public verification: by code (typed or scanned from the QR) and by uploading the PDF.

* By code: the document's public facts (court, kind, case number, issue time in Asia/Shanghai,
  status, SHA-256) — never the parties' names. A code that fails its check character is
  reported as a probable typo.
* By upload: ``authentic`` when the file's SHA-256 is that of an issued, valid document (the
  exact bytes we issued); ``altered`` when the file carries one of our codes (in its metadata
  or its text, or as the plain ``ecourt-code:`` marker when the file no longer parses) but its
  bytes differ — one changed byte, an appended incremental update, a
  re-save; ``revoked`` when the exact bytes are those of a revoked document; ``unknown``
  otherwise. Only the first pages' text is read, and any parse error means "no code found".
* Every verification is logged in ``verifications``: method, code, result, time. Nothing
  about who asked.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from typing import Any

from pypdf import PdfReader
from sqlalchemy import select

from servicekit.db import Database, utcnow
from services.documents import codes
from services.documents.models import VALID, Document, Verification
from services.documents.render import KIND_LABEL, local

log = logging.getLogger(__name__)
PDF_MAGIC = b"%PDF-"
TEXT_PAGES = 3
#: the ``/Keywords`` entry the renderer writes (``ecourt-code:XXXX-XXXX-XXXX-XXXX-XXXX``)
MARKER = re.compile(rb"ecourt-code:([0-9A-Z]{4}(?:-[0-9A-Z]{4}){4})")
KIND_LABELS = {"effectiveness_certificate": KIND_LABEL}


def public_view(doc: Document, verify_url: str) -> dict[str, Any]:
    issued_local = local(doc.issued_at)
    return {"code": codes.display(doc.code), "court": doc.court, "court_name": doc.court_name,
            "kind": doc.kind, "kind_label": KIND_LABELS.get(doc.kind, doc.kind),
            "case_number": doc.case_number, "issued_at": doc.issued_at,
            "issued_at_local": issued_local.strftime("%Y-%m-%d %H:%M:%S") + " (UTC+08:00)",
            "status": doc.status, "sha256": doc.sha256, "verify_url": verify_url}


def _log(db: Database, method: str, code: str | None, result: str) -> None:
    with db.transaction() as session:
        session.add(Verification(method=method, code=code, result=result,
                                 verified_at=utcnow()))


def lookup(db: Database, raw: str) -> tuple[Document | None, str | None]:
    """(document, None) for a known code, (None, hint) otherwise; logged either way."""
    try:
        code = codes.parse(raw)
    except codes.InvalidCode as exc:
        _log(db, "code", None, "malformed")
        return None, exc.hint
    with db.transaction() as session:
        doc = session.scalars(select(Document).where(Document.code == code)).first()
    _log(db, "code", code, doc.status if doc else "not_found")
    if doc is None:
        return None, "no document was issued with this code: compare it with the document"
    return doc, None


def codes_in_pdf(data: bytes) -> list[str]:
    """Our codes found in a PDF's metadata (Subject, Keywords, Title) or its first pages."""
    found: list[str] = []
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        meta = reader.metadata or {}
        for key in ("/Subject", "/Keywords", "/Title"):
            found += codes.find_in(str(meta.get(key) or ""))
        if not found:
            for page in reader.pages[:TEXT_PAGES]:
                found += codes.find_in(page.extract_text() or "")
    except Exception as exc:  # an unreadable or hostile file: simply no code of ours
        log.info("uploaded PDF not readable (%s)", exc.__class__.__name__)
    if not found:  # a damaged cross-reference table: our marker is plain ASCII in the file
        for match in MARKER.finditer(data):
            found += codes.find_in(match.group(1).decode("ascii"))
    return list(dict.fromkeys(found))


def verify_upload(db: Database, data: bytes) -> tuple[str, Document | None]:
    """(result, document) for an uploaded PDF; logged."""
    sha256 = hashlib.sha256(data).hexdigest()
    with db.transaction() as session:
        exact = session.scalars(select(Document).where(Document.sha256 == sha256)
                                .order_by(Document.status != VALID)).first()
    if exact is not None:
        result = "authentic" if exact.status == VALID else "revoked"
        _log(db, "upload", exact.code, result)
        return result, exact
    candidates = codes_in_pdf(data)
    doc = None
    if candidates:
        with db.transaction() as session:
            doc = session.scalars(select(Document).where(Document.code.in_(candidates))).first()
    result = "altered" if doc is not None else "unknown"
    _log(db, "upload", doc.code if doc else None, result)
    return result, doc
