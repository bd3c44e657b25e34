"""POST /projects/:id/statuses/:sha and GET /projects/:id/repository/commits/:sha/statuses."""

import re

import pytest

from pipelines.models import Job, Pipeline
from tests.factories import UserFactory

SHA = "18f3e63d05582537db6d183d9d557be09e1f90c8"
GITLAB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def reporter(db):
    return UserFactory(username="jenkins", first_name="Jen", last_name="Kins")


@pytest.fixture
def api_user(reporter):
    return reporter


def post_status(api_client, project, sha=SHA, **data):
    return api_client.post(f"/api/v4/projects/{project.pk}/statuses/{sha}", data, format="json")


def test_post_status_creates_external_pipeline_and_answers_gitlab_entity(api_client, project):
    response = post_status(
        api_client,
        project,
        state="pending",
        ref="main",
        name="build",
        target_url="https://ci.example.com/builds/1",
        description="queued",
        coverage=87.5,
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    job = Job.objects.get()
    pipeline = Pipeline.objects.get()
    assert pipeline.source == "external" and pipeline.sha == SHA and pipeline.ref == "main"
    assert set(body) == {
        "id",
        "sha",
        "ref",
        "status",
        "name",
        "target_url",
        "description",
        "created_at",
        "started_at",
        "finished_at",
        "allow_failure",
        "coverage",
        "pipeline_id",
        "author",
    }
    assert body["id"] == job.pk and body["pipeline_id"] == pipeline.pk
    assert (body["sha"], body["ref"], body["status"], body["name"]) == (
        SHA,
        "main",
        "pending",
        "build",
    )
    assert body["target_url"] == "https://ci.example.com/builds/1"
    assert body["description"] == "queued" and body["coverage"] == 87.5
    assert body["allow_failure"] is False
    assert GITLAB_TIME.match(body["created_at"])
    assert body["started_at"] is None and body["finished_at"] is None
    assert body["author"] == {
        "id": job.user_id,
        "username": "jenkins",
        "name": "Jen Kins",
        "state": "active",
        "locked": False,
        "avatar_url": None,
        "web_url": "http://127.0.0.1:8000/jenkins",
    }


def test_post_status_moves_the_same_job_through_its_states(api_client, project):
    first = post_status(api_client, project, state="pending", ref="main", name="build").json()
    running = post_status(api_client, project, state="running", ref="main", name="build").json()
    done = post_status(api_client, project, state="success", ref="main", name="build").json()
    assert first["id"] == running["id"] == done["id"]
    assert GITLAB_TIME.match(running["started_at"]) and GITLAB_TIME.match(done["finished_at"])
    assert Job.objects.get().status == "success"
    assert Pipeline.objects.get().status == "success"


def test_post_status_takes_parameters_from_the_query_string_and_context_as_name(
    api_client, project
):
    # curl --request POST ".../statuses/SHA?state=success&context=lint" is GitLab's own example.
    response = api_client.post(
        f"/api/v4/projects/{project.pk}/statuses/{SHA}?state=running&context=lint&ref=dev"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["name"] == "lint"
    assert response.json()["ref"] == "dev"


def test_post_status_without_name_uses_default(api_client, project):
    assert post_status(api_client, project, state="success").json()["name"] == "default"


def test_post_status_after_finish_starts_a_new_attempt(api_client, project):
    old = post_status(api_client, project, state="failed", ref="main", name="test").json()
    new = post_status(api_client, project, state="pending", ref="main", name="test").json()
    assert new["id"] != old["id"]
    assert Job.objects.get(pk=old["id"]).retried is True
    # GitLab's enqueue of a finished pipeline runs it again.
    assert Pipeline.objects.get().status == "running"


def test_post_status_with_stage_orders_stages(api_client, project):
    post_status(api_client, project, state="success", ref="main", name="compile", stage="build")
    post_status(api_client, project, state="running", ref="main", name="unit", stage="test")
    assert Pipeline.objects.get().stage_names() == ["build", "test"]


def test_post_status_to_a_given_pipeline(api_client, project):
    one = post_status(api_client, project, state="pending", ref="main", name="a").json()
    response = post_status(
        api_client, project, state="running", name="b", pipeline_id=one["pipeline_id"]
    )
    assert response.status_code == 201
    assert response.json()["pipeline_id"] == one["pipeline_id"]


def test_post_status_to_unknown_pipeline_is_404_and_changes_nothing(api_client, project):
    response = post_status(api_client, project, state="pending", name="a", pipeline_id=999)
    assert response.status_code == 404
    assert response.json() == {"message": "404 Pipeline Not Found"}
    assert not Job.objects.exists() and not Pipeline.objects.exists()


def test_post_status_for_project_by_path(api_client, project):
    response = api_client.post(
        f"/api/v4/projects/{project.namespace}%2F{project.path}/statuses/{SHA}",
        {"state": "success"},
        format="json",
    )
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "state is missing"),
        (
            {"state": "done"},
            "state does not have a valid value "
            "(one of: pending, running, success, failed, canceled, skipped)",
        ),
        ({"state": "success", "coverage": "lots"}, "coverage is invalid"),
        ({"state": "success", "target_url": "not a url"}, "target_url is invalid"),
        ({"state": "success", "pipeline_id": "x"}, "pipeline_id is invalid"),
        ({"state": "success", "name": "x" * 256}, "name is invalid: "),
    ],
)
def test_post_status_bad_parameters_are_400_and_change_nothing(api_client, project, data, error):
    response = post_status(api_client, project, **data)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    assert not Job.objects.exists() and not Pipeline.objects.exists()


def test_post_status_refused_transition_is_400_and_changes_nothing(api_client, project):
    post_status(api_client, project, state="success", ref="main", name="build")
    job_before = Job.objects.values().get()
    pipeline_before = Pipeline.objects.values().get()
    # A finished job cannot run again in place, but "running" on a finished status starts a
    # new attempt; the refused move is running -> running on the same attempt.
    post_status(api_client, project, state="running", ref="main", name="deploy")
    deploy_before = Job.objects.values().get(name="deploy")
    response = post_status(api_client, project, state="running", ref="main", name="deploy")
    assert response.status_code == 400
    assert response.json() == {"message": "Cannot transition status via :run from :running"}
    assert Job.objects.values().get(pk=job_before["id"]) == job_before
    assert Job.objects.values().get(name="deploy") == deploy_before
    assert Pipeline.objects.values().get()["id"] == pipeline_before["id"]


def test_post_status_unknown_project_is_404(api_client, db):
    response = post_status(api_client, type("P", (), {"pk": 424242})(), state="success")
    assert response.status_code == 404
    assert response.json() == {"message": "404 Project Not Found"}
    assert not Pipeline.objects.exists()


def test_post_status_too_long_sha_is_400(api_client, project):
    response = post_status(api_client, project, sha="a" * 65, state="success")
    assert response.status_code == 400
    assert "sha is invalid" in response.json()["error"]


# --- GET statuses --------------------------------------------------------------------------


@pytest.fixture
def reported(api_client, project):
    """Two pipelines for SHA (main and dev), three jobs over two stages, one retried."""
    post_status(api_client, project, state="failed", ref="main", name="unit", stage="test")
    post_status(api_client, project, state="running", ref="main", name="unit", stage="test")
    post_status(api_client, project, state="success", ref="main", name="compile", stage="build")
    post_status(api_client, project, state="pending", ref="dev", name="unit", stage="test")
    post_status(api_client, project, sha="f" * 40, state="pending", ref="main", name="other")


def list_statuses(api_client, project, query=""):
    return api_client.get(f"/api/v4/projects/{project.pk}/repository/commits/{SHA}/statuses{query}")


def test_list_statuses_shows_latest_attempts_of_the_commit(api_client, project, reported):
    response = list_statuses(api_client, project)
    assert response.status_code == 200
    body = response.json()
    assert [(s["ref"], s["name"], s["status"]) for s in body] == [
        ("main", "unit", "running"),
        ("main", "compile", "success"),
        ("dev", "unit", "pending"),
    ]
    assert response["X-Total"] == "3"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?all=true", ["failed", "running", "success", "pending"]),
        ("?ref=dev", ["pending"]),
        ("?stage=build", ["success"]),
        ("?name=unit", ["running", "pending"]),
        ("?name=unit&ref=main&all=1", ["failed", "running"]),
    ],
)
def test_list_statuses_filters(api_client, project, reported, query, expected):
    response = list_statuses(api_client, project, query)
    assert [s["status"] for s in response.json()] == expected


def test_list_statuses_of_unreported_commit_is_empty(api_client, project):
    response = api_client.get(
        f"/api/v4/projects/{project.pk}/repository/commits/{'0' * 40}/statuses"
    )
    assert response.status_code == 200
    assert response.json() == []
    assert response["X-Total"] == "0" and response["X-Total-Pages"] == "1"


def test_list_statuses_bad_all_is_400(api_client, project):
    response = list_statuses(api_client, project, "?all=maybe")
    assert response.status_code == 400
    assert response.json() == {"error": "all is invalid"}


def test_post_status_with_empty_target_url_and_description_shows_null(api_client, project):
    response = post_status(api_client, project, state="success", target_url="", description="")
    assert response.status_code == 201, response.json()
    assert (response.json()["target_url"], response.json()["description"]) == (None, None)
