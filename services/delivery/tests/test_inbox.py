"""The portal inbox comes a page at a time, newest first (flask-smorest's pagination: ``page``,
``page_size`` up to 100, the ``X-Pagination`` header); ``unread`` still counts all of the
account's unread notifications. It stopped silently at the newest 200."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from servicekit import paging
from services.delivery import usecases
from services.delivery.models import Notification
from services.delivery.tests.conftest import T0, Inbox

ME, SOMEONE = str(uuid.uuid4()), str(uuid.uuid4())
CONTRACTS = Path(__file__).resolve().parents[3] / "contracts" / "openapi"


def test_the_inbox_comes_a_page_at_a_time_with_every_unread_counted(inbox: Inbox) -> None:
    """Failed before: all of them in one answer (up to 200), no X-Pagination."""
    mine = inbox.add(ME, 25, read=7)
    inbox.add(SOMEONE, 4)
    body, meta = inbox.get(ME)
    assert [n["id"] for n in body["items"]] == mine[::-1][:10]  # newest first
    assert body["unread"] == 18
    assert meta == {"total": 25, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 1,
                    "next_page": 2}
    body, meta = inbox.get(ME, page=3)
    assert [n["id"] for n in body["items"]] == mine[::-1][20:]
    assert (body["unread"], meta["page"], meta["previous_page"]) == (18, 3, 2)
    assert "next_page" not in meta
    body, meta = inbox.get(ME, page=4)
    assert (body["items"], body["unread"], meta["total"], meta["last_page"]) == ([], 18, 25, 3)
    assert inbox.get(SOMEONE)[1]["total"] == 4


def test_notifications_of_the_same_instant_never_repeat_or_vanish_across_pages(
        inbox: Inbox) -> None:
    """Ties on created_at (one event telling an account several things) are ordered by id,
    newest first, the same way on every page."""
    tied = inbox.add(ME, 12, at=T0)
    pages = [inbox.get(ME, page=n, page_size=5)[0]["items"] for n in (1, 2, 3)]
    assert [n["id"] for page in pages for n in page] == sorted(tied, reverse=True)


@pytest.mark.parametrize("query", [{"page_size": 101}, {"page": 0}])
def test_a_page_out_of_bounds_is_a_422_problem(inbox: Inbox, query: dict[str, Any]) -> None:
    resp = inbox.client.get("/inbox", headers=inbox.token(ME), query_string=query)
    assert resp.status_code == 422
    assert resp.content_type == "application/problem+json"
    assert set(resp.get_json()["errors"]["query"]) == set(query)


def test_the_pagination_header_is_documented_as_the_json_it_is(inbox: Inbox) -> None:
    """The contract documents X-Pagination as a JSON object (``content``), and the header a
    real answer carries validates against it. Failed before: flask-smorest documented it with
    a bare object ``schema``, which OpenAPI 3 reads as ``k,v,k,v`` (schemathesis refused every
    paged list's header)."""
    spec = json.loads((CONTRACTS / "delivery.json").read_text(encoding="utf-8"))
    header = spec["components"]["headers"]["PAGINATION"]
    assert "schema" not in header
    ref = header["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    inbox.add(ME, 12)
    _, meta = inbox.get(ME)
    jsonschema.validate(meta, schema)
    assert schema["properties"].keys() >= meta.keys()


def test_service_and_sign_off_are_kept_to_the_second(inbox: Inbox) -> None:
    """DESIGN: a time with legal weight (service, sign-off) is stored in UTC to the second,
    as a receipt shows it (they were kept to the microsecond)."""
    note_id = inbox.notify(ME)
    read = inbox.client.post(f"/inbox/{note_id}/read", headers=inbox.token(ME))
    assert read.status_code == 200, read.get_json()
    [item] = inbox.get(ME)[0]["items"]
    for field in ("created_at", "read_at"):
        assert datetime.fromisoformat(item[field]).microsecond == 0, item
    with inbox.rt.db.transaction() as session:
        note = session.get(Notification, note_id)
        assert note is not None and note.created_at.microsecond == 0
        assert note.read_at is not None and note.read_at.microsecond == 0


def test_a_notification_arriving_while_the_inbox_is_read_is_in_all_of_it_or_none(
        inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page, its total and the unread count are read in one snapshot. A notification
    committed between the count and the page used to be in the page and the unread count
    but not in the total (PostgreSQL: each statement saw what had committed before it); on
    SQLite the reading request held the write lock, so the notification had to wait."""
    inbox.add(ME, 3)
    other = create_engine(inbox.rt.db.url, connect_args=(
        {"timeout": 2} if inbox.rt.db.url.startswith("sqlite") else {}))
    real_count = paging.count_of

    def count_then_one_arrives(session, query):  # type: ignore[no-untyped-def]
        counted = real_count(session, query)
        with Session(other) as writer:
            writer.add(Notification(id=str(uuid.uuid4()), account_id=ME, category="application",
                                    title="新通知", body="正文", source_event_id=str(uuid.uuid4()),
                                    created_at=T0 + timedelta(hours=1)))
            writer.commit()
        return counted

    monkeypatch.setattr(paging, "count_of", count_then_one_arrives)
    try:
        body, meta = inbox.get(ME)
    finally:
        other.dispose()
    assert (meta["total"], len(body["items"]), body["unread"]) == (3, 3, 3)
    monkeypatch.undo()
    body, meta = inbox.get(ME)  # the next read sees it
    assert (meta["total"], len(body["items"]), body["unread"]) == (4, 4, 4)


def test_notices_of_one_second_are_listed_newest_first_as_they_arrived(inbox: Inbox) -> None:
    """Service times are kept to the second, so the notices one event gives an account (or
    two events in one second) tie, and the id breaks the tie. With random ids they came in
    any order; ids that sort by creation (``servicekit.ids``) list them as they arrived."""
    made = []
    with inbox.rt.db.transaction() as session:
        for n in range(8):
            made.append(usecases.notify(session, account_id=ME, category="application",
                                        title=f"通知{n}", body="正文",
                                        source_event_id=f"event-{n}"))
    assert len({note.created_at.replace(tzinfo=None) for note in made}) <= 2  # one second
    items = inbox.get(ME, page_size=10)[0]["items"]
    assert [n["title"] for n in items] == [f"通知{n}" for n in reversed(range(8))]
