"""A whole deployment in real processes, and the faults done to it.

A web server (gunicorn, as in production), Celery workers with their beat, a Redis or a
PostgreSQL cluster the test starts on its own port (or socket) so it may stop them, a real
HTTP receiver, and a CI client reporting commit statuses through the API the way CI systems
do, retrying what the service answers 503. The ``Ledger`` reads the database directly with
the driver, so it works whatever database the deployment runs on.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import environ
import psycopg
import requests
from django.conf import settings

from pipelines.management.embedded_redis import EmbeddedRedis
from tests.brokers import broker_env
from tests.hooks.test_e2e import ROOT, WORKER_ENV

# What the web and the workers share: the workers' short schedule and lease, and a write
# lock wait short enough that a held SQLite lock fails requests and tasks within seconds.
SERVICE_ENV = WORKER_ENV | {
    "SQLITE_BUSY_TIMEOUT_SECONDS": "1",
    "PIPEHOOK_BROKER_TIMEOUT_SECONDS": "2",
    "LOG_LEVEL": "WARNING",
}
REQUEST_TIMEOUT = 30  # a request that takes longer than this is a hang
ADMIN_TOKEN_SCRIPT = """
from django.contrib.auth import get_user_model
from pipelines import auth
user = get_user_model().objects.create_superuser("faults", "faults@example.com", None)
print(auth.create_token(user, scopes=["api"], name="faults")[1])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, what: str, timeout: float, logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs()}")
        time.sleep(0.1)


def service_env(database: str, broker: str, queue: str, var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PIPEHOOK_TEST_DB"}
    return (
        env
        | SERVICE_ENV
        | {
            "DATABASE_URL": database,
            **broker_env(broker),
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "PIPEHOOK_VAR_DIR": str(var_dir),
            # One deployment, one set of keys (the workers' are this process's too).
            "PIPEHOOK_ENCRYPTION_KEYS": ",".join(settings.PIPEHOOK_ENCRYPTION_KEYS),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def create_admin_token(env: dict[str, str]) -> str:
    """A token of a superuser in the deployment's database, made by its own code."""
    return manage(env, "shell", "-c", ADMIN_TOKEN_SCRIPT).strip().splitlines()[-1]


# --- Brokers and databases the test may stop -------------------------------------------------


def redis_server(directory: Path, *, unix_socket: bool = False) -> EmbeddedRedis:
    """The embedded Redis, on a TCP port of its own or on a unix socket (as the embedded
    default runs), logging to redis.log. Nothing is saved: a restart loses every queued
    message."""
    port = 0 if unix_socket else free_port()
    return EmbeddedRedis(directory, port=port, log=directory / "redis.log")


def postgres_binaries() -> Path | None:
    for candidate in [
        shutil.which("pg_ctl"),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")),
    ]:
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent
    return None


class PostgresCluster:
    """A PostgreSQL cluster of the test's own (initdb, its own port), to stop and start.
    PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` user.
    ``run_in`` prefixes its commands (``ip netns exec <ns>``: another host); it listens on
    ``host`` and trusts the clients in ``trusted`` (a CIDR) besides the local ones."""

    def __init__(
        self,
        binaries: Path,
        *,
        host: str = "127.0.0.1",
        trusted: str | None = None,
        run_in: list[str] = (),
    ):
        self.binaries = binaries
        self.port = free_port()
        self.host = host
        self.trusted = trusted
        self.run_in = list(run_in)
        # Not under pytest's tmp_path: the server's user must be able to reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="pipehook-faults-pg-"))
        self.data = self.directory / "data"
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self.run_in, *self.run_as, str(self.binaries / command[0]), *command[1:]],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        if self.trusted:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.trusted} trust\n")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses={self.host} -k {self.directory} -c fsync=off"
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """As ``systemctl restart`` does: connections are cut, the server shuts down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{name}"

    def remove(self) -> None:
        with_status = subprocess.run(
            [
                *self.run_in,
                *self.run_as,
                str(self.binaries / "pg_ctl"),
                "-D",
                str(self.data),
                "status",
            ],
            capture_output=True,
        )
        if with_status.returncode == 0:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


# --- The service -------------------------------------------------------------------------------


class WebServer:
    """gunicorn serving the application, as the production section runs it; on ``host``,
    with ``run_in`` before its command (``ip netns exec <ns>``: another host)."""

    def __init__(
        self,
        env: dict[str, str],
        directory: Path,
        *,
        host: str = "127.0.0.1",
        run_in: list[str] = (),
    ):
        self.env = env
        self.port = free_port()
        self.host = host
        self.run_in = list(run_in)
        self.log = directory / "web.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.run_in,
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi",
                    "--bind",
                    f"{self.host}:{self.port}",
                    "--workers",
                    "1",
                    "--threads",
                    "8",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def healthy() -> bool:
            assert self.process.poll() is None, self.logs()
            try:
                return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, "the web server", 60, self.logs)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@dataclass
class Answer:
    status: int
    at: float  # time.monotonic() when it arrived
    seconds: float  # how long the request took
    body: str
    retry_after: str | None


@dataclass
class Client:
    """A CI system reporting through GitLab's commit status API; a 503 is tried again after a
    moment (sooner than its Retry-After, to keep the test short)."""

    base: str
    token: str
    answers: list[Answer] = field(default_factory=list)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        while True:
            started = time.monotonic()
            response = requests.request(
                method,
                f"{self.base}/api/v4{path}",
                headers={"PRIVATE-TOKEN": self.token},
                timeout=REQUEST_TIMEOUT,
                **kwargs,
            )
            self.answers.append(
                Answer(
                    response.status_code,
                    time.monotonic(),
                    time.monotonic() - started,
                    response.text,
                    response.headers.get("Retry-After"),
                )
            )
            if response.status_code != 503:
                return response
            time.sleep(0.3)

    def unavailable(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status == 503]


class Traffic(threading.Thread):
    """``pipelines`` pipelines, each a job going pending, running, success, reported one
    status at a time across all of them, ``pause`` seconds apart, so that the fault lands
    in the middle of the stream."""

    STATES = ("pending", "running", "success")

    def __init__(self, client: Client, project_id: int, pipelines: int, pause: float):
        super().__init__(daemon=True)
        self.client = client
        self.project_id = project_id
        self.shas = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(pipelines)]
        self.pause = pause
        self.error: BaseException | None = None
        self.accepted = 0

    def run(self) -> None:
        try:
            for state in self.STATES:
                for sha in self.shas:
                    self.report(sha, state)
                    self.accepted += 1
                    time.sleep(self.pause)
        except BaseException as error:  # reported by finish()
            self.error = error

    def report(self, sha: str, state: str) -> None:
        tried_before = len(self.client.answers)
        response = self.client.call(
            "POST",
            f"/projects/{self.project_id}/statuses/{sha}",
            data={"state": state, "name": "build", "ref": "main"},
        )
        if response.status_code == 201:
            return
        # The one window no server closes: the database applied the COMMIT, and the
        # connection died before saying so, so the attempt was answered 503 although its
        # status was recorded. The next attempt then finds that state (moving pending to
        # pending is refused with a 400). A CI client that had a 503 checks what the
        # commit's statuses say: if the job is in the state it posted, its report was
        # accepted; anything else is a real refusal.
        had_503 = any(a.status == 503 for a in self.client.answers[tried_before:])
        assert had_503, (response.status_code, response.text)
        statuses = self.client.call(
            "GET",
            f"/projects/{self.project_id}/repository/commits/{sha}/statuses",
            params={"name": "build", "ref": "main"},
        )
        assert statuses.status_code == 200, (statuses.status_code, statuses.text)
        recorded = [job["status"] for job in statuses.json()]
        assert recorded == [state], (response.status_code, response.text, recorded)

    def finish(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the CI client did not finish"
        if self.error is not None:
            raise self.error


# --- What the database says -----------------------------------------------------------------


def _utc(value) -> datetime:
    if isinstance(value, str):  # SQLite keeps naive UTC text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Ledger:
    """Plain queries on the deployment's tables, through the database's own driver."""

    def __init__(self, database: str):
        self.config = environ.Env.db_url_config(database)

    def rows(self, sql: str) -> list[tuple]:
        if self.config["ENGINE"].endswith("sqlite3"):
            with sqlite3.connect(self.config["NAME"], timeout=30) as db:
                return db.execute(sql).fetchall()
        with psycopg.connect(
            host=self.config["HOST"] or "127.0.0.1",
            port=self.config["PORT"] or 5432,
            user=self.config["USER"],
            password=self.config["PASSWORD"] or None,
            dbname=self.config["NAME"],
            connect_timeout=5,
        ) as db:
            return db.execute(sql).fetchall()

    def delivery_statuses(self) -> Counter:
        return Counter(
            dict(self.rows("SELECT status, COUNT(*) FROM hooks_delivery GROUP BY status"))
        )

    def events(self) -> list[tuple[int, int, str]]:
        """(id, pipeline id, status), oldest first."""
        return self.rows("SELECT id, pipeline_id, status FROM hooks_event ORDER BY id")

    def deliveries_created(self) -> list[tuple[str, datetime]]:
        """(Idempotency-Key, when the delivery was written)."""
        return [
            (str(uuid.UUID(str(key))), _utc(created))
            for key, created in self.rows("SELECT idempotency_key, created_at FROM hooks_delivery")
        ]

    def pipeline_statuses(self) -> dict[int, str]:
        return dict(self.rows("SELECT id, status FROM pipelines_pipeline"))

    def unhealthy_hooks(self) -> list[tuple]:
        return self.rows(
            "SELECT id, recent_failures, disabled_until, permanently_disabled FROM hooks_hook "
            "WHERE recent_failures > 0 OR disabled_until IS NOT NULL OR permanently_disabled"
        )

    def attempt_errors(self) -> list[str]:
        return [error for (error,) in self.rows("SELECT error FROM hooks_deliveryattempt") if error]

    def settled(self) -> bool:
        """Every delivery of every event written: none pending, sending or given up."""
        statuses = self.delivery_statuses()
        return bool(statuses) and set(statuses) == {"succeeded"}


# --- Measuring -------------------------------------------------------------------------------


def wall_clock(monotonic: float) -> datetime:
    return datetime.fromtimestamp(time.time() - (time.monotonic() - monotonic), UTC)


def recovery(ledger: Ledger, receiver, back: float) -> dict:
    """From the moment the faulty part was back (``back``, monotonic): how long until the
    first delivery never sent before arrived, and until every delivery written by then had
    arrived at least once."""
    first_arrival: dict[str, float] = {}
    for request in receiver.requests:
        first_arrival.setdefault(request.header("Idempotency-Key"), request.received_at)
    back_at = wall_clock(back)
    waiting = [key for key, created in ledger.deliveries_created() if created <= back_at]
    backlog = [first_arrival[key] for key in waiting if first_arrival[key] > back]
    new = [at for at in first_arrival.values() if at > back]
    return {
        "first_new_delivery_s": round(min(new) - back, 2) if new else None,
        "backlog_deliveries": len(backlog),
        "backlog_delivered_s": round(max(backlog) - back, 2) if backlog else 0.0,
    }


def report(name: str, figures: dict) -> None:
    """Append the figures to PIPEHOOK_FAULT_REPORT (JSON lines) when set; print them."""
    line = json.dumps({"scenario": name, **figures})
    print(line)
    if path := os.environ.get("PIPEHOOK_FAULT_REPORT"):
        with open(path, "a") as out:
            out.write(line + "\n")
