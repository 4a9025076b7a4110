"""Two requests acting on the same thing at once, on PostgreSQL (row locks decide here; SQLite
takes its one write lock at BEGIN and cannot race).

Each test plays the other request by hand on a second connection: it holds the row the
request under test needs (``FOR UPDATE``, or the change it makes), lets the request reach
that lock, then makes the competing change, commits, and checks the outcome.

* A lawyer verification made meanwhile is seen: a second online verification is a 409
  ``already-verified`` (the locked account was the one read before the lock, so its roles were
  stale and it verified twice), and an offline application is a 409 ``verification-pending``
  (nothing was locked: two pending applications).
* Signing out, a password reset and a refresh token's reuse end the tokens a refresh in flight
  hands out (its new token was inserted after their UPDATE's snapshot and stayed live).
* A password sign-in whose password was reset between its check and its session is refused
  (it started a session on the old password after the reset ended every other, and rehashing
  the old password wrote it back over the new one).
* A captcha checked twice at once passes once (both read it, both deleted it, both passed).
* Two first administrators of a new court made at once are both made (the second was a 409
  ``account-exists`` naming its phone: its court's insert met the first's).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.orm import Session

from servicekit.db import utcnow
from servicekit.problems import Problem
from servicekit.testing import pg_databases, problem_of
from services.identity import domain
from services.identity.models import Account, Court, RefreshToken
from services.identity.models_orgs import LawyerVerification
from services.identity.signin_captcha import CaptchaService
from services.identity.tests.conftest import PASSWORD, Identity
from services.identity.tests.test_lawyers import LAW_FIRM, LICENSE_NO, offline, online
from services.identity.tests.test_signin import _code, _request
from services.identity.usecases import staff
from tests.factories import mobile

pytestmark = pytest.mark.real
NEW_PASSWORD = "a-brand-new-secret"  # noqa: S105 - a test's password


@pytest.fixture
def database_url() -> Iterator[str]:
    """identity's conftest, on PostgreSQL only."""
    with pg_databases(["identity"], prefix="ecourt_idt") as urls:
        yield urls["identity"]


@pytest.fixture
def other(database_url: str) -> Iterator[Engine]:
    """The connection the other request uses."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _waits_or_ends(identity: Identity, thread: threading.Thread) -> None:
    """Bounded: until the request under test waits for a lock, or has answered."""
    for _ in range(200):
        if not thread.is_alive():
            return
        with identity.rt.db.transaction() as session:
            if session.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'")):
                time.sleep(0.1)  # whatever it waits for, let it settle in
                return
        time.sleep(0.05)
    raise AssertionError("the request neither waited for a lock nor answered")


def _meanwhile(identity: Identity, session: Session, request: Callable[[], Any],
               change: Callable[[], None]) -> Any:
    """Run ``request`` while ``session`` holds what it has locked; once the request waits (or
    has answered), make ``change`` in ``session``, commit, and return the request's answer
    (or the problem it raised)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(request())
        except Problem as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    _waits_or_ends(identity, thread)
    change()
    session.commit()
    thread.join(timeout=30)
    [answer] = out
    return answer


def _count(identity: Identity, *where: Any) -> int:
    with identity.rt.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(LawyerVerification)
                                  .where(*where)) or 0)


# --- lawyer verification ------------------------------------------------------------------

def _individual(identity: Identity) -> tuple[dict[str, str], dict[str, Any], str]:
    identity.admin("粤01")  # the court an offline application names
    person, account = identity.register(name="张三")  # the registry's lawyer
    return person, account, identity.tokens(person["phone"])["access_token"]


def _verification(account_id: str, status: str, method: str) -> LawyerVerification:
    now = utcnow()
    return LawyerVerification(id=str(uuid.uuid4()), account_id=account_id, method=method,
                              license_no=LICENSE_NO, law_firm=LAW_FIRM,
                              court="粤01" if method == "offline" else None, status=status,
                              submitted_at=now, reviewed_at=now if status == "verified" else None)


def test_an_account_verified_meanwhile_is_not_verified_twice(identity: Identity,
                                                             other: Engine) -> None:
    _, account, token = _individual(identity)
    with Session(other) as first:  # the first verification, holding the account
        locked = first.get(Account, account["id"], with_for_update=True)
        assert locked is not None

        def verified() -> None:
            locked.roles = "party,lawyer"
            first.add(_verification(account["id"], "verified", "online"))

        resp = _meanwhile(identity, first, lambda: online(identity, token), verified)
    problem_of(resp, 409, "already-verified")
    assert _count(identity, LawyerVerification.account_id == account["id"]) == 1
    with identity.rt.db.transaction() as session:
        assert session.get(Account, account["id"]).roles == "party,lawyer"  # type: ignore[union-attr]


def test_an_application_made_meanwhile_is_the_one_pending(identity: Identity,
                                                          other: Engine) -> None:
    _, account, token = _individual(identity)
    with Session(other) as first:  # the first application, holding the account
        assert first.get(Account, account["id"], with_for_update=True) is not None
        resp = _meanwhile(identity, first, lambda: offline(identity, token), lambda: first.add(
            _verification(account["id"], "pending", "offline")))
    problem_of(resp, 409, "verification-pending")
    assert _count(identity, LawyerVerification.account_id == account["id"],
                  LawyerVerification.status == "pending") == 1


# --- refresh tokens -----------------------------------------------------------------------

def _refresh_in_flight(identity: Identity, other: Engine, refresh_token: str,
                       request: Callable[[], Any]) -> tuple[Any, str]:
    """``request`` made while a refresh of ``refresh_token`` is in flight (it holds the token's
    row); the refresh then hands out a new token and commits. The answer and that token."""
    new = domain.new_refresh_token()
    with Session(other) as refreshing:
        row = refreshing.scalars(select(RefreshToken).where(
            RefreshToken.token_hash == domain.token_digest(refresh_token))
            .with_for_update()).one()

        def rotated() -> None:
            now = utcnow()
            row.rotated_at = now
            refreshing.add(RefreshToken(
                id=str(uuid.uuid4()), family_id=row.family_id, parent_id=row.id,
                account_id=row.account_id, token_hash=domain.token_digest(new),
                issued_at=now, expires_at=now + domain.REFRESH_TOKEN_TTL))

        answer = _meanwhile(identity, refreshing, request, rotated)
    return answer, new


def _refreshed(identity: Identity, token: str) -> Any:
    return identity.call("POST", "/tokens/refresh", json={"refresh_token": token})


def test_signing_out_ends_the_token_a_refresh_in_flight_hands_out(identity: Identity,
                                                                  other: Engine) -> None:
    person, _ = identity.register()
    tokens = identity.tokens(person["phone"])
    resp, new = _refresh_in_flight(identity, other, tokens["refresh_token"], lambda: identity.call(
        "POST", "/tokens/revoke", json={"refresh_token": tokens["refresh_token"]}))
    assert resp.status_code == 204, resp.get_data(as_text=True)
    problem_of(_refreshed(identity, new), 401, "invalid-refresh-token")


def test_a_password_reset_ends_the_token_a_refresh_in_flight_hands_out(
        identity: Identity, other: Engine) -> None:
    identity.rt.extras["captcha_service"] = CaptchaService(alphabet="A")
    person, _ = identity.register()
    tokens = identity.tokens(person["phone"])
    assert _request(identity, person["phone"], "reset_password").status_code == 202
    body = {"phone": person["phone"], "code": _code(identity, person["phone"], "reset_password"),
            "new_password": NEW_PASSWORD}
    resp, new = _refresh_in_flight(identity, other, tokens["refresh_token"], lambda: identity.call(
        "POST", "/password-resets", json=body))
    assert resp.status_code == 204, resp.get_data(as_text=True)
    problem_of(_refreshed(identity, new), 401, "invalid-refresh-token")


def test_a_reused_token_ends_the_token_a_refresh_in_flight_hands_out(identity: Identity,
                                                                     other: Engine) -> None:
    """A copied token presented again ends its sign-in while the holder of the current one
    refreshes it: what that refresh hands out ends too."""
    person, _ = identity.register()
    first = identity.tokens(person["phone"])["refresh_token"]
    current = _refreshed(identity, first).get_json()["refresh_token"]
    resp, new = _refresh_in_flight(identity, other, current,
                                   lambda: _refreshed(identity, first))
    problem_of(resp, 401, "refresh-token-reused")
    problem_of(_refreshed(identity, new), 401, "invalid-refresh-token")


# --- a password sign-in and a password reset ---------------------------------------------

@pytest.mark.parametrize("stale_hash", [False, True], ids=["current-hash", "hash-to-upgrade"])
def test_a_sign_in_with_the_password_reset_meanwhile_is_refused(
        identity: Identity, other: Engine, stale_hash: bool) -> None:
    """The reset commits after the sign-in checked the old password. With a hash of older
    parameters the sign-in also rehashes the old password: written over the new one, it
    undid the reset."""
    person, account = identity.register()
    if stale_hash:
        old = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
        with identity.rt.db.transaction() as session:
            session.get(Account, account["id"]).password_hash = old  # type: ignore[union-attr]
    with Session(other) as reset:  # the reset, holding the account
        locked = reset.get(Account, account["id"], with_for_update=True)
        assert locked is not None

        def new_password() -> None:
            locked.password_hash = PasswordHasher().hash(NEW_PASSWORD)
            reset.execute(update(RefreshToken).where(
                RefreshToken.account_id == account["id"], RefreshToken.revoked_at.is_(None))
                .values(revoked_at=utcnow(), revoked_reason="password-reset"))

        resp = _meanwhile(identity, reset, lambda: identity.login(person["phone"]),
                          new_password)
    problem_of(resp, 401, "invalid-credentials")
    with identity.rt.db.transaction() as session:
        assert not session.scalars(select(RefreshToken.id).where(
            RefreshToken.account_id == account["id"],
            RefreshToken.revoked_at.is_(None))).all()
    problem_of(identity.login(person["phone"], ip="10.0.0.2"), 401, "invalid-credentials")
    assert identity.tokens(person["phone"], NEW_PASSWORD, ip="10.0.0.3")


# --- captchas -----------------------------------------------------------------------------

def test_a_captcha_checked_meanwhile_is_used_up(identity: Identity, other: Engine) -> None:
    identity.rt.extras["captcha_service"] = CaptchaService(alphabet="A")
    identity.rt.extras["require_captcha"] = True
    person, account = identity.register()
    captcha_id = identity.call("POST", "/captchas").get_json()["captcha_id"]
    with Session(other) as first_check:  # the first check, which deletes it
        first_check.execute(text("DELETE FROM captchas WHERE id = :id"), {"id": captcha_id})
        resp = _meanwhile(identity, first_check, lambda: identity.call(
            "POST", "/tokens", json={"username": person["phone"], "password": PASSWORD,
                                     "captcha_id": captcha_id, "captcha_answer": "AAAAA"}),
            lambda: None)
    problem_of(resp, 401, "captcha-invalid")
    with identity.rt.db.transaction() as session:
        assert not session.scalars(select(RefreshToken.id).where(
            RefreshToken.account_id == account["id"])).all()


# --- the first administrator of a new court (``ecourt create-admin``) ----------------------

def test_two_first_administrators_of_a_new_court_at_once_are_both_made(
        identity: Identity, other: Engine) -> None:
    with Session(other) as first:  # the first administrator's, not yet committed
        first.add(Court(code="粤99", name="某中级人民法院", created_at=utcnow()))
        first.flush()
        made = _meanwhile(identity, first, lambda: staff.create_admin(
            identity.rt.db, court="粤99", court_name="广州某中级人民法院", name="管理员",
            phone=mobile(), password=PASSWORD), lambda: None)
    assert isinstance(made, Account), vars(made)
    assert made.court == "粤99"
    with identity.rt.db.transaction() as session:
        assert session.get(Court, "粤99").name == "广州某中级人民法院"  # type: ignore[union-attr]
