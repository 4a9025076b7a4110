"""identity's rules without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.identity import domain


def test_id_number_check_character() -> None:
    assert domain.id_number_valid("11010519491231002X")
    assert domain.id_number_valid("11010519491231002x")
    assert not domain.id_number_valid("110105194912310021")  # wrong check character
    assert not domain.id_number_valid("1101051949123100")
    assert not domain.id_number_valid("A1010519491231002X")


def test_mobile_and_court_code() -> None:
    assert domain.mobile_valid("13800138000")
    assert not domain.mobile_valid("12800138000")
    assert not domain.mobile_valid("1380013800")
    assert domain.court_code_valid("粤01") and domain.court_code_valid("粤0104")
    assert not domain.court_code_valid("粤 01") and not domain.court_code_valid("粤")


def test_a_pattern_must_match_the_whole_value() -> None:
    """``$`` with ``re.match`` also matched before a final newline, and ``\\d`` took any
    Unicode digit; ``int`` of some of those (superscripts) raised."""
    assert not domain.mobile_valid("13800138000\n")
    assert not domain.mobile_valid("1380013800\u0660")  # ARABIC-INDIC DIGIT ZERO
    assert not domain.court_code_valid("粤01\n")
    assert not domain.id_number_valid("11010519491231002X\n")
    assert not domain.id_number_valid("\uff11" * 17 + "X")  # FULLWIDTH DIGIT ONE
    assert not domain.id_number_valid("\u00b9" * 17 + "X")  # SUPERSCRIPT ONE (int() raises)


def test_staff_roles() -> None:
    assert domain.staff_roles_problem(["judge", "division_head"]) is None
    assert domain.staff_roles_problem([]) is not None
    assert "party" in (domain.staff_roles_problem(["judge", "party"]) or "")
    assert domain.staff_roles_problem(["judge", "judge"]) is not None


def test_claims_name_court_and_department_for_staff_only() -> None:
    staff = domain.access_claims(account_id="a", kind="staff", roles=["judge"], court="粤01",
                                 department="民一庭", session_id="s")
    assert staff["court"] == "粤01" and staff["department"] == "民一庭"
    assert staff["sub"] == "a" and staff["roles"] == ["judge"] and staff["sid"] == "s"
    party = domain.access_claims(account_id="b", kind="individual", roles=["party"],
                                 court=None, department=None, session_id="t")
    assert "court" not in party and "department" not in party


def test_refresh_tokens_are_long_random_and_stored_as_digests() -> None:
    tokens = {domain.new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 for t in tokens)  # 32 bytes = 256 bits, base64url
    token = tokens.pop()
    assert domain.token_digest(token) != token and len(domain.token_digest(token)) == 64


def test_retry_after_counts_a_sliding_window() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    four = [now - timedelta(minutes=m) for m in (1, 2, 3, 4)]
    assert domain.retry_after(four, now) is None
    five = [*four, now - timedelta(minutes=10)]
    # the oldest of the five leaves the window 5 minutes from now
    assert domain.retry_after(five, now) == 300
    old = [*four, now - timedelta(minutes=16)]
    assert domain.retry_after(old, now) is None
    six = [*five, now - timedelta(minutes=14)]
    assert domain.retry_after(six, now) == 300  # the 5th newest decides
