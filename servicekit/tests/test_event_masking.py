"""No ID number or mobile in an event in clear (RELIABILITY S6, DESIGN): ``scrub`` masks what
people type and leaves alone the numbers that are not theirs, and ``outbox.emit`` masks every
string of an event's data — except sealed ciphertext and digests, which travel byte for byte."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from ecourt import registry
from servicekit import migrations, sealed
from servicekit.db import Database
from servicekit.logs import scrub
from servicekit.outbox import emit, is_opaque
from servicekit.tables import outbox

ID_NUMBER = "440102199001011234"
ID_NUMBER_X = "11010119900307123X"
MOBILE = "13812345678"
TYPED = f"身份证号{ID_NUMBER}与登记不符，请联系{MOBILE}"
#: a UUID whose last group holds 11 decimal digits in a row, as about 1 in 3,300 do
UUID_WITH_A_MOBILE_RUN = "0b4e6c1a-5f7e-4c39-9a57-a13812345678"


@pytest.mark.parametrize(("typed", "masked"), [
    (TYPED, "身份证号440***********1234与登记不符，请联系138****5678"),
    (ID_NUMBER_X, "110***********123X"),
    (ID_NUMBER_X.lower(), "110***********123x"),
    (f"申请人（{ID_NUMBER_X}）", "申请人（110***********123X）"),
    (f"电话:{MOBILE}。", "电话:138****5678。"),
    (f"tel{MOBILE}ok", "tel138****5678ok"),
    (f"+86{MOBILE}", "+86138****5678"),
    (f"86{MOBILE}", "86138****5678"),
    (f"手机 {MOBILE}，身份证 {ID_NUMBER}", "手机 138****5678，身份证 440***********1234"),
    # typed in the groups people read them in (failed before: kept in clear)
    ("电话138-1234-5678。", "电话138-****-5678。"),
    ("手机 138 1234 5678", "手机 138 **** 5678"),
    ("+86 138 1234 5678", "+86 138 **** 5678"),
    ("+86-13812345678", "+86-138****5678"),
    ("138-1234 5678", "138-**** 5678"),
    ("身份证 440102 19900101 123X", "身份证 440*** ******** 123X"),
    ("440102-19900101-1234", "440***-********-1234"),
])
def test_typed_id_numbers_and_mobiles_are_masked(typed: str, masked: str) -> None:
    assert scrub(typed) == masked


@pytest.mark.parametrize("kept", [
    "1234567890123456789",                  # 19 digits: no ID number, no mobile
    "4401021990010112345",                  # an 18-digit ID number inside a longer run
    "x" + "7" + ID_NUMBER + "y",            # the same, with letters around it
    "1" + MOBILE,                           # 12 digits: not a mobile
    "（2026）京0105民初12345号",            # a case number
    "(2021)粤01民初8号 (2026)粤01文书第123号",  # a case number, a service number
    "2026-12-03T20:52:43.123456+00:00",     # an ISO timestamp
    "20261203205243123",                    # a compact timestamp (17 digits)
    "14401201810000001",                    # a lawyer's licence number (17 digits)
    UUID_WITH_A_MOBILE_RUN,                 # a UUID: hex noise, never a number
    "0B4E6C1A-5F7E-4C39-9A57-13812345678F",  # upper case, the run at the front
    f"申请{UUID_WITH_A_MOBILE_RUN}已办结",    # a UUID inside text
    "ABCD-EFGH-1234-5678-9ABC",             # a document's anti-counterfeit code
    "10086 12368 2026",                     # short numbers
    "1138-1234-5678",                       # a longer first group: not a mobile
    "138-1234-56789",                       # a longer last group
    "2026-12-03 1234-5678",                 # a date and a code
])
def test_numbers_that_are_not_personal_data_are_kept(kept: str) -> None:
    assert scrub(kept) == kept


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'delivery.db'}"
    migrations.upgrade(registry.get("delivery").migrations, url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def _emitted(db: Database, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` emitted, as the outbox row's body carries it."""
    with db.transaction() as s:
        event = emit(s, "t.happened", data, source="/test")
    with db.transaction() as s:
        body = json.loads(s.scalar(select(outbox.c.body).where(
            outbox.c.event_id == event.id)))
    assert body["data"] == event.data, "the event returned is the one written"
    return body["data"]


def test_an_events_free_text_is_masked_at_any_depth(db: Database) -> None:
    data = {"reason": TYPED, "parties": [{"name": f"张三{ID_NUMBER_X}", "role": "plaintiff"}],
            "judgment": {"title": f"联系{MOBILE}"}, "days_overdue": 13812345678,
            "uscc_check_failed": False, "application_id": UUID_WITH_A_MOBILE_RUN}
    written = _emitted(db, data)
    assert written == {
        "reason": "身份证号440***********1234与登记不符，请联系138****5678",
        "parties": [{"name": "张三110***********123X", "role": "plaintiff"}],
        "judgment": {"title": "联系138****5678"},
        "days_overdue": 13812345678,         # a number keeps its type: its contract fixes it
        "uscc_check_failed": False,
        "application_id": UUID_WITH_A_MOBILE_RUN}
    assert data["reason"] == TYPED, "the caller's data is not changed"


def _sealed_with_digit_runs(key: str, value: str) -> str:
    """A genuine Fernet token of ``value`` whose IV spells out a mobile and the head of an ID
    number in base64 (the IV starts at the token's 13th character): what a random IV does
    rarely, made certain."""
    iv = base64.urlsafe_b64decode("-13812345678-4401021") + b"\x00"
    return Fernet(key.encode())._encrypt_from_parts(value.encode(), 1_700_000_000, iv).decode()


def test_sealed_values_and_digests_travel_unchanged(db: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(sealed.KEY_ENV, key)
    token = _sealed_with_digit_runs(key, MOBILE)
    assert scrub(token) != token, "the token holds a run that scrub would mask"
    digest = "ab" + "13812345678" + "c" * 51
    data = {"phone_sealed": token, "text_sealed": sealed.seal(TYPED, "unused"),
            "sha256": digest, "document_sha256": digest, "text": TYPED}
    written = _emitted(db, data)
    assert written["phone_sealed"] == token
    assert sealed.unseal(written["phone_sealed"], "unused") == MOBILE
    assert sealed.unseal(written["text_sealed"], "unused") == TYPED
    assert written["sha256"] == digest and written["document_sha256"] == digest
    assert written["text"] == scrub(TYPED) != TYPED


def test_only_sealed_values_and_digests_are_opaque() -> None:
    assert all(map(is_opaque, ("phone_sealed", "code_sealed", "text_sealed", "sha256",
                               "letter_sha256")))
    assert not any(map(is_opaque, ("reason", "text", "name", "note", "law_firm", "party_name",
                                   "account_id", "sealed_reason", "sha256_of_what", 7)))


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in schema.get("properties", {}).items():
        yield name, prop
        yield from _properties(prop)
    if isinstance(schema.get("items"), dict):
        yield from _properties(schema["items"])


def test_every_opaque_field_of_the_event_contracts_is_named_as_one() -> None:
    """A field whose contract says it is base64 ciphertext or a hex digest must be exempt by
    its name, or ``emit`` could mask a run of digits inside it; and no other field is."""
    from ecourt.contracts import EVENTS

    opaque, exempt = set(), set()
    for path in sorted(EVENTS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))["properties"]["data"]
        for name, prop in _properties(data):
            pattern = prop.get("pattern", "")
            if pattern.startswith("^gAAAAA") or "[0-9a-f]{64}" in pattern:
                opaque.add(name)
            if is_opaque(name):
                exempt.add(name)
    assert opaque == {"phone_sealed", "text_sealed", "sha256"}
    assert opaque <= exempt
    assert exempt <= opaque | {"code_sealed"}  # identity.code.issued names no pattern
