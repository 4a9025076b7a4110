"""notifier's service definition: no HTTP API, one consumed event type."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.orm import Session

from servicekit.consumer import Handler
from servicekit.envelope import CloudEvent
from servicekit.service import Runtime, ServiceDefinition
from services.notifier import providers
from services.notifier.models import Base
from services.notifier.sending import SMS_REQUESTED, send_requested_sms


def provider_for(rt: Runtime) -> providers.SmsProvider:
    """The running notifier's SMS provider (built once from the environment)."""
    return rt.extras.setdefault("sms_provider", providers.from_env())  # type: ignore[return-value]


def build_handlers(rt: Runtime) -> Mapping[str, Handler]:
    provider = provider_for(rt)
    secret = rt.settings.service_secret

    def on_sms_requested(session: Session, event: CloudEvent) -> None:
        send_requested_sms(session, event, provider, secret)

    return {SMS_REQUESTED: on_sms_requested}


SERVICE = ServiceDefinition(name="notifier", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=None, build_handlers=build_handlers,
                            consumes=(SMS_REQUESTED,))
