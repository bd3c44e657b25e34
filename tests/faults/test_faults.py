"""Faults, with real processes and nobody stepping in.

Each scenario runs the service as production does: gunicorn, two Celery workers (each with a
beat), a broker and a database, a real receiver behind three hooks, and a CI client reporting
jobs of several pipelines through the commit status API. Mid-stream something breaks: a
worker is SIGKILLed while it sends, Redis restarts (losing every queued message), PostgreSQL
restarts, SQLite's write lock is held by another process. Each ends with every event the API
accepted delivered to every hook, in order per (hook, pipeline), nothing pending or given
up, both workers still running (or the one left), and no hook rested or disabled.

The times to recover are measured, not asserted: set PIPEHOOK_FAULT_REPORT to a file to
collect them (docs/faults.md).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.brokers import forget_broker_connections, publish_to
from tests.faults.harness import (
    REQUEST_TIMEOUT,
    SERVICE_ENV,
    Client,
    Ledger,
    PostgresCluster,
    Traffic,
    WebServer,
    create_admin_token,
    manage,
    postgres_binaries,
    recovery,
    redis_server,
    report,
    service_env,
    wait_until,
)
from tests.hooks.receiver import Receiver, Reply
from tests.hooks.test_e2e import Workers, database_url

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

HOOKS = 3
PIPELINES = 8
OUTAGE_SECONDS = 3
# A receiver that takes a moment to answer keeps requests in flight when the fault hits.
REPLY = Reply(200, delay=0.3)
SETTLE_SECONDS = 90


@dataclass
class Deployment:
    database: str
    broker: str
    queue: str
    web: WebServer
    workers: Workers
    client: Client
    receiver: Receiver
    project_id: int
    ledger: Ledger

    def logs(self) -> str:
        return f"--- web ---\n{self.web.logs()}\n--- workers ---\n{self.workers.logs()}"

    def wait_for_deliveries(self, count: int) -> None:
        wait_until(
            lambda: len(self.receiver.requests) >= count, f"{count} deliveries", 60, self.logs
        )

    def settle(self, traffic: Traffic) -> None:
        traffic.finish()
        wait_until(self.ledger.settled, "every delivery to succeed", SETTLE_SECONDS, self.logs)


@pytest.fixture
def deploy(tmp_path):
    """Start web and two workers on a database and a broker, with a project and its hooks."""
    started: list[Deployment] = []
    receiver = Receiver().start()
    receiver.default = REPLY

    def start(database: str, broker: str, **settings: str) -> Deployment:
        queue = f"pipehook-faults-{uuid.uuid4().hex}"
        env = service_env(database, broker, queue, tmp_path / "web-var") | settings
        token = create_admin_token(env)
        web = WebServer(env, tmp_path)
        workers = Workers(broker, queue, tmp_path, database=database, env=SERVICE_ENV | settings)
        deployment = Deployment(
            database,
            broker,
            queue,
            web,
            workers,
            Client(web.url, token),
            receiver,
            0,
            Ledger(database),
        )
        started.append(deployment)
        workers.start()
        workers.start()
        web.start()
        project = deployment.client.call("POST", "/projects", json={"name": "Faults"})
        assert project.status_code == 201, project.text
        deployment.project_id = project.json()["id"]
        for number in range(1, HOOKS + 1):
            hook = deployment.client.call(
                "POST",
                f"/projects/{deployment.project_id}/hooks",
                json={"url": f"{receiver.url}?hook={number}", "pipeline_events": True},
            )
            assert hook.status_code == 201, hook.text
        return deployment

    yield start
    for deployment in started:
        deployment.workers.stop_all()
        deployment.web.stop()
    receiver.stop()


def assert_every_event_delivered_in_order(deployment: Deployment) -> None:
    ledger = deployment.ledger
    events = ledger.events()
    assert ledger.delivery_statuses() == {"succeeded": len(events) * HOOKS}
    expected: dict[int, list[str]] = {}
    for _, pipeline_id, status in events:
        expected.setdefault(pipeline_id, []).append(status)
    assert len(expected) == PIPELINES
    assert set(ledger.pipeline_statuses().values()) == {"success"}
    # The first arrival of each delivery (at-least-once: a retried one may come twice).
    seen: set[str] = set()
    arrived: dict[tuple[str, int], list[str]] = {}
    for request in deployment.receiver.requests:
        key = request.header("Idempotency-Key")
        if key in seen:
            continue
        seen.add(key)
        attributes = json.loads(request.body)["object_attributes"]
        arrived.setdefault((request.path, attributes["id"]), []).append(attributes["status"])
    assert len(seen) == len(events) * HOOKS
    for number in range(1, HOOKS + 1):
        for pipeline_id, statuses in expected.items():
            assert arrived[(f"/hook?hook={number}", pipeline_id)] == statuses, (number, pipeline_id)
    assert statuses[-1] == "success"
    assert ledger.unhealthy_hooks() == []


def assert_only_accepted_or_unavailable(client: Client) -> None:
    """The CI client met no error but 503 (never a 500, an HTML page or a hang), and each 503
    said when to come back, in JSON."""
    assert {answer.status for answer in client.answers} <= {200, 201, 503}
    for answer in client.unavailable():
        assert answer.retry_after == "5"
        assert json.loads(answer.body)["message"].startswith("503 Service Unavailable")


def alive(workers: Workers) -> list[bool]:
    return [process.poll() is None for process in workers.processes]


def assert_recovered_from_database_outage(deployment: Deployment, traffic: Traffic) -> None:
    """Everything delivered, and the CI client was told 503 while the database was away."""
    deployment.settle(traffic)
    assert alive(deployment.workers) == [True, True], deployment.logs()
    assert_every_event_delivered_in_order(deployment)
    assert deployment.client.unavailable(), "no request met the database unavailable"
    assert_only_accepted_or_unavailable(deployment.client)


# --- A worker dies -----------------------------------------------------------------------------


def socket_owner(port: int, workers: Workers):
    """The worker process holding the client side of a TCP connection from ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for process in workers.processes:
        for fd in Path(f"/proc/{process.pid}/fd").iterdir():
            try:
                if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes:
                    return process
            except OSError:
                continue
    return None


def test_a_worker_killed_mid_send_loses_nothing(deploy, transactional_db, broker_url):
    deployment = deploy(database_url(), broker_url)
    traffic = Traffic(deployment.client, deployment.project_id, PIPELINES, pause=0.1)
    traffic.start()
    deployment.wait_for_deliveries(6)

    def sending_worker():
        for request in deployment.receiver.requests:
            owner = None
            if request.answered_at is None:
                owner = socket_owner(request.client_port, deployment.workers)
            if owner is not None:
                return owner
        return None

    wait_until(lambda: sending_worker() is not None, "a worker in mid-send", 30, deployment.logs)
    victim = sending_worker()
    deployment.workers.kill(victim)
    killed_at = time.monotonic()

    deployment.settle(traffic)
    assert_every_event_delivered_in_order(deployment)
    # The attempt it left without an answer was taken back and the delivery sent again.
    assert any("worker stopped" in error for error in deployment.ledger.attempt_errors())
    survivor = [p for p in deployment.workers.processes if p is not victim]
    assert [p.poll() for p in survivor] == [None]
    assert_only_accepted_or_unavailable(deployment.client)
    report("worker SIGKILLed mid-send", recovery(deployment.ledger, deployment.receiver, killed_at))


# --- The broker restarts -----------------------------------------------------------------------


@pytest.mark.parametrize("unix_socket", [False, True], ids=["redis-tcp", "embedded-redis-socket"])
def test_redis_restarted_mid_batch_loses_nothing(deploy, transactional_db, tmp_path, unix_socket):
    redis = redis_server(tmp_path, unix_socket=unix_socket)
    redis.start()
    try:
        # A lease far longer than the test: a delivery whose message was lost with Redis is
        # sent only if the service notices by itself, not when the lease runs out. Workers
        # reserve one message per thread, so the rest wait in Redis, and are lost with it.
        deployment = deploy(
            database_url(),
            redis.url,
            HOOKS_CLAIM_LEASE_SECONDS="600",
            CELERY_WORKER_PREFETCH_MULTIPLIER="1",
        )
        deployment.receiver.default = Reply(200, delay=1.0)  # the workers fall behind
        traffic = Traffic(deployment.client, deployment.project_id, PIPELINES, pause=0.2)
        traffic.start()
        # Twice: whether a worker is caught mid-poll (where Celery 5.7.0 crashed) is chance.
        backs: list[float] = []

        def first_restart_due() -> bool:
            # Best with messages waiting in Redis (they are lost with it); whether any wait
            # depends on how fast the workers drain, so a finished stream restarts it anyway.
            if traffic.error is not None:
                raise traffic.error
            waiting = redis.client().llen(deployment.queue) > 0
            return traffic.accepted >= 5 and (waiting or not traffic.is_alive())

        def second_restart_due() -> bool:
            # Deliveries flow again; or, if the stream was over and delivered by the first
            # restart, nothing will: restart anyway.
            flowing = any(r.received_at > backs[-1] for r in deployment.receiver.requests)
            return flowing or (not traffic.is_alive() and deployment.ledger.settled())

        for due in (first_restart_due, second_restart_due):
            wait_until(due, due.__name__, 90, deployment.logs)
            redis.stop()  # every queued and unacknowledged message goes with it
            time.sleep(OUTAGE_SECONDS)
            redis.start()
            backs.append(time.monotonic())
        deployment.receiver.default = REPLY

        deployment.settle(traffic)
        assert alive(deployment.workers) == [True, True], deployment.logs()
        assert_every_event_delivered_in_order(deployment)
        # The broker being down fails no request: the rows are written, the sweeper queues.
        assert {answer.status for answer in deployment.client.answers} == {201}
        name = "embedded Redis (unix socket) restarted" if unix_socket else "Redis restarted"
        for back in backs:
            report(name, recovery(deployment.ledger, deployment.receiver, back))
    finally:
        redis.stop()


# --- The database restarts or is locked --------------------------------------------------------


@pytest.fixture
def postgres_cluster():
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root with no 'postgres' user to run PostgreSQL as")
    cluster = PostgresCluster(binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def migrated(database: str, tmp_path: Path) -> str:
    manage(service_env(database, "redis://unused", "unused", tmp_path / "var"), "migrate", "-v0")
    return database


def answers_of_every_edge(deployment: Deployment) -> dict[str, requests.Response]:
    """One request to each API, as its clients send them."""
    base, token = deployment.web.url, deployment.client.token
    # A whole run, so that answering it takes the database (a token seen in the last seconds
    # is known without it, and a refused body needs none).
    sei_run = {
        "pipeline": "deploy",
        "job_full_name": "deploy",
        "qualified_name": "deploy",
        "instance_name": "Jenkins-1",
        "instance_guid": "89d2491c-764a-4f77-93d9-18e8e372b795",
        "start_time": 1711603545000,
        "duration": 1000,
        "result": "SUCCESS",
    }
    graphql = {"query": '{ applicationByName(name: "faults/faults") { id } }'}
    calls = {
        "gitlab": ("GET", "/api/v4/projects", {"headers": {"PRIVATE-TOKEN": token}}),
        "sei": (
            "POST",
            "/sei/api/v1/custom-cicd",
            {"headers": {"Authorization": f"ApiKey {token}"}, "json": sei_run},
        ),
        "distelli": ("GET", f"/distelli/faults/apps/faults/events?apiToken={token}", {}),
        "graphql": ("POST", "/api/graphql", {"headers": {"x-api-key": token}, "json": graphql}),
    }
    return {
        edge: requests.request(method, base + path, timeout=REQUEST_TIMEOUT, **options)
        for edge, (method, path, options) in calls.items()
    }


def in_flight_since(receiver: Receiver, since: float) -> bool:
    return any(r.answered_at is None and r.received_at > since for r in receiver.requests)


def test_postgresql_restarted_loses_nothing(deploy, postgres_cluster, broker_url, tmp_path):
    database = migrated(postgres_cluster.create_database("pipehook"), tmp_path)
    # Claims outlast the outage, so the batch out when the database goes keeps its claim.
    deployment = deploy(database, broker_url, HOOKS_CLAIM_LEASE_SECONDS="15")
    traffic = Traffic(deployment.client, deployment.project_id, PIPELINES, pause=0.1)
    traffic.start()
    deployment.wait_for_deliveries(6)
    # Requests are out, their answers still to come, when the database goes away.
    deployment.receiver.default = Reply(200, delay=1.5)
    slow_from = time.monotonic()
    wait_until(
        lambda: in_flight_since(deployment.receiver, slow_from), "a batch out", 30, deployment.logs
    )
    postgres_cluster.stop()
    deployment.receiver.default = REPLY
    down = answers_of_every_edge(deployment)
    time.sleep(OUTAGE_SECONDS)
    postgres_cluster.start()
    back = time.monotonic()

    assert_recovered_from_database_outage(deployment, traffic)
    # The batch that was out recorded its results once the database was back: nothing was
    # taken back after its lease, nothing was sent twice.
    logs = "".join(path.read_text() for path in deployment.workers.directory.glob("worker*.log"))
    assert "Could not record delivery results" in logs
    assert not [e for e in deployment.ledger.attempt_errors() if "worker stopped" in e]
    keys = [r.header("Idempotency-Key") for r in deployment.receiver.requests]
    assert len(keys) == len(set(keys))
    # Every API said "come back later", in its own shape.
    for edge, answer in down.items():
        assert answer.status_code == 503, (edge, answer.status_code, answer.text[:300])
        assert answer.headers["Retry-After"] == "5", edge
    for edge in ("gitlab", "sei", "distelli"):
        assert down[edge].json()["message"].startswith("503 Service Unavailable"), edge
    [error] = down["graphql"].json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    figures = recovery(deployment.ledger, deployment.receiver, back)
    figures["answered_503"] = len(deployment.client.unavailable())
    report("PostgreSQL restarted", figures)


def test_sqlite_locked_by_another_process_loses_nothing(deploy, broker_url, tmp_path):
    path = tmp_path / "pipehook.sqlite3"
    database = migrated(f"sqlite:///{path}", tmp_path)
    deployment = deploy(database, broker_url)
    traffic = Traffic(deployment.client, deployment.project_id, PIPELINES, pause=0.1)
    traffic.start()
    deployment.wait_for_deliveries(6)
    # Another process (a maintenance script, say) holds the write lock longer than the
    # service's busy timeout: its writes fail until the lock is let go.
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    time.sleep(OUTAGE_SECONDS)
    locker.execute("ROLLBACK")
    locker.close()
    back = time.monotonic()

    assert_recovered_from_database_outage(deployment, traffic)
    figures = recovery(deployment.ledger, deployment.receiver, back)
    report(
        "SQLite write lock held", figures | {"answered_503": len(deployment.client.unavailable())}
    )


# --- The broker stops answering ----------------------------------------------------------------


def test_a_broker_that_stops_answering_holds_no_request(
    transactional_db, settings, monkeypatch, tmp_path
):
    """Redis hung (or a dropped NAT entry): connections open, nothing answers. The change is
    committed, the publish after it gives up, and the sweeper's next run will queue it."""
    from django.db import connection

    from hooks.models import Delivery
    from pipelines import services
    from tests.factories import HookFactory, ProjectFactory

    redis = redis_server(tmp_path)
    redis.start()
    os.kill(redis.process.pid, signal.SIGSTOP)
    publish_to(redis.url, settings, monkeypatch)
    project = ProjectFactory()
    HookFactory(project=project, url="http://127.0.0.1:9/hook")
    done = threading.Event()

    def report_a_pipeline() -> None:
        try:
            services.create_pipeline(project, ref="main", sha="a" * 40)  # publishes on commit
            done.set()
        finally:
            connection.close()

    try:
        worker = threading.Thread(target=report_a_pipeline, daemon=True)
        worker.start()
        worker.join(REQUEST_TIMEOUT)
        assert done.is_set(), "the commit's publish is still waiting for the broker"
        [delivery] = Delivery.objects.all()
        assert delivery.queued_until is None  # no message out: the next sweep queues it
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
        redis.stop()
        forget_broker_connections()
