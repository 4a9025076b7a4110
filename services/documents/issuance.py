"""Issuing certificates (on ``matters.certificate.requested``) and publishing them (on
``matters.application.completed``). Both run inside the consumer's transaction.

Decisions written down here:

* **One valid certificate per application.** A request for an application that already has a
  valid document (a redelivered request, a regenerate racing a late success) renders nothing:
  ``documents.document.issued`` is emitted again for the existing document (same id and code),
  carrying the *current* request's id so the requester can match its attempt. The check runs
  before rendering and again under the issuance lock; the partial unique index is the backstop.
* **A failure is visible, never retried forever.** No seal registered, a character the font
  lacks, a malformed request, or any error while rendering: ``documents.render.failed`` with a
  reason safe to show, and the request is recorded as failed. The application then offers
  "regenerate" (a new request). Only infrastructure errors (database, disk) raise and are
  retried by the consumer, then dead-lettered.
* **The seal is held while it is used** (``in_use``): from the moment it is read until the
  commit, so a seal replaced meanwhile is never printed on a certificate issued after it.
* **Order of work:** hold the seal → render → write the blob (atomic, content-addressed) →
  lock the issuance log → re-check → insert the document and its log entry → emit, all
  committed together.
* **The log's times never run backwards** (``in_log_order``). Rendering happens before the
  log is locked, so two issuances at once can reach the log in the other order than they were
  stamped. The later-stamped one that lost the race is stamped again, with the time of the
  entry before it or later, and rendered again under the lock (rare: only when the race
  happened). A witness can then read a time earlier than its predecessor's as back-dating.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from servicekit.db import legal_now, utcnow
from servicekit.envelope import CloudEvent
from servicekit.ids import new_id
from servicekit.logs import scrub
from servicekit.outbox import emit
from services.documents import codes, ledger
from services.documents.config import Documents
from services.documents.models import VALID, Document, RenderRequest, Seal
from services.documents.render import KIND, Certificate, Party, RenderError

log = logging.getLogger(__name__)
SOURCE = "/documents"
ISSUED = "documents.document.issued"
FAILED = "documents.render.failed"
#: the longest values the documents table keeps
LIMITS = {"request_id": 64, "application_id": 64, "court": 20, "court_name": 100,
          "case_number": 100, "service_number": 64}


def valid_document(session: Session, application_id: str) -> Document | None:
    return session.scalars(select(Document).where(Document.application_id == application_id,
                                                  Document.status == VALID)).first()


def issued_data(doc: Document, request_id: str, verify_url: str) -> dict[str, str]:
    return {"document_id": doc.id, "request_id": request_id,
            "application_id": doc.application_id, "case_number": doc.case_number,
            "court": doc.court, "kind": doc.kind, "code": codes.display(doc.code),
            "sha256": doc.sha256, "issued_at": doc.issued_at.isoformat().replace("+00:00", "Z"),
            "verify_url": verify_url}


def _record(session: Session, event: CloudEvent, outcome: str, *, reason: str | None = None,
            document_id: str | None = None) -> None:
    data = event.data
    request_id = str(data.get("request_id") or event.id)
    row = session.get(RenderRequest, request_id)
    if row is None:
        row = RenderRequest(request_id=request_id)
        session.add(row)
    row.application_id = str(data.get("application_id", ""))[:64]
    row.court = str(data.get("court", ""))[:20]
    row.outcome, row.reason, row.document_id = outcome, reason, document_id
    row.event_id, row.received_at = event.id, utcnow()


def fail(session: Session, event: CloudEvent, reason: str) -> None:
    """Record and announce the failure. The reason can quote the request (a value that did
    not parse), and it is stored, logged and sent in an event: ID numbers and mobiles in it
    are masked like the logs'."""
    reason = scrub(reason)
    data = event.data
    log.warning("certificate request %s for application %s failed: %s",
                data.get("request_id"), data.get("application_id"), reason)
    _record(session, event, "failed", reason=reason)
    emit(session, FAILED, {"request_id": str(data.get("request_id", event.id)),
                           "application_id": str(data.get("application_id", "")),
                           "court": str(data.get("court", "")), "reason": reason},
         source=SOURCE, subject=str(data.get("application_id", "")) or None)


def reissue(session: Session, docs: Documents, event: CloudEvent, doc: Document) -> None:
    request_id = str(event.data["request_id"])
    log.info("application %s already has document %s: re-announced for request %s",
             doc.application_id, doc.id, request_id)
    _record(session, event, "reissued", document_id=doc.id)
    emit(session, ISSUED, issued_data(doc, request_id, docs.settings.verify_url(doc.code)),
         source=SOURCE, subject=doc.application_id)


def in_use(session: Session, court: str) -> Seal | None:
    """The court's seal, held (a share lock) until this issuance commits: a replacement
    waits for the certificates being rendered with the seal, and an issuance that comes during
    a replacement waits for it and renders the new seal, so no certificate committed after a
    replacement bears the replaced seal. Issuances share the lock and never wait for each
    other here."""
    return session.get(Seal, court, with_for_update={"read": True})


def certificate_from(data: dict[str, object], seal: Seal, code: str, verify_url: str,
                     issued_at: object) -> Certificate:
    """The certificate's content from the request; raises ValueError/KeyError/TypeError."""
    judgment = data.get("judgment") or {}
    if not isinstance(judgment, dict):
        raise TypeError("judgment must be an object")
    parties = [Party(str(p["name"]), str(p["role"])) for p in data["parties"]]  # type: ignore[attr-defined, index]
    decided = judgment.get("decided_on")
    return Certificate(
        court_name=str(data["court_name"]), case_number=str(data["case_number"]),
        parties=parties, effective_date=date.fromisoformat(str(data["effective_date"])),
        service_number=str(data["service_number"]), code=code, verify_url=verify_url,
        issued_at=issued_at, seal_court_name=seal.court_name,  # type: ignore[arg-type]
        seal_name=seal.seal_name, cause=str(data.get("cause") or ""),
        judgment_title=str(judgment.get("title") or ""),
        decided_on=date.fromisoformat(str(decided)) if decided else None)


def on_certificate_requested(session: Session, event: CloudEvent, docs: Documents) -> None:
    data = event.data
    application_id, court = data.get("application_id"), data.get("court")
    if not application_id or not court or not data.get("request_id"):
        fail(session, event, "the request is incomplete (application, court or request id "
                             "missing)")
        return
    too_long = [k for k, limit in LIMITS.items() if len(str(data.get(k) or "")) > limit]
    if too_long:
        fail(session, event, f"the request is malformed ({', '.join(too_long)} too long)")
        return
    existing = valid_document(session, str(application_id))
    if existing is not None:
        reissue(session, docs, event, existing)
        return
    seal = in_use(session, str(court))
    if seal is None:
        fail(session, event, f"no official seal registered for court {court}")
        return

    code, issued_at = codes.new_code(), legal_now()
    try:
        certificate = certificate_from(data, seal, code, docs.settings.verify_url(code),
                                       issued_at)
    except (KeyError, TypeError, ValueError) as exc:
        fail(session, event, f"the request is incomplete or malformed ({exc.__class__.__name__}"
                             f": {str(exc)[:120]})")
        return
    pdf = _render(session, event, docs, certificate)
    if pdf is None:
        return
    sha256 = docs.blobs.put(pdf)  # before the commit; content-addressed, so a retry is harmless

    ledger.lock(session)
    existing = valid_document(session, str(application_id))
    if existing is not None:  # another consumer issued it while we rendered
        reissue(session, docs, event, existing)
        return
    in_order = in_log_order(session, certificate)
    if in_order is not certificate:
        certificate, issued_at = in_order, in_order.issued_at
        pdf = _render(session, event, docs, certificate)
        if pdf is None:
            return
        sha256 = docs.blobs.put(pdf)  # the first rendering's blob is left for ``blobs gc``
    doc = Document(id=new_id(), application_id=str(application_id),
                   request_id=str(data["request_id"]), court=str(court),
                   court_name=certificate.court_name, kind=KIND,
                   case_number=certificate.case_number,
                   service_number=certificate.service_number, code=code, sha256=sha256,
                   size=len(pdf), issued_at=issued_at, status=VALID, published=False,
                   viewer_account_ids="[]")
    session.add(doc)
    session.flush()
    ledger.append(session, doc)
    _record(session, event, "issued", document_id=doc.id)
    emit(session, ISSUED, issued_data(doc, doc.request_id, certificate.verify_url),
         source=SOURCE, subject=doc.application_id)


def _render(session: Session, event: CloudEvent, docs: Documents,
            certificate: Certificate) -> bytes | None:
    """The certificate's PDF, or None when it could not be rendered (the failure recorded
    and announced: ``fail``)."""
    try:
        return docs.renderer.render(certificate)
    except RenderError as exc:
        fail(session, event, str(exc))
    except Exception:
        log.exception("rendering the certificate for application %s failed",
                      event.data.get("application_id"))
        fail(session, event, "the certificate could not be rendered (an internal error was "
                             "logged); try regenerating it, or contact the court")
    return None


def in_log_order(session: Session, certificate: Certificate) -> Certificate:
    """``certificate`` as it may enter the issuance log: unchanged when its time is not
    earlier than the log's last entry, else stamped again with the later of now and that
    entry's time (the server's clock may have been set back). Call under ``ledger.lock``."""
    last = ledger.head(session)
    if last is None or last.issued_at <= certificate.issued_at:
        return certificate
    return replace(certificate, issued_at=max(legal_now(), last.issued_at))


class PublishMismatch(LookupError):
    """The completed application names a document this service does not hold for it."""


def on_application_completed(session: Session, event: CloudEvent) -> None:
    """Staff published the document to the case space: its viewers may now download it.
    An unknown document raises, so the event is retried and then parked in the DLQ where an
    operator sees it (it cannot happen unless events were lost or mixed up)."""
    data = event.data
    doc = session.get(Document, data["document_id"], with_for_update=True)
    if doc is None or doc.application_id != data["application_id"]:
        raise PublishMismatch(f"document {data['document_id']} of application "
                              f"{data['application_id']} is not held by documents")
    viewers = set(json.loads(doc.viewer_account_ids or "[]"))
    viewers.update(str(v) for v in data.get("viewer_account_ids") or [])
    if data.get("applicant_account_id"):
        viewers.add(str(data["applicant_account_id"]))
    doc.viewer_account_ids = json.dumps(sorted(viewers))
    if not doc.published:
        doc.published = True
        doc.published_at = legal_now()
