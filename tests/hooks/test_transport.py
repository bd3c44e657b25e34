"""The HTTP seam against real servers on 127.0.0.1: what goes over the wire, what comes back,
timeouts, refusals and the SSRF guard."""

import base64
import ipaddress
import socket
import threading
import time

import pytest

from hooks import destinations, transport
from hooks.destinations import InvalidHookURL, refusal_reason, validate_hook_url
from hooks.transport import send
from pipelines.redaction import redact_url
from tests.hooks.receiver import TLS_DIR, Receiver, Reply

BODY = b'{"object_kind":"pipeline"}'


def test_send_posts_body_and_headers_and_returns_the_answer(receiver):
    receiver.script(Reply(201, headers={"X-Receiver": "yes"}, body=b"thanks"))
    result = send(receiver.url, BODY, {"Content-Type": "application/json", "X-Custom": "1"})
    assert (result.status, result.body, result.truncated, result.error) == (
        201,
        b"thanks",
        False,
        "",
    )
    assert result.headers["X-Receiver"] == "yes"
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.body == BODY
    assert request.header("Content-Type") == "application/json"
    assert request.header("X-Custom") == "1"
    assert request.header("Content-Length") == str(len(BODY))
    assert request.header("Host") == f"127.0.0.1:{receiver.port}"


def test_send_reports_http_errors_as_results_not_exceptions(receiver):
    receiver.script(Reply(500, body=b"boom"))
    result = send(receiver.url, BODY, {})
    assert (result.status, result.body, result.error) == (500, b"boom", "")


def test_send_does_not_follow_redirects(receiver):
    receiver.script(Reply(302, headers={"Location": f"http://127.0.0.1:{receiver.port}/other"}))
    result = send(receiver.url, BODY, {})
    assert result.status == 302
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_send_keeps_at_most_the_limit_of_the_body_and_says_so(receiver):
    receiver.script(Reply(200, body=b"x" * 20_000))
    result = send(receiver.url, BODY, {})
    assert result.status == 200
    assert result.body == b"x" * transport.RESPONSE_BODY_LIMIT
    assert result.truncated is True


def test_send_times_out_waiting_for_a_slow_receiver(receiver):
    receiver.script(Reply(200, delay=3))
    result = send(receiver.url, BODY, {}, timeout=0.5)
    assert result.status is None
    assert "timed out" in result.error


def test_send_total_budget_stops_a_receiver_that_trickles_bytes():
    """Each byte arrives well within the per-read timeout, but the whole answer would take
    far longer than the budget: the watchdog ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        result = send(f"http://127.0.0.1:{port}/hook", BODY, {}, timeout=0.6)
    finally:
        stop.set()
        server.close()
    assert result.status is None
    assert result.error.startswith("timed out after 0.6 s")


def test_send_reports_connection_refused(closed_port):
    result = send(f"http://127.0.0.1:{closed_port}/hook", BODY, {})
    assert result.status is None
    assert result.error == "connection refused by 127.0.0.1"


def test_send_turns_url_credentials_into_basic_auth(receiver):
    url = receiver.url.replace("http://", "http://ci:p%40ss@")
    send(url, BODY, {})
    [request] = receiver.requests
    assert request.header("Authorization") == "Basic " + base64.b64encode(b"ci:p@ss").decode()
    # The log shows the URL with its credentials masked, user included (GitLab's rule).
    assert redact_url(url) == receiver.url.replace("http://", "http://*****:*****@")


def test_send_over_tls_verifies_the_certificate_unless_told_not_to():
    server = Receiver(tls=True).start()
    try:
        refused = send(server.url, BODY, {}, verify_ssl=True)
        assert refused.status is None
        assert refused.error.startswith("TLS failed") and "certificate" in refused.error
        accepted = send(server.url, BODY, {}, verify_ssl=False)
        assert accepted.status == 200
        assert [r.body for r in server.requests] == [BODY]
    finally:
        server.stop()
    assert (TLS_DIR / "receiver.crt").exists()


# --- SSRF guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "special-purpose"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible
        ("64:ff9b::a00:1", "IPv4 networks"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "IPv4 networks"),  # 6to4 of 10.0.0.1
    ],
)
def test_refusal_reason_refuses_non_public_addresses(settings, address, reason):
    settings.HOOKS_ALLOWED_NETWORKS = []
    assert reason in (refusal_reason(ipaddress.ip_address(address)) or "allowed")


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_refusal_reason_allows_public_addresses(settings, address):
    settings.HOOKS_ALLOWED_NETWORKS = []
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_allow_list_opens_only_its_networks_including_mapped_forms(settings):
    settings.HOOKS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert refusal_reason(ipaddress.ip_address("10.1.2.3")) is None
    assert refusal_reason(ipaddress.ip_address("::ffff:10.1.2.3")) is None
    assert refusal_reason(ipaddress.ip_address("192.168.1.1")) == "a private address"
    settings.HOOKS_ALLOWED_NETWORKS = "127.0.0.0/8, 192.168.0.0/16"  # as the env var reads
    assert refusal_reason(ipaddress.ip_address("192.168.1.1")) is None


def test_send_refuses_loopback_without_the_allow_list(settings, receiver):
    settings.HOOKS_ALLOWED_NETWORKS = []
    result = send(receiver.url, BODY, {})
    assert result.status is None
    assert "127.0.0.1 is a loopback address" in result.error
    assert "HOOKS_ALLOWED_NETWORKS" in result.error
    assert receiver.requests == []


@pytest.mark.parametrize(
    "host",
    ["localhost", "[::ffff:127.0.0.1]", "2130706433", "[::1]"],
    ids=["name", "ipv4-mapped", "decimal", "ipv6"],
)
def test_send_refuses_other_spellings_of_loopback(settings, receiver, host):
    settings.HOOKS_ALLOWED_NETWORKS = []
    result = send(f"http://{host}:{receiver.port}/hook", BODY, {})
    assert result.status is None
    assert "loopback" in result.error
    assert receiver.requests == []


def test_send_connects_to_the_address_it_checked(monkeypatch, receiver):
    """One resolution per request, and the connection goes to that answer: a second,
    different DNS answer (rebinding) is never asked for. Host and TLS keep the name."""
    calls = []
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        calls.append(host)
        if host == "hooks.example":
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(transport.socket, "getaddrinfo", resolve)
    result = send(f"http://hooks.example:{receiver.port}/hook", BODY, {})
    assert result.status == 200
    assert calls == ["hooks.example"]
    assert receiver.requests[0].header("Host") == f"hooks.example:{receiver.port}"


def test_validate_hook_url_explains_refusals(settings):
    settings.HOOKS_ALLOWED_NETWORKS = []
    with pytest.raises(InvalidHookURL) as refused:
        validate_hook_url("http://10.0.0.5:8080/hook")
    assert str(refused.value) == (
        "url is blocked: 10.0.0.5 is a private address; hooks may not send there unless "
        "HOOKS_ALLOWED_NETWORKS includes it"
    )
    with pytest.raises(InvalidHookURL, match="must start with http:// or https://"):
        validate_hook_url("ftp://example.com/hook")
    with pytest.raises(InvalidHookURL, match="no host"):
        validate_hook_url("http:///hook")
    with pytest.raises(InvalidHookURL, match="resolves to 127.0.0.1"):
        validate_hook_url("http://localhost/hook")
    # Public addresses, and names that do not resolve yet, are accepted at save time.
    validate_hook_url("https://8.8.8.8/hook")
    validate_hook_url("https://receiver.invalid/hook")
    settings.HOOKS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    validate_hook_url("http://10.0.0.5:8080/hook")


# --- Keep-alive -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_kept_connections():
    """Each test starts and ends with no idle connection from another test."""
    transport.close_idle_connections()
    yield
    transport.close_idle_connections()


def test_send_reuses_a_kept_alive_connection(receiver):
    first = send(receiver.url, BODY, {})
    second = send(receiver.url, b'{"n":2}', {})
    assert (first.status, second.status) == (200, 200)
    one, two = receiver.requests
    assert one.client_port == two.client_port  # the same TCP connection
    assert two.body == b'{"n":2}'


def test_send_waits_for_an_answer_slower_than_the_connect_timeout(settings, receiver):
    """The connect timeout bounds connecting only; the answer may take the whole budget."""
    settings.HOOKS_CONNECT_TIMEOUT_SECONDS = 0.2
    receiver.script(Reply(200, delay=0.6))
    result = send(receiver.url, BODY, {}, timeout=5)
    assert (result.status, result.error) == (200, "")


def test_a_cut_short_or_timed_out_exchange_is_not_reused(receiver):
    receiver.script(Reply(200, body=b"x" * 20_000), Reply(200, delay=2))
    send(receiver.url, BODY, {})  # body over the limit: the rest is never read
    send(receiver.url, BODY, {}, timeout=0.3)  # the watchdog shut this one
    after = send(receiver.url, BODY, {})
    assert after.status == 200
    ports = [r.client_port for r in receiver.requests]
    assert len(set(ports)) == 3


def test_reuse_does_not_bypass_the_guard_for_another_host(settings, monkeypatch, receiver):
    """An allowed host's kept connection is never lent to another host on the same port:
    the other host is resolved and checked on its own, and refused."""
    settings.HOOKS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    resolved = []
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        resolved.append(host)
        address = {"hooks.example": "127.0.0.1", "internal.example": "127.0.0.2"}.get(host, host)
        return real_getaddrinfo(address, port, *args, **kwargs)

    monkeypatch.setattr(transport.socket, "getaddrinfo", resolve)
    assert send(f"http://hooks.example:{receiver.port}/hook", BODY, {}).status == 200

    refused = send(f"http://internal.example:{receiver.port}/hook", BODY, {})

    assert refused.status is None
    assert "resolves to 127.0.0.2, which is a loopback address" in refused.error
    assert resolved == ["hooks.example", "internal.example"]
    assert len(receiver.requests) == 1


def test_a_kept_connection_is_checked_again_when_the_allow_list_shrinks(settings, receiver):
    assert send(receiver.url, BODY, {}).status == 200
    settings.HOOKS_ALLOWED_NETWORKS = []
    refused = send(receiver.url, BODY, {})
    assert refused.status is None and "loopback" in refused.error
    assert len(receiver.requests) == 1


class ClosingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers with keep-alive framing and then,
    per connection, closes once idle or hangs up on the next request unanswered (what
    receivers with short keep-alive timeouts do), or hangs up on every request."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour  # "close-when-idle" | "hang-up-on-reuse" | "hang-up"
        self.connections = 0
        self.requests = 0
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            answered = 0
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                if self.behaviour == "hang-up" or (
                    answered and self.behaviour == "hang-up-on-reuse"
                ):
                    return  # read the request, answer nothing, close
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                answered += 1
                if self.behaviour == "close-when-idle":
                    return

    def close(self) -> None:
        self._server.close()


@pytest.mark.parametrize("behaviour", ["close-when-idle", "hang-up-on-reuse"])
def test_a_kept_connection_the_receiver_closed_is_replaced(behaviour):
    server = ClosingServer(behaviour)
    try:
        first = send(server.url, BODY, {})
        time.sleep(0.05)  # let a closing server's FIN arrive
        second = send(server.url, BODY, {})
    finally:
        server.close()
    assert (first.status, second.status, second.error) == (200, 200, "")
    assert server.connections == 2


def test_a_new_connection_hung_up_on_is_an_error_sent_once():
    """Only a reused connection gets a second try: on a new one, a hang-up is the answer."""
    server = ClosingServer("hang-up")
    try:
        result = send(server.url, BODY, {})
    finally:
        server.close()
    assert result.status is None and result.error
    assert (server.connections, server.requests) == (1, 1)


# --- One reading of a hook URL ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "request_uri"),
    [
        ("http://[2606:4700::abcd]/hook", "2606:4700::abcd", 80, "/hook"),
        ("https://[2606:4700::abcd]/hook", "2606:4700::abcd", 443, "/hook"),
        # An all-digit last group is part of the address, not a port.
        ("http://[2606:4700::1234]/x", "2606:4700::1234", 80, "/x"),
        ("http://[::ffff:1.2.3.4]:8080/x?a=1", "::ffff:1.2.3.4", 8080, "/x?a=1"),
        ("http://[::1]:/x", "::1", 80, "/x"),
        ("http://exämple.com/x", "xn--exmple-cua.com", 80, "/x"),
        ("http://receiver:8080/hook", "receiver", 8080, "/hook"),
    ],
)
def test_parse_hook_url_reads_host_and_port_once_for_check_and_connection(
    url, host, port, request_uri
):
    target = destinations.parse_hook_url(url)
    assert (target.host, target.port, target.request_uri) == (host, port, request_uri)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1]:0/x", "port must be between 1 and 65535"),
        ("http://[::1]:99999/x", "not a valid URL"),
        ("http://[zzz]/x", "not a valid URL"),
        ("http://[1.2.3.4]/x", "not a valid URL"),
        ("http://[::1/x", "not a valid URL"),
        ("gopher://[::1]/x", "must start with http:// or https://"),
        ("http://exa\ud800mple.com/x", "not a valid URL"),
    ],
)
def test_parse_hook_url_refuses_what_cannot_be_sent(url, message):
    with pytest.raises(InvalidHookURL, match=message):
        destinations.parse_hook_url(url)
    # The sender refuses it the same way, as a result, not an exception.
    assert message in send(url, BODY, {}).error


def test_an_all_digit_last_group_is_not_read_as_a_port(settings):
    """``[::1:PORT]`` is the address ::1:PORT (refused: reserved), not ::1 at port PORT,
    where a receiver listens: what the save-time check looked at is what is connected to."""
    settings.HOOKS_ALLOWED_NETWORKS = ["::1/128"]
    receiver = _ipv6_receiver_on_a_port_written_in_digits()
    try:
        url = f"http://[::1:{receiver.port}]/hook"
        with pytest.raises(InvalidHookURL, match=f"::1:{receiver.port} is a reserved address"):
            validate_hook_url(url)
        result = send(url, BODY, {})
        assert result.status is None
        assert f"::1:{receiver.port} is a reserved address" in result.error
        assert receiver.requests == []
        # The same receiver, named as it is, gets the request.
        assert send(receiver.url, BODY, {}).status == 200
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()


def _ipv6_receiver_on_a_port_written_in_digits() -> Receiver:
    """A receiver on [::1] at a port of four decimal digits (so also an IPv6 group)."""
    for port in range(8100, 9999, 37):
        try:
            return Receiver(host="::1").start(port)
        except OSError:
            continue
    raise AssertionError("no free port between 8100 and 9999 on ::1")


def test_send_reaches_an_ipv4_mapped_literal_with_a_port(receiver):
    result = send(f"http://[::ffff:127.0.0.1]:{receiver.port}/hook", BODY, {})
    assert (result.status, result.error) == (200, "")
    assert receiver.requests[0].header("Host") == f"[::ffff:127.0.0.1]:{receiver.port}"


def test_send_to_an_ipv6_literal_without_a_port_uses_the_default_port(settings):
    """It used to raise (``nonnumeric port: '127.0.0.1'``) instead of returning a result."""
    settings.HOOKS_ALLOWED_NETWORKS = []
    result = send("http://[::ffff:127.0.0.1]/hook", BODY, {})
    assert result.status is None
    assert "resolves to ::ffff:7f00:1, which is a loopback address" in result.error
