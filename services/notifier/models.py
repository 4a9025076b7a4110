"""notifier's tables: every SMS it was asked to send, with the phone masked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import new_base

Base = new_base()


class SmsMessage(Base):
    __tablename__ = "sms_messages"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    phone_masked: Mapped[str] = mapped_column(String(11))
    template: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # sent | expired
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
