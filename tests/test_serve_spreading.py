"""`manage.py serve` with two web processes spreads keep-alive connections evenly over them
(pipelines/management/connection_handoff.py), with real processes and sockets: which process
serves a connection is read from the kernel (psutil: the process holding the connected
socket), never from anything the server tells its clients."""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipelines.management import connection_handoff
from tests.test_serve import (
    ROOT,
    alive,
    embedded_defaults_env,
    free_port,
    healthy,
    kill_leftovers,
    start_serve,
    wait_for,
)
from tests.test_webserver import closed_by_server

CLIENT_TIMEOUT = 4  # seconds; the web processes cut slow clients off after this


class Serve:
    """`manage.py serve` with two web processes; its log kept in a file."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as stderr:
            self.proc = start_serve(
                env, self.port, stderr=stderr, stdout=subprocess.DEVNULL, processes=2
            )
        self.seen: set[int] = set()

    def web_processes(self) -> list[psutil.Process]:
        webs = []
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                if "config.webserver" in " ".join(child.cmdline()) and alive(child.pid):
                    webs.append(child)
        self.seen |= {web.pid for web in webs}
        return webs

    def wait_until_ready(self, starts: int) -> list[psutil.Process]:
        """Until ``starts`` web processes have ever started serving, and two run."""
        wait_for(lambda: healthy(self.base), "the web server")
        log = self.log.read_text
        wait_for(lambda: log().count("Listening on") >= starts, "web processes")
        # serve reads /metrics once when it has started (its summary's first counts).
        wait_for(lambda: '"GET /metrics' in log(), "serve's first look at /metrics")
        return wait_for(lambda: len(webs := self.web_processes()) == 2 and webs, "two webs")

    def wait_for_exits(self, count: int) -> None:
        """Until serve has seen ``count`` web processes exit: a process killed is gone only
        once its last thread is (its descriptors close then), which waiting on it tells."""
        wait_for(
            lambda: self.log.read_text().count("exited with code -9") >= count, "serve to see it"
        )

    def _sockets(self, web: psutil.Process) -> list:
        return [c for c in web.net_connections("tcp") if c.laddr and c.laddr.port == self.port]

    def held(self, web: psutil.Process) -> int:
        """Connections to the port this web process holds."""
        return sum(1 for c in self._sockets(web) if c.status == psutil.CONN_ESTABLISHED)

    def settle(self, webs: list[psutil.Process], keeping: tuple[int, ...] = ()) -> None:
        """Until each web process has closed every connection (but the ``keeping`` still
        open, each's): it tells serve before it closes a socket, so serve's counts are then
        these too, and the next connections are the test's alone to place."""
        expected = list(keeping) or [0] * len(webs)
        wait_for(
            lambda: [len(self._sockets(web)) for web in webs] == expected, "connections closed"
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=30) == 0
        assert not [pid for pid in self.seen if alive(pid)]
        assert "Traceback" not in self.log.read_text()


@pytest.fixture
def migrated_env(tmp_path) -> dict[str, str]:
    env = {
        **embedded_defaults_env(),
        "PIPEHOOK_VAR_DIR": str(tmp_path / "var"),
        # Nothing but the test connects: no summary scrapes of /metrics after the first,
        # which the access log (DEBUG) shows.
        "PIPEHOOK_SUMMARY_INTERVAL_SECONDS": "0",
        "LOG_LEVEL": "DEBUG",
    }
    manage = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
    subprocess.run(manage, cwd=ROOT, env=env, check=True)
    return env


@pytest.fixture
def serve(migrated_env, tmp_path):
    started = Serve(migrated_env, tmp_path / "serve.err")
    try:
        yield started
    finally:
        kill_leftovers(started.proc, started.seen)


@pytest.fixture
def serve_cutting_off(migrated_env, tmp_path):
    """Slow clients cut off after CLIENT_TIMEOUT."""
    env = {**migrated_env, "PIPEHOOK_WEB_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT)}
    started = Serve(env, tmp_path / "serve.err")
    try:
        yield started
    finally:
        kill_leftovers(started.proc, started.seen)


def connect(serve: Serve, source: str = "127.0.0.1") -> http.client.HTTPConnection:
    """A keep-alive connection that has had one answer (so a web process holds it)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", serve.port, timeout=10, source_address=(source, 0)
    )
    ask(connection)
    return connection


def ask(connection: http.client.HTTPConnection) -> None:
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()
    assert response.status == 200


class Busy:
    """Keep-alive clients asking, each on its own connection, until stopped."""

    def __init__(self, connections: list[http.client.HTTPConnection]):
        self.running = threading.Event()
        self.running.set()
        self.answered = 0
        self.failures: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._ask_on, args=(c,), daemon=True) for c in connections
        ]
        for thread in self.threads:
            thread.start()

    def _ask_on(self, connection) -> None:
        while self.running.is_set():
            try:
                ask(connection)
                self.answered += 1
            except Exception as error:  # noqa: BLE001 - reported by stop()
                self.failures.append(error)
                return

    def stop(self) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join(timeout=15)
        assert not self.failures, self.failures
        assert self.answered > 0


def open_together(serve: Serve, count: int) -> list[http.client.HTTPConnection]:
    """``count`` connections opened at the same moment, from as many threads."""
    opened: list[http.client.HTTPConnection] = []
    barrier = threading.Barrier(count)

    def open_one() -> None:
        barrier.wait()
        opened.append(connect(serve))

    threads = [threading.Thread(target=open_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(opened) == count
    return opened


def test_keep_alive_connections_spread_evenly_while_the_web_processes_are_busy(serve):
    webs = serve.wait_until_ready(starts=2)
    serve.settle(webs)
    for _round in range(3):
        # 4 clients, then 4 more while the first 4 keep both processes busy: 2 and 2, then
        # 4 and 4; opened one after another or all at once.
        first = [connect(serve) for _ in range(4)]
        assert sorted(serve.held(web) for web in webs) == [2, 2]
        busy = Busy(first)
        try:
            more = open_together(serve, 4)
            assert [serve.held(web) for web in webs] == [4, 4]
            busy_too = Busy(more)
            time.sleep(1)
            busy_too.stop()
        finally:
            busy.stop()
        for connection in first + more:
            connection.close()
        # The closes reach the counts: the next round starts even again.
        serve.settle(webs)
    # Closes are counted where they happen: with one process's connections closed, it takes
    # the next ones.
    held = [connect(serve) for _ in range(4)]
    first_ones = local_ends(serve, webs[0])
    for connection in [c for c in held if c.sock.getsockname() in first_ones]:
        connection.close()
        held.remove(connection)
    serve.settle(webs, keeping=(0, 2))
    held += [connect(serve) for _ in range(2)]
    assert [serve.held(web) for web in webs] == [2, 2]
    # Stopped while clients hold connections, the web processes stop cleanly.
    serve.stop()
    for connection in held:
        connection.close()


def request_fails(connection: http.client.HTTPConnection) -> bool:
    try:
        ask(connection)
    except (http.client.HTTPException, OSError):
        return True
    return False


def test_a_killed_web_process_loses_its_connections_and_new_ones_go_to_the_others(serve):
    killed, survivor = serve.wait_until_ready(starts=2)
    serve.settle([killed, survivor])
    held = [connect(serve) for _ in range(4)]
    assert [serve.held(killed), serve.held(survivor)] == [2, 2]
    on_killed = [c for c in held if c.sock.getsockname() in local_ends(serve, killed)]
    assert len(on_killed) == 2

    os.kill(killed.pid, signal.SIGKILL)
    serve.wait_for_exits(1)
    # Its connections died with it; the survivor's still answer.
    assert all(request_fails(connection) for connection in on_killed)
    for connection in held:
        if connection not in on_killed:
            ask(connection)
    # Until it is back, every new connection goes to the survivor.
    while_down = [connect(serve) for _ in range(4)]
    assert serve.held(survivor) == 6

    # Started again, it holds fewest: it takes the new ones until it is level.
    restarted = next(web for web in serve.wait_until_ready(starts=3) if web.pid != survivor.pid)
    serve.settle([restarted, survivor], keeping=(0, 6))
    assert serve.held(restarted) == 0
    after = [connect(serve) for _ in range(6)]
    assert [serve.held(restarted), serve.held(survivor)] == [6, 6]
    for connection in held + while_down + after:
        connection.close()

    # With no web process up, a new connection waits in the backlog, and is answered once
    # one is back.
    for web in (restarted, survivor):
        os.kill(web.pid, signal.SIGKILL)
    serve.wait_for_exits(3)
    waiting = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)
    waiting.request("GET", "/healthz")
    assert serve.log.read_text().count("Listening on") == 3, "a web process was back already"
    response = waiting.getresponse()
    assert response.status == 200
    assert serve.log.read_text().count("Listening on") > 3
    waiting.close()
    serve.stop()


def local_ends(serve: Serve, web: psutil.Process) -> set[tuple[str, int]]:
    """The client ends of the connections ``web`` holds."""
    return {
        tuple(connection.raddr)
        for connection in web.net_connections("tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == serve.port
    }


def test_slow_clients_are_cut_off_and_the_peer_address_travels_with_the_connection(
    serve_cutting_off,
):
    serve = serve_cutting_off
    webs = serve.wait_until_ready(starts=2)
    serve.settle(webs)
    # A client from 127.0.0.2: the access log shows the address it connected from.
    connect(serve, source="127.0.0.2").close()
    wait_for(lambda: '127.0.0.2 "GET /healthz' in serve.log.read_text(), "its access log line")
    serve.settle(webs)

    slow = [socket.create_connection(("127.0.0.1", serve.port), timeout=10) for _ in range(4)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        wait_for(lambda: [serve.held(web) for web in webs] == [2, 2], "slow ones held")
        deadline = time.monotonic() + CLIENT_TIMEOUT + 20
        open_ones = list(slow)
        while open_ones and time.monotonic() < deadline:
            for sock in open_ones:
                with contextlib.suppress(OSError):
                    sock.send(b"a")  # never silent, yet too slow
            open_ones = [sock for sock in open_ones if not closed_by_server(sock, 0.3)]
        assert open_ones == [], f"{len(open_ones)} slow clients still connected"
    finally:
        for sock in slow:
            sock.close()
    # Their closes were counted: new connections spread evenly again.
    serve.settle(webs)
    connections = [connect(serve) for _ in range(4)]
    assert sorted(serve.held(web) for web in webs) == [2, 2]
    for connection in connections:
        connection.close()
    serve.stop()


def test_a_stalled_web_process_is_passed_over_until_it_takes_its_connections(serve):
    stalled, other = serve.wait_until_ready(starts=2)
    serve.settle([stalled, other])
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        # Two requests on new connections: holding none, each process is handed one, and the
        # stopped one leaves its connection untaken.
        sent = [http.client.HTTPConnection("127.0.0.1", serve.port, timeout=10) for _ in range(2)]
        for connection in sent:
            connection.request("GET", "/healthz")
        time.sleep(connection_handoff.STALLED_AFTER_SECONDS + 0.5)
        # From then on every new connection is answered by the other, at once.
        answered = [connect(serve) for _ in range(6)]
        assert serve.held(other) == 7
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    # Going again, it answers what it was handed, and then (holding fewest) takes the next.
    for connection in sent:
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        connection.close()
    serve.settle([stalled, other], keeping=(0, 6))
    later = connect(serve)
    assert serve.held(stalled) == 1
    for connection in [*answered, later]:
        connection.close()
    serve.stop()
