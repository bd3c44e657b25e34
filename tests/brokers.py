"""The brokers tests run real workers on: Redis (REDIS_URL, or an embedded one) or RabbitMQ
(CELERY_BROKER_URL=amqp://…), and RabbitMQ nodes of a test's own, to restart.

The suite runs on the broker the environment names, as it runs on the database it names:
CELERY_BROKER_URL when set, else REDIS_URL, else an embedded Redis. On a RabbitMQ on this
machine each test session gets a vhost of its own (``rabbitmqctl add_vhost``), removed at the
end with every queue and exchange the tests declared.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import amqp

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
# rabbitmqctl's own Erlang node listens on the server's distribution port + 10000..10010
# (35672-35682 for a default server): ports a test node must not take.
CLI_PORTS = range(35672, 35683)


def is_rabbitmq(url: str) -> bool:
    return url.startswith(("amqp", "pyamqp"))


def broker_env(url: str) -> dict[str, str]:
    """The environment that puts a process on this broker. Redis is also the rate limits'
    cache; with RabbitMQ that stays what the environment says."""
    return {"CELERY_BROKER_URL": url} | ({} if is_rabbitmq(url) else {"REDIS_URL": url})


def publish_to(url: str, settings, monkeypatch) -> None:
    """Make this process publish to the broker at ``url``, with the transport options the
    service would use there. Celery takes the CELERY_BROKER_URL environment variable over any
    setting, so that is changed too; the app's pooled connections and producers, bound to
    whichever broker sent first, are dropped."""
    from config import settings as pipehook_settings

    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = pipehook_settings.broker_transport_options(url)
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    forget_broker_connections()


def forget_broker_connections() -> None:
    from config.celery import app as celery_app

    celery_app.close()
    # close() keeps the producer pool, bound to the broker of whichever test first sent a
    # task: messages would go there (or wait for it) instead.
    celery_app.amqp._producer_pool = None


def rabbitmqctl() -> str | None:
    """The CLI itself, not Debian's wrapper (which switches to the rabbitmq user and reads the
    machine node's settings)."""
    if (RABBITMQ_BIN / "rabbitmqctl").exists():
        return str(RABBITMQ_BIN / "rabbitmqctl")
    return shutil.which("rabbitmqctl")


@contextmanager
def session_vhost(url: str):
    """``url`` on a vhost of this session's own, when the broker is this machine's and
    rabbitmqctl may manage it (as root, as CI runs); else ``url`` as it is, where each test's
    own queue name keeps it apart."""
    parts = urlsplit(url)
    ctl = shutil.which("rabbitmqctl")  # the wrapper: it talks to the machine's node
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (ctl and local and os.geteuid() == 0):
        yield url
        return
    name = f"pipehook-test-{uuid.uuid4().hex[:12]}"
    user = parts.username or "guest"

    def run(*args: str) -> None:
        subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)

    run("add_vhost", name)
    try:
        run("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    finally:
        run("delete_vhost", name)


def free_port(host: str = "127.0.0.1") -> int:
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in CLI_PORTS and port + 1 not in CLI_PORTS:
            return port


class RabbitMQNode:
    """A RabbitMQ node of a test's own: its own name, ports, database, logs, config and Erlang
    cookie (HOME) in ``directory``, so stopping it touches nothing else. Its queues and
    persistent messages are kept on disk across a restart, as a production node's are.

    ``run_in`` prefixes every command (``ip netns exec <ns>`` to run it on another host)."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", run_in: list[str] = ()):
        self.directory = directory
        self.host = host
        self.run_in = list(run_in)
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"pipehook-test-{os.getpid()}-{uuid.uuid4().hex[:6]}@localhost"
        self.process: subprocess.Popen | None = None
        (directory / "rabbitmq.conf").write_text(
            # guest may connect from other hosts: the test's network is its own.
            f"listeners.tcp.1 = {host}:{self.port}\nloopback_users = none\n"
        )
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text("")  # not the machine node's settings

    @staticmethod
    def available() -> str | None:
        """Why a node cannot be started here, or None."""
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            return f"RabbitMQ's server is not installed ({RABBITMQ_BIN}/rabbitmq-server)"
        return None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}//"

    def _env(self) -> dict[str, str]:
        d = self.directory
        return os.environ | {
            "HOME": str(d),  # the Erlang cookie, shared by the node and rabbitmqctl
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.run_in, rabbitmqctl(), "-n", self.name, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout + 10,
        )

    def start(self) -> None:
        (self.directory / "rabbitmq.pid").unlink(missing_ok=True)
        log = open(self.directory / "rabbitmq.out", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*self.run_in, str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        done = self.ctl("--timeout", "60", "wait", str(self.directory / "rabbitmq.pid"))
        assert done.returncode == 0, f"RabbitMQ did not start:\n{done.stdout}{self.logs()}"
        deadline = time.monotonic() + 30
        while True:  # the node is up; its listener may take a moment more
            try:
                probe = amqp.Connection(f"{self.host}:{self.port}", connect_timeout=2)
                probe.connect()
                probe.close()
                return
            except (OSError, amqp.exceptions.AMQPError):
                assert time.monotonic() < deadline, f"RabbitMQ does not answer\n{self.logs()}"
                time.sleep(0.2)

    def stop(self) -> None:
        """As a service restart does: the node shuts down, every connection is closed."""
        if self.process is None or self.process.poll() is not None:
            return
        self.ctl("stop", str(self.directory / "rabbitmq.pid"))
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)

    def logs(self) -> str:
        out = self.directory / "rabbitmq.out"
        return out.read_text(errors="replace")[-3000:] if out.exists() else ""
