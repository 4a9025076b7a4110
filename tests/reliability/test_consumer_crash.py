"""R3: a consumer killed with SIGKILL in the middle of a stream loses nothing and applies
nothing twice; the redeliveries that the kills cause are observed and absorbed by the inbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from servicekit.envelope import CloudEvent
from servicekit.publishers import TOPIC, PikaPublisher
from servicekit.testing import wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    ROOT,
    declare_subscriptions,
    inbox_ids,
    notifications,
    publish_events,
    queue_depth,
)

pytestmark = pytest.mark.real

N = 1_000
TYPE = "reliability.crash.happened"
SERVICE = "rel_crash"


class Runner:
    """One consumer subprocess; its JSON lines go to a file (a pipe could fill up)."""

    def __init__(self, log: Path, args: list[str]) -> None:
        self.log = log
        self.out = log.open("w")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "tests.reliability.consumer_runner", *args],
            cwd=ROOT, stdout=self.out, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.wait(10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(20)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()

    def last(self) -> dict[str, int]:
        lines = [ln for ln in self.log.read_text().splitlines() if ln.strip()]
        return json.loads(lines[-1]) if lines else {}

    def ensure_dead(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self.out.closed:
            self.out.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_sigkilled_consumer_loses_nothing_and_duplicates_nothing(make_dbs, vhost, exchange,
                                                                  tmp_path, workers: int) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("crash")
    sub = Subscription(SERVICE, (TYPE,), queue_name=f"{SERVICE}.events",
                       dlq_name=f"{SERVICE}.dlq")
    declare_subscriptions(vhost, exchange, sub)

    events = [CloudEvent(type=TYPE, source="/reliability", data={"n": i}) for i in range(N)]
    publisher = PikaPublisher(vhost, exchange, confirm_timeout=10)
    try:
        assert len(publish_events(publisher, TOPIC, TYPE, events)) == N
    finally:
        publisher.close()
    assert queue_depth(vhost, sub.queue) == N

    common = ["--db", db.url, "--broker", vhost, "--exchange", exchange, "--service", SERVICE,
              "--queue", sub.queue, "--dlq", sub.dlq, "--type", TYPE, "--batch-size", "20",
              "--prefetch", "100", "--work", "0.002", "--workers", str(workers)]
    runners: list[Runner] = []
    progress: list[int] = []

    def start(*extra: str) -> Runner:
        runner = Runner(tmp_path / f"runner{len(runners)}.jsonl", common + list(extra))
        runners.append(runner)
        return runner

    def handled() -> int:
        return notifications(db)[0]

    try:
        # 1. killed from outside once it has handled some events
        r = start()
        wait_for(lambda: handled() >= 150, timeout=60, message="the first consumer to work")
        assert r.kill() == -signal.SIGKILL
        progress.append(handled())

        # 2. kills itself after committing a batch and before acking it
        r = start("--crash-after-handled", "150")
        assert r.wait(60) == -signal.SIGKILL
        progress.append(handled())

        # 3. killed from outside again
        r = start()
        target = progress[-1] + 200
        wait_for(lambda: handled() >= target, timeout=60, message="the third consumer")
        assert r.kill() == -signal.SIGKILL
        progress.append(handled())

        # every kill landed in the middle of the stream
        assert 0 < progress[0] < progress[1] < progress[2] < N, progress

        # 4. a fresh consumer finishes the stream
        r = start()
        wait_for(lambda: handled() >= N and len(inbox_ids(db, SERVICE)) >= N, timeout=60,
                 message="the last consumer to finish the stream")
        wait_for(lambda: queue_depth(vhost, sub.queue) == 0, timeout=30,
                 message="the queue to drain")
        assert r.terminate() == 0
    finally:
        for runner in runners:
            runner.ensure_dead()

    rows, distinct = notifications(db)
    ids = inbox_ids(db, SERVICE)
    assert rows == N, f"{rows - N} duplicate side effects" if rows > N else "events lost"
    assert distinct == N
    assert len(ids) == N and set(ids) == {e.id for e in events}
    assert queue_depth(vhost, sub.dlq) == 0

    reports = [runner.last() for runner in runners]
    redelivered = sum(rep.get("redelivered", 0) for rep in reports)
    duplicates = sum(rep.get("duplicate", 0) for rep in reports)
    assert redelivered > 0, reports  # the kills caused redeliveries ...
    assert duplicates > 0, reports  # ... and the batch committed but not acked was skipped
    # the consumer that finished saw the un-acked batch of step 2 again and skipped it
    assert reports[-1]["handled"] + progress[-1] == N, (reports, progress)
