"""matters' rules: deadlines in working days, the list labels, the escalation ladder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from servicekit.workdays import SHANGHAI, add_workdays, is_workday
from services.matters import domain


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_working_days_skip_weekends_and_holidays_and_count_makeup_days() -> None:
    assert not is_workday(beijing("2026-10-01").date())     # National Day
    assert is_workday(beijing("2026-10-10").date())          # a Saturday made a working day
    assert not is_workday(beijing("2026-11-28").date())      # an ordinary Saturday
    # Friday 2026-11-20 + 7 working days = Tuesday 2026-12-01, same time of day
    end = add_workdays(beijing("2026-11-20 17:45:43"), 7)
    assert end.astimezone(SHANGHAI) == beijing("2026-12-01 17:45:43")
    # across the 2022 Qingming holiday (Apr 3–5 off, Sat Apr 2 worked)
    end = add_workdays(beijing("2022-03-24 17:45:43"), 7)
    assert end.astimezone(SHANGHAI).date().isoformat() == "2022-04-02"


def test_remaining_and_overdue_labels_as_the_court_lists_show_them() -> None:
    deadline = beijing("2022-04-06 17:45:43")
    assert domain.remaining_label(deadline, beijing("2022-03-28 09:00"), False) == "剩余9"
    assert domain.remaining_label(deadline, beijing("2022-04-30 09:00"), False) == "超过24"
    assert domain.remaining_label(deadline, beijing("2022-04-30 09:00"), True) == ""


def test_service_number_format() -> None:
    assert domain.service_number(2021, "粤01", "文书", 17) == "(2021)粤01文书第17号"


def test_case_number_pattern() -> None:
    assert domain.CASE_NUMBER.match("(2021)粤01民初8号")
    assert domain.CASE_NUMBER.match("(2014)粤0104民初1234号")
    assert not domain.CASE_NUMBER.match("2021粤01民初8号")


def test_ladder_climbs_one_level_at_a_time_each_once() -> None:
    deadline = datetime(2026, 1, 10, tzinfo=UTC)
    assert domain.next_escalation(0, deadline, deadline - timedelta(hours=1)) is None
    assert domain.next_escalation(0, deadline, deadline + timedelta(hours=1)) == "handler"
    assert domain.next_escalation(1, deadline, deadline + timedelta(days=1)) is None
    assert domain.next_escalation(1, deadline, deadline + timedelta(days=3)) == "division_head"
    # a long-forgotten application still climbs one rung per run, never skipping one
    assert domain.next_escalation(1, deadline, deadline + timedelta(days=40)) == "division_head"
    assert domain.next_escalation(2, deadline, deadline + timedelta(days=7)) == "president"
    assert domain.next_escalation(3, deadline, deadline + timedelta(days=70)) is None


def test_actions_follow_the_certificate_state() -> None:
    assert domain.available_actions("accepted", "failed") == ["regenerate", "transfer"]
    assert domain.available_actions("accepted", "issued") == ["publish"]
    assert domain.available_actions("accepted", "generating") == ["handle", "view", "transfer"]
    assert domain.available_actions("completed", "issued") == ["view"]


def test_the_applicant_sees_the_certificate_only_once_published() -> None:
    assert not domain.certificate_visible_to_applicant("accepted")
    assert domain.certificate_visible_to_applicant("completed")
