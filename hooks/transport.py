"""The one HTTP seam: POST a body to a hook URL, safely, and say what happened.

``send`` never raises for what the network or the receiver does; it returns a
``TransportResult`` with the status (or ``None``), the response headers, at most
``max_body_bytes`` of the body, the time taken and an error text.

Safety rules (the architecture's SSRF section):

- The host is resolved once, every address is checked, and the connection goes to a checked
  address: a second DNS answer cannot point the request elsewhere (no DNS rebinding). The Host
  header, TLS SNI and certificate checks keep using the hostname.
- Which addresses are refused (loopback, private, link-local, reserved… unless
  ``HOOKS_ALLOWED_NETWORKS`` lists them) is ``hooks.destinations``' rule.
- Redirects are never followed (a 3xx is just a status).
- Connections are kept alive per (scheme, host, port, SSL verification) and reused while
  they stay open; each new one is guarded as above, and a kept one is checked again against
  the allow-list before reuse. A kept connection the receiver closed just as it was reused
  (no answer at all) is retried once on a new connection.
- Time: connect at most ``HOOKS_CONNECT_TIMEOUT_SECONDS``; everything together at most
  ``HOOKS_TIMEOUT_SECONDS`` (GitLab's 10 s), enforced by a watchdog that shuts the socket, so a
  receiver that trickles bytes cannot hold a worker longer.

Why not ``requests-hardened`` (its IP filter pins the address the same way): it can only
switch loopback on or off, not allow a list of CIDRs; it lets IPv4-compatible and site-local
IPv6 addresses through; and its timeouts are per socket operation, with no total budget. The
guard below is urllib3's own connection class with one method replaced.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import ipaddress
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote

import certifi
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from urllib3.connection import HTTPConnection, HTTPSConnection

from hooks.destinations import (
    AddressNotAllowed,
    HookTarget,
    InvalidHookURL,
    parse_hook_url,
    refusal_reason,
    resolve_allowed_addresses,
)

logger = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 8 * 1024  # GitLab keeps 8 KB of a receiver's answer


@dataclass
class TransportResult:
    # None when no response came back (refused, timed out, blocked, TLS failure...).
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False  # the body was longer than the limit and was cut
    duration_ms: int = 0
    error: str = ""  # empty when a response came back whole

    @classmethod
    def failed(cls, error: str) -> TransportResult:
        """No answer, for the reason ``error`` gives."""
        return cls(status=None, error=error)


@dataclass(frozen=True)
class Outgoing:
    """One request for ``send_many``: where, what, and the hook it is for (in logs only)."""

    url: str
    body: bytes
    headers: dict[str, str]
    verify_ssl: bool = True
    hook_id: int | None = None


# --- The connection ----------------------------------------------------------------------


class _Watch:
    """What the watchdog needs to stop one request: its sockets, and whether it fired."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.raw_socket: socket.socket | None = None
        self.connection: HTTPConnection | None = None
        self.fired = False
        self.done = False


class _Watchdog:
    """One thread for every request in the process: at each request's deadline, shut its
    socket so a blocked read returns. (A timer thread per request costs more than the
    request itself against a fast receiver.)"""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._counter = 0

    def watch(self, watch: _Watch) -> None:
        with self._wake:
            self._counter += 1
            heapq.heappush(self._heap, (watch.deadline, self._counter, watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="hook-transport-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, _, watch = self._heap[0]
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                if watch.done:
                    continue
                watch.fired = True
                sockets = (watch.connection.sock if watch.connection else None, watch.raw_socket)
            for sock in sockets:
                if sock is not None:
                    # The plain socket call, also on a TLS socket: it wakes the reader
                    # without touching the TLS state the sending thread is using.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_watchdog = _Watchdog()


class _GuardedConnectionMixin:
    """urllib3's connection with ``_new_conn`` replaced: resolve once, check every address,
    connect to a checked one. TLS and the Host header still use the URL's hostname.

    Every new TCP connection goes through ``_new_conn``, so the guard runs for each one,
    whether the connection is then used once or kept alive for later requests."""

    # The request being sent: its deadline bounds the connect, its watch can shut the socket.
    watch: _Watch

    def _new_conn(self) -> socket.socket:
        last_error: OSError | None = None
        for family, sockaddr in resolve_allowed_addresses(self._dns_host, self.port):
            remaining = self.watch.deadline - time.monotonic()
            if remaining <= 0:
                break
            sock = socket.socket(family, socket.SOCK_STREAM)
            self.watch.raw_socket = sock
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(min(self.timeout, remaining))
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last_error = exc
        raise last_error or TimeoutError("no time left to connect")


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


# --- Keep-alive ----------------------------------------------------------------------------

# (scheme, host, port, verify_ssl): a connection is only reused for the same origin and the
# same certificate rule it was opened with.
OriginKey = tuple[str, str, int, bool]

# Idle connections are closed after this long unused; servers drop theirs after 5-75 s, and
# one found closed is replaced anyway.
KEEPALIVE_IDLE_SECONDS = 30.0
KEEPALIVE_PER_ORIGIN = 16
KEEPALIVE_TOTAL = 256


class _KeepAlivePool:
    """Idle connections per origin, most recently used first. Only whole exchanges are put
    back (the response read to its end, no watchdog involved), so a taken connection is
    ready for the next request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[OriginKey, list[tuple[float, HTTPConnection]]] = {}
        self._count = 0

    def take(self, key: OriginKey) -> HTTPConnection | None:
        """An idle connection to ``key`` that is still open and still allowed, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, connection = idle.pop()
                self._count -= 1
            if time.monotonic() - since < KEEPALIVE_IDLE_SECONDS and _still_usable(connection):
                return connection
            connection.close()

    def give_back(self, key: OriginKey, connection: HTTPConnection) -> None:
        now = time.monotonic()
        expired: list[HTTPConnection] = []
        with self._lock:
            idle = self._idle.setdefault(key, [])
            while idle and now - idle[0][0] >= KEEPALIVE_IDLE_SECONDS:
                expired.append(idle.pop(0)[1])
                self._count -= 1
            if len(idle) < KEEPALIVE_PER_ORIGIN and self._count < KEEPALIVE_TOTAL:
                idle.append((now, connection))
                self._count += 1
            else:
                expired.append(connection)
            if not idle:
                del self._idle[key]
        for connection in expired:
            connection.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle, self._count = self._idle, {}, 0
        for connections in idle.values():
            for _, connection in connections:
                connection.close()

    def forget_after_fork(self) -> None:
        # A forked child must not share sockets with its parent: drop them without a word
        # to the server (the parent still uses them).
        self._lock = threading.Lock()
        self._idle, self._count = {}, 0


def _still_usable(connection: HTTPConnection) -> bool:
    # Closed by the receiver while idle (a readable idle socket is an EOF or garbage).
    if not connection.is_connected:
        return False
    # The allow-list may have shrunk since the guard let this connection through.
    try:
        peer = connection.sock.getpeername()[0]
    except OSError:
        return False
    return refusal_reason(ipaddress.ip_address(peer.split("%", 1)[0])) is None


_keepalive = _KeepAlivePool()
os.register_at_fork(after_in_child=_keepalive.forget_after_fork)


def close_idle_connections() -> None:
    """Close every kept-alive connection of this process."""
    _keepalive.clear()


def _open_connection(
    scheme: str, host: str, port: int, *, verify_ssl: bool, connect_timeout: float
) -> HTTPConnection:
    if scheme == "https":
        return _GuardedHTTPSConnection(
            host,
            port,
            timeout=connect_timeout,
            cert_reqs="CERT_REQUIRED" if verify_ssl else "CERT_NONE",
            ca_certs=certifi.where() if verify_ssl else None,
            assert_hostname=None if verify_ssl else False,
        )
    return _GuardedHTTPConnection(host, port, timeout=connect_timeout)


# The receiver closed a kept-alive connection just as it was reused (http.client's
# RemoteDisconnected is a ConnectionResetError): nothing was answered, so the request is
# sent once more on a new connection, as browsers do.
_STALE_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    verify_ssl: bool = True,
    timeout: float | None = None,
    max_body_bytes: int = RESPONSE_BODY_LIMIT,
) -> TransportResult:
    """POST ``body`` to ``url``; never raises for network trouble or a status code."""
    total = float(timeout if timeout is not None else settings.HOOKS_TIMEOUT_SECONDS)
    started = time.monotonic()
    try:
        target = parse_hook_url(url)
    except InvalidHookURL as invalid:
        return _result(started, error=invalid.message)
    exchange = _Exchange(target, verify_ssl=verify_ssl, started=started, total=total)
    try:
        exchange.post(body, _with_url_credentials(headers, target))
        return _result(started, **exchange.read_answer(max_body_bytes))
    except AddressNotAllowed as exc:
        return _result(started, error=str(exc))
    except ImproperlyConfigured:
        raise  # a bad HOOKS_ALLOWED_NETWORKS is the operator's to fix, loudly
    except Exception as exc:  # the network can fail in many ways; each becomes an error text
        error = _describe(
            exc, phase=exchange.phase, watch=exchange.watch, total=total, host=target.host
        )
        if (response := exchange.response) is not None:
            # The receiver answered, then the body failed: the status stands.
            return _result(
                started, response.status, headers=dict(response.headers.itermerged()), error=error
            )
        return _result(started, error=error)
    finally:
        exchange.finish()


def _result(started: float, status: int | None = None, **fields) -> TransportResult:
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return TransportResult(status=status, duration_ms=elapsed_ms, **fields)


def _with_url_credentials(headers: dict[str, str], target: HookTarget) -> dict[str, str]:
    """The headers, plus the URL's credentials as HTTP Basic auth (GitLab sends them so,
    never in the request line) unless an Authorization header is given."""
    request_headers = dict(headers)
    if target.auth and not any(name.lower() == "authorization" for name in request_headers):
        user, _, password = target.auth.partition(":")
        credentials = f"{unquote(user)}:{unquote(password)}".encode()
        request_headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return request_headers


class _Exchange:
    """One POST and its answer on a kept or a new guarded connection, under one deadline.
    ``phase`` and ``response`` say how far it got when something fails."""

    def __init__(self, target: HookTarget, *, verify_ssl: bool, started: float, total: float):
        self.target = target
        self.verify_ssl = verify_ssl
        self.total = total
        self.connect_timeout = min(float(settings.HOOKS_CONNECT_TIMEOUT_SECONDS), total)
        self.watch = _Watch(deadline=started + total)
        self.origin: OriginKey = (target.scheme, target.host, target.port, verify_ssl)
        self.phase = "connect"
        self.connection: HTTPConnection | None = None
        self.response = None
        self.keep_alive = False

    def _new_connection(self) -> HTTPConnection:
        return _open_connection(
            self.target.scheme,
            self.target.host,
            self.target.port,
            verify_ssl=self.verify_ssl,
            connect_timeout=self.connect_timeout,
        )

    def _use(self, connection: HTTPConnection) -> HTTPConnection:
        self.connection = connection
        self.watch.connection = connection
        return connection

    def post(self, body: bytes, headers: dict[str, str]) -> None:
        """Send the request and read the answer's status and headers."""
        watch = self.watch
        connection = _keepalive.take(self.origin)
        reused = connection is not None
        connection = self._use(connection or self._new_connection())
        _watchdog.watch(watch)
        while True:
            connection.watch = watch
            try:
                if connection.sock is None:
                    self.phase = "connect"
                    connection.timeout = self.connect_timeout
                    connection.connect()
                self.phase = "response"
                # urllib3 applies the connection's timeout to every later socket operation,
                # reading the answer included: give it what is left of the budget.
                connection.timeout = max(0.001, watch.deadline - time.monotonic())
                connection.request(
                    "POST",
                    self.target.request_uri,
                    body=body,
                    headers=headers,
                    preload_content=False,
                    decode_content=False,
                )
                self.response = connection.getresponse()
                break
            except _STALE_CONNECTION_ERRORS:
                if not reused or watch.fired:
                    raise
                connection.close()
                reused = False
                connection = self._use(self._new_connection())
        if watch.fired:
            # A shut socket reads as the end of the headers: what came is not the answer.
            self.response = None
            raise TimeoutError

    def read_answer(self, max_body_bytes: int) -> dict:
        """The answer's fields of a ``TransportResult``, with at most ``max_body_bytes`` of
        its body."""
        self.phase = "body"
        response = self.response
        data = response.read(max_body_bytes + 1)
        cut_short = self.watch.fired
        # Reusable only after a whole answer: read to its end (a body over the limit is not),
        # in time, and the receiver did not say it closes (http.client then dropped the
        # socket already).
        self.keep_alive = not cut_short and response.isclosed() and self.connection.sock is not None
        return {
            "status": response.status,
            "headers": dict(response.headers.itermerged()),
            "body": data[:max_body_bytes],
            "truncated": len(data) > max_body_bytes or cut_short,
            "error": f"timed out after {self.total:g} s reading the response body"
            if cut_short
            else "",
        }

    def finish(self) -> None:
        self.watch.done = True
        # Should the watchdog fire in this very instant, it shuts a socket the pool holds;
        # the next taker finds it closed and opens another.
        if self.connection is not None:
            if self.keep_alive and not self.watch.fired:
                _keepalive.give_back(self.origin, self.connection)
            else:
                self.connection.close()


# --- Many requests at once -----------------------------------------------------------------

# Threads that carry a batch's extra lanes, shared by every task of the process. Idle
# threads are reused; the cap is only a backstop, so a batch never waits for another's lanes.
_LANE_THREADS_MAX = 256
_lane_executor: tuple[int, ThreadPoolExecutor] | None = None
_lane_executor_lock = threading.Lock()


def _lanes() -> ThreadPoolExecutor:
    global _lane_executor
    with _lane_executor_lock:
        # Made in the process that uses it: a forked worker child must not inherit it.
        if _lane_executor is None or _lane_executor[0] != os.getpid():
            _lane_executor = (
                os.getpid(),
                ThreadPoolExecutor(_LANE_THREADS_MAX, thread_name_prefix="hook-send"),
            )
        return _lane_executor[1]


def send_many(requests: list[Outgoing]) -> list[TransportResult]:
    """Send the requests over up to HOOKS_SEND_CONCURRENCY lanes at once, each lane one
    request after the other; results in the order of ``requests``. The caller's thread
    runs the first lane. Lanes only do HTTP: no database connection is used in them."""
    lanes = min(len(requests), max(1, settings.HOOKS_SEND_CONCURRENCY))
    results: list[TransportResult | None] = [None] * len(requests)

    def run_lane(lane: int) -> None:
        for index in range(lane, len(requests), lanes):
            results[index] = _send_alone(requests[index])

    others = [_lanes().submit(run_lane, lane) for lane in range(1, lanes)]
    run_lane(0)
    for future in others:
        future.result()
    return results  # type: ignore[return-value]  (every slot is filled)


def _send_alone(request: Outgoing) -> TransportResult:
    """One request, isolated: whatever goes wrong in sending it is its own failed result
    (logged with the reason, retried as any failure), never its batch's crash."""
    try:
        return send(request.url, request.body, request.headers, verify_ssl=request.verify_ssl)
    except ImproperlyConfigured:
        raise  # a bad HOOKS_ALLOWED_NETWORKS fails every request alike: the operator's to fix
    except Exception as exc:
        logger.exception("Hook %s: the request could not be sent", request.hook_id)
        return TransportResult.failed(f"the request could not be sent: {exception_summary(exc)}")


def exception_summary(exc: BaseException) -> str:
    """``Type: message`` of an exception nobody foresaw, for the delivery log."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _describe(exc: BaseException, *, phase: str, watch: _Watch, total: float, host: str) -> str:
    if watch.fired:
        return f"timed out after {total:g} s (the whole request may take at most that)"
    root: BaseException = exc
    while root.__cause__ is not None or (root.__context__ is not None and _is_wrapper(root)):
        root = root.__cause__ or root.__context__
    if isinstance(root, AddressNotAllowed):
        return str(root)
    if isinstance(root, socket.gaierror):
        return f"could not resolve {host}: {root.strerror or root}"
    if isinstance(root, TimeoutError | socket.timeout):
        if phase == "connect":
            return f"connecting to {host} timed out"
        return "timed out waiting for the receiver's response"
    if isinstance(root, ConnectionRefusedError):
        return f"connection refused by {host}"
    name = type(root).__name__
    if "SSL" in name or "Certificate" in name:
        return f"TLS failed: {root}"
    if isinstance(root, ConnectionError):
        return f"connection to {host} failed: {root.strerror or root}"
    message = str(root) or name
    return f"{'connecting' if phase == 'connect' else 'request'} failed: {name}: {message}"


def _is_wrapper(exc: BaseException) -> bool:
    # urllib3 wraps socket errors in its own types; the socket error says more.
    return type(exc).__module__.startswith("urllib3")


__all__ = [
    "RESPONSE_BODY_LIMIT",
    "Outgoing",
    "TransportResult",
    "close_idle_connections",
    "exception_summary",
    "send",
    "send_many",
]
