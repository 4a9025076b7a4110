"""matters' tables: cases as the court's trial system knows them, their parties, and the
applications parties make inside their case space."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from servicekit import audit
from servicekit.db import new_base

Base = new_base()


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_number: Mapped[str] = mapped_column(String(60), unique=True)
    court: Mapped[str] = mapped_column(String(20), index=True)
    court_name: Mapped[str] = mapped_column(String(100))
    cause: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(50))
    judge_account_id: Mapped[str] = mapped_column(String(36))
    clerk_account_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    judgment_title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    judgment_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    effective_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime]
    parties: Mapped[list[CaseParty]] = relationship(back_populates="case", lazy="selectin",
                                                    order_by="CaseParty.position")
    #: the lawyers bound to a party of this case (approved bindings only): access.py reads these
    approved_bindings: Mapped[list[Binding]] = relationship(
        primaryjoin="and_(Case.id == Binding.case_id, Binding.status == 'approved')",
        viewonly=True, lazy="selectin")


class CaseParty(Base):
    __tablename__ = "case_parties"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))  # plaintiff | defendant | third_party
    account_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    case: Mapped[Case] = relationship(back_populates="parties")


class ServiceCounter(Base):
    """The next service number per court, year and word (``(2026)粤01文书第17号``)."""

    __tablename__ = "service_counters"
    __table_args__ = (UniqueConstraint("court", "year", "word"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    court: Mapped[str] = mapped_column(String(20))
    year: Mapped[int] = mapped_column(Integer)
    word: Mapped[str] = mapped_column(String(10))
    last: Mapped[int] = mapped_column(Integer)


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    court: Mapped[str] = mapped_column(String(20), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    service_number: Mapped[str] = mapped_column(String(60), unique=True)
    applicant_account_id: Mapped[str] = mapped_column(String(36), index=True)
    #: the party applying (case_parties.id); null only on rows from before 0003
    party_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    #: who pressed "submit": the party themself, or the lawyer bound to them
    submitted_by_account_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    applicant_name: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    use: Mapped[str] = mapped_column(Text)
    materials: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    stage: Mapped[str] = mapped_column(String(20))  # middle_office | back_office
    deadline: Mapped[datetime]
    submitted_at: Mapped[datetime]
    handler_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    handling_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    handled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    judge_opinion: Mapped[str | None] = mapped_column(String(100), nullable=True)
    judge_result_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    judge_handler: Mapped[str | None] = mapped_column(String(100), nullable=True)
    judge_decided_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    document_state: Mapped[str] = mapped_column(String(20), default="none")
    document_request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    document_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    document_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    document_failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Lawyer(Base):
    """A verified lawyer, as identity reported it (``identity.lawyer.verified``)."""

    __tablename__ = "lawyers"

    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    license_no: Mapped[str] = mapped_column(String(40), index=True)
    law_firm: Mapped[str] = mapped_column(String(200))
    verified_at: Mapped[datetime]


class Binding(Base):
    """A lawyer bound (or asking to be bound) to one party of one case (律师案件绑定)."""

    __tablename__ = "bindings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    court: Mapped[str] = mapped_column(String(20), index=True)
    service_number: Mapped[str] = mapped_column(String(60), unique=True)
    lawyer_account_id: Mapped[str] = mapped_column(String(36), index=True)
    lawyer_name: Mapped[str] = mapped_column(String(100))
    law_firm: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[str] = mapped_column(String(36))
    party_name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))  # request | clerk
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | approved | rejected
    letter_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    letter_filename: Mapped[str | None] = mapped_column(String(120), nullable=True)
    letter_content_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    letter_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deadline: Mapped[datetime]
    requested_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by_account_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    decided_by_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)


# The audit trail records every change of these rows (servicekit.audit): old and new values
# only for the codes named here, never for names or free text.
audit.track(Case, "case", values=("court", "effective_date"))
audit.track(CaseParty, "case_party", values=("case_id", "role", "account_id"))
audit.track(Application, "application",
            values=("case_id", "court", "kind", "status", "stage", "document_state"))
audit.track(Binding, "binding", values=("case_id", "court", "lawyer_account_id", "party_id",
                                        "source", "status", "escalation_level"))
