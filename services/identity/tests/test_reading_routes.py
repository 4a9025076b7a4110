"""identity's reads take no write lock in the embedded tier: one's own account, a contact for
delivery, the staff lists, the directory, a registration and its licence, a lawyer
verification and its files each began ``BEGIN IMMEDIATE``, so each queued behind every write
of identity (sign-ins, refreshes, registrations) and held them up while it ran; now each
answers while another connection holds the write lock, with the answer it gave before. A
refused read of a registration or a verification still puts its refusal on the audit trail,
on PostgreSQL too, where the reading transaction (READ ONLY) could write nothing: the web layer
writes the entry in a transaction of its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from servicekit.tables import audit_trail
from servicekit.testing import problem_of, read_alike_while_writing
from services.identity.tests.conftest import Identity
from services.identity.tests.test_lawyers import offline
from services.identity.tests.test_organizations import register_org


@dataclass(frozen=True)
class World:
    """What the reads read: an individual's account, the organization they registered, their
    offline lawyer verification to 粤01; and who asks (tokens, by who they are)."""

    ids: dict[str, str]
    tokens: dict[str, str]


def _world(identity: Identity) -> World:
    person, account = identity.register()
    _, admin = identity.admin("粤01")
    _, other_court = identity.admin("粤02")
    stranger, _ = identity.register()
    tokens = {"person": identity.tokens(person["phone"])["access_token"],
              "admin": admin["access_token"], "other_court": other_court["access_token"],
              "stranger": identity.tokens(stranger["phone"])["access_token"]}
    org = register_org(identity, tokens["person"])
    assert org.status_code == 201, org.get_data(as_text=True)
    verification = offline(identity, tokens["person"])
    assert verification.status_code == 201, verification.get_data(as_text=True)
    return World({"account": account["id"], "org": org.get_json()["id"],
                  "verification": verification.get_json()["id"]}, tokens)


#: each reading route: its path (the world's ids in braces) and who may read it
READS = {
    "/accounts/me": ("/accounts/me", "person"),
    "/staff": ("/staff", "admin"),
    "/internal/accounts/<account_id>/contact": ("/internal/accounts/{account}/contact",
                                                "service"),
    "/internal/staff": ("/internal/staff?court=粤01", "service"),
    "/internal/accounts": ("/internal/accounts?id={account}", "service"),
    "/organizations/<org_id>": ("/organizations/{org}", "person"),
    "/organizations/<org_id>/licence": ("/organizations/{org}/licence", "person"),
    "/lawyer-verifications/<verification_id>": ("/lawyer-verifications/{verification}",
                                                "person"),
    "/lawyer-verifications/<verification_id>/files/<which>": (
        "/lawyer-verifications/{verification}/files/certificate", "admin"),
}
#: the reads refused with a 404 that names the object: the object's kind and who is refused
REFUSED = {
    "/organizations/<org_id>": ("organization", "org", "stranger"),
    "/organizations/<org_id>/licence": ("organization", "org", "stranger"),
    "/lawyer-verifications/<verification_id>": ("lawyer_verification", "verification",
                                                "stranger"),
    "/lawyer-verifications/<verification_id>/files/<which>": (
        "lawyer_verification", "verification", "other_court"),
}


def _get(identity: Identity, world: World, route: str, who: str):  # type: ignore[no-untyped-def]
    path = READS[route][0].format(**world.ids)
    if who == "service":
        return identity.internal(path)
    return identity.call("GET", path, token=world.tokens[who])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("route", READS)
def test_a_read_answers_while_another_connection_holds_the_write_lock(
        identity: Identity, route: str) -> None:
    world, who = _world(identity), READS[route][1]
    read_alike_while_writing(identity.rt.db.url, lambda: _get(identity, world, route, who))


def _denials(identity: Identity, subject: str) -> list[Any]:
    with identity.rt.db.transaction(reads_only=True) as session:
        return list(session.execute(select(audit_trail).where(
            audit_trail.c.subject == subject, audit_trail.c.outcome == "denied")).all())


@pytest.mark.parametrize("route", REFUSED)
def test_a_refused_read_is_on_the_audit_trail(identity: Identity, route: str) -> None:
    world = _world(identity)
    kind, key, who = REFUSED[route]
    problem_of(_get(identity, world, route, who), 404, "not-found")
    [entry] = _denials(identity, f"{kind}:{world.ids[key]}")
    assert entry.action == "access.denied"
    assert json.loads(entry.detail) == {"method": "GET", "problem": "not-found", "status": 404,
                                        "route": route}
