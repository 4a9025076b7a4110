"""The notifier as a plain-AMQP consumer (pika), the way an external system would consume.

Manual acks after the database commit; the inbox makes a redelivery a no-op; a failed send is
given back (``basic_reject``, which every RabbitMQ version counts as a delivery) until the
quorum queue's delivery count reaches ``max_attempts``, then rejected into the dead-letter
exchange (``notifier.dlq``). ``BlockingConnection`` services heartbeats only while we call it,
so the work per message is kept short (one HTTP call with a timeout).

What is not the message's fault is waited out in place (``connection.sleep``, which keeps the
heartbeats going), not given back to the queue: requeued at once, every SMS in flight during a
two-second outage used up its attempts in milliseconds and ended in the dead-letter queue,
where a verification code has expired long before anyone replays it.

* a database that cannot be reached: for as long as it lasts;
* an SMS gateway that cannot be reached, times out, is busy or fails (``SmsSendError`` with
  ``transient``): up to ``PROVIDER_PATIENCE`` seconds per message, then the message is given
  back (counted), so a gateway down for hours still ends in the dead-letter queue, not in a
  loop. A gateway that refuses the message itself (another 4xx) is given back at once.

A line that goes silent (a proxy that stops forwarding and keeps the connection open) is
noticed by pika's heartbeat check, while consuming and during those waits in place alike; the
connection is then given up and made again. A stop closes politely for at most
``servicekit.consumer.CLOSE_WITHIN`` seconds, then drops the line: on a dead one pika would
wait for its heartbeat check, over a minute with the 30 s heartbeat, past the grace period
before the kill.
"""

from __future__ import annotations

import logging
import socket
import threading

import pika
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit import context, metrics
from servicekit.consumer import CLOSE_WITHIN, shut_after
from servicekit.db import Database, database_unreachable, statement_failed, utcnow
from servicekit.envelope import CloudEvent, MalformedEvent
from servicekit.tables import inbox
from services.notifier.providers import SmsProvider, SmsSendError
from services.notifier.sending import send_requested_sms

log = logging.getLogger(__name__)
CONSUMER = "notifier"
#: how long one message waits in place for an SMS gateway that is down or busy (seconds)
PROVIDER_PATIENCE = 120.0
#: the first and the longest wait between two tries in place
RETRY_BACKOFF = (0.25, 5.0)


def _socket_of(connection: pika.BlockingConnection) -> socket.socket | None:
    """pika's socket, which it gives no public way to (the connection's SelectConnection, its
    transport); None once closed (or should a pika release move it: the stop test says so)."""
    transport = getattr(getattr(connection, "_impl", None), "_transport", None)
    return getattr(transport, "_sock", None)


def _close_within(connection: pika.BlockingConnection, seconds: float) -> None:
    """Close ``connection`` politely (the consumer cancelled, the prefetched messages given
    back, Close/Close-OK), but for at most about ``seconds``: on a dead line pika waits for the
    broker's answers until its heartbeat check gives the line up (35 to 70 s with a 30 s
    heartbeat), past the deployments' grace periods. Its socket is then shut down and the
    connection dropped; the broker gives back what was not acked."""
    if not connection.is_open:  # given up already (heartbeats, a broker's close)
        return
    with shut_after(_socket_of(connection), seconds):
        try:
            connection.close()
        except pika.exceptions.AMQPError as exc:
            log.warning("notifier: closing the broker connection failed (%s); dropped",
                        exc.__class__.__name__)


class PikaSmsConsumer:
    def __init__(self, db: Database, provider: SmsProvider, *, broker_url: str, queue: str,
                 secret: str, max_attempts: int = 5, prefetch: int = 50,
                 heartbeat: int = 30) -> None:
        self.db = db
        self.provider = provider
        self.params = pika.URLParameters(broker_url.replace("pyamqp://", "amqp://"))
        self.params.heartbeat = heartbeat
        self.queue = queue
        self.secret = secret
        self.max_attempts = max_attempts
        self.prefetch = prefetch
        self.ready = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                self._consume(stop)
                backoff = 0.5
            except pika.exceptions.AMQPError as exc:
                log.warning("notifier: broker connection lost (%s); reconnecting", exc)
                stop.wait(backoff)
                backoff = min(30.0, backoff * 2)

    def _consume(self, stop: threading.Event) -> None:
        connection = pika.BlockingConnection(self.params)
        self._connection, self._stop = connection, stop
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            self.ready.set()
            for method, props, body in channel.consume(self.queue, inactivity_timeout=0.2):
                if stop.is_set():
                    break
                if method is None:
                    continue
                self._on_message(channel, method, props, body)
        finally:
            _close_within(connection, CLOSE_WITHIN)

    def _on_message(self, channel, method, props, body: bytes) -> None:  # type: ignore[no-untyped-def]
        try:
            event = CloudEvent.from_json(body)
        except MalformedEvent as exc:
            log.error("notifier: malformed message rejected: %s", exc)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        try:
            outcome = self._handle_patiently(event)
        except pika.exceptions.AMQPError:
            # the line was lost while the message waited in place (``connection.sleep``): not
            # a failed send, and nothing to reject it on; the broker gives it back
            raise
        except Exception as exc:
            deliveries = int((props.headers or {}).get("x-delivery-count", 0)) + 1
            requeue = deliveries < self.max_attempts
            log.warning("notifier: sending %s failed (delivery %s): %s", event.id, deliveries,
                        exc.__class__.__name__)
            metrics.EVENTS_CONSUMED.labels(CONSUMER, event.type,
                                           "retried" if requeue else "dead_lettered").inc()
            channel.basic_reject(method.delivery_tag, requeue=requeue)
            return
        metrics.EVENTS_CONSUMED.labels(CONSUMER, event.type, outcome).inc()
        channel.basic_ack(method.delivery_tag)

    def _handle_patiently(self, event: CloudEvent) -> str:
        """``handle``, tried again in place while the database or the SMS gateway is away
        (see the module's docstring); any other failure, or a stop, raises."""
        first, longest = RETRY_BACKOFF
        tries, waited_for_gateway = 0, 0.0
        while True:
            try:
                return self.handle(event)
            except Exception as exc:
                delay = min(longest, first * 2 ** min(tries, 16))
                database_away = database_unreachable(exc) and not statement_failed(exc)
                gateway_away = (isinstance(exc, SmsSendError) and exc.transient
                                and waited_for_gateway + delay <= PROVIDER_PATIENCE)
                if not (database_away or gateway_away) or self._stop.is_set() \
                        or self._connection is None:
                    raise
                tries += 1
                if gateway_away:
                    waited_for_gateway += delay
                log.warning("notifier: %s unavailable (%s); trying %s again in %.2fs",
                            "database" if database_away else "SMS gateway",
                            exc.__class__.__name__, event.id, delay)
                self._connection.sleep(delay)

    def handle(self, event: CloudEvent) -> str:
        # the ids outermost, so the commit's flush is made under them (``servicekit.audit``)
        with context.bound(event.correlationid, event.id), self.db.transaction() as session:
            seen = session.scalar(select(inbox.c.event_id).where(
                inbox.c.consumer == CONSUMER, inbox.c.event_id == event.id))
            if seen or not self._took(session, event):
                return "duplicate"
            send_requested_sms(session, event, self.provider, self.secret)
        return "handled"

    @staticmethod
    def _took(session: Session, event: CloudEvent) -> bool:
        """Write the event's inbox row; False if another notifier has it. A redelivery can
        arrive while the first notifier (its line to the broker lost) is still sending: its
        row is not committed yet, so the look above found none, and this insert waits on it.
        Once that row commits, the key refuses ours: a duplicate, not a failed send."""
        try:
            with session.begin_nested():
                session.execute(insert(inbox).values(consumer=CONSUMER, event_id=event.id,
                                                     type=event.type, received_at=utcnow()))
        except IntegrityError:
            return False
        return True
