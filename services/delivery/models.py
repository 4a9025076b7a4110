"""delivery's tables: the portal inbox of every account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit import audit
from servicekit.db import new_base

Base = new_base()


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    category: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    source_event_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)


# The audit trail records every change of a delivery (servicekit.audit): its creation and its
# reading, which is the addressee signing for it.
audit.track(Notification, "delivery", values=("account_id", "category", "source_event_id"))
