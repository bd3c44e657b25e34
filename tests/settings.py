"""The test suite's settings: production's (config/settings.py), and what only tests need.

pytest uses this module (pyproject.toml). Processes the tests start as a deployment would
(``manage.py serve``, Celery workers, the web server) get ``config.settings`` and their
environment, as in production.
"""

from config.settings import *  # noqa: F403
from config.settings import ALLOWED_HOSTS, DATABASES, VAR_DIR, env

# The host name Django's test client sends.
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]

if DATABASES["default"]["ENGINE"] == "config.sqlite3":
    # A file, not memory, so end-to-end tests can share it with a real worker process.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("PIPEHOOK_TEST_DB", default=str(VAR_DIR / "test.sqlite3"))
    }

# Tasks go to a broker, as in production: the end-to-end tests' workers take them from there.
# A test that wants them run in its own process turns this on for itself.
CELERY_TASK_ALWAYS_EAGER = False

# Receivers in tests listen on 127.0.0.1. Tests of the SSRF rule set this back to [].
HOOKS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
