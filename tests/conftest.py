import pytest

from pipelines import services
from tests.factories import ALL_PROJECT_PERMISSIONS, ProjectFactory, UserFactory, grant_permissions
from tests.hooks.receiver import Receiver


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
        _, raw = services.create_token(user, scopes=list(scopes), projects=projects, groups=groups)
        return raw

    return make


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted replies."""
    server = Receiver().start()
    yield server
    server.stop()
