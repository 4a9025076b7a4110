"""documents's tables: seals, issued documents, render requests, the issuance log and the
verification log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit import audit
from servicekit.db import BigId, new_base

Base = new_base()

VALID, REVOKED = "valid", "revoked"


class Seal(Base):
    """A court's registered special-purpose seal (its wording); one per court."""

    __tablename__ = "seals"

    court: Mapped[str] = mapped_column(String(20), primary_key=True)
    court_name: Mapped[str] = mapped_column(String(100))
    seal_name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer, default=1)
    registered_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column()


class Document(Base):
    """An issued document. At most one *valid* document per application (the partial unique
    index ``uq_documents_valid_application``), whatever races happen between requests."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("uq_documents_valid_application", "application_id", unique=True,
              sqlite_where=text("status = 'valid'"), postgresql_where=text("status = 'valid'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    application_id: Mapped[str] = mapped_column(String(64), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    court: Mapped[str] = mapped_column(String(20), index=True)
    court_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(50))
    case_number: Mapped[str] = mapped_column(String(100))
    service_number: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(20), unique=True)  # canonical form
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(10), default=VALID)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    viewer_account_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON list


class RenderRequest(Base):
    """Every certificate request and what became of it (issued, reissued, failed)."""

    __tablename__ = "render_requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    application_id: Mapped[str] = mapped_column(String(64), index=True)
    court: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    document_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    event_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column()


class LogEntry(Base):
    """The append-only, hash-chained issuance log (see ``ledger.py``)."""

    __tablename__ = "issuance_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document_id: Mapped[str] = mapped_column(String(36), unique=True)
    code: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class Verification(Base):
    """One public verification. No personal data: no address, no agent, no account."""

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    method: Mapped[str] = mapped_column(String(10))  # code | upload
    code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    result: Mapped[str] = mapped_column(String(20))
    verified_at: Mapped[datetime] = mapped_column(index=True)


# The audit trail records every change of an issued document (servicekit.audit).
audit.track(Document, "document", values=("application_id", "court", "kind", "code", "status",
                                          "published"))
