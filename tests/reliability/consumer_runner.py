"""A consumer process for the crash tests (R3), run as
``python -m tests.reliability.consumer_runner --db URL --broker URL ...``.

It consumes one test subscription with a handler that writes a ``notifications`` row (keyed by
the event id) in the consumer's transaction, and prints one JSON line per batch with what it
has seen so far: deliveries, redeliveries and the outcomes counted in ``events_consumed``.
``--crash-after-handled N`` makes it SIGKILL itself once it has handled N events, between the
commit of a batch and its ack (the worst moment: the effects are saved, the broker does not
know). SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from prometheus_client import REGISTRY

from servicekit.consumer import EventConsumer
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.topology import Subscription
from tests.reliability.helpers import record_notification

OUTCOMES = ("handled", "duplicate", "ignored", "retried", "dead_lettered", "malformed")


class RunnerConsumer(EventConsumer):
    def __init__(self, *args: object, crash_after: int | None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.crash_after = crash_after
        self.delivered = 0
        self.redelivered = 0

    def _collect(self, message):  # type: ignore[no-untyped-def]
        self.delivered += 1
        if (message.delivery_info or {}).get("redelivered"):
            self.redelivered += 1
        super()._collect(message)

    def outcome(self, name: str) -> int:
        total = 0.0
        for type_ in self.subscription.types:
            total += REGISTRY.get_sample_value(
                "events_consumed_total",
                {"service": self.service, "type": type_, "outcome": name}) or 0.0
        return int(total)

    def settle(self, batch, outcomes):  # type: ignore[no-untyped-def]
        if self.crash_after is not None and self.outcome("handled") >= self.crash_after:
            _die()  # the batch has committed: die before it is acked
        super().settle(batch, outcomes)
        self.report()

    def report(self) -> None:
        line = {"pid": os.getpid(), "delivered": self.delivered,
                "redelivered": self.redelivered, **{o: self.outcome(o) for o in OUTCOMES}}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--dlq", required=True)
    parser.add_argument("--type", required=True)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--work", type=float, default=0.0,
                        help="seconds of simulated work per event")
    parser.add_argument("--crash-after-handled", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        record_notification(session, event)
        if args.work:
            time.sleep(args.work)  # simulated work, so a kill lands mid-stream

    db = Database(args.db)
    consumer = RunnerConsumer(
        args.service, db, {args.type: handler}, broker_url=args.broker,
        exchange=args.exchange, crash_after=args.crash_after_handled,
        subscription=Subscription(args.service, (args.type,), queue_name=args.queue,
                                  dlq_name=args.dlq),
        batch_size=args.batch_size, prefetch=args.prefetch, workers=args.workers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer.run(stop)
    consumer.report()
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
