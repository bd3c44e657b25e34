"""``manage.py serve``: the whole service in one command, for a laptop or a small server.

Starts, as child processes: the embedded Redis (unless REDIS_URL/CELERY_BROKER_URL point at
one), the web server on http://127.0.0.1:8000, a Celery worker and Celery beat. On first start
it creates the admin user ``root`` and an API token, keeps both in var/ in a file only its
owner reads, and prints them once the web answers, above the banner. Then it prints a line a
minute of what happened (``pipelines.management.console``). A child that exits is started
again (after 1 s, doubling to 30 s while it keeps failing); the others go on. Ctrl-C stops
everything.

The children keep their metrics in PROMETHEUS_MULTIPROC_DIR for the web's /metrics to add up:
emptied here at start, and a child's live gauges dropped when it exits.
"""

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import multiprocess

from pipelines import auth
from pipelines.management import console, embedded_redis

logger = logging.getLogger(__name__)

# A child that exits is started again after this long, doubled while it keeps failing...
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# ...and back to the first delay once it has run this long.
STABLE_SECONDS = 60.0
# How long the banner waits for the web server to answer.
WEB_START_SECONDS = 60.0


class Child:
    """One supervised process: started again when it exits, sooner if it had run a while."""

    def __init__(self, name: str, command: list[str]):
        self.name = name
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.delay = FIRST_RESTART_DELAY
        self.restart_at: float | None = None

    def start(self) -> None:
        # Children get their own session so Ctrl-C reaches them only through us and they
        # stop in reverse start order: the broker goes last, after the worker has finished.
        self.process = subprocess.Popen(self.command, start_new_session=True)  # noqa: S603
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


class Command(BaseCommand):
    help = "Run web, Celery worker and beat (and the embedded Redis) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default=settings.PIPEHOOK_BIND)
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.PIPEHOOK_WORKER_CONCURRENCY,
            help="Celery worker threads.",
        )

    def handle(self, *args, bind: str, workers: int, **options) -> None:
        self.children: list[Child] = []
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        try:
            self._empty_metrics_dir()
            if self._uses_embedded_redis():
                self._start_embedded_redis()
            credentials = self._first_start(bind)
            python = sys.executable
            # Waitress, set up in config/webserver.py so that slow clients cannot stall it.
            self._spawn("web", [python, "-m", "config.webserver", "--bind", bind])
            celery = [python, "-m", "celery", "-A", "config", "--quiet"]  # no banners
            self._spawn(
                "worker",
                celery + ["worker", "--pool=threads", f"--concurrency={workers}", "-l", "INFO"],
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
            while True:
                now = time.monotonic()
                for child in self.children:
                    child.supervise(now)
                summary.tick(now)
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("Stopping…")
        finally:
            self._stop_all()

    def _supervise_until(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
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
        child = Child(name, command)
        child.start()
        self.children.append(child)

    def _stop_all(self) -> None:
        running = [c.process for c in reversed(self.children) if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def _local_address(bind: str) -> str:
    """Where this machine reaches the web server: a wildcard bind is reached on loopback."""
    host, _, port = bind.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"{host}:{port}"


def _answers(bind: str) -> bool:
    host, _, port = _local_address(bind).rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False
