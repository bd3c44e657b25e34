"""The one HTTP seam: POST a body to a hook URL, safely, and say what happened.

``send`` never raises for what the network or the receiver does; it returns a
``TransportResult`` with the status (or ``None``), the response headers, at most
``max_body_bytes`` of the body, the time taken and an error text.

Safety rules (the architecture's SSRF section):

- The host is resolved once, every address is checked, and the connection goes to a checked
  address: a second DNS answer cannot point the request elsewhere (no DNS rebinding). The Host
  header, TLS SNI and certificate checks keep using the hostname.
- Loopback, private, link-local, CGNAT, reserved, multicast and IPv6 unique-local or site-local
  addresses are refused, as are IPv4-mapped/compatible forms of them and the 6to4/NAT64 ranges
  that reach IPv4 networks, unless ``HOOKS_ALLOWED_NETWORKS`` lists a CIDR containing them.
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
from functools import lru_cache
from urllib.parse import unquote

import certifi
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

logger = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 8 * 1024  # GitLab keeps 8 KB of a receiver's answer

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# IPv6 ranges that carry an IPv4 address to an IPv4 network: refused whole, like Svix does.
_IPV4_TRANSLATION = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)
_DOCUMENTATION = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
_SPECIAL_IPV4 = tuple(
    ipaddress.ip_network(cidr) for cidr in ("192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15")
)


class AddressNotAllowed(Exception):
    """The URL's host resolves only to addresses hooks may not reach."""


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


# --- Which addresses are allowed ---------------------------------------------------------


@lru_cache(maxsize=8)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"HOOKS_ALLOWED_NETWORKS: {cidr!r} is not a CIDR such as 127.0.0.0/8"
            ) from None
    return tuple(networks)


def allowed_networks() -> tuple[IPNetwork, ...]:
    configured = settings.HOOKS_ALLOWED_NETWORKS
    if isinstance(configured, str):
        configured = configured.split(",")
    return _parse_networks(tuple(c for c in configured if c.strip()))


def refusal_reason(ip: IPAddress) -> str | None:
    """Why hooks may not reach ``ip``, or None when they may."""
    plain: IPAddress = ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        plain = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if any(address in network for network in allowed_networks() for address in (ip, plain)):
        return None
    if plain.is_loopback:
        return "a loopback address"
    if plain.is_unspecified:
        return "the unspecified address"
    if plain.is_link_local:
        return "a link-local address"
    if plain.is_multicast:
        return "a multicast address"
    if plain in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if isinstance(plain, ipaddress.IPv6Address):
        if plain in _UNIQUE_LOCAL:
            return "an IPv6 unique-local address"
        if plain.is_site_local:
            return "an IPv6 site-local address"
        if any(plain in network for network in _IPV4_TRANSLATION):
            return "an IPv6 range that reaches IPv4 networks (6to4, NAT64, Teredo)"
    elif any(plain in network for network in _SPECIAL_IPV4):
        return "a special-purpose address"
    if any(plain in network for network in _DOCUMENTATION):
        return "a documentation address"
    if plain.is_reserved:
        return "a reserved address"
    if plain.is_private:
        return "a private address"
    if not plain.is_global:
        return "a reserved address"
    return None


def resolve_allowed_addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """Resolve ``host`` once; return the (family, sockaddr) pairs hooks may connect to.

    Raises ``AddressNotAllowed`` naming an address and the rule when none is left, and
    ``socket.gaierror`` when the name does not resolve.
    """
    allowed: list[tuple[int, tuple]] = []
    refused: list[tuple[str, str]] = []
    for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        reason = refusal_reason(ip)
        if reason:
            refused.append((str(ip), reason))
        elif (family, sockaddr) not in allowed:
            allowed.append((family, sockaddr))
    if not allowed:
        address, reason = refused[0] if refused else ("nothing", "no usable address")
        shown = host if host == address else f"{host} resolves to {address}, which"
        raise AddressNotAllowed(
            f"{shown} is {reason}; hooks may not send there unless HOOKS_ALLOWED_NETWORKS "
            "includes it"
        )
    return allowed


class InvalidHookURL(ValidationError):
    """A Django ValidationError (forms and DRF field validators show it) whose ``str`` is
    the plain message."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HookTarget:
    """Where a hook URL sends, read once by ``parse_hook_url`` for both the save-time check
    and the connection, so what was checked is what is reached."""

    scheme: str  # http or https
    host: str  # a name (IDNA, ASCII) or an IP address, IPv6 without its brackets
    port: int  # the URL's, or the scheme's default: always given, never guessed from host
    request_uri: str  # path and query, %-escaped as sent
    auth: str | None  # the URL's user[:password], still %-escaped; None when absent


DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_hook_url(url: str) -> HookTarget:
    """The one reading of a hook URL; raises ``InvalidHookURL`` saying what is wrong.

    The port is always passed on explicitly: left out, ``http.client`` would look for one
    after the host's last colon, reading ``2606:4700::abcd`` as a bad port and
    ``2606:4700::1234`` as host ``2606:4700:`` with port 1234.
    """
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise InvalidHookURL("url is not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidHookURL("url must start with http:// or https://")
    if not parsed.host:
        raise InvalidHookURL("url has no host")
    if parsed.port == 0:
        raise InvalidHookURL("url's port must be between 1 and 65535")
    host = parsed.host
    if host.startswith("["):
        host = host[1:-1]  # an IPv6 literal, which urllib3 has checked
    if not host.isascii():  # urllib3 gives names in IDNA form; anything else cannot be sent
        raise InvalidHookURL("url's host is not a valid host name")
    return HookTarget(
        scheme=parsed.scheme,
        host=host,
        port=parsed.port or DEFAULT_PORTS[parsed.scheme],
        request_uri=parsed.request_uri,
        auth=parsed.auth,
    )


def validate_hook_url(url: str) -> None:
    """Save-time check of a hook URL, for forms and the API; raises ``InvalidHookURL``.

    Refuses what can never work (not http/https, no host, a bad port) and hosts that resolve
    only to refused addresses. A host that does not resolve yet is accepted: DNS may follow,
    and the connect-time check in ``send`` is the real guard.
    """
    target = parse_hook_url(url)
    try:
        resolve_allowed_addresses(target.host, target.port)
    except AddressNotAllowed as exc:
        raise InvalidHookURL(f"url is blocked: {exc}") from None
    except (OSError, UnicodeError):
        return


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
    connect_timeout = min(float(settings.HOOKS_CONNECT_TIMEOUT_SECONDS), total)
    started = time.monotonic()

    def result(status: int | None = None, **fields) -> TransportResult:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        return TransportResult(status=status, duration_ms=elapsed_ms, **fields)

    try:
        target = parse_hook_url(url)
    except InvalidHookURL as invalid:
        return result(error=invalid.message)

    request_headers = dict(headers)
    if target.auth and not any(name.lower() == "authorization" for name in request_headers):
        # GitLab sends URL credentials as HTTP Basic auth, never in the request line.
        user, _, password = target.auth.partition(":")
        credentials = f"{unquote(user)}:{unquote(password)}".encode()
        request_headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()

    watch = _Watch(deadline=started + total)
    host = target.host
    origin: OriginKey = (target.scheme, host, target.port, verify_ssl)

    def new_connection() -> HTTPConnection:
        return _open_connection(
            target.scheme, host, target.port, verify_ssl=verify_ssl, connect_timeout=connect_timeout
        )

    phase = "connect"
    connection = None
    response = None
    keep_alive = False
    try:
        connection = _keepalive.take(origin)
        reused = connection is not None
        if connection is None:
            connection = new_connection()
        watch.connection = connection
        _watchdog.watch(watch)
        while True:
            connection.watch = watch
            try:
                if connection.sock is None:
                    phase = "connect"
                    connection.timeout = connect_timeout
                    connection.connect()
                phase = "response"
                # urllib3 applies the connection's timeout to every later socket operation,
                # reading the answer included: give it what is left of the budget.
                connection.timeout = max(0.001, watch.deadline - time.monotonic())
                connection.request(
                    "POST",
                    target.request_uri,
                    body=body,
                    headers=request_headers,
                    preload_content=False,
                    decode_content=False,
                )
                response = connection.getresponse()
                break
            except _STALE_CONNECTION_ERRORS:
                if not reused or watch.fired:
                    raise
                connection.close()
                reused = False
                connection = new_connection()
                watch.connection = connection
        if watch.fired:
            # A shut socket reads as the end of the headers: what came is not the answer.
            response = None
            raise TimeoutError
        phase = "body"
        data = response.read(max_body_bytes + 1)
        cut_short = watch.fired
        # Reusable only after a whole answer: read to its end (a body over the limit is not),
        # in time, and the receiver did not say it closes (http.client then dropped the
        # socket already).
        keep_alive = not cut_short and response.isclosed() and connection.sock is not None
        return result(
            response.status,
            headers=dict(response.headers.itermerged()),
            body=data[:max_body_bytes],
            truncated=len(data) > max_body_bytes or cut_short,
            error=f"timed out after {total:g} s reading the response body" if cut_short else "",
        )
    except AddressNotAllowed as exc:
        return result(error=str(exc))
    except ImproperlyConfigured:
        raise  # a bad HOOKS_ALLOWED_NETWORKS is the operator's to fix, loudly
    except Exception as exc:  # the network can fail in many ways; each becomes an error text
        error = _describe(exc, phase=phase, watch=watch, total=total, host=host)
        if response is not None:
            # The receiver answered, then the body failed: the status stands.
            return result(response.status, headers=dict(response.headers.itermerged()), error=error)
        return result(error=error)
    finally:
        watch.done = True
        # Should the watchdog fire in this very instant, it shuts a socket the pool holds;
        # the next taker finds it closed and opens another.
        if connection is not None:
            if keep_alive and not watch.fired:
                _keepalive.give_back(origin, connection)
            else:
                connection.close()


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
    "AddressNotAllowed",
    "HookTarget",
    "InvalidHookURL",
    "Outgoing",
    "RESPONSE_BODY_LIMIT",
    "TransportResult",
    "allowed_networks",
    "close_idle_connections",
    "parse_hook_url",
    "refusal_reason",
    "resolve_allowed_addresses",
    "exception_summary",
    "send",
    "send_many",
    "validate_hook_url",
]
