"""The suite stays on this machine: tests connect to loopback and unix sockets only, unless a
test names other hosts with the ``other_hosts`` marker."""

import socket

import pytest
from pytest_socket import SocketConnectBlockedError

# TEST-NET-1 (RFC 5737): nothing answers there, whatever the network.
ELSEWHERE = "192.0.2.1"


def connect(host: str, family=socket.AF_INET) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.05)
        sock.connect((host, 9))


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_a_connection_beyond_loopback_is_refused_before_it_leaves():
    with pytest.raises(SocketConnectBlockedError):
        connect(ELSEWHERE)


def test_loopback_and_unix_sockets_are_allowed(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)


@pytest.mark.other_hosts("192.0.2.0/24")
def test_a_test_that_names_other_hosts_may_reach_them_and_loopback_still():
    with pytest.raises(OSError):  # not blocked: it went out and nothing answered in time
        connect(ELSEWHERE)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
