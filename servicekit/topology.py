"""Exchanges and queues: who listens to what, declared the same way by every process.

* ``ecourt.events``   durable topic exchange; routing key = event type
* ``<service>.events`` the service's quorum queue, bound to each type it handles; its
  ``x-delivery-limit`` and dead-letter exchange guard against a message that crashes the
  consumer itself (RabbitMQ 3.10 has no default limit; 4.x drops at 20 without a DLX)
  Dead-lettering is ``at-least-once`` (with ``x-overflow: reject-publish``, which it needs):
  a quorum queue's default is at-most-once, which drops a dead letter silently when the
  dead-letter queue cannot take it (its node down, the queue deleted). At-least-once keeps
  the message in the source queue until the dead-letter queue has confirmed it. Arguments
  are fixed when a queue is made: a queue declared before with other arguments must be
  recreated (or given the same settings by a policy) before this code declares it.
* ``<service>.dlq``   the service's dead-letter queue. A *classic* durable queue on purpose:
  ``ecourt dlq list`` peeks at it by getting and returning messages, and a quorum queue would
  count every peek towards its own delivery limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kombu import Connection, Exchange, Queue

DLX = "ecourt.dlx"
CRASH_DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Subscription:
    """One consuming service: its queue name and the event types it binds."""

    service: str
    types: tuple[str, ...]
    queue_name: str = ""
    dlq_name: str = ""
    extra_args: dict[str, object] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return self.queue_name or f"{self.service}.events"

    @property
    def dlq(self) -> str:
        return self.dlq_name or f"{self.service}.dlq"


def topic_exchange(name: str) -> Exchange:
    return Exchange(name, type="topic", durable=True)


def queues_for(sub: Subscription, exchange: str) -> tuple[Queue, Queue]:
    """The kombu queues of one subscription: (main quorum queue, dead-letter queue)."""
    dlx = Exchange(DLX, type="direct", durable=True)
    main = Queue(
        sub.queue,
        exchange=topic_exchange(exchange),
        routing_key=sub.types[0] if sub.types else sub.queue,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": CRASH_DELIVERY_LIMIT,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": sub.dlq,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            **sub.extra_args,
        },
    )
    dead = Queue(sub.dlq, exchange=dlx, routing_key=sub.dlq, durable=True)
    return main, dead


def declare(connection: Connection, exchange: str, subs: Iterable[Subscription]) -> None:
    """Declare the exchange and every subscription's queues and bindings (idempotent)."""
    channel = connection.default_channel
    topic_exchange(exchange)(channel).declare()
    Exchange(DLX, type="direct", durable=True)(channel).declare()
    for sub in subs:
        main, dead = queues_for(sub, exchange)
        dead(channel).declare()
        bound = main(channel)
        bound.declare()
        for type_ in sub.types[1:]:
            bound.bind_to(exchange=exchange, routing_key=type_)
