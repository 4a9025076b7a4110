"""Reading one object — a case, an application, a binding request, its letter — takes no write
lock in the embedded tier: each of these reads began ``BEGIN IMMEDIATE``, so it queued behind
every write of matters and held them all up while it ran; now it answers while another
connection holds the write lock, with the answer it gave before. A stranger's refused read
still puts its refusal on the audit trail, on PostgreSQL too, where the reading transaction
(READ ONLY) could write nothing: the web layer writes the entry in a transaction of its own."""

from __future__ import annotations

import json

import pytest

from servicekit.testing import problem_of, read_alike_while_writing
from services.matters.tests.conftest import APPLY, Harness

#: each route that reads one object, and the kind of object it reads (the audit subject's)
ROUTES = {
    "/cases/<case_id>": "case",
    "/applications/<application_id>": "application",
    "/bindings/<binding_id>": "binding",
    "/bindings/<binding_id>/letter": "binding",
}


def _path(route: str, ids: dict[str, str]) -> str:
    kind = ROUTES[route]
    return route.replace(f"<{kind}_id>", ids[kind])


def _objects(h: Harness) -> dict[str, str]:
    """A case, the plaintiff's application in it and a lawyer's binding request: their ids."""
    case = h.case()
    app = h.client.post(f"/cases/{case['id']}/applications", headers=h.party(), json=APPLY)
    assert app.status_code == 201, app.get_json()
    binding = h.ask(case["case_number"])
    assert binding.status_code == 201, binding.get_json()
    return {"case": case["id"], "application": app.get_json()["id"],
            "binding": binding.get_json()["id"]}


def _reader(h: Harness, kind: str) -> dict[str, str]:
    """Someone who may read an object of ``kind``: the plaintiff, or the lawyer who asked."""
    return h.lawyer() if kind == "binding" else h.party()


def _stranger(h: Harness, kind: str) -> dict[str, str]:
    """Someone refused with the 404 of a missing object: another person, another lawyer."""
    return h.lawyer(h.verify_lawyer(name="王大状")) if kind == "binding" \
        else h.party("stranger")


@pytest.mark.parametrize("route", ROUTES)
def test_one_object_is_read_while_another_connection_holds_the_write_lock(
        harness: Harness, route: str) -> None:
    h = harness
    path, headers = _path(route, _objects(h)), _reader(h, ROUTES[route])
    read_alike_while_writing(h.rt.db.url, lambda: h.client.get(path, headers=headers))


@pytest.mark.parametrize("route", ROUTES)
def test_a_strangers_refused_read_is_on_the_audit_trail(on_db: Harness, route: str) -> None:
    h, kind = on_db, ROUTES[route]
    ids = _objects(h)
    problem_of(h.client.get(_path(route, ids), headers=_stranger(h, kind)), 404, "not-found")
    [entry] = h.denials(f"{kind}:{ids[kind]}")
    assert entry.action == "access.denied"
    assert json.loads(entry.detail) == {"method": "GET", "problem": "not-found", "status": 404,
                                        "route": route}
