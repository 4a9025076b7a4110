"""matters' rules: deadlines in working days, the list labels, the escalation ladder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from servicekit.workdays import SHANGHAI, add_workdays, is_workday
from services.matters import domain


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


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


def test_days_overdue_are_beijing_calendar_days_for_the_label_and_the_ladder_alike() -> None:
    """A deadline at 23:00 Beijing time is one day overdue at 02:00 the next day, and three
    days overdue — the division head's day — at 02:00 three days on, though only 51 hours
    have passed (failed before: the rungs counted 24-hour periods, the label calendar days, so
    the list said 超过3 a day before the division head was urged)."""
    deadline = beijing("2026-03-02 23:00")
    for now, days in (("2026-03-02 23:00", 0), ("2026-03-02 23:30", 1),
                      ("2026-03-03 02:00", 1), ("2026-03-04 23:59:59", 2),
                      ("2026-03-05 00:00", 3), ("2026-03-05 02:00", 3),
                      ("2026-03-08 23:59:59", 6), ("2026-03-09 00:00", 7)):
        assert domain.days_overdue(deadline, beijing(now)) == days, now
        if days:
            assert domain.remaining_label(deadline, beijing(now), False) == f"超过{days}"
    assert domain.next_escalation(0, deadline, beijing("2026-03-03 02:00")) == "handler"
    assert domain.next_escalation(1, deadline, beijing("2026-03-04 23:59:59")) is None
    assert domain.next_escalation(1, deadline, beijing("2026-03-05 02:00")) == "division_head"
    assert domain.next_escalation(2, deadline, beijing("2026-03-08 23:59:59")) is None
    assert domain.next_escalation(2, deadline, beijing("2026-03-09 00:00")) == "president"


def test_deadlines_either_side_of_beijing_midnight_at_16_utc() -> None:
    """16:00 UTC is midnight in Beijing: a deadline a second before it falls on the earlier
    day and is a day further overdue than one at 16:00 exactly."""
    before, at = utc("2026-03-02 15:59:59"), utc("2026-03-02 16:00")
    now = utc("2026-03-04 16:00")                               # 2026-03-05 00:00 Beijing
    assert (domain.days_overdue(before, now), domain.days_overdue(at, now)) == (3, 2)
    assert domain.next_escalation(1, before, now) == "division_head"
    assert domain.next_escalation(1, at, now) is None
    assert domain.remaining_label(before, now, False) == "超过3"
    assert domain.days_overdue(at, utc("2026-03-02 16:00:01")) == 1   # the same Beijing day


def test_the_querys_cutoff_says_what_days_overdue_says() -> None:
    """``overdue_cutoff`` (the scheduler's WHERE clause) and ``days_overdue`` (the label, the
    SMS, ``next_escalation``) agree at every boundary: either side of Beijing and UTC
    midnight, for every rung and beyond."""
    base = utc("2026-03-02 00:00")
    offsets = [timedelta(hours=h, seconds=s) for h in range(0, 24 * 9, 1) for s in (-1, 0, 1)]
    deadlines = [base + timedelta(hours=h) for h in (8, 15, 16, 17, 23)]
    for deadline in deadlines:
        for offset in offsets:
            now = deadline + offset
            for days in range(9):
                overdue = now > deadline and domain.days_overdue(deadline, now) >= days
                assert overdue == (deadline < domain.overdue_cutoff(days, now)), (
                    deadline, now, days)
            for level, (_, days) in enumerate(domain.LADDER):
                due = domain.next_escalation(level, deadline, now) is not None
                assert due == (deadline < domain.overdue_cutoff(days, now)), (deadline, now)


def test_actions_follow_the_certificate_state() -> None:
    assert domain.available_actions("accepted", "failed") == ["regenerate", "transfer"]
    assert domain.available_actions("accepted", "issued") == ["publish"]
    assert domain.available_actions("accepted", "generating") == ["handle", "view", "transfer"]
    assert domain.available_actions("completed", "issued") == ["view"]


def test_the_applicant_sees_the_certificate_only_once_published() -> None:
    assert not domain.certificate_visible_to_applicant("accepted")
    assert domain.certificate_visible_to_applicant("completed")
