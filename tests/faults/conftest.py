# The session's Redis (REDIS_URL, or an embedded one), as the end-to-end tests use it.
from tests.hooks.test_e2e import broker_url  # noqa: F401
