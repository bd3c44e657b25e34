"""The web server ``manage.py serve`` runs: waitress, set up so that slow clients cannot
stall it. ``python -m config.webserver --bind 127.0.0.1:8000``.

Nothing stands in front of the embedded default, so the server itself must absorb clients
that send their request slowly, whether by accident or on purpose. Waitress reads every
request (headers and body) in its event loop and hands it to one of its threads only once
it has arrived whole, so a slow client holds a connection, never a thread: the other
clients keep being served. On top of waitress's own rule (a connection silent for the
timeout is closed) a client must send a whole request within
``PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS`` of its first byte, so one that trickles a byte now
and then is cut off as well. Bodies over ``PIPEHOOK_MAX_REQUEST_BODY_BYTES`` are refused
while they arrive (a declared length at once, a chunked body as soon as it passes the
limit), and every refusal the server makes itself is a JSON body like the API's.

Under ``manage.py serve`` (``--handoff``) the process does not listen itself: serve accepts
and hands it connections over a Unix socket pair, so that keep-alive connections spread
evenly over the web processes (pipelines/management/connection_handoff.py says why). Each
one becomes a channel here exactly as one waitress accepted would, so everything above holds
for it, and this process tells serve when it closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from pipelines.management import connection_handoff
from pipelines.redaction import redact_query

logger = logging.getLogger(__name__)
# A line per request: shown with LOG_LEVEL=DEBUG (config/settings.py, PER_EVENT_LOGGERS).
access_logger = logging.getLogger(f"{__name__}.access")

# Each connection costs a file descriptor (up to three with spooled bodies); poll() is used
# because select() cannot watch descriptors above 1024.
CONNECTION_LIMIT = connection_handoff.CONNECTION_LIMIT
# Request line and headers together; tokens and cookies fit many times over.
MAX_HEADER_BYTES = 64 * 1024


class TimedRequestParser(HTTPRequestParser):
    """Waitress's parser, remembering when the request's first byte arrived."""

    def __init__(self, adj: Adjustments):
        super().__init__(adj)
        self.started_at = time.time()


class JsonErrorTask(ErrorTask):
    """What the server refuses before the application sees it (a body too large, headers
    too large, a malformed request) is answered in JSON, as the application would."""

    def execute(self) -> None:
        error = self.request.error
        status = f"{error.code} {error.reason}"
        detail = (
            f"the request body may be at most {self.channel.adj.max_request_body_size - 1} bytes"
            if error.code == 413
            else str(error.body)
        )
        body = json.dumps({"message": f"{status}: {detail}"}).encode()
        self.status = status
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    parser_class = TimedRequestParser
    error_task_class = JsonErrorTask

    def del_channel(self, map=None) -> None:
        # Called on every close; the channel is in active_channels only until the first.
        was_open = self._fileno in self.server.active_channels
        super().del_channel(map)
        if was_open:
            self.server.connection_closed()


class Server(TcpWSGIServer):
    channel_class = Channel

    def maintenance(self, now: float) -> None:
        # Waitress closes connections silent for channel_timeout; this also closes those
        # still receiving a request that began longer ago than that.
        super().maintenance(now)
        cutoff = now - self.adj.channel_timeout
        for channel in self.active_channels.values():
            request = channel.request
            if request is not None and request.started_at < cutoff and not channel.will_close:
                logger.info(
                    "closing a connection from %s: no whole request within %d s",
                    channel.addr[0] if channel.addr else "?",
                    self.adj.channel_timeout,
                )
                channel.will_close = True

    def connection_closed(self) -> None:
        """A channel of this server has closed."""


class HandedConnectionsServer(Server):
    """Serves the connections ``manage.py serve`` accepts at ``address`` and hands over
    ``handoff``, its end of a Unix socket pair (pipelines/management/connection_handoff.py).
    Waitress's loop treats it as the listening socket: it "accepts" (reads the pair) only
    while under the connection limit, and its maintenance closes slow clients."""

    def __init__(self, application, socket_map, handoff, address, *, dispatcher, adj):
        self.address = address
        handoff.set_inheritable(False)
        super().__init__(
            application,
            socket_map,
            _start=False,  # it is not listening: nothing to listen() on
            _sock=handoff,
            dispatcher=dispatcher,
            adj=adj,
            bind_socket=False,
            sockinfo=adj.listen[0],
        )
        self.accepting = True
        # What this process has told serve, and what it has to tell: connections open, and
        # connections taken since it started (serve's counts are made from the last it heard,
        # so a report that could not be sent is made good by the next).
        self.open_connections = 0
        self.taken = 0
        self._told: tuple[int, int] | None = None

    def getsockname(self) -> tuple[str, int]:
        # Where clients connected: SERVER_PORT, and the log line at start.
        return self.address

    def tell_ready(self) -> None:
        self.socket.send(connection_handoff.READY)

    def handle_accept(self) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.socket, 64, 16)
        except (BlockingIOError, InterruptedError):
            return
        if not message and not fds:
            self.handle_close()
        for fd in fds:
            self.taken += 1
            self.open_connections += 1
            self._open_channel(socket.socket(fileno=fd))
        self.tell_state()

    def _open_channel(self, connection: socket.socket) -> None:
        # What waitress's handle_accept does with an accepted connection.
        try:
            addr = connection.getpeername()  # REMOTE_ADDR
            self.set_socket_options(connection)
        except OSError:
            # The client left while the connection was on its way here.
            connection.close()
            self.connection_closed()
            return
        self.channel_class(self, connection, self.fix_addr(addr), self.adj, map=self._map)

    def connection_closed(self) -> None:
        self.open_connections -= 1

    def readable(self) -> bool:
        # Once per turn of the loop, after the turn's closes: one report for all of them.
        self.tell_state()
        return super().readable()

    def tell_state(self) -> None:
        state = (self.open_connections, self.taken)
        if state == self._told or self.socket is None:  # None: stopping, the pair is closed
            return
        try:
            self.socket.send(connection_handoff.state_message(*state))
        except OSError:
            # serve has not read the earlier ones yet (the pair's queue is full) or has gone
            # (handle_close sees that): the next turn tells it again.
            return
        self._told = state

    def handle_close(self) -> None:
        # serve closed its end: it has stopped or died, and nothing will be handed over any
        # more. Stop as on SIGTERM, finishing the requests being answered.
        logger.info("manage.py serve has closed the connection hand-over; stopping")
        raise SystemExit(0)


def _logged_path(environ: dict) -> str:
    path = environ.get("PATH_INFO", "-")
    if query := environ.get("QUERY_STRING"):
        path += "?" + redact_query(query)
    return path


def with_access_log(application: Callable) -> Callable:
    """One log line per request. Some clients pass their token in the query string
    (Distelli's ``?apiToken=``, GitLab's ``?private_token=``): secret values are masked."""

    def logged(environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.monotonic()
        statuses: list[str] = []

        def recording_start_response(status, headers, exc_info=None):
            statuses[:] = [status]
            return start_response(status, headers, exc_info)

        try:
            return application(environ, recording_start_response)
        finally:
            access_logger.info(
                '%s "%s %s" %s %.0f ms',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD", "-"),
                _logged_path(environ),
                statuses[0].split(" ", 1)[0] if statuses else "-",
                (time.monotonic() - started) * 1000,
            )

    return logged


def build_server(
    application: Callable,
    *,
    bind: str,
    handoff: socket.socket | None = None,
    threads: int,
    client_timeout: int,
    max_body_bytes: int,
) -> MultiSocketServer:
    """Listen on ``bind`` (host:port), or with ``handoff`` serve the connections ``manage.py
    serve`` accepts on ``bind`` and hands over it."""
    adj = Adjustments(
        listen=bind,
        threads=threads,
        channel_timeout=client_timeout,
        # How often timeouts are checked: at most a second late.
        cleanup_interval=1,
        # Waitress counts its own listening (or hand-over) socket and its trigger too.
        connection_limit=CONNECTION_LIMIT + 2,
        asyncore_use_poll=True,
        max_request_header_size=MAX_HEADER_BYTES,
        # Waitress refuses a body that reaches this size; one byte over the limit.
        max_request_body_size=max_body_bytes + 1,
        ident="",
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    if handoff is not None:
        host, _, port = bind.rpartition(":")
        address = (host.strip("[]"), int(port))
        servers = [
            HandedConnectionsServer(
                application, socket_map, handoff, address, dispatcher=dispatcher, adj=adj
            )
        ]
    else:
        servers = [
            Server(application, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
            for sockinfo in adj.listen
        ]
    listening = [(server.effective_host, server.effective_port) for server in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[0].log_info)


def stop(signum, frame) -> None:
    # SIGTERM (what `manage.py serve` and service managers send) stops like Ctrl-C: the
    # requests being answered finish first.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port to listen on")
    parser.add_argument(
        "--handoff",
        type=int,
        metavar="FD",
        help="serve the connections manage.py serve accepts on --bind and hands over this "
        "inherited Unix socket, instead of listening",
    )
    args = parser.parse_args(argv)

    from django.conf import settings

    from config.wsgi import application

    server = build_server(
        with_access_log(application),
        bind=args.bind,
        handoff=socket.socket(fileno=args.handoff) if args.handoff is not None else None,
        threads=settings.PIPEHOOK_WEB_THREADS,
        client_timeout=settings.PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS,
        max_body_bytes=settings.PIPEHOOK_MAX_REQUEST_BODY_BYTES,
    )
    signal.signal(signal.SIGTERM, stop)
    # Ready before saying so: whoever reads the line may connect at once.
    for handed in server.map.values():
        if isinstance(handed, HandedConnectionsServer):
            handed.tell_ready()
    for host, port in server.effective_listen:
        logger.info("Listening on http://%s:%s", f"[{host}]" if ":" in host else host, port)
    server.run()


if __name__ == "__main__":
    # Run as the importable module, so its logger is named config.webserver, not __main__.
    from config.webserver import main as run

    run()
