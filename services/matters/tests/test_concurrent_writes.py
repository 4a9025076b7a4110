"""Two requests writing the same thing at once, on PostgreSQL (row locks and unique keys decide
here; SQLite takes its one write lock at BEGIN and cannot race).

The trial system registering a case twice at once: the second is the 409 a look-up would give
(it was a 500: both looked, found none, and the unique key refused the second at commit).

The clerk's direct binding (``POST /cases/{id}/lawyers``) approves a pending request of the same
lawyer for the same party. It used to read that request without a lock: a judge rejecting it
meanwhile was overwritten — the lawyer refused, then bound anyway, the request "approved" under
the version number its rejection had been given (two states, one ETag). And two bindings made at
once could both find none and both insert one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from servicekit.testing import pg_databases, problem_of
from services.matters.cases import new_case
from services.matters.tests.conftest import COURT, COURT_NAME, Harness, case_number, harness_on

pytestmark = pytest.mark.real


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    with pg_databases(["matters"]) as urls:
        for h in harness_on(urls["matters"], tmp_path):
            yield h, urls["matters"]


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def test_a_request_rejected_meanwhile_stays_rejected_the_clerk_binds_anew(
        pg: tuple[Harness, str]) -> None:
    h, url = pg
    case = h.case()
    asked = h.ask(case["case_number"], party_name="黄添强")
    assert asked.status_code == 201, asked.get_json()
    request_id = asked.get_json()["id"]
    body = {"lawyer_account_id": h.ids["lawyer"], "party_name": "黄添强"}

    engine = create_engine(url)
    try:
        with engine.connect() as judge:  # the judge's rejection, in progress
            tx = judge.begin()
            judge.execute(text("SELECT id FROM bindings WHERE id = :id FOR UPDATE"),
                          {"id": request_id})
            thread, out = _in_thread(lambda: h.client.post(
                f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"), json=body))
            time.sleep(0.5)  # the clerk's request reaches the row the judge holds
            judge.execute(text("UPDATE bindings SET status = 'rejected', reason = '材料不全', "
                               "version = version + 1 WHERE id = :id"), {"id": request_id})
            tx.commit()
            thread.join(timeout=30)
    finally:
        engine.dispose()

    [resp] = out
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["status"] == "approved"
    assert resp.get_json()["id"] != request_id  # a new binding, not the rejected request
    rejected = h.client.get(f"/bindings/{request_id}", headers=h.staff("clerk"))
    assert rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["reason"] == "材料不全"


def test_two_direct_bindings_at_once_make_one(pg: tuple[Harness, str]) -> None:
    h, url = pg
    case = h.case()
    body = {"lawyer_account_id": h.ids["lawyer"], "party_name": "周俊雄"}
    engine = create_engine(url)
    try:
        with engine.connect() as other:  # someone holds the case a moment
            tx = other.begin()
            other.execute(text("SELECT id FROM cases WHERE id = :id FOR UPDATE"),
                          {"id": case["id"]})
            started = [_in_thread(lambda: h.client.post(
                f"/cases/{case['id']}/lawyers", headers=h.staff("clerk"), json=body))
                for _ in range(2)]
            time.sleep(0.5)
            tx.commit()
            for thread, _ in started:
                thread.join(timeout=30)
    finally:
        engine.dispose()

    codes = sorted(out[0].status_code for _, out in started)
    assert codes == [201, 409], [out[0].get_json() for _, out in started]
    with h.rt.db.transaction() as session:
        count = session.execute(text("SELECT count(*) FROM bindings WHERE case_id = :c"),
                                {"c": case["id"]}).scalar()
    assert count == 1


def test_a_case_registered_twice_at_once_is_one_case_and_a_409(pg: tuple[Harness, str]) -> None:
    h, url = pg
    body = {"case_number": case_number(COURT), "court": COURT, "court_name": COURT_NAME,
            "cause": "买卖合同纠纷", "department": "民一庭",
            "judge_account_id": h.staff_id("judge"), "clerk_account_id": h.staff_id("clerk"),
            "parties": [{"name": "周俊雄", "role": "plaintiff", "account_id": None}]}
    engine = create_engine(url)
    try:
        with Session(engine) as first:  # the first registration, not yet committed
            first.add(new_case(body))
            first.flush()
            thread, out = _in_thread(lambda: h.client.post(
                "/cases", headers=h.token("specialist"), json=body))
            time.sleep(0.5)  # the second looks, finds none, and waits on the unique key
            first.commit()
            thread.join(timeout=30)
    finally:
        engine.dispose()
    [resp] = out
    problem_of(resp, 409, "case-exists")
    with h.rt.db.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM cases WHERE case_number = :n"),
                               {"n": body["case_number"]}).scalar() == 1
