"""matters' tables: cases as the court's trial system knows them, their parties, and the
applications parties make inside their case space."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
