"""``manage.py serve``: the whole service in one command, for a laptop or a small server.

Starts, as child processes: the embedded Redis (unless REDIS_URL/CELERY_BROKER_URL point at
one), the web server on http://127.0.0.1:8000, Celery workers and Celery beat. There are as
many web processes and as many worker processes as the machine has cores
(``PIPEHOOK_WEB_PROCESSES``, ``PIPEHOOK_WORKER_PROCESSES``, or ``--web-processes`` and
``--worker-processes``): one Python process runs Python on one core at a time, so one of each
would leave the others idle. The web processes serve one socket, bound here once. On first start
it creates the admin user ``root`` and an API token and prints both. A child that exits is
started again (after 1 s, doubling to 30 s while it keeps failing); the others go on. Ctrl-C
(SIGINT) or SIGTERM stops everything: the broker last, each child's process group sent
SIGTERM and, if anything of it is left after ``STOP_GRACE_SECONDS``, SIGKILL (logged).
"""

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pipelines import auth
from pipelines.management import embedded_redis

logger = logging.getLogger(__name__)

# A child that exits is started again after this long, doubled while it keeps failing...
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# ...and back to the first delay once it has run this long.
STABLE_SECONDS = 60.0
# How long a child may take to stop after SIGTERM (a worker finishing its batch, waitress
# its requests) before it and its process group are killed.
STOP_GRACE_SECONDS = 10.0


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived while starting: stop what has started."""


class Child:
    """One supervised process: started again when it exits, sooner if it had run a while."""

    def __init__(self, name: str, command: list[str], pass_fds: tuple[int, ...] = ()):
        self.name = name
        self.command = command
        self.pass_fds = pass_fds
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
        # A stop request only sets a flag, looked at between steps. Raised where the signal
        # lands (KeyboardInterrupt's way), it could interrupt subprocess.Popen after the fork:
        # that child, never recorded, was never stopped and outlived serve (a worker retrying
        # the stopped broker forever), holding serve's stdout open.
        self.stop_requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)
        try:
            if self._uses_embedded_redis():
                self._start_embedded_redis()
            self._first_start()
            python = sys.executable
            # Waitress, set up in config/webserver.py so that slow clients cannot stall it; each
            # process accepts connections on the one socket bound here.
            listening = bind_socket(bind)
            fd = listening.fileno()
            web = [python, "-m", "config.webserver", "--fd", str(fd)]
            for number in range(max(1, web_processes)):
                self._spawn("web" if number == 0 else f"web {number + 1}", web, pass_fds=(fd,))
            celery = [python, "-m", "celery", "-A", "config"]
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
            self.stdout.write(
                self.style.SUCCESS(f"Pipehook is running at http://{bind}/ (Ctrl-C to stop)")
            )
            while not self.stop_requested:
                for child in self.children:
                    if not self.stop_requested:
                        child.supervise(time.monotonic())
                time.sleep(0.5)
        except StopRequested:
            pass
        finally:
            if self.stop_requested:
                self.stdout.write("Stopping…")
            self._stop_all()

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

    def _first_start(self) -> None:
        """Create the admin user and a token once, and print them once."""
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        root = users.create_superuser("root", email="root@localhost", password=password)
        _, token = auth.create_token(root, scopes=["api"], name="first start")
        self.stdout.write(
            "\nFirst start: created the admin user.\n"
            f"  Admin:     http://127.0.0.1:8000/admin/  user root  password {password}\n"
            f"API token: {token}\n"
            "(Both are shown only now; keep them.)\n"
        )

    def _spawn(self, name: str, command: list[str], pass_fds: tuple[int, ...] = ()) -> None:
        if self.stop_requested:
            raise StopRequested
        child = Child(name, command, pass_fds)
        self.children.append(child)
        child.start()

    def _stop_all(self) -> None:
        """Stop every child, the broker last, so the workers finish with it still there."""
        broker = [c for c in self.children if c.name == "redis"]
        stop_children([c for c in reversed(self.children) if c not in broker])
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
    """The listening socket for ``host:port`` (``[::1]:8000`` for IPv6), inheritable by the
    web processes."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, int(port)), family=family, backlog=1024)
    except (OSError, ValueError) as error:
        raise CommandError(f"Cannot listen on {bind}: {error}") from None
    listening.set_inheritable(True)
    return listening
