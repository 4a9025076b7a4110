"""The notifier sends what it is asked to, and keeps no secret it was given sealed."""

from __future__ import annotations

from pathlib import Path

from servicekit import migrations
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.sealed import seal
from services.notifier.app import SERVICE
from services.notifier.models import SmsMessage
from services.notifier.sending import send_requested_sms

SECRET = "test-secret"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, message_id: str, phone: str, text: str) -> str:
        self.sent.append((message_id, phone, text))
        return "ref-1"


def test_a_sealed_code_reaches_the_provider_but_is_stored_redacted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    migrations.upgrade(SERVICE.migrations, url)
    db = Database(url)
    text = "【人民法院在线服务】您的登录验证码为482913，5分钟内有效，请勿泄露。"
    event = CloudEvent("delivery.sms.requested", "/delivery", {
        "account_id": "a1", "phone_sealed": seal("13800138000", SECRET),
        "template": "verification_code", "text_sealed": seal(text, SECRET)})
    provider = Recorder()
    with db.transaction() as session:
        send_requested_sms(session, event, provider, SECRET)
    assert provider.sent == [(event.id, "13800138000", text)]
    with db.transaction() as session:
        stored = session.get(SmsMessage, event.id)
    assert stored is not None and "482913" not in stored.text and "******" in stored.text
    assert stored.phone_masked == "138****8000"
