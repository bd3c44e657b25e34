import pytest

from pipelines import services
from tests.factories import ProjectFactory, UserFactory


@pytest.fixture
def user(db):
    return UserFactory(username="ci-bot")


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def make_token(db):
    """Create a real access token; returns the raw value a client would send."""

    def make(user=None, scopes=("api",), projects=(), groups=()):
        user = user or UserFactory()
        _, raw = services.create_token(user, scopes=list(scopes), projects=projects, groups=groups)
        return raw

    return make
