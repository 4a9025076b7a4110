"""A consuming service for the end-to-end bench, run as its own process (as in production).

``python -m bench.sink --db URL --broker URL --exchange EX --type T --ready FILE``

It runs the suite's real ``servicekit.consumer.EventConsumer`` (inbox + handler in one
transaction, manual acks) with one trivial handler that writes a row to ``bench_state``, and
touches ``--ready`` once it consumes. It stops on SIGTERM or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from sqlalchemy import insert

from bench.suite_schema import SINK_SERVICE, bench_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--type", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="the consumer's worker threads (ECOURT_CONSUMER_WORKERS)")
    args = parser.parse_args()

    from servicekit.consumer import EventConsumer
    from servicekit.db import Database

    def on_event(session, event) -> None:  # type: ignore[no-untyped-def]
        session.execute(insert(bench_state).values(case_id=str(event.data.get("case_id")),
                                                   status="seen"))

    db = Database(args.db)
    consumer = EventConsumer(SINK_SERVICE, db, {args.type: on_event}, broker_url=args.broker,
                             exchange=args.exchange, workers=args.workers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    if consumer.ready.wait(60):
        Path(args.ready).write_text("ready")
    stop.wait(args.seconds)
    stop.set()
    thread.join(10)
    db.dispose()


if __name__ == "__main__":
    main()
