"""Role names carried in access tokens (claim ``roles``), shared by every service.

Court staff tokens also carry ``court`` (a court code such as ``粤01``) and ``department``;
a staff member acts only on their own court's cases and applications.
"""

from __future__ import annotations

PARTY = "party"
LAWYER = "lawyer"
SPECIALIST = "specialist"  # 诉讼服务专员, litigation-service specialist (middle office)
JUDGE = "judge"  # 承办法官, presiding judge (back office)
CLERK = "clerk"  # 书记员
DIVISION_HEAD = "division_head"  # 庭领导
PRESIDENT = "president"  # 院领导
COURT_ADMIN = "court_admin"
REGISTRY_REVIEWER = "registry_reviewer"

STAFF_ROLES = frozenset({SPECIALIST, JUDGE, CLERK, DIVISION_HEAD, PRESIDENT, COURT_ADMIN,
                         REGISTRY_REVIEWER})
