"""The embedded web server (config/webserver.py) as a real process on the embedded defaults,
met by hostile clients over real sockets: slow clients do not stop it answering others and
are cut off, and oversized bodies (declared, chunked, or longer than declared) are refused
while they arrive, in JSON, with nothing written."""

import contextlib
import json
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.test_serve import embedded_defaults_env, free_port

ROOT = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT = 6  # seconds; the server closes slow clients after this
BODY_LIMIT = 100_000
SLOW_CLIENTS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The web server on a free port, its own SQLite database, and an API token."""
    env = embedded_defaults_env()
    env.update(
        {
            "PIPEHOOK_VAR_DIR": str(tmp_path_factory.mktemp("var")),
            "PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT),
            "PIPEHOOK_MAX_REQUEST_BODY_BYTES": str(BODY_LIMIT),
            "PIPEHOOK_WEB_THREADS": "4",
        }
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    token = subprocess.run(
        [*manage, "shell", "-c", TOKEN_SCRIPT], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "config.webserver", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the web server exited"
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline, "the web server did not answer"
                time.sleep(0.1)
        yield {"base": base, "port": port, "token": token}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


TOKEN_SCRIPT = """
from django.contrib.auth import get_user_model
from pipelines import auth
user = get_user_model().objects.create_superuser("root", "root@localhost", "pw")
print(auth.create_token(user, scopes=["api"], name="test")[1])
"""


def project_count(server) -> int:
    response = requests.get(
        f"{server['base']}/api/v4/projects", headers={"PRIVATE-TOKEN": server["token"]}, timeout=10
    )
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total"])


def open_connection(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server["port"]), timeout=30)


def start_slow_request(server, number: int) -> socket.socket:
    """A request begun and never finished: half trickle their headers, half their body."""
    sock = open_connection(server)
    if number % 2:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:
        sock.sendall(
            b"POST /api/v4/projects HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"PRIVATE-TOKEN: " + server["token"].encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n{"
        )
    return sock


def closed_by_server(sock: socket.socket, wait: float = 0) -> bool:
    """Whether the server has closed the connection (waiting up to ``wait`` seconds)."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except ConnectionError:
        return True


def test_slow_clients_do_not_stop_healthz_and_are_cut_off(server):
    slow = [start_slow_request(server, number) for number in range(SLOW_CLIENTS)]
    trickling = threading.Event()
    trickling.set()

    def trickle() -> None:
        # One byte each every half second: never silent long enough to look idle.
        while trickling.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            time.sleep(0.5)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        # While all twenty are mid-request, everyone else is served as usual.
        answered = []
        for _ in range(5):
            response = requests.get(f"{server['base']}/healthz", timeout=10)
            answered.append(response.status_code)
        assert answered == [200] * 5
        assert not any(closed_by_server(sock) for sock in slow[:2]), "cut off too early"

        # Then each is disconnected, although it kept sending, once its request has taken
        # longer than the client timeout.
        deadline = time.monotonic() + CLIENT_TIMEOUT + 30
        open_ones = list(slow)
        while open_ones and time.monotonic() < deadline:
            open_ones = [sock for sock in open_ones if not closed_by_server(sock)]
            time.sleep(0.2)
        assert open_ones == [], f"{len(open_ones)} slow clients still connected"
    finally:
        trickling.clear()
        trickler.join(timeout=5)
        for sock in slow:
            sock.close()
    assert requests.get(f"{server['base']}/healthz", timeout=10).status_code == 200


def test_a_silent_client_is_disconnected(server):
    sock = open_connection(server)
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT + 30
        while not closed_by_server(sock):
            assert time.monotonic() < deadline, "a client that sent nothing is still connected"
            time.sleep(0.2)
    finally:
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One HTTP response (the server closes after a refusal); status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("Content-Length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def request_head(server, *headers: str) -> bytes:
    lines = [
        "POST /api/v4/projects HTTP/1.1",
        "Host: 127.0.0.1",
        f"PRIVATE-TOKEN: {server['token']}",
        "Content-Type: application/json",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


TOO_LARGE = {
    "message": f"413 Request Entity Too Large: the request body may be at most {BODY_LIMIT} bytes"
}


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server):
    before = project_count(server)
    with open_connection(server) as sock:
        # Only the headers go out: the refusal must not wait for the body.
        sock.sendall(request_head(server, f"Content-Length: {BODY_LIMIT * 50}"))
        status, headers, body = read_response(sock)

    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == TOO_LARGE
    assert project_count(server) == before


def stream_until_answered(sock: socket.socket, piece: bytes, most: int) -> int:
    """Send ``piece`` after ``piece`` until the server answers (or ``most`` bytes went out);
    the bytes sent."""
    sent = 0
    while sent < most:
        readable, _, _ = select.select([sock], [], [], 0.01)
        if readable:
            break
        try:
            sock.sendall(piece)
        except OSError:
            break
        sent += len(piece)
    return sent


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(server):
    before = project_count(server)
    chunk = b"x" * 10_000
    with open_connection(server) as sock:
        sock.sendall(request_head(server, "Transfer-Encoding: chunked") + b'2\r\n{"\r\n')
        # The body never ends: only counting it as it arrives can refuse it.
        stream_until_answered(sock, b"%x\r\n%s\r\n" % (len(chunk), chunk), BODY_LIMIT * 50)
        status, _, body = read_response(sock)
        assert closed_by_server(sock, wait=10), "the server kept the connection to read on"

    assert status == 413
    assert json.loads(body) == TOO_LARGE
    assert project_count(server) == before


def test_a_body_longer_than_it_declares_is_not_read_past_its_length(server):
    before = project_count(server)
    declared = b'{"name": "lie", "path": "lie"}'
    with open_connection(server) as sock:
        sock.sendall(request_head(server, f"Content-Length: {len(declared)}") + declared)
        status, _, _ = read_response(sock)
        assert status == 201  # what it declared, and only that, was the request
        # The rest is no body: it is read as the next request's headers, refused when they
        # pass their own limit, and the connection closed.
        stream_until_answered(sock, b"y" * 10_000, BODY_LIMIT * 50)
        status, _, body = read_response(sock)
        assert closed_by_server(sock, wait=10), "the server kept the connection to read on"

    assert status == 431
    assert json.loads(body)["message"].startswith("431 Request Header Fields Too Large")
    assert project_count(server) == before + 1
