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

from pipelines.redaction import redact_query

logger = logging.getLogger(__name__)
# A line per request: shown with LOG_LEVEL=DEBUG (config/settings.py, PER_EVENT_LOGGERS).
access_logger = logging.getLogger(f"{__name__}.access")

# Each connection costs a file descriptor (up to three with spooled bodies); poll() is used
# because select() cannot watch descriptors above 1024.
CONNECTION_LIMIT = 500
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
    bind: str | None = None,
    sock: socket.socket | None = None,
    threads: int,
    client_timeout: int,
    max_body_bytes: int,
) -> MultiSocketServer:
    """Listen on ``bind`` (host:port), or serve ``sock``, a socket already listening (the
    one ``manage.py serve`` shares between its web processes)."""
    where = {"sockets": [sock]} if sock is not None else {"listen": bind}
    adj = Adjustments(
        **where,
        threads=threads,
        channel_timeout=client_timeout,
        # How often timeouts are checked: at most a second late.
        cleanup_interval=1,
        connection_limit=CONNECTION_LIMIT,
        asyncore_use_poll=True,
        max_request_header_size=MAX_HEADER_BYTES,
        # Waitress refuses a body that reaches this size; one byte over the limit.
        max_request_body_size=max_body_bytes + 1,
        ident="",
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    if sock is not None:
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        servers = [
            Server(
                application,
                socket_map,
                _sock=sock,
                dispatcher=dispatcher,
                adj=adj,
                bind_socket=False,
                sockinfo=sockinfo,
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
        "--fd", type=int, help="serve this inherited, listening socket instead of --bind"
    )
    args = parser.parse_args(argv)

    from django.conf import settings

    from config.wsgi import application

    server = build_server(
        with_access_log(application),
        bind=args.bind,
        sock=socket.socket(fileno=args.fd) if args.fd is not None else None,
        threads=settings.PIPEHOOK_WEB_THREADS,
        client_timeout=settings.PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS,
        max_body_bytes=settings.PIPEHOOK_MAX_REQUEST_BODY_BYTES,
    )
    signal.signal(signal.SIGTERM, stop)
    for host, port in server.effective_listen:
        logger.info("Listening on http://%s:%s", f"[{host}]" if ":" in host else host, port)
    server.run()


if __name__ == "__main__":
    # Run as the importable module, so its logger is named config.webserver, not __main__.
    from config.webserver import main as run

    run()
