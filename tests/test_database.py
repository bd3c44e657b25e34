"""config/settings.py's database options, as the server sees them."""

import uuid

import pytest
from django.db import connection


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
