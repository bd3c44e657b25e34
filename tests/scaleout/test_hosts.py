"""Separate hosts: PostgreSQL and the broker on one, the web server and beat on another, a
worker on each of two more, every host a network namespace of its own (tests/scaleout/lab.py).

A CI client reports pipelines through the API on the web host; the receiver listens on the
lab's gateway. Mid-send, one worker host is cut off (its interface down), then its processes
are killed: nothing it had out can tell anyone. Then every accepted event is delivered to
every hook, in order per (hook, pipeline); after the cut only the other worker sends; the
cut host's claims come back once their lease ran out; and no attempt reaches the receiver
twice, nor a delivery twice unless the attempt before had outlived its lease.

The broker is the suite's kind (tests/brokers.py): RabbitMQ when CELERY_BROKER_URL is
amqp://, else Redis; either way a server of the test's own on the database host. Needs
root (network namespaces), PostgreSQL's server binaries and, on RabbitMQ, its server; where
one is missing the test is skipped, saying which.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
import redis

from pipelines.management import embedded_redis
from pipelines.management.embedded_redis import EmbeddedRedis
from tests.brokers import RabbitMQNode, free_port, is_rabbitmq
from tests.faults.harness import (
    SERVICE_ENV,
    Client,
    Ledger,
    PostgresCluster,
    Traffic,
    WebServer,
    create_admin_token,
    postgres_binaries,
    recovery,
    report,
    service_env,
    wait_until,
    wall_clock,
)
from tests.faults.test_faults import (
    HOOKS,
    PIPELINES,
    Deployment,
    assert_every_event_delivered_in_order,
    migrated,
)
from tests.hooks.receiver import Receiver, Reply
from tests.hooks.test_e2e import ROOT, Workers
from tests.scaleout.lab import NETWORKS, Host, Lab

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.other_hosts(NETWORKS)]

BROKER = "rabbitmq" if is_rabbitmq(os.environ.get("CELERY_BROKER_URL", "")) else "redis"
LEASE_SECONDS = 5
# A session idle in a transaction on the cut host holds its row locks until the server ends
# it; scaled down as the lease is.
IDLE_IN_TRANSACTION_SECONDS = 5
TAKEN_BACK = "No result: the worker stopped"


def required() -> str | None:
    """What this machine lacks to run the test, or None."""
    if why := Lab.unavailable():
        return why
    if postgres_binaries() is None:
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no 'postgres' user to run PostgreSQL as"
    if BROKER == "rabbitmq":
        return RabbitMQNode.available()
    return None


@pytest.fixture
def lab():
    if why := required():
        pytest.skip(why)
    network = Lab()
    try:
        yield network.start()
    finally:
        network.remove()


class HostRedis(EmbeddedRedis):
    """The embedded Redis on a lab host: started there, listening on the host's address."""

    def __init__(self, directory, host: Host):
        super().__init__(directory, port=free_port(), log=directory / "redis.log")
        self.host = host

    @property
    def url(self) -> str:
        return f"redis://{self.host.address}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host.address, port=self.port, socket_timeout=1)

    def start(self, timeout: float = 15.0) -> None:
        argv = embedded_redis.command(self.directory, port=self.port)
        argv[argv.index("--bind") + 1] = self.host.address
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*self.host.run_in, *argv, "--protected-mode", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not embedded_redis.wait_until_answering(self.client(), self.process, timeout):
            self.stop()
            raise RuntimeError(f"the Redis at {self.url} did not start")


def start_broker(kind: str, host: Host, directory):
    directory.mkdir()
    if kind == "rabbitmq":
        broker = RabbitMQNode(directory, host=host.address, run_in=host.run_in)
    else:
        broker = HostRedis(directory, host)
    broker.start()
    return broker


def start_beat(env: dict[str, str], host: Host, directory) -> subprocess.Popen:
    """Celery beat, exactly one for the deployment: the sweeper's clock."""
    log = open(directory / "beat.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [*host.run_in, sys.executable, "-m", "celery", "-A", "config", "beat"]
        + ["--schedule", str(directory / "beat-schedule"), "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def attempts_by_request(ledger: Ledger) -> dict[str, tuple[str, int, object]]:
    """X-Gitlab-Webhook-UUID (one per attempt) -> (Idempotency-Key, attempt number, when the
    attempt was claimed), from the attempts' logged request headers."""
    rows = ledger.rows(
        "SELECT d.idempotency_key, a.attempt_number, a.created_at, a.request_headers "
        "FROM hooks_deliveryattempt a JOIN hooks_delivery d ON d.id = a.delivery_id"
    )
    return {
        headers["X-Gitlab-Webhook-UUID"]: (str(key), number, created)
        for key, number, created, headers in rows
    }


@pytest.mark.parametrize("broker_kind", [BROKER])
def test_a_worker_host_cut_off_mid_send_loses_nothing(lab, tmp_path, broker_kind):
    db_host, web_host, cut_host, kept_host = (
        lab.add_host(name) for name in ("db", "web", "worker1", "worker2")
    )
    cluster = PostgresCluster(
        postgres_binaries(), host=db_host.address, trusted=lab.subnet, run_in=db_host.run_in
    )
    receiver = Receiver(host=lab.gateway).start()
    receiver.default = Reply(200, delay=0.5)  # requests are out when the cut comes
    started: list = []
    try:
        cluster.init()
        cluster.start()
        broker = start_broker(broker_kind, db_host, tmp_path / "broker")
        started.append(broker)
        database = migrated(cluster.create_database("pipehook"), tmp_path)
        queue = f"pipehook-hosts-{uuid.uuid4().hex}"
        settings = {
            "HOOKS_ALLOWED_NETWORKS": lab.subnet,
            "ALLOWED_HOSTS": web_host.address,
            "HOOKS_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "PIPEHOOK_DB_IDLE_IN_TRANSACTION_SECONDS": str(IDLE_IN_TRANSACTION_SECONDS),
        }
        env = service_env(database, broker.url, queue, tmp_path / "web-var") | settings
        token = create_admin_token(env)
        web = WebServer(env, tmp_path, host=web_host.address, run_in=web_host.run_in)
        workers = Workers(
            broker.url, queue, tmp_path, database=database, env=SERVICE_ENV | settings, beat=False
        )
        started += [web, workers]
        cut_worker = workers.start(run_in=cut_host.run_in)
        workers.start(run_in=kept_host.run_in)
        beat = start_beat(env, web_host, tmp_path)
        started.append(beat)
        web.start()
        client = Client(web.url, token)
        deployment = Deployment(
            database, broker.url, queue, web, workers, client, receiver, 0, Ledger(database)
        )
        project = client.call("POST", "/projects", json={"name": "Hosts"})
        assert project.status_code == 201, project.text
        deployment.project_id = project.json()["id"]
        for number in range(1, HOOKS + 1):
            hook = client.call(
                "POST",
                f"/projects/{deployment.project_id}/hooks",
                json={"url": f"{receiver.url}?hook={number}", "pipeline_events": True},
            )
            assert hook.status_code == 201, hook.text

        traffic = Traffic(client, deployment.project_id, PIPELINES, pause=0.1)
        traffic.start()

        def cut_host_mid_send() -> bool:
            return len(receiver.requests) >= 6 and any(
                r.client_host == cut_host.address and r.answered_at is None
                for r in receiver.requests
            )

        wait_until(cut_host_mid_send, "the cut host in mid-send", 60, deployment.logs)
        cut_host.cut()
        cut_at = time.monotonic()
        time.sleep(1)  # cut off, still running...
        workers.kill(cut_worker)  # ...then gone, without a word to anyone
        deployment.settle(traffic)

        # Nothing lost, in order per (hook, pipeline), no hook resting.
        assert_every_event_delivered_in_order(deployment)
        assert beat.poll() is None and workers.processes[1].poll() is None, deployment.logs()
        # The other worker carried the load: after the cut every request came from it.
        after = [r for r in receiver.requests if r.received_at > cut_at + 0.5]
        assert after and {r.client_host for r in after} == {kept_host.address}

        # Each attempt reached the receiver once; a delivery again only after the attempt
        # before it had outlived its lease (the cut host's, taken back by the sweeper).
        attempts = attempts_by_request(deployment.ledger)
        sent = Counter(r.header("X-Gitlab-Webhook-UUID") for r in receiver.requests)
        assert max(sent.values()) == 1
        by_delivery = defaultdict(list)
        for request in receiver.requests:
            key, number, claimed_at = attempts[request.header("X-Gitlab-Webhook-UUID")]
            assert key == request.header("Idempotency-Key")
            by_delivery[key].append((request, number, claimed_at))
        lease = timedelta(seconds=LEASE_SECONDS)
        again = []
        for sends in by_delivery.values():
            assert [number for _, number, _ in sends] == sorted({n for _, n, _ in sends})
            for (_, _, claimed_at), (later, _, _) in zip(sends, sends[1:], strict=False):
                assert wall_clock(later.received_at) >= claimed_at + lease, (claimed_at, later)
                again.append(later)
        # The cut host's claims came back: its unanswered attempts were taken back after
        # their lease and sent again by the other host.
        taken_back = [e for e in deployment.ledger.attempt_errors() if TAKEN_BACK in e]
        assert taken_back, "no claim of the cut host was taken back"
        resent = [r for r in again if r.client_host == kept_host.address]
        assert len(resent) >= len(taken_back)

        figures = recovery(deployment.ledger, receiver, cut_at)
        figures["claims_taken_back"] = len(taken_back)
        figures["claims_back_s"] = round(max(r.received_at for r in resent) - cut_at, 2)
        figures["lease_s"] = LEASE_SECONDS
        report(f"worker host cut off ({broker_kind})", figures)
    finally:
        # Whatever else is left on the hosts goes with the lab.
        for part in reversed(started):
            if isinstance(part, Workers):
                part.stop_all()
            elif isinstance(part, RabbitMQNode):
                part.kill()
            elif isinstance(part, subprocess.Popen):
                part.kill()
                part.wait(timeout=10)
            else:
                part.stop()
        receiver.stop()
        cluster.remove()
