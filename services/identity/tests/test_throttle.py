"""Password attempts are throttled after 5 failures in 15 minutes, per account and per
client address (RELIABILITY S3); the right password is refused too while throttled."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.identity.models import LoginFailure
from services.identity.tests.conftest import Identity


def _fail(identity: Identity, username: str, times: int, ip: str = "127.0.0.1",
          vary_ip: bool = False) -> None:
    for i in range(times):
        resp = identity.login(username, "wrong-password", ip=f"10.0.1.{i}" if vary_ip else ip)
        assert resp.status_code == 401, resp.get_data(as_text=True)


def _age_failures(identity: Identity, minutes: int) -> None:
    with identity.rt.db.transaction() as s:
        for row in s.scalars(select(LoginFailure)):
            row.failed_at -= timedelta(minutes=minutes)


def _assert_throttled(resp) -> int:  # type: ignore[no-untyped-def]
    assert resp.status_code == 429, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    assert resp.get_json()["type"].endswith("/too-many-attempts")
    wait = int(resp.headers["Retry-After"])
    assert 0 < wait <= 900
    return wait


def test_five_failures_on_an_account_throttle_it_even_with_the_right_password(
        identity: Identity) -> None:
    person, _ = identity.register()
    _fail(identity, person["phone"], 5, vary_ip=True)
    _assert_throttled(identity.login(person["phone"], ip="10.9.9.9"))
    # by ID number it is the same account, so the same counter
    _assert_throttled(identity.login(person["id_number"], ip="10.9.9.8"))
    other, _ = identity.register()
    assert identity.login(other["phone"], ip="10.9.9.9").status_code == 201
    _age_failures(identity, 16)  # the window passes
    assert identity.login(person["phone"], ip="10.9.9.9").status_code == 201


def test_five_failures_from_one_address_throttle_that_address(identity: Identity) -> None:
    victims = [identity.register()[0] for _ in range(5)]
    for person in victims:
        _fail(identity, person["phone"], 1, ip="203.0.113.5")
    lucky, _ = identity.register()
    _assert_throttled(identity.login(lucky["phone"], ip="203.0.113.5"))
    assert identity.login(lucky["phone"], ip="203.0.113.6").status_code == 201
    # a success elsewhere does not reset the address's counter
    _assert_throttled(identity.login(lucky["phone"], ip="203.0.113.5"))


def test_unknown_usernames_are_throttled_like_known_ones(identity: Identity) -> None:
    _fail(identity, "13912345678", 5, vary_ip=True)
    _assert_throttled(identity.login("13912345678", ip="10.9.9.9"))


def test_a_success_resets_the_account_counter(identity: Identity) -> None:
    person, _ = identity.register()
    _fail(identity, person["phone"], 4, vary_ip=True)
    assert identity.login(person["phone"], ip="10.2.0.1").status_code == 201
    for i in range(4):
        resp = identity.login(person["phone"], "wrong-password", ip=f"10.3.0.{i}")
        assert resp.status_code == 401
    assert identity.login(person["phone"], ip="10.2.0.2").status_code == 201


def test_retry_after_counts_down_with_the_window(identity: Identity) -> None:
    person, _ = identity.register()
    _fail(identity, person["phone"], 5, vary_ip=True)
    _age_failures(identity, 10)
    wait = _assert_throttled(identity.login(person["phone"], ip="10.9.9.9"))
    assert 240 <= wait <= 300


def test_forwarded_for_is_used_only_when_trusted(identity: Identity,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    person, _ = identity.register()
    victims = [identity.register()[0] for _ in range(5)]
    # not trusted: a client cannot escape its address counter by forging X-Forwarded-For
    for i, victim in enumerate(victims):
        resp = identity.call("POST", "/tokens", ip="198.51.100.1",
                             json={"username": victim["phone"], "password": "wrong-password"},
                             headers={"X-Forwarded-For": f"192.0.2.{i}"})
        assert resp.status_code == 401
    resp = identity.call("POST", "/tokens", ip="198.51.100.1",
                         json={"username": person["phone"], "password": "correct-horse-battery"},
                         headers={"X-Forwarded-For": "192.0.2.99"})
    _assert_throttled(resp)
    # trusted (behind our gateway): the right-most hop is the client
    identity.rt.extras["trust_forwarded"] = True
    resp = identity.call("POST", "/tokens", ip="198.51.100.1",
                         json={"username": person["phone"], "password": "correct-horse-battery"},
                         headers={"X-Forwarded-For": "198.51.100.1, 192.0.2.99"})
    assert resp.status_code == 201
    forged = identity.call("POST", "/tokens", ip="10.0.0.2",
                           json={"username": person["phone"],
                                 "password": "correct-horse-battery"},
                           headers={"X-Forwarded-For": "192.0.2.99, 198.51.100.1"})
    _assert_throttled(forged)


def test_trusting_forwarded_for_comes_from_the_environment(
        identity: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.identity.app import create_app

    identity.rt.extras.pop("trust_forwarded")
    monkeypatch.setenv("IDENTITY_TRUST_FORWARDED", "1")
    create_app(identity.rt)
    assert identity.rt.extras["trust_forwarded"] is True
    identity.rt.extras.pop("trust_forwarded")
    monkeypatch.setenv("IDENTITY_TRUST_FORWARDED", "0")
    create_app(identity.rt)
    assert identity.rt.extras["trust_forwarded"] is False


def test_a_burst_of_parallel_guesses_gets_no_more_than_five_tries(identity: Identity) -> None:
    person, _ = identity.register()

    def guess(i: int) -> int:
        return identity.login(person["phone"], f"wrong-{i}", ip=f"10.4.0.{i}").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(guess, range(20)))
    assert codes.count(401) == 5
    assert codes.count(429) == 15
