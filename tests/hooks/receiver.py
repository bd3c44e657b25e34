"""A real HTTP receiver on 127.0.0.1 for delivery tests: it records every request and answers
with scripted replies (status, headers, body, delay), then with a default reply.

    receiver = Receiver().start()
    receiver.script(Reply(500), Reply(429, headers={"Retry-After": "30"}))
    ... deliver to receiver.url ...
    receiver.wait_for(2)
    receiver.stop()

The ``receiver`` fixture in ``tests/hooks/conftest.py`` does the starting and stopping.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# A self-signed certificate for localhost and 127.0.0.1, for tests only (valid 100 years).
TLS_DIR = Path(__file__).parent / "tls"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds to wait before answering (timeouts, slow receivers)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # as sent, first value of each name
    body: bytes
    received_at: float  # time.monotonic()
    client_port: int  # the sender's side of the TCP connection: equal ports, one connection
    client_host: str = ""  # the sender's address: which host sent it
    answered_at: float | None = None  # time.monotonic() when the reply started going out

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A sender that dropped a kept-alive connection (say, after a cut-short body) resets
        # it under the thread waiting for its next request: nothing went wrong here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class Receiver:
    def __init__(self, path: str = "/hook", *, tls: bool = False, host: str = "127.0.0.1"):
        self.path = path
        self.tls = tls
        self.host = host  # "::1" listens on IPv6 loopback
        self.requests: list[ReceivedRequest] = []
        self.default = Reply()
        self._script: deque[Reply] = deque()
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    # --- control -------------------------------------------------------------------------

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as real receivers do; replies always carry a Content-Length.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = ReceivedRequest(
                    method="POST",
                    path=self.path,
                    headers={key: value for key, value in self.headers.items()},
                    body=body,
                    received_at=time.monotonic(),
                    client_port=self.client_address[1],
                    client_host=self.client_address[0],
                )
                reply = receiver._record(request)
                if reply.delay:
                    time.sleep(reply.delay)
                # The sender cannot have the answer before this moment.
                request.answered_at = time.monotonic()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the sender gave up (timeout test): nothing to answer

            def log_message(self, *args) -> None:
                pass

        server_class = _IPv6Server if ":" in self.host else _Server
        self._server = server_class((self.host, port), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS_DIR / "receiver.crt", TLS_DIR / "receiver.key")
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        # A short poll interval: stop() waits at most that long.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the receiver first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.path}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with ``default``."""
        with self._changed:
            self._script.extend(replies)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[ReceivedRequest]:
        """Block until at least ``count`` requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} requests within {timeout} s, got {len(self.requests)}"
                    )
                self._changed.wait(remaining)
            return list(self.requests)

    # --- server side ---------------------------------------------------------------------

    def _record(self, request: ReceivedRequest) -> Reply:
        with self._changed:
            self.requests.append(request)
            reply = self._script.popleft() if self._script else self.default
            self._changed.notify_all()
            return reply
