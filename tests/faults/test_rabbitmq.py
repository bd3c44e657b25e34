"""Faults on RabbitMQ: the broker restarted mid-batch, and a broker that stops answering.

Each test starts a RabbitMQ node of its own (tests/brokers.py), never the machine's, and
skips, saying why, where RabbitMQ's server is not installed. Unlike a Redis that saves
nothing, RabbitMQ keeps the durable queue's persistent messages across a restart, and hands
the messages a worker had not acknowledged to the others when the worker's connection
closes; the service must not depend on either: after a restart the workers reconnect,
make the pending deliveries due and the sweeper queues them, as on Redis.
"""

from __future__ import annotations

import threading
import time

import amqp
import pytest

from tests.brokers import RabbitMQNode, forget_broker_connections, publish_to
from tests.faults import test_faults
from tests.faults.harness import REQUEST_TIMEOUT, Traffic, recovery, report, wait_until
from tests.faults.test_faults import (
    OUTAGE_SECONDS,
    PIPELINES,
    REPLY,
    alive,
    assert_every_event_delivered_in_order,
)
from tests.hooks.receiver import Reply
from tests.hooks.test_e2e import database_url

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

# The whole service on a database and a broker, as the other fault tests start it.
deploy = test_faults.deploy


@pytest.fixture
def rabbitmq(tmp_path):
    if why := RabbitMQNode.available():
        pytest.skip(why)
    directory = tmp_path / "rabbitmq"
    directory.mkdir()
    node = RabbitMQNode(directory)
    try:
        node.start()
        yield node
    finally:
        node.kill()


def waiting_messages(node: RabbitMQNode, queue: str) -> int:
    """Messages ready in ``queue`` (none taken by a worker yet)."""
    connection = amqp.Connection(f"{node.host}:{node.port}", connect_timeout=2)
    try:
        connection.connect()
        _, count, _ = connection.channel().queue_declare(queue, passive=True)
        return count
    except amqp.exceptions.NotFound:
        return 0
    finally:
        connection.collect()


def test_rabbitmq_restarted_mid_batch_loses_nothing(deploy, transactional_db, rabbitmq):
    # As for Redis: a lease far longer than the test, so nothing waits for one to run out,
    # and one message reserved per worker thread, so the rest wait in the queue.
    deployment = deploy(
        database_url(),
        rabbitmq.url,
        HOOKS_CLAIM_LEASE_SECONDS="600",
        CELERY_WORKER_PREFETCH_MULTIPLIER="1",
    )
    deployment.receiver.default = Reply(200, delay=1.0)  # the workers fall behind
    traffic = Traffic(deployment.client, deployment.project_id, PIPELINES, pause=0.2)
    traffic.start()
    backs: list[float] = []

    def first_restart_due() -> bool:
        if traffic.error is not None:
            raise traffic.error
        waiting = waiting_messages(rabbitmq, deployment.queue) > 0
        return traffic.accepted >= 5 and (waiting or not traffic.is_alive())

    def second_restart_due() -> bool:
        # Deliveries flow again; or, if the stream was over and delivered by the first
        # restart, nothing will: restart anyway.
        flowing = any(r.received_at > backs[-1] for r in deployment.receiver.requests)
        return flowing or (not traffic.is_alive() and deployment.ledger.settled())

    for due in (first_restart_due, second_restart_due):
        wait_until(due, due.__name__, 90, deployment.logs)
        rabbitmq.stop()  # every connection closed, as a service restart does
        time.sleep(OUTAGE_SECONDS)
        rabbitmq.start()
        backs.append(time.monotonic())
    deployment.receiver.default = REPLY

    deployment.settle(traffic)
    assert alive(deployment.workers) == [True, True], deployment.logs()
    assert_every_event_delivered_in_order(deployment)
    # The broker being down fails no request: the rows are written, the sweeper queues.
    assert {answer.status for answer in deployment.client.answers} == {201}
    for back in backs:
        report("RabbitMQ restarted", recovery(deployment.ledger, deployment.receiver, back))


def test_a_rabbitmq_that_stops_answering_holds_no_request(
    transactional_db, settings, monkeypatch, rabbitmq
):
    """RabbitMQ hung (or cut off): connections stay open, nothing answers. The commit's publish
    waits for the broker's confirm no longer than the broker timeout, and says it failed, so
    the next sweep queues the delivery instead of its lease running out first."""
    import os
    import signal

    from django.db import connection

    from config import settings as pipehook_settings
    from hooks.models import Delivery
    from pipelines import services
    from tests.factories import HookFactory, ProjectFactory

    publish_to(rabbitmq.url, settings, monkeypatch)
    settings.CELERY_TASK_DEFAULT_QUEUE = "pipehook-hung"
    project = ProjectFactory()
    HookFactory(project=project, url="http://127.0.0.1:9/hook")

    def report_a_pipeline(done: threading.Event) -> None:
        try:
            services.create_pipeline(project, ref="main", sha="a" * 40)  # publishes on commit
            done.set()
        finally:
            connection.close()

    def timed_report() -> float:
        done = threading.Event()
        started = time.monotonic()
        worker = threading.Thread(target=report_a_pipeline, args=(done,), daemon=True)
        worker.start()
        worker.join(REQUEST_TIMEOUT)
        assert done.is_set(), "the commit's publish is still waiting for the broker"
        return time.monotonic() - started

    try:
        timed_report()  # answered: the producer pool now holds a connection to the node
        [answered] = Delivery.objects.all()
        assert answered.queued_until is not None  # confirmed: its message is out

        os.killpg(rabbitmq.process.pid, signal.SIGSTOP)
        seconds = timed_report()
        stopped = Delivery.objects.exclude(pk=answered.pk).get()
        # No confirm came: the publish failed and said so, after three broker timeouts (the
        # confirm, then the retry's connect and its handshake), not never.
        assert stopped.queued_until is None
        assert seconds < 3 * pipehook_settings.PIPEHOOK_BROKER_TIMEOUT_SECONDS + 3, seconds
        report("RabbitMQ stopped answering", {"request_seconds": round(seconds, 2)})
    finally:
        os.killpg(rabbitmq.process.pid, signal.SIGCONT)
        forget_broker_connections()
