"""identity's tables for legal persons (法人) and lawyer verification (律师认证).

* ``organizations``         one row per registered legal person; its ``id`` is also the id of
                            its account (kind ``organization``, username = its USCC), which
                            signs in once the chosen court approves the registration. Notices
                            for it go to the registering individual (``applicant_account_id``).
* ``lawyer_verifications``  a signed-in individual's applications to be verified as a lawyer,
                            online (the Ministry of Justice's registry) or offline (face check,
                            credentials uploaded, approved by a court's staff in person)

Uploaded files (business licence, practising certificate, ID card) are kept in identity's blob
store, named by SHA-256; the rows keep the hash, the sniffed content type and the label.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from servicekit import audit
from services.identity.models import Base


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (Index("ix_organizations_court_status", "court", "status"),)

    id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id"), primary_key=True)
    #: 统一社会信用代码 (GB 32100), the organization's sign-in name
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    #: the check character did not match: registered anyway, flagged for the reviewer
    uscc_check_failed: Mapped[bool] = mapped_column()
    #: as its account's name and the registration form: 100 characters (migration 0010)
    name: Mapped[str] = mapped_column(String(100))
    legal_representative: Mapped[str] = mapped_column(String(100))
    court: Mapped[str] = mapped_column(String(20), ForeignKey("courts.code"))
    applicant_account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id"),
                                                      index=True)
    licence_sha256: Mapped[str] = mapped_column(String(64))
    licence_content_type: Mapped[str] = mapped_column(String(50))
    licence_filename: Mapped[str] = mapped_column(String(120))
    licence_size: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(20))  # pending | approved | rejected
    submitted_at: Mapped[datetime] = mapped_column()
    #: five working days after submission
    review_deadline: Mapped[datetime] = mapped_column()
    reviewed_at: Mapped[datetime | None] = mapped_column()
    reviewer_account_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(String(500))
    #: 1 when registered, +1 on every change (approved, rejected): the ETag ``"<version>"``
    #: a reviewer's If-Match must name (servicekit.versions)
    version: Mapped[int] = mapped_column(Integer, default=1)


class LawyerVerification(Base):
    __tablename__ = "lawyer_verifications"
    __table_args__ = (Index("ix_lawyer_verifications_court_status", "court", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id"), index=True)
    method: Mapped[str] = mapped_column(String(10))  # online | offline
    #: 执业证号: 17 digits
    license_no: Mapped[str] = mapped_column(String(17), index=True)
    law_firm: Mapped[str] = mapped_column(String(200))
    court: Mapped[str | None] = mapped_column(String(20), ForeignKey("courts.code"))
    status: Mapped[str] = mapped_column(String(20))  # pending | verified | rejected
    #: what the face check said (offline only), e.g. that it was a development stand-in
    face_check: Mapped[str | None] = mapped_column(String(200))
    certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    certificate_content_type: Mapped[str | None] = mapped_column(String(50))
    certificate_filename: Mapped[str | None] = mapped_column(String(120))
    id_card_sha256: Mapped[str | None] = mapped_column(String(64))
    id_card_content_type: Mapped[str | None] = mapped_column(String(50))
    id_card_filename: Mapped[str | None] = mapped_column(String(120))
    submitted_at: Mapped[datetime] = mapped_column()
    reviewed_at: Mapped[datetime | None] = mapped_column()
    reviewer_account_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(String(500))
    #: 1 when submitted, +1 on every change (approved, rejected): the ETag ``"<version>"``
    #: a reviewer's If-Match must name (servicekit.versions)
    version: Mapped[int] = mapped_column(Integer, default=1)


audit.track(Organization, "organization", values=("court", "status", "uscc_check_failed",
                                                  "applicant_account_id", "reviewer_account_id"))
audit.track(LawyerVerification, "lawyer_verification",
            values=("account_id", "method", "court", "status"))
