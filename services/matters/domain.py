"""matters' rules, with no I/O: the application's state machine, its deadline, the labels the
court's lists show ("剩余9", "超过24", "中台待办(已受理)") and the escalation ladder."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from servicekit.problems import Problem
from servicekit.workdays import add_workdays, local_date, start_of_local_day

EFFECTIVENESS_CERTIFICATE = "effectiveness_certificate"
#: a lawyer's request to be bound to a party (not an application, but it is numbered, has a
#: deadline and climbs the same escalation ladder)
LAWYER_BINDING = "lawyer_binding"
KIND_LABELS = {EFFECTIVENESS_CERTIFICATE: "生效证明", LAWYER_BINDING: "律师绑定"}
#: service-level period, in working days, by kind of application
PERIOD_WORKDAYS = {EFFECTIVENESS_CERTIFICATE: 7, LAWYER_BINDING: 3}
#: the word of the service number by kind: (2026)粤01文书第17号, (2026)粤01绑定第3号
NUMBER_WORD = {EFFECTIVENESS_CERTIFICATE: "文书", LAWYER_BINDING: "绑定"}
CHANNELS = ("电子诉讼", "广州微法院", "诉讼服务中心", "12368")
PARTY_ROLES = {"plaintiff": "原告", "defendant": "被告", "third_party": "第三人"}
#: a case number, whole (SPC 法〔2015〕137号, DOMAIN.md): (year), the court's code — 最高法, a
#: high court's province (粤), an intermediate court's (粤01) or a basic court's (粤0104) — the
#: type (民初, 知民初, 执保…), the sequence, 号, and an optional 之一. In plain brackets
#: (``canonical_case_number`` makes full-width ones plain); 0-9 digits only (ASCII: \d alone
#: also takes ٢ or ８) and nothing after it (``\Z``: ``$`` also matches before a final
#: newline, which registered the same case again)
CASE_NUMBER = re.compile(r"^\((\d{4})\)(?:最高法|[\u4e00-\u9fff](?:\d{4}|\d{2})?)"
                         r"[\u4e00-\u9fff]{1,6}\d{1,7}号(?:之[一二三四五六七八九十]{1,3})?\Z",
                         re.ASCII)
#: both brackets occur in case numbers and in companies' names as courts write them; one is
#: kept or compared (the plain one)
PLAIN_BRACKETS = str.maketrans({"（": "(", "）": ")"})
#: the People's courts' first day: no judgment, effective date or case is older
FIRST_COURT_DAY = date(1949, 10, 1)
#: the first year a case number can carry: the People's courts' first (1 October 1949). Earlier
#: years, and 0000, are typing errors; older cases than 2016 have the old format anyway
FIRST_CASE_YEAR = FIRST_COURT_DAY.year

# statuses and their labels in the court's lists
SUBMITTED, ACCEPTED, BACK_OFFICE, COMPLETED = "submitted", "accepted", "back_office", "completed"
STATUS_LABELS = {SUBMITTED: "中台待办", ACCEPTED: "中台待办(已受理)",
                 BACK_OFFICE: "后台待办", COMPLETED: "已办结"}
MIDDLE_OFFICE, BACK = "middle_office", "back_office"
# the certificate document's state, as the application shows it
DOC_NONE, DOC_GENERATING, DOC_ISSUED, DOC_FAILED = "none", "generating", "issued", "failed"
DOC_LABELS = {DOC_NONE: "", DOC_GENERATING: "生成中", DOC_ISSUED: "已生成",
              DOC_FAILED: "生成失败"}
AUTO_NOTE = "经审查，该案裁判文书已发生法律效力，同意出具生效证明。"

# lawyer–case binding requests
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
BINDING_STATUS_LABELS = {PENDING: "待审核", APPROVED: "已绑定", REJECTED: "已驳回"}
BY_REQUEST, BY_CLERK = "request", "clerk"

# the escalation ladder: level reached -> days overdue needed (``days_overdue``, the N of the
# list's 超过N); each level once, one at a time
LADDER = (("handler", 0), ("division_head", 3), ("president", 7))


def deadline_for(kind: str, submitted_at: datetime) -> datetime:
    return add_workdays(submitted_at, PERIOD_WORKDAYS[kind])


def days_left(deadline: datetime, now: datetime) -> int:
    """Calendar days from today to the deadline's day, in Beijing time (negative: overdue)."""
    return (local_date(deadline) - local_date(now)).days


def days_overdue(deadline: datetime, now: datetime) -> int:
    """The N of "超过N": calendar days in Beijing time from the deadline's day to today, at
    least 1 once the deadline has passed (the same day, later), 0 before it. The one count of
    days overdue: the list's label, the urging SMS and the escalation ladder all use it, so the
    division head is urged on the day the list first says 超过3. Court staff read the calendar,
    not 24-hour periods: the seed's list [000 一.6], read on one day (2022-03-28), shows 超过24
    for a deadline of 2022-03-04 14:41 and 剩余9 for one of 2022-04-06 17:45."""
    if now <= deadline:
        return 0
    return max(1, -days_left(deadline, now))


def overdue_cutoff(days: int, now: datetime) -> datetime:
    """A query's form of ``days_overdue``: a deadline is past and ``days_overdue`` is at least
    ``days`` at ``now`` exactly when it is earlier than this moment (UTC). Up to 1 day that is
    ``now``; N days, the Beijing midnight opening the day N - 1 days before today."""
    if days <= 1:
        return now
    return start_of_local_day(local_date(now) - timedelta(days=days - 1))


def remaining_label(deadline: datetime, now: datetime, finished: bool) -> str:
    if finished:
        return ""
    if now > deadline:
        return f"超过{days_overdue(deadline, now)}"
    return f"剩余{days_left(deadline, now)}"


def canonical_case_number(number: str) -> str:
    """``number`` as it is kept and looked up: full-width brackets made plain, so that
    （2021）粤01民初8号 and (2021)粤01民初8号, both as courts write them, are one case."""
    return number.translate(PLAIN_BRACKETS)


def case_number_error(number: str, now: datetime) -> str | None:
    """Why ``number`` is not a case number (None if it is one): its form (``CASE_NUMBER``), or
    its year, the year the court received the case (SPC 法〔2015〕137号) — from 1949 to this
    year in Beijing, the court's calendar. Computed from ``now``, never a fixed year. From 31
    December on next year is taken too: a trial system whose clock runs ahead, or which
    dockets at midnight, is not refused for the hours around New Year."""
    found = CASE_NUMBER.match(canonical_case_number(number))
    if found is None:
        return "not a case number like (2021)粤01民初8号"
    last = local_date(now).year
    if not FIRST_CASE_YEAR <= int(found.group(1)) <= local_date(now + timedelta(days=1)).year:
        return (f"the year {found.group(1)} is not one a case was received in: "
                f"{FIRST_CASE_YEAR} to {last}")
    return None


def past_day_error(day: date, now: datetime) -> str | None:
    """Why ``day`` cannot be the date of something that has happened (a judgment, the day it
    took effect, a judge's decision), None if it can: before ``FIRST_COURT_DAY`` or after
    today in Beijing, the court's calendar, taken from ``now``."""
    today = local_date(now)
    if FIRST_COURT_DAY <= day <= today:
        return None
    return (f"a date from {FIRST_COURT_DAY.isoformat()} to today ({today.isoformat()}, "
            "Beijing): it is the date of something that has happened")


def service_number(year: int, court: str, word: str, number: int) -> str:
    return f"({year}){court}{word}第{number}号"


def require_status(current: str, allowed: tuple[str, ...], action: str) -> None:
    if current not in allowed:
        raise Problem(409, "invalid-state",
                      f"cannot {action} an application that is {STATUS_LABELS[current]}",
                      status_now=current)


def next_escalation(level: int, deadline: datetime, now: datetime) -> str | None:
    """The ladder step due now, if any: one level past ``level`` once its day has come (days
    counted as ``days_overdue`` counts them, the label's 超过N)."""
    if now <= deadline or level >= len(LADDER):
        return None
    name, days_needed = LADDER[level]
    return name if days_overdue(deadline, now) >= days_needed else None


def require_binding_status(current: str, allowed: tuple[str, ...], action: str) -> None:
    if current not in allowed:
        raise Problem(409, "invalid-state",
                      f"cannot {action} a binding request that is "
                      f"{BINDING_STATUS_LABELS[current]}", status_now=current)


def available_actions(status: str, document_state: str) -> list[str]:
    """What staff may do next, as the court's lists offer it: regenerate only after a failed
    generation, publish only once the certificate is issued, nothing but view once done."""
    if status == COMPLETED:
        return ["view"]
    if document_state == DOC_FAILED:
        return ["regenerate", "transfer"]
    if document_state == DOC_ISSUED:
        return ["publish"]
    return ["handle", "view", "transfer"]


def certificate_visible_to_applicant(status: str) -> bool:
    """The applicant sees the certificate only once staff published it (引入)."""
    return status == COMPLETED
