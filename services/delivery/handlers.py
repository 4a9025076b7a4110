"""delivery's event handlers: one function per consumed event type."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from servicekit.clients import InternalClient
from servicekit.consumer import Handler
from servicekit.envelope import CloudEvent
from servicekit.service import Runtime
from services.delivery.usecases import SMS_SIGNATURE, notify, request_sms

WELCOME_TITLE = "欢迎使用人民法院在线服务"
WELCOME_SMS = SMS_SIGNATURE + "您好！您已成功注册人民法院在线服务账号，请妥善保管登录密码。"


def build_handlers(rt: Runtime) -> Mapping[str, Handler]:
    client: InternalClient = rt.clients  # type: ignore[assignment]
    secret = rt.settings.service_secret

    def on_account_registered(session: Session, event: CloudEvent) -> None:
        account_id = event.data["account_id"]
        notify(session, account_id=account_id, category="account", title=WELCOME_TITLE,
               body="您的账号已注册成功。", source_event_id=event.id)
        contact = client.get_json("identity", f"/internal/accounts/{account_id}/contact")
        request_sms(session, account_id=account_id, phone=contact["phone"],
                    template="account_registered", text=WELCOME_SMS, secret=secret)

    return {"identity.account.registered": on_account_registered}
