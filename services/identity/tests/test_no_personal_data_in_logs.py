"""No password, ID number, phone or token reaches a log record in clear (RELIABILITY S6) —
checked on the raw records, before the JSON formatter's last-line-of-defence masking."""

from __future__ import annotations

import logging

import pytest

from services.identity.tests.conftest import PASSWORD, Identity


def test_a_whole_session_logs_no_secrets_or_contact_details(
        identity: Identity, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    person, _ = identity.register()
    identity.login(person["phone"], "a-wrong-password")
    first = identity.tokens(person["id_number"])
    second = identity.call("POST", "/tokens/refresh",
                           json={"refresh_token": first["refresh_token"]}).get_json()
    identity.call("POST", "/tokens/refresh", json={"refresh_token": first["refresh_token"]})
    identity.call("POST", "/tokens/revoke", json={"refresh_token": second["refresh_token"]})
    admin_phone, admin = identity.admin()
    member = identity.add_staff(admin["access_token"])
    identity.call("POST", f"/staff/{member['id']}/disable", token=admin["access_token"])
    identity.login(member["phone"])

    secrets = [person["phone"], person["id_number"], PASSWORD, "a-wrong-password",
               admin_phone, member["phone"], first["access_token"], first["refresh_token"],
               second["refresh_token"], admin["access_token"]]
    assert caplog.records, "the flow logs its decisions"
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(str(v) for v in vars(record).values())
        for secret in secrets:
            assert secret not in text, f"{record.name}: {record.getMessage()}"
