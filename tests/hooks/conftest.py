import socket

import pytest


@pytest.fixture(autouse=True)
def allow_local_receivers(settings):
    """Hook tests send to 127.0.0.1: open the loopback range, as a developer would.
    SSRF tests set HOOKS_ALLOWED_NETWORKS back to [] themselves."""
    settings.HOOKS_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
