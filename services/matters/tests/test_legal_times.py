"""DESIGN: every time with legal weight — a submission, a decision, a binding's request and
decision — is stored in UTC to the second, as receipts show it (they were kept to the
microsecond, so the record and the receipt could disagree about a deadline's last second)."""

from __future__ import annotations

from datetime import datetime

from services.matters.models import Application, Binding
from services.matters.tests.conftest import Harness


def _to_the_second(value: str | None) -> bool:
    return value is not None and datetime.fromisoformat(value).microsecond == 0


def test_submission_review_and_binding_times_are_kept_to_the_second(harness: Harness) -> None:
    h = harness
    reviewed = h.reviewed({"issuable": True})
    assert _to_the_second(reviewed["submitted_at"]), reviewed
    case = h.case()
    asked = h.ask(case["case_number"])
    assert asked.status_code == 201, asked.get_json()
    path = f"/bindings/{asked.get_json()['id']}"
    decided = h.client.post(f"{path}/approve",
                            headers={**h.staff("clerk"), **h.if_match(path)})
    assert decided.status_code == 200, decided.get_json()
    binding = decided.get_json()
    assert _to_the_second(binding["requested_at"]) and _to_the_second(binding["decided_at"])
    with h.rt.db.transaction() as session:
        app = session.get(Application, reviewed["id"])
        row = session.get(Binding, binding["id"])
        assert app is not None and row is not None
        assert app.submitted_at.microsecond == 0 and app.handled_at is not None
        assert app.handled_at.microsecond == 0
        assert row.requested_at.microsecond == 0 and row.decided_at is not None
        assert row.decided_at.microsecond == 0
