"""``manage.py serve``: the whole service in one command, for a laptop or a small server.

Starts, as child processes: the embedded Redis (unless REDIS_URL/CELERY_BROKER_URL point at
one), the web server on http://127.0.0.1:8000, Celery workers and Celery beat. There are as
many web processes and as many worker processes as the machine has cores
(``PIPEHOOK_WEB_PROCESSES``, ``PIPEHOOK_WORKER_PROCESSES``, or ``--web-processes`` and
``--worker-processes``): one Python process runs Python on one core at a time, so one of each
would leave the others idle. The listening socket is bound and accepted on here, and each
connection handed to the web process holding the fewest (``connection_handoff``), so that
keep-alive clients spread evenly over them. On first start
it creates the admin user ``root`` and an API token, keeps both in var/ in a file only its
owner reads, and prints them once the web answers, above the banner. Then it prints a line a
minute of what happened (``pipelines.management.console``). A child that exits is
started again (after 1 s, doubling to 30 s while it keeps failing); the others go on. Ctrl-C
(SIGINT) or SIGTERM stops everything: the broker last, each child's process group sent
SIGTERM and, if anything of it is left after ``STOP_GRACE_SECONDS``, SIGKILL (logged).

The children keep their metrics in PROMETHEUS_MULTIPROC_DIR for the web's /metrics to add up:
emptied here at start, and a child's live gauges dropped when it exits.
"""

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import multiprocess

from pipelines import auth
from pipelines.management import console, embedded_redis
from pipelines.management.connection_handoff import ConnectionBalancer

logger = logging.getLogger(__name__)

# A child that exits is started again after this long, doubled while it keeps failing...
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# ...and back to the first delay once it has run this long.
STABLE_SECONDS = 60.0
# How long the banner waits for the web server to answer.
WEB_START_SECONDS = 60.0

# How long a child may take to stop after SIGTERM (a worker finishing its batch, waitress
# its requests) before it and its process group are killed.
STOP_GRACE_SECONDS = 10.0


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived while starting: stop what has started."""


class Child:
    """One supervised process: started again when it exits, sooner if it had run a while."""

    # Descriptors the process inherits (a web process: its end of the hand-over pair).
    pass_fds: tuple[int, ...] = ()

    def __init__(self, name: str, command: list[str]):
        self.name = name
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.delay = FIRST_RESTART_DELAY
        self.restart_at: float | None = None

    def start(self) -> None:
        # Children get their own session (and process group) so Ctrl-C reaches them only
        # through us and they stop in reverse start order: the broker goes last, after the
        # workers have finished.
        self.process = subprocess.Popen(  # noqa: S603
            self.command, start_new_session=True, pass_fds=self.pass_fds
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def supervise(self, now: float) -> None:
        """Notice an exit and plan the restart; start it when its time has come."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                logger.warning("Starting the %s process again", self.name)
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        multiprocess.mark_process_dead(self.process.pid, str(settings.PROMETHEUS_MULTIPROC_DIR))
        if now - self.started_at >= STABLE_SECONDS:
            self.delay = FIRST_RESTART_DELAY
        logger.warning(
            "The %s process exited with code %s; starting it again in %g s",
            self.name,
            self.process.returncode,
            self.delay,
        )
        self.restart_at = now + self.delay
        self.delay = min(self.delay * 2, MAX_RESTART_DELAY)


class WebChild(Child):
    """A web process: each start gets a new pair to the balancer, its end passed as
    ``--handoff``; the counts of the process it replaces are forgotten."""

    def __init__(self, name: str, command: list[str], balancer: ConnectionBalancer):
        super().__init__(name, command)
        self.web_command = command
        self.balancer = balancer

    def start(self) -> None:
        theirs = self.balancer.attach(self.name)
        try:
            self.command = [*self.web_command, "--handoff", str(theirs.fileno())]
            self.pass_fds = (theirs.fileno(),)
            super().start()
        finally:
            theirs.close()  # the child's copy is its own


class Command(BaseCommand):
    help = "Run web, Celery worker and beat (and the embedded Redis) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default=settings.PIPEHOOK_BIND)
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.PIPEHOOK_WORKER_CONCURRENCY,
            help="Celery worker threads in each worker process.",
        )
        parser.add_argument(
            "--web-processes",
            type=int,
            default=settings.PIPEHOOK_WEB_PROCESSES,
            help="Web server processes (default: one per core).",
        )
        parser.add_argument(
            "--worker-processes",
            type=int,
            default=settings.PIPEHOOK_WORKER_PROCESSES,
            help="Celery worker processes (default: one per core).",
        )

    def handle(
        self, *args, bind: str, workers: int, web_processes: int, worker_processes: int, **options
    ) -> None:
        self.children: list[Child] = []
        self.balancer: ConnectionBalancer | None = None
        # A stop request only sets a flag, looked at between steps. Raised where the signal
        # lands (KeyboardInterrupt's way), it could interrupt subprocess.Popen after the fork:
        # that child, never recorded, was never stopped and outlived serve (a worker retrying
        # the stopped broker forever), holding serve's stdout open.
        self.stop_requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)
        try:
            self._empty_metrics_dir()
            if self._uses_embedded_redis():
                self._start_embedded_redis()
            credentials = self._first_start(bind)
            python = sys.executable
            self._warn_once_if_root()
            # Waitress, set up in config/webserver.py so that slow clients cannot stall it; each
            # process serves the connections accepted here and handed to it.
            listening = bind_socket(bind)
            self.balancer = ConnectionBalancer(listening)
            self.balancer.start()
            host, port = listening.getsockname()[:2]
            accepted_on = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            web = [python, "-m", "config.webserver", "--bind", accepted_on]
            for number in range(max(1, web_processes)):
                name = "web" if number == 0 else f"web {number + 1}"
                self._add(WebChild(name, web, self.balancer))
            celery = [python, "-m", "celery", "-A", "config", "--quiet"]  # no banners
            for number in range(max(1, worker_processes)):
                self._spawn(
                    "worker" if number == 0 else f"worker {number + 1}",
                    celery
                    + ["worker", "--pool=threads", f"--concurrency={workers}", "-l", "INFO"]
                    + ["-n", f"pipehook{number + 1}@%h"],
                )
            self._spawn(
                "beat",
                celery
                + ["beat", "-l", "INFO", "-s", str(settings.VAR_DIR / "celerybeat-schedule")],
            )
            base_url = f"http://{_local_address(bind)}"
            self._supervise_until(lambda: _answers(bind), WEB_START_SECONDS)
            self._banner(bind, credentials)
            summary = console.Summary(
                base_url,
                settings.PIPEHOOK_METRICS_TOKEN,
                settings.PIPEHOOK_SUMMARY_INTERVAL_SECONDS,
                time.monotonic(),
            )
            summary.start()
            while not self.stop_requested:
                now = time.monotonic()
                for child in self.children:
                    if not self.stop_requested:
                        child.supervise(now)
                summary.tick(now)
                time.sleep(0.5)
        except StopRequested:
            pass
        finally:
            if self.stop_requested:
                self.stdout.write("Stopping…")
            self._stop_all()

    def _supervise_until(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and not self.stop_requested and time.monotonic() < deadline:
            for child in self.children:
                child.supervise(time.monotonic())
            time.sleep(0.2)

    def _banner(self, bind: str, credentials: str | None) -> None:
        if credentials:
            self.stdout.write(credentials)
        var = settings.VAR_DIR
        lines = [
            self.style.SUCCESS(f"Pipehook is running at http://{bind}/ (Ctrl-C to stop)"),
            f"  Admin:     http://{bind}/admin/",
        ]
        if (var / console.CREDENTIALS_FILE_NAME).exists():
            lines.append(f"  First-start credentials: {var / console.CREDENTIALS_FILE_NAME}")
        lines += [
            f"  Metrics:   http://{bind}/metrics (Bearer token: PIPEHOOK_METRICS_TOKEN"
            + ("" if os.environ.get("PIPEHOOK_METRICS_TOKEN") else f", kept in {var}/metrics_token")
            + ")",
            "  A line a minute says what happened; LOG_LEVEL=DEBUG shows every request and task.",
        ]
        self.stdout.write("\n".join(lines))

    def _empty_metrics_dir(self) -> None:
        """Counts start from zero with each start; the children inherit where to keep them."""
        path = settings.PROMETHEUS_MULTIPROC_DIR
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)

    def _warn_once_if_root(self) -> None:
        """Celery warns, in eight lines per worker process, when a worker runs as root; say it
        once here instead, with what to do, and keep the workers' copies off the console."""
        if os.name != "posix" or os.geteuid() != 0:
            return
        logger.warning(
            "Running as root: fine to try Pipehook, not for production, where each process "
            "runs as its own user (deploy/systemd)."
        )
        # By its text: PYTHONWARNINGS names only built-in categories (Celery is not loaded yet).
        ignore = "ignore:You're running the worker with superuser privileges:Warning"
        os.environ["PYTHONWARNINGS"] = ",".join(
            filter(None, [os.environ.get("PYTHONWARNINGS"), ignore])
        )

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def _uses_embedded_redis(self) -> bool:
        return settings.CELERY_BROKER_URL == f"redis+socket://{settings.EMBEDDED_REDIS_SOCKET}"

    def _start_embedded_redis(self) -> None:
        socket_path = Path(settings.EMBEDDED_REDIS_SOCKET)
        socket_path.unlink(missing_ok=True)
        command = embedded_redis.command(settings.VAR_DIR, unix_socket=socket_path, keep_data=True)
        self._spawn("redis", command)
        redis = embedded_redis.client(unix_socket=socket_path)
        if not embedded_redis.wait_until_answering(redis, self.children[-1].process, timeout=5):
            raise CommandError(f"The embedded Redis did not start (no answer at {socket_path}).")

    def _first_start(self, bind: str) -> str | None:
        """Create the admin user and a token once; keep them in a file only its owner reads
        and return them to be printed once."""
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return None
        password = secrets.token_urlsafe(12)
        root = users.create_superuser("root", email="root@localhost", password=password)
        _, token = auth.create_token(root, scopes=["api"], name="first start")
        path = settings.VAR_DIR / console.CREDENTIALS_FILE_NAME
        console.write_credentials(
            path,
            f"Admin:     http://{bind}/admin/  user root  password {password}\n"
            f"API token: {token}\n",
        )
        self.stdout.write(f"First start: created the admin user root; credentials kept in {path}")
        return (
            "\nFirst start: created the admin user.\n"
            f"  Admin:     http://{bind}/admin/  user root  password {password}\n"
            f"API token: {token}\n"
            f"(Shown only now; kept in {path}, readable only by you.)\n"
        )

    def _spawn(self, name: str, command: list[str]) -> None:
        self._add(Child(name, command))

    def _add(self, child: Child) -> None:
        if self.stop_requested:
            raise StopRequested
        self.children.append(child)
        child.start()

    def _stop_all(self) -> None:
        """Stop every child, the broker last, so the workers finish with it still there. New
        connections are accepted until the web processes are told to stop; then they are
        refused, and the web processes finish the requests they hold."""
        broker = [c for c in self.children if c.name == "redis"]
        webs = [c for c in self.children if isinstance(c, WebChild)]
        stop_children([c for c in reversed(self.children) if c not in broker and c not in webs])
        if self.balancer is not None:
            self.balancer.stop_accepting()
        stop_children(list(reversed(webs)))
        if self.balancer is not None:
            self.balancer.stop()
        stop_children(broker)


def stop_children(children: list[Child], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to each child's process group; SIGKILL to the groups of those still running
    after ``grace`` seconds; return once every child has been reaped."""
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning(
                "The %s process (pid %s) did not stop within %g s of SIGTERM; killing it",
                child.name,
                child.process.pid,
                grace,
            )
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        # Anything the child started in its group goes with it.
        _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, signum: int) -> None:
    # The child leads its own session and group (start_new_session), so its pid is the
    # group's id; the group outlives it only while something it started still runs (and
    # while it does, the kernel gives that id to no other process).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)


def bind_socket(bind: str) -> socket.socket:
    """The listening socket for ``host:port`` (``[::1]:8000`` for IPv6)."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, int(port)), family=family, backlog=1024)
    except (OSError, ValueError) as error:
        raise CommandError(f"Cannot listen on {bind}: {error}") from None
    return listening


def _local_address(bind: str) -> str:
    """Where this machine reaches the web server: a wildcard bind is reached on loopback."""
    host, _, port = bind.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"{host}:{port}"


def _answers(bind: str) -> bool:
    """Whether a web process answers HTTP (the socket, bound here, accepts connections from
    the start: only an answer says a web process is serving it)."""
    try:
        with urllib.request.urlopen(f"http://{_local_address(bind)}/readyz", timeout=1):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True  # it answered (not ready yet, or the database is down: still running)
    except (OSError, ValueError):
        return False
