"""How cases and applications look on the wire, for staff and for the applicant."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from servicekit.db import utcnow
from servicekit.workdays import SHANGHAI
from services.matters.access import is_staff_of, party_of_application
from services.matters.domain import (
    APPROVED,
    BINDING_STATUS_LABELS,
    COMPLETED,
    DOC_LABELS,
    KIND_LABELS,
    PARTY_ROLES,
    PENDING,
    STATUS_LABELS,
    available_actions,
    certificate_visible_to_applicant,
    remaining_label,
)
from services.matters.models import Application, Binding, Case

DOWNLOAD_PATH = "/api/documents/documents/{id}/pdf"


def local(moment: Any) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def parties_label(case: Case) -> str:
    return ";".join(f"{PARTY_ROLES.get(p.role, p.role)}:{p.name}" for p in case.parties)


def case_view(case: Case) -> dict[str, Any]:
    return {"id": case.id, "case_number": case.case_number, "court": case.court,
            "court_name": case.court_name, "cause": case.cause, "department": case.department,
            "effective_date": case.effective_date,
            "parties": [{"id": p.id, "name": p.name, "role": p.role,
                         "role_label": PARTY_ROLES.get(p.role, p.role)} for p in case.parties],
            "parties_label": parties_label(case)}


def _actions(app: Application) -> list[str]:
    return available_actions(app.status, app.document_state)


def document_view(app: Application, staff: bool) -> dict[str, Any]:
    visible = staff or certificate_visible_to_applicant(app.status)
    return {"state": app.document_state if visible else "none",
            "state_label": DOC_LABELS[app.document_state] if visible else "",
            "document_id": app.document_id if visible else None,
            "code": app.document_code if visible else None,
            "failure": app.document_failure if staff else None,
            "download_url": (DOWNLOAD_PATH.format(id=app.document_id)
                             if visible and app.document_id else None),
            "actions": _actions(app) if staff else []}


def application_view(app: Application, case: Case, staff: bool) -> dict[str, Any]:
    return {"id": app.id, "case_id": case.id, "case_number": case.case_number,
            "service_number": app.service_number, "kind": app.kind,
            "title": f"{app.applicant_name}/{KIND_LABELS[app.kind]}",
            "applicant_name": app.applicant_name,
            "party_id": party_of_application(app, case), "reason": app.reason, "use": app.use,
            "materials": json.loads(app.materials), "channel": app.channel,
            "status": app.status, "status_label": STATUS_LABELS[app.status],
            "stage": app.stage, "deadline": app.deadline, "deadline_local": local(app.deadline),
            "remaining": remaining_label(app.deadline, utcnow(), app.status == COMPLETED),
            "submitted_at": app.submitted_at, "handler_name": app.handler_name,
            "handling_note": app.handling_note, "judge_opinion": app.judge_opinion,
            "judge_result_note": app.judge_result_note, "judge_handler": app.judge_handler,
            "judge_decided_on": app.judge_decided_on, "document": document_view(app, staff),
            "published_at": app.published_at, "version": app.version}


def todo_row(app: Application, case: Case) -> dict[str, Any]:
    return {"application_id": app.id, "service_number": app.service_number,
            "title": f"{app.applicant_name}/{KIND_LABELS[app.kind]}",
            "case_number": case.case_number, "parties_label": parties_label(case),
            "department": case.department, "channel": app.channel, "source": "本院任务",
            "cross_court": False,
            "remaining": remaining_label(app.deadline, utcnow(), app.status == COMPLETED),
            "deadline_local": local(app.deadline), "status": app.status,
            "status_label": STATUS_LABELS[app.status],
            "submitted_local": local(app.submitted_at)[:16],
            "document_state": app.document_state, "actions": _actions(app)}


LETTER_PATH = "/api/matters/bindings/{id}/letter"


def binding_view(binding: Binding, case: Case, claims: dict[str, Any]) -> dict[str, Any]:
    """A binding request. The lawyer who asked learns nothing of the case beyond what they
    supplied (its number, their party) until the binding is approved — a pending or rejected
    request gives nothing (``access.py``): no case id, no parties. The court's staff see all."""
    full = is_staff_of(claims, binding.court) or binding.status == APPROVED
    party = next((p for p in case.parties if p.id == binding.party_id), None)
    letter = None
    if binding.letter_sha256:
        letter = {"filename": binding.letter_filename,
                  "content_type": binding.letter_content_type, "size": binding.letter_size,
                  "download_url": LETTER_PATH.format(id=binding.id)}
    return {"id": binding.id, "service_number": binding.service_number,
            "case_id": case.id if full else None, "case_number": case.case_number,
            "court": case.court, "court_name": case.court_name,
            "parties_label": parties_label(case) if full else None,
            "lawyer_account_id": binding.lawyer_account_id, "lawyer_name": binding.lawyer_name,
            "law_firm": binding.law_firm, "party_name": binding.party_name,
            "party_id": binding.party_id if full else None,
            "party_role": party.role if full and party is not None else None,
            "source": binding.source, "status": binding.status,
            "status_label": BINDING_STATUS_LABELS[binding.status],
            "deadline": binding.deadline, "deadline_local": local(binding.deadline),
            "remaining": remaining_label(binding.deadline, utcnow(),
                                         binding.status != PENDING),
            "requested_at": binding.requested_at, "decided_at": binding.decided_at,
            "decided_by_name": binding.decided_by_name, "reason": binding.reason,
            "letter": letter, "version": binding.version}


CSV_COLUMNS = (("序号", None), ("诉讼服务申请事项名称", "title"), ("服务号", "service_number"),
               ("案号", "case_number"), ("当事人", "parties_label"), ("承办部门", "department"),
               ("发起渠道", "channel"), ("剩余天数", "remaining"), ("截止日期", "deadline_local"),
               ("状态", "status_label"), ("申请日期", "submitted_local"))


#: how a cell starts that a spreadsheet program (Excel, WPS, LibreOffice) runs as a formula:
#: OWASP's list, and, as a precaution, the same four signs typed full width (what a Chinese
#: input method types; a spreadsheet that folds full-width signs on entry would run them)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
#: blanks a spreadsheet may trim before it looks for a formula (LibreOffice's "trim spaces"
#: on import): a space and the ideographic space
LEADING_BLANKS = " \u3000"


def as_text_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet shows as text, never runs (OWASP, CSV injection):
    a string starting like a formula, after any leading blanks, gets a leading ``'``. A
    party's name, a case's department or cause are typed by people (``=HYPERLINK(...)``,
    ``@SUM(...)`` ran in the clerk's spreadsheet). Every string is treated so, a ``-3`` too: no
    column of the export holds a number as a string (剩余/超过 days are labels, 序号 is an int
    and left alone), so nothing meant as a negative number is turned into text."""
    if isinstance(value, str) and value.lstrip(LEADING_BLANKS).startswith(FORMULA_STARTS):
        return "'" + value
    return value


def todo_csv(rows: Iterable[dict[str, Any]], batch: int = 500) -> Iterator[str]:
    """The to-do list as CSV, a few hundred rows per chunk for a streamed download, with a BOM
    so spreadsheet programs read the Chinese right; 序号 numbers the rows from 1; every text
    cell as text (``as_text_cell``)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow([title for title, _ in CSV_COLUMNS])
    for number, row in enumerate(rows, start=1):
        writer.writerow([number if key is None else as_text_cell(row[key])
                         for _, key in CSV_COLUMNS])
        if number % batch == 0:
            yield _drained(out)
    yield _drained(out)


def _drained(out: io.StringIO) -> str:
    """What ``out`` holds, emptying it for the next chunk."""
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text
