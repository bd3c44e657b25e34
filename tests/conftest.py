import os
import time
import uuid
from types import SimpleNamespace

import django_ratelimit.core
import pytest

from pipelines import auth, token_cache
from pipelines.management.embedded_redis import EmbeddedRedis
from tests.clients import api_client_with
from tests.factories import ALL_PROJECT_PERMISSIONS, ProjectFactory, UserFactory, grant_permissions
from tests.hooks.receiver import Receiver


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.other_hosts("10.77.0.0/24")``: this test may also connect there (hosts of
    network namespaces it starts, say). pytest-socket's own allow_hosts marker would replace
    the loopback allow-list (addopts' --allow-hosts) instead of adding to it."""
    loopback = (config.getoption("--allow-hosts") or "").split(",")
    for item in items:
        if marker := item.get_closest_marker("other_hosts"):
            item.add_marker(pytest.mark.allow_hosts([*loopback, *marker.args]))


@pytest.fixture(autouse=True)
def rate_limit_counts(settings, monkeypatch):
    """Every test counts test and resend clicks from zero, in a cache of its own, and within
    one window: django-ratelimit counts per fixed minute, so a test whose clicks straddled a
    minute's end would see its count start again halfway."""
    settings.CACHES = {
        **settings.CACHES,
        "rate_limits": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        },
    }
    now = int(time.time())
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: now))


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
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start(timeout=10)
    try:
        yield server.url
    finally:
        server.stop()


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
def api_user(db):
    """Whose token ``api_client`` sends. A module whose tests act as someone in particular
    overrides this fixture."""
    return UserFactory()


@pytest.fixture
def api_token(make_token, api_user) -> str:
    """The raw token ``api_client`` sends: scope ``api``, ``api_user`` holding every project
    right. A module that needs another scope overrides this fixture."""
    return make_token(user=api_user)


@pytest.fixture
def api_client(api_token):
    """The API as a CI system calls it, with ``api_token`` (pytest-django's ``client`` is
    Django's own test client, signed in as nobody)."""
    return api_client_with(api_token)


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted replies."""
    server = Receiver().start()
    yield server
    server.stop()
