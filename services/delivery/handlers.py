"""delivery's event handlers: one function per consumed event type. Each tells its
recipients on the portal (inbox notice) and by SMS (through the notifier).

Who the recipients are (a court's reviewers, the next rung of the escalation ladder) and their
phone numbers are identity's to say, over HTTP. Those look-ups are the ``prepare`` phase of a
``TwoPhaseHandler``: they run before the consumer's transaction, so a slow identity never holds
delivery's database connection, nor on SQLite the write lock a user reading a notice waits for.
The transaction then writes the notices and the SMS requests from what was looked up. The
look-ups of one event that do not wait for each other (each recipient's phone, the two halves of
``both``) are made at once (``concurrently``), within the consumer's bound on calls in flight,
so an event with five recipients waits for identity about as long as one with a single one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from servicekit.clients import InternalClient
from servicekit.consumer import Handler, TwoPhaseHandler, concurrently
from servicekit.db import utcnow
from servicekit.envelope import CloudEvent
from servicekit.sealed import unseal
from servicekit.service import Runtime
from services.delivery import messages
from services.delivery.messages import SMS_SIGNATURE
from services.delivery.usecases import notify, request_secret_sms, request_sms

WELCOME_TITLE = "欢迎使用人民法院在线服务"
WELCOME_SMS = SMS_SIGNATURE + "您好！您已成功注册人民法院在线服务账号，请妥善保管登录密码。"
STAFF_WELCOME_SMS = SMS_SIGNATURE + "您好！您的法院工作人员账号已开通，请登录后及时修改初始密码。"
Message = Callable[[dict[str, Any]], tuple[str, str, str]]
#: who is told, once each and in order: (account id, phone number), as identity gave them
Contacts = list[tuple[str, str]]


def build_handlers(rt: Runtime) -> Mapping[str, Handler]:
    client: InternalClient = rt.clients  # type: ignore[assignment]
    secret = rt.settings.service_secret

    def contact(account_id: str) -> tuple[str, str]:
        return account_id, client.get_json(
            "identity", f"/internal/accounts/{account_id}/contact")["phone"]

    def contacts(account_ids: Iterable[str]) -> Contacts:
        """Each account's phone, from identity, all asked at once: a prepare phase's look-up
        (``to_each``)."""
        return concurrently(contact, dict.fromkeys(account_ids))  # once each, in order

    def welcome(data: dict[str, Any]) -> tuple[str, str, str]:
        staff = data.get("kind") == "staff"
        return (WELCOME_TITLE, "您的工作人员账号已开通。" if staff else "您的账号已注册成功。",
                STAFF_WELCOME_SMS if staff else WELCOME_SMS)

    def on_code_issued(session: Session, event: CloudEvent) -> None:
        """A verification code: SMS only (never the portal inbox), to the phone identity chose
        (for a change of number, the new one too), with the text sealed end to end."""
        if datetime.fromisoformat(event.data["expires_at"]) <= utcnow():
            return  # the code has expired: an SMS now would only confuse
        code = unseal(event.data["code_sealed"], secret)
        request_secret_sms(session, account_id=event.data["account_id"],
                           phone_sealed=event.data["phone_sealed"], template="verification_code",
                           text=messages.verification_code(event.data["purpose"], code),
                           secret=secret, expires_at=event.data["expires_at"])

    def to_each(recipients: Callable[[dict[str, Any]], list[str]], message: Message,
                template: str, category: str = "application") -> TwoPhaseHandler[Contacts]:
        """Tell each recipient: a notice in the portal inbox and an SMS request. Who they are
        and their phones are looked up first (``recipients`` may ask identity too); the
        transaction only writes."""
        def prepare(event: CloudEvent) -> Contacts:
            return contacts(recipients(event.data))

        def apply(session: Session, event: CloudEvent, found: Contacts) -> None:
            title, body, sms = message(event.data)
            for account_id, phone in found:
                notify(session, account_id=account_id, category=category, title=title,
                       body=body, source_event_id=event.id)
                request_sms(session, account_id=account_id, phone=phone, template=template,
                            text=sms, secret=secret)
        return TwoPhaseHandler(prepare, apply)

    def reviewers(data: dict[str, Any]) -> list[str]:
        found = client.get_json("identity", f"/internal/staff?court={data['court']}"
                                            "&role=registry_reviewer")["items"]
        return [s["account_id"] for s in found]

    def applicant(data: dict[str, Any]) -> list[str]:
        return [data["applicant_account_id"]]

    def account(data: dict[str, Any]) -> list[str]:
        return [data["account_id"]]

    def both(*handlers: TwoPhaseHandler[Contacts]) -> TwoPhaseHandler[list[Contacts]]:
        """The handlers together: all their look-ups (at once), then all their writes, one
        handler's after the other's."""
        def prepare(event: CloudEvent) -> list[Contacts]:
            return concurrently(lambda handler: handler.prepare(event), handlers)

        def apply(session: Session, event: CloudEvent, found: list[Contacts]) -> None:
            for handler, context in zip(handlers, found, strict=True):
                handler.apply(session, event, context)
        return TwoPhaseHandler(prepare, apply)

    def escalation_targets(data: dict[str, Any]) -> list[str]:
        """The ladder: the handlers, then the division's head, then the court's president."""
        if data["level"] == "handler":
            return list(data["handler_account_ids"])
        query = f"/internal/staff?court={data['court']}&role={data['level']}"
        if data["level"] == "division_head" and data.get("department"):
            query += f"&department={data['department']}"
        found = client.get_json("identity", query)["items"]
        return [s["account_id"] for s in found]

    return {
        "identity.account.registered": to_each(account, welcome, "account_registered",
                                               category="account"),
        "identity.code.issued": on_code_issued,
        "matters.application.submitted": to_each(
            lambda d: d["notify_account_ids"], messages.submitted, "application_submitted"),
        "matters.application.transferred": to_each(
            lambda d: [d["judge_account_id"]], messages.transferred, "application_transferred"),
        "matters.application.completed": to_each(
            lambda d: [d["applicant_account_id"]], messages.completed, "application_completed"),
        "matters.application.overdue": to_each(
            escalation_targets, messages.overdue, "application_overdue"),
        "matters.binding.requested": to_each(
            lambda d: d["notify_account_ids"], messages.binding_requested, "binding_requested"),
        "matters.binding.approved": both(
            to_each(lambda d: [d["lawyer_account_id"]], messages.binding_approved_lawyer,
                    "binding_approved"),
            to_each(lambda d: [d["party_account_id"]] if d.get("party_account_id") else [],
                    messages.binding_approved_party, "binding_approved_party")),
        "matters.binding.rejected": to_each(
            lambda d: [d["lawyer_account_id"]], messages.binding_rejected, "binding_rejected"),
        "identity.organization.registered": to_each(
            reviewers, messages.organization_registered, "organization_registered"),
        "identity.organization.approved": to_each(
            applicant, messages.organization_approved, "organization_approved"),
        "identity.organization.rejected": to_each(
            applicant, messages.organization_rejected, "organization_rejected"),
        "identity.lawyer.verification_requested": to_each(
            reviewers, messages.lawyer_verification_requested, "lawyer_verification_requested"),
        "identity.lawyer.verified": to_each(
            account, messages.lawyer_verified, "lawyer_verified"),
        "identity.lawyer.rejected": to_each(
            account, messages.lawyer_rejected, "lawyer_rejected"),
    }
