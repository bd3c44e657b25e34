"""config/settings.py's database options, as the server sees them."""

import time
import uuid

import pytest
from django.db import connection, connections

from config.postgresql.base import QUIET_CHECK_SECONDS
from tests.database_server import backend_pid, end_on_the_server


def test_postgresql_prepares_the_statements_a_commit_status_repeats(api_client, project):
    """The reads and writes of every status are parsed and planned once per connection."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server to prepare statements on")
    for _ in range(3):
        sha = uuid.uuid4().hex + "0" * 8
        for state in ("pending", "running", "success"):
            response = api_client.post(
                f"/api/v4/projects/{project.pk}/statuses/{sha}",
                {"state": state, "name": "build", "ref": "main"},
                format="json",
            )
            assert response.status_code in (200, 201), response.json()

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    # The pipeline under its row lock and the job's update, among others.
    assert any('FROM "pipelines_pipeline"' in sql and "FOR UPDATE" in sql for sql in prepared)
    assert any(sql.startswith('UPDATE "pipelines_job"') for sql in prepared)


def next_request() -> list[int]:
    """What Django does at a request's start and its first query: [the backend's pid, how
    many health checks were a query]."""
    wrapper = connections["default"]
    asked = []
    is_usable = wrapper.is_usable
    wrapper.is_usable = lambda: asked.append(1) or is_usable()
    try:
        wrapper.close_if_unusable_or_obsolete()  # request_started
        pid = backend_pid()
    finally:
        del wrapper.is_usable
    return [pid, len(asked)]


def test_a_kept_connection_is_checked_without_a_round_trip_until_its_server_ends_it(
    transactional_db,
):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite connections are open files: there is no server to end them")
    assert connection.health_check_enabled or connection.connection is None
    kept = backend_pid()
    # Used just now and nothing on its socket: kept, and no SELECT 1 asked.
    assert next_request() == [kept, 0]
    # Ended by the server: its goodbye on the socket makes the check ask, and a new
    # connection serves the request instead of an error.
    end_on_the_server(kept)
    time.sleep(0.1)
    pid, asked = next_request()
    assert (pid != kept, asked) == (True, 1)
    # Idle for longer than the quiet check trusts: asked again, and kept since it answers.
    connection.last_used_at -= QUIET_CHECK_SECONDS + 1
    assert next_request() == [pid, 1]
