"""End to end: a receiver that goes down during a burst, comes back failing in every way a
receiver fails (500, a timeout, 429), then recovers. Real Celery workers against a real
broker, real receivers on 127.0.0.1, and nobody re-enabling anything.

GitLab's rests are scaled down (HOOKS_BACKOFF_BASE_SECONDS) so the whole outage takes
seconds; the rules are the ones production runs.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict

import pytest

from hooks.models import Delivery, DeliveryAttempt, Hook
from tests.factories import HookFactory
from tests.hooks import test_e2e
from tests.hooks.receiver import Receiver, Reply
from tests.hooks.test_e2e import drive_pipeline_to_success, first_of_each, statuses, wait_until

# The workers and broker of the other end-to-end tests.
broker_url = test_e2e.broker_url
workers = test_e2e.workers

pytestmark = pytest.mark.e2e

BACKOFF_BASE_SECONDS = 0.25
PIPELINES = 20
HOOKS = 2
# Failed attempts counted before the receiver comes back: the hooks have rested and been
# probed a few times by then.
FAILURES_WHILE_DOWN = 6


@pytest.fixture
def outage_workers(workers, monkeypatch):
    env = test_e2e.WORKER_ENV
    monkeypatch.setitem(env, "HOOKS_BACKOFF_BASE_SECONDS", str(BACKOFF_BASE_SECONDS))
    # Enough attempts that no event is given up during the outage.
    monkeypatch.setitem(env, "HOOKS_RETRY_SCHEDULE", ",".join(["0"] + ["1"] * 15))
    return workers


class HealthWatch:
    """Polls the hooks' health in the background and keeps the worst it saw."""

    def __init__(self, hook_ids: list[int]):
        self.hook_ids = hook_ids
        self.worst_failures = 0
        self.ever_disabled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(0.05):
                for failures, disabled in Hook.objects.filter(pk__in=self.hook_ids).values_list(
                    "recent_failures", "permanently_disabled"
                ):
                    self.worst_failures = max(self.worst_failures, failures)
                    self.ever_disabled |= disabled
        finally:
            connection.close()


def outage_report(receivers: list[Receiver]) -> str:
    """What the hooks, deliveries and receivers looked like when the test gave up."""
    lines = [f"hook {row}" for row in Hook.objects.values_list("pk", "recent_failures")]
    lines += [f"requests received: {[len(r.requests) for r in receivers]}"]
    statuses_now = Delivery.objects.values_list("status", flat=True)
    lines += [f"deliveries: {sorted(statuses_now)}"]
    lines += [f"attempts: {DeliveryAttempt.objects.count()}"]
    last = DeliveryAttempt.objects.order_by("-pk")[:6]
    lines += [
        f"attempt {a.pk} at {a.created_at:%H:%M:%S.%f}: {a.url} {a.response_status} {a.error}"
        for a in last
    ]
    return "\n".join(lines)


def test_a_receiver_down_then_failing_then_back_gets_everything_in_order(project, outage_workers):
    pool = outage_workers
    receivers = [Receiver().start() for _ in range(HOOKS)]
    ports = [receiver.port for receiver in receivers]
    hooks = [HookFactory(project=project, url=receiver.url) for receiver in receivers]
    for receiver in receivers:
        receiver.stop()  # down: every connection is refused
    pool.start()
    pool.start()
    try:
        with HealthWatch([hook.pk for hook in hooks]) as watch:
            # The burst: every pipeline runs while the receivers are down.
            for _ in range(PIPELINES):
                drive_pipeline_to_success(project)
            for hook in hooks:
                wait_until(
                    lambda hook=hook: (
                        Hook.objects.get(pk=hook.pk).recent_failures >= FAILURES_WHILE_DOWN
                    ),
                    pool,
                    f"hook {hook.pk} to fail {FAILURES_WHILE_DOWN} times",
                )

            # Back, but failing: a 500, a timeout (longer than the workers' 2 s), a 429;
            # then healthy.
            script = [
                Reply(500),
                Reply(200, delay=2.5),
                Reply(429, headers={"Retry-After": "1"}),
            ]
            for receiver, port in zip(receivers, ports, strict=True):
                receiver.script(*script)
                receiver.start(port)

            try:
                wait_until(
                    lambda: not Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED).exists(),
                    pool,
                    "every delivery to succeed",
                    timeout=240,
                )
            except AssertionError as timed_out:
                raise AssertionError(f"{timed_out}\n{outage_report(receivers)}") from None
    finally:
        for receiver in receivers:
            receiver.stop()

    assert Delivery.objects.count() == HOOKS * PIPELINES * 4
    assert not watch.ever_disabled and watch.worst_failures < 40
    for hook, receiver in zip(hooks, receivers, strict=True):
        hook.refresh_from_db()
        assert (hook.recent_failures, hook.disabled_until, hook.permanently_disabled) == (
            0,
            None,
            False,
        )
        by_pipeline = defaultdict(list)
        for request in first_of_each(receiver.requests):
            by_pipeline[json.loads(request.body)["object_attributes"]["id"]].append(request)
        assert len(by_pipeline) == PIPELINES
        for requests in by_pipeline.values():
            assert statuses(requests) == ["created", "pending", "running", "success"]
        # While it failed after coming back, the hook was sent one probe at a time, each a
        # rest after the one before: never its backlog at once.
        first = receiver.requests[: len(script) + 1]
        gaps = [b.received_at - a.received_at for a, b in zip(first, first[1:], strict=False)]
        assert min(gaps) >= BACKOFF_BASE_SECONDS, gaps
    # Nobody stepped in: every request was a scheduled attempt.
    triggers = set(DeliveryAttempt.objects.values_list("trigger", flat=True))
    assert triggers == {DeliveryAttempt.Trigger.SCHEDULED}
