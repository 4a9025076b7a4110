"""The services of the suite and who listens to what."""

from __future__ import annotations

from servicekit.service import ServiceDefinition
from servicekit.topology import Subscription
from services.bankruptcy.app import SERVICE as BANKRUPTCY
from services.delivery.app import SERVICE as DELIVERY
from services.documents.app import SERVICE as DOCUMENTS
from services.filing.app import SERVICE as FILING
from services.identity.app import SERVICE as IDENTITY
from services.matters.app import SERVICE as MATTERS
from services.notifier.app import SERVICE as NOTIFIER

SERVICES: dict[str, ServiceDefinition] = {
    s.name: s for s in (IDENTITY, FILING, MATTERS, DOCUMENTS, DELIVERY, BANKRUPTCY, NOTIFIER)
}
#: services with an HTTP API, routed by the gateway under /api/<name>/
API_SERVICES = [name for name, s in SERVICES.items() if s.build_app is not None]


def subscriptions(prefix: str = "") -> list[Subscription]:
    """Every consuming service's queue; ``prefix`` keeps test runs apart on one broker."""
    return [Subscription(s.name, s.consumes, queue_name=f"{prefix}{s.name}.events",
                         dlq_name=f"{prefix}{s.name}.dlq")
            for s in SERVICES.values() if s.consumes]


def subscription(service: str, prefix: str = "") -> Subscription:
    for sub in subscriptions(prefix):
        if sub.service == service:
            return sub
    raise KeyError(f"{service} consumes no events")


def get(name: str) -> ServiceDefinition:
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; one of: {', '.join(SERVICES)}")
    return SERVICES[name]
