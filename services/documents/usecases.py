"""documents's use cases behind the signed-in routes: the seal registry and downloads.

Who may read a document: staff of the document's court (any role in ``STAFF_ROLES`` and the
token's ``court`` equal to the document's) at any time; an account listed among the
document's viewers once it is published. Anyone else gets 404, exactly as for a document that
does not exist, so an id reveals nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from servicekit import audit
from servicekit.blobs import BlobMissing, BlobStore
from servicekit.db import Database, utcnow
from servicekit.paging import page_of
from servicekit.problems import Problem
from servicekit.roles import STAFF_ROLES
from servicekit.versions import Precondition
from services.documents import codes
from services.documents.models import Document, Seal

log = logging.getLogger(__name__)
NOT_FOUND = "no such document"


def is_staff_of(claims: dict[str, Any], court: str) -> bool:
    roles = set(claims.get("roles") or [])
    return bool(roles & STAFF_ROLES) and bool(court) and claims.get("court") == court


def may_read(claims: dict[str, Any], doc: Document) -> bool:
    if is_staff_of(claims, doc.court):
        return True
    return doc.published and str(claims.get("sub", "")) in json.loads(doc.viewer_account_ids)


# -- seals ----------------------------------------------------------------------------------
def seal_etag(seal: Seal) -> str:
    return f"seal-{seal.version}"


def upsert_seal(db: Database, claims: dict[str, Any], body: dict[str, str],
                precondition: Precondition) -> tuple[Seal, bool]:
    """Register or replace a court's seal; (seal, created). Only that court's admin may.

    The first seal needs no precondition (``If-None-Match: *`` makes it create-only); replacing
    one needs the If-Match of the seal as read (428 without it, 412 if it changed meanwhile),
    so two admins never overwrite each other (``servicekit.versions``)."""
    if claims.get("court") != body["court"]:
        raise Problem(403, "forbidden", "you may register the seal of your own court only")
    try:
        seal, created = _save_seal(db, claims, body, precondition)
    except IntegrityError as exc:
        if "pk_seals" not in str(exc.orig):
            raise
        # another admin registered the court's first seal between our look (nothing to lock
        # yet) and our insert: decided again against the seal that now exists, so this
        # request gets what it would have got a moment later (428 or 412), never a 500
        seal, created = _save_seal(db, claims, body, precondition)
    log.info("seal of court %s registered (version %s)", seal.court, seal.version)
    return seal, created


def _save_seal(db: Database, claims: dict[str, Any], body: dict[str, str],
               precondition: Precondition) -> tuple[Seal, bool]:
    court = body["court"]
    with db.transaction() as session:
        seal = session.get(Seal, court, with_for_update=True)
        precondition.decide(None if seal is None else seal_etag(seal), "seal")
        created = seal is None
        if seal is None:
            seal = Seal(court=court, version=0)
            session.add(seal)
        seal.court_name, seal.seal_name = body["court_name"], body["seal_name"]
        seal.version = (seal.version or 0) + 1
        seal.registered_by = str(claims.get("sub", ""))[:64]
        seal.updated_at = utcnow()
    return seal, created


def get_seal(db: Database, claims: dict[str, Any], court: str) -> Seal:
    if not is_staff_of(claims, court):
        raise Problem(403, "forbidden", "staff of that court only")
    with db.transaction(reads_only=True) as session:
        seal = session.get(Seal, court)
    if seal is None:
        raise Problem(404, "not-found", f"no seal registered for court {court}")
    return seal


# -- documents ------------------------------------------------------------------------------
def readable_document(db: Database, claims: dict[str, Any], document_id: str) -> Document:
    """The document, to those who may read it (its metadata and its PDF's download). Read
    without the write lock (a reading transaction): a download neither waits for an issuance
    nor holds one up; a refusal's audit entry is written by the web layer on its own."""
    with db.transaction(reads_only=True) as session:
        doc = session.get(Document, document_id)
    if doc is not None and not may_read(claims, doc):
        audit.note_denied(f"document:{doc.id}")
    if doc is None or not may_read(claims, doc):
        raise Problem(404, "not-found", NOT_FOUND)
    return doc


def document_pdf(db: Database, blobs: BlobStore, claims: dict[str, Any],
                 document_id: str) -> tuple[Document, bytes]:
    doc = readable_document(db, claims, document_id)
    try:
        return doc, blobs.get(doc.sha256)
    except BlobMissing:
        log.exception("document %s: its PDF is missing or corrupted in the blob store", doc.id)
        raise Problem(503, "document-unavailable",
                      "the document's file is unavailable; the court has been alerted") from None


def documents_of_application(db: Database, claims: dict[str, Any], application_id: str,
                             page: PaginationParameters) -> list[Document]:
    """Staff: the documents of an application of their court (valid and revoked), one page,
    newest first; documents issued in the same instant by id, so none repeats or vanishes
    across a page boundary."""
    court = str(claims.get("court") or "")
    if not is_staff_of(claims, court):
        raise Problem(403, "forbidden", "court staff only")
    query = (select(Document).where(Document.application_id == application_id,
                                    Document.court == court)
             .order_by(Document.issued_at.desc(), Document.id.desc()))
    with db.transaction(reads_only=True) as session:
        return list(page_of(session, query, page).scalars())


def document_view(doc: Document, verify_url: str) -> dict[str, Any]:
    return {"id": doc.id, "application_id": doc.application_id, "request_id": doc.request_id,
            "court": doc.court, "court_name": doc.court_name, "kind": doc.kind,
            "case_number": doc.case_number, "service_number": doc.service_number,
            "code": codes.display(doc.code), "sha256": doc.sha256, "size": doc.size,
            "issued_at": doc.issued_at, "status": doc.status, "published": doc.published,
            "published_at": doc.published_at, "verify_url": verify_url}
