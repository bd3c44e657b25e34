"""The pipelines endpoints: list, get, create, retry, cancel, delete, jobs, variables, latest."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from hooks.payloads import build_pipeline_payload
from pipelines import services
from pipelines.models import Job, Pipeline
from tests.factories import ProjectFactory, UserFactory

GITLAB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def owner(db):
    return UserFactory(username="ada", first_name="Ada", last_name="Lovelace")


@pytest.fixture
def api_user(owner):
    return owner


def url(project, rest=""):
    return f"/api/v4/projects/{project.pk}{rest}"


def at(minutes: int) -> datetime:
    return datetime(2024, 5, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)


# --- List ----------------------------------------------------------------------------------


@pytest.fixture
def pipelines(project, owner):
    """Four pipelines of the project, one in another project; statuses and times differ."""
    other_user = UserFactory(username="bob")
    made = [
        services.create_pipeline(project, ref="main", sha="a" * 40, source="push", at=at(0)),
        services.create_pipeline(
            project, ref="dev", sha="b" * 40, source="web", user=owner, at=at(10)
        ),
        services.create_pipeline(
            project, ref="main", sha="c" * 40, source="push", user=other_user, at=at(20)
        ),
        services.create_pipeline(project, ref="v1.0", sha="d" * 40, tag=True, at=at(30)),
    ]
    services.transition_pipeline(made[0], "success", at=at(5))
    services.transition_pipeline(made[1], "running", at=at(40))
    services.transition_pipeline(made[2], "failed", at=at(25))
    services.create_pipeline(ProjectFactory(), ref="main", sha="e" * 40)
    return [Pipeline.objects.get(pk=p.pk) for p in made]


def ids(response):
    return [p["id"] for p in response.json()]


def test_list_pipelines_newest_first_with_basic_fields(api_client, project, pipelines):
    response = api_client.get(url(project, "/pipelines"))
    assert response.status_code == 200
    assert ids(response) == [p.pk for p in reversed(pipelines)]
    first = response.json()[-1]
    assert first == {
        "id": pipelines[0].pk,
        "iid": 1,
        "project_id": project.pk,
        "sha": "a" * 40,
        "ref": "main",
        "status": "success",
        "source": "push",
        "created_at": "2024-05-01T12:00:00.000Z",
        "updated_at": "2024-05-01T12:05:00.000Z",
        "web_url": f"http://127.0.0.1:8000/acme/{project.path}/-/pipelines/{pipelines[0].pk}",
        "name": None,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?status=success", [0]),
        ("?status=running", [1]),
        ("?ref=main", [2, 0]),
        ("?sha=" + "b" * 40, [1]),
        ("?source=web", [1]),
        ("?username=bob", [2]),
        ("?scope=finished", [2, 0]),
        ("?scope=running", [1]),
        ("?scope=pending", []),
        ("?scope=branches", [2, 1]),
        ("?scope=tags", [3]),
        ("?updated_after=2024-05-01T12:20:00Z", [3, 2, 1]),
        ("?updated_before=2024-05-01T12:26:00Z", [2, 0]),
        ("?updated_after=2024-05-01T12:06:00Z&updated_before=2024-05-01T12:35:00Z", [3, 2]),
        ("?order_by=updated_at&sort=asc", [0, 2, 3, 1]),
        ("?order_by=id&sort=asc", [0, 1, 2, 3]),
        ("?order_by=ref&sort=asc", [1, 0, 2, 3]),
        ("?order_by=status", [0, 1, 2, 3]),
        ("?yaml_errors=true", []),
        ("?yaml_errors=false", [3, 2, 1, 0]),
    ],
)
def test_list_pipelines_filters_and_order(api_client, project, pipelines, query, expected):
    response = api_client.get(url(project, "/pipelines" + query))
    assert response.status_code == 200, response.json()
    assert ids(response) == [pipelines[i].pk for i in expected]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?status=green", "status does not have a valid value"),
        ("?order_by=name", "order_by does not have a valid value"),
        ("?sort=up", "sort does not have a valid value"),
        ("?source=carrier_pigeon", "source does not have a valid value"),
        ("?updated_after=yesterday", "updated_after is invalid"),
        ("?page=two", "page is invalid"),
    ],
)
def test_list_pipelines_bad_filter_is_400(api_client, project, pipelines, query, error):
    response = api_client.get(url(project, "/pipelines" + query))
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


def test_list_pipelines_hides_child_pipelines_unless_asked(api_client, project):
    parent = services.create_pipeline(project, ref="main", sha="a" * 40)
    child = services.create_pipeline(project, ref="main", sha="a" * 40, source="parent_pipeline")
    assert ids(api_client.get(url(project, "/pipelines"))) == [parent.pk]
    assert ids(api_client.get(url(project, "/pipelines?source=parent_pipeline"))) == [child.pk]


# --- Get -----------------------------------------------------------------------------------


def test_get_pipeline_has_the_full_entity(api_client, project, owner):
    pipeline = services.create_pipeline(
        project, ref="main", sha="a" * 40, user=owner, at=at(0), commit_timestamp=at(-5)
    )
    services.create_job(pipeline, name="unit", status="pending", at=at(1), coverage=80.0)
    job = Job.objects.get()
    services.update_job(job, status="running", at=at(2))
    services.update_job(job, status="success", at=at(4))
    services.create_job(pipeline, name="lint", status="success", at=at(4), coverage=90.0)

    response = api_client.get(url(project, f"/pipelines/{pipeline.pk}"))
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": pipeline.pk,
        "iid": 1,
        "project_id": project.pk,
        "sha": "a" * 40,
        "ref": "main",
        "status": "success",
        "source": "api",
        "created_at": "2024-05-01T12:00:00.000Z",
        "updated_at": "2024-05-01T12:04:00.000Z",
        "web_url": pipeline.web_url,
        "name": None,
        "before_sha": "0" * 40,
        "tag": False,
        "yaml_errors": None,
        "user": {
            "id": owner.pk,
            "username": "ada",
            "name": "Ada Lovelace",
            "state": "active",
            "locked": False,
            "avatar_url": None,
            "web_url": "http://127.0.0.1:8000/ada",
        },
        "started_at": "2024-05-01T12:02:00.000Z",
        "finished_at": "2024-05-01T12:04:00.000Z",
        "committed_at": "2024-05-01T11:55:00.000Z",
        "duration": 120,
        "queued_duration": 120,
        "coverage": "85.00",
        "detailed_status": {
            "icon": "status_success",
            "text": "Passed",
            "label": "passed",
            "group": "success",
            "tooltip": "passed",
            "has_details": True,
            "details_path": f"/acme/{project.path}/-/pipelines/{pipeline.pk}",
            "illustration": None,
            "favicon": "/assets/ci_favicons/favicon_status_success.png",
        },
        "archived": False,
    }


def test_get_pipeline_of_another_project_is_404(api_client, project):
    elsewhere = services.create_pipeline(ProjectFactory(), ref="main", sha="a" * 40)
    response = api_client.get(url(project, f"/pipelines/{elsewhere.pk}"))
    assert response.status_code == 404
    assert response.json() == {"message": "404 Not found"}


def test_get_pipeline_with_bad_id_is_400(api_client, project):
    response = api_client.get(url(project, "/pipelines/abc"))
    assert response.status_code == 400
    assert response.json() == {"error": "pipeline_id is invalid"}
    assert api_client.get(url(project, f"/pipelines/{10**30}")).status_code == 404


def test_latest_pipeline_on_default_branch_or_ref(api_client, project):
    services.create_pipeline(project, ref="main", sha="a" * 40)
    newest_main = services.create_pipeline(project, ref="main", sha="b" * 40)
    dev = services.create_pipeline(project, ref="dev", sha="c" * 40)
    assert api_client.get(url(project, "/pipelines/latest")).json()["id"] == newest_main.pk
    assert api_client.get(url(project, "/pipelines/latest?ref=dev")).json()["id"] == dev.pk
    assert api_client.get(url(project, "/pipelines/latest?ref=nope")).status_code == 404


# --- Create --------------------------------------------------------------------------------


def test_create_pipeline_with_sha_and_variables(api_client, project, owner):
    response = api_client.post(
        url(project, "/pipeline"),
        {
            "ref": "main",
            "sha": "a" * 40,
            "variables": [
                {"key": "DEPLOY", "value": "true"},
                {"key": "CONFIG", "value": "x=1", "variable_type": "file"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    pipeline = Pipeline.objects.get()
    assert body["id"] == pipeline.pk and body["source"] == "api" and body["status"] == "created"
    assert body["user"]["username"] == "ada" and body["detailed_status"]["group"] == "created"
    assert pipeline.variables == [
        {"key": "DEPLOY", "value": "true", "variable_type": "env_var"},
        {"key": "CONFIG", "value": "x=1", "variable_type": "file"},
    ]
    variables = api_client.get(url(project, f"/pipelines/{pipeline.pk}/variables")).json()
    assert variables == [
        {"key": "DEPLOY", "variable_type": "env_var", "value": "true"},
        {"key": "CONFIG", "variable_type": "file", "value": "x=1"},
    ]


def test_create_pipeline_without_sha_runs_the_newest_commit_on_the_ref(api_client, project):
    services.create_pipeline(
        project, ref="main", sha="a" * 40, commit_title="Old", commit_message="Old"
    )
    services.create_pipeline(project, ref="main", sha="b" * 40, commit_title="Fix the build")
    services.create_pipeline(project, ref="dev", sha="c" * 40)
    response = api_client.post(url(project, "/pipeline?ref=main"))
    assert response.status_code == 201, response.json()
    created = Pipeline.objects.get(pk=response.json()["id"])
    assert (created.sha, created.ref, created.source) == ("b" * 40, "main", "api")
    assert created.commit_title == "Fix the build"


def test_create_pipeline_with_form_encoded_variables(api_client, project):
    response = api_client.post(
        url(project, "/pipeline"),
        "ref=main&sha=" + "a" * 40 + "&variables[][key]=A&variables[][value]=1"
        "&variables[][key]=B&variables[][value]=2",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 201, response.json()
    assert Pipeline.objects.get().variables == [
        {"key": "A", "value": "1", "variable_type": "env_var"},
        {"key": "B", "value": "2", "variable_type": "env_var"},
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, {"error": "ref is missing"}),
        ({"ref": ""}, {"error": "ref is empty"}),
        ({"ref": "nowhere"}, {"message": {"base": ["Reference not found"]}}),
        ({"ref": "main", "sha": "a" * 40, "variables": "A=1"}, None),
        ({"ref": "main", "sha": "a" * 40, "variables": [{"value": "1"}]}, None),
        (
            {"ref": "main", "sha": "a" * 40, "variables": [{"key": "A", "variable_type": "x"}]},
            None,
        ),
    ],
)
def test_create_pipeline_bad_input_is_400_and_creates_nothing(api_client, project, data, expected):
    response = api_client.post(url(project, "/pipeline"), data, format="json")
    assert response.status_code == 400
    if expected:
        assert response.json() == expected
    else:
        assert response.json()["error"].startswith("variables")
    assert not Pipeline.objects.exists()


def test_create_pipeline_variable_errors_name_the_variable(api_client, project):
    response = api_client.post(
        url(project, "/pipeline"),
        {"ref": "main", "sha": "a" * 40, "variables": [{"key": "A", "value": "1"}, {"value": 2}]},
        format="json",
    )
    assert response.json() == {"error": "variables[1][key] is missing"}


# --- Retry, cancel, delete ------------------------------------------------------------------


@pytest.fixture
def failed_pipeline(project):
    pipeline = services.create_pipeline(project, ref="main", sha="a" * 40)
    services.create_job(pipeline, name="build", stage="build", status="success")
    services.create_job(pipeline, name="unit", stage="test", status="failed")
    pipeline.refresh_from_db()
    assert pipeline.status == "failed"
    return pipeline


def test_retry_pipeline_reruns_failed_jobs(api_client, project, failed_pipeline):
    response = api_client.post(url(project, f"/pipelines/{failed_pipeline.pk}/retry"))
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "running"
    assert response.json()["finished_at"] is None
    jobs = api_client.get(url(project, f"/pipelines/{failed_pipeline.pk}/jobs")).json()
    assert [(j["name"], j["status"]) for j in jobs] == [("unit", "pending"), ("build", "success")]


def test_retry_pipeline_without_failed_jobs_answers_it_unchanged(api_client, project):
    """D3: GitLab's RetryPipelineService succeeds with nothing to retry (201)."""
    pipeline = services.create_pipeline(project, ref="main", sha="a" * 40)
    services.create_job(pipeline, name="build", status="success")
    before = list(Job.objects.values()), list(Pipeline.objects.values())
    response = api_client.post(url(project, f"/pipelines/{pipeline.pk}/retry"))
    assert response.status_code == 201
    assert (response.json()["id"], response.json()["status"]) == (pipeline.pk, "success")
    assert (list(Job.objects.values()), list(Pipeline.objects.values())) == before


def test_cancel_pipeline_cancels_unfinished_jobs(api_client, project):
    pipeline = services.create_pipeline(project, ref="main", sha="a" * 40)
    services.create_job(pipeline, name="build", status="success")
    services.create_job(pipeline, name="unit", status="running")
    response = api_client.post(url(project, f"/pipelines/{pipeline.pk}/cancel"))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "canceled"
    statuses = {j.name: j.status for j in Job.objects.all()}
    assert statuses == {"build": "success", "unit": "canceled"}


def test_cancel_finished_pipeline_answers_it_unchanged(api_client, project, failed_pipeline):
    """D3: GitLab's API ignores CancelPipelineService's refusal and answers 200."""
    before = list(Job.objects.values()), list(Pipeline.objects.values())
    response = api_client.post(url(project, f"/pipelines/{failed_pipeline.pk}/cancel"))
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (failed_pipeline.pk, "failed")
    assert (list(Job.objects.values()), list(Pipeline.objects.values())) == before


def test_delete_pipeline(api_client, project, failed_pipeline):
    response = api_client.delete(url(project, f"/pipelines/{failed_pipeline.pk}"))
    assert response.status_code == 204
    assert not Pipeline.objects.exists() and not Job.objects.exists()
    again = api_client.delete(url(project, f"/pipelines/{failed_pipeline.pk}"))
    assert again.status_code == 404


# --- Jobs ----------------------------------------------------------------------------------


def test_pipeline_jobs_have_gitlab_job_entity(api_client, project, owner, failed_pipeline):
    failed = Job.objects.get(name="unit")
    Job.objects.filter(pk=failed.pk).update(
        user=owner,
        runner={"id": 7, "description": "docker", "is_shared": True, "tags": ["linux"]},
    )
    response = api_client.get(url(project, f"/pipelines/{failed_pipeline.pk}/jobs"))
    assert response.status_code == 200
    unit, build = response.json()
    assert set(unit) == {
        "id",
        "status",
        "stage",
        "name",
        "ref",
        "tag",
        "coverage",
        "allow_failure",
        "source",
        "created_at",
        "started_at",
        "finished_at",
        "erased_at",
        "duration",
        "queued_duration",
        "user",
        "commit",
        "pipeline",
        "failure_reason",
        "web_url",
        "project",
        "artifacts",
        "runner",
        "runner_manager",
        "artifacts_expire_at",
        "archived",
        "tag_list",
    }
    assert "failure_reason" not in build  # GitLab shows it on failed jobs only
    assert unit["failure_reason"] is None or isinstance(unit["failure_reason"], str)
    assert (unit["name"], unit["stage"], unit["status"], unit["ref"]) == (
        "unit",
        "test",
        "failed",
        "main",
    )
    assert GITLAB_TIME.match(unit["created_at"]) and GITLAB_TIME.match(unit["finished_at"])
    assert unit["user"]["username"] == "ada" and GITLAB_TIME.match(unit["user"]["created_at"])
    assert build["user"] is None
    assert unit["commit"]["id"] == "a" * 40 and unit["commit"]["short_id"] == "aaaaaaaa"
    assert unit["pipeline"]["id"] == failed_pipeline.pk
    assert unit["pipeline"]["status"] == "failed"
    assert unit["web_url"] == f"http://127.0.0.1:8000/acme/{project.path}/-/jobs/{failed.pk}"
    assert unit["runner"]["id"] == 7 and unit["runner"]["is_shared"] is True
    assert unit["tag_list"] == ["linux"] and unit["artifacts"] == []


def test_pipeline_jobs_scope_and_include_retried(api_client, project, failed_pipeline):
    services.retry_pipeline(failed_pipeline)
    jobs_url = url(project, f"/pipelines/{failed_pipeline.pk}/jobs")

    def names(query):
        response = api_client.get(jobs_url + query)
        assert response.status_code == 200, response.json()
        return [(j["name"], j["status"]) for j in response.json()]

    assert names("") == [("unit", "pending"), ("build", "success")]
    assert names("?include_retried=true") == [
        ("unit", "pending"),
        ("unit", "failed"),
        ("build", "success"),
    ]
    assert names("?scope=success") == [("build", "success")]
    assert names("?scope[]=pending&scope[]=success") == [("unit", "pending"), ("build", "success")]
    assert names("?scope[]=failed&include_retried=1") == [("unit", "failed")]
    bad = api_client.get(jobs_url + "?scope[]=exploded")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("scope[0] does not have a valid value")


def test_pipeline_jobs_of_unknown_pipeline_is_404(api_client, project):
    response = api_client.get(url(project, "/pipelines/9999/jobs"))
    assert response.status_code == 404
    assert response.json() == {"message": "404 Not found"}


@pytest.mark.parametrize(
    ("jobs", "detailed_status"),
    [
        (
            [("build", "success", False), ("lint", "failed", True)],
            ("status_warning", "Warning", "passed with warnings", "success-with-warnings"),
        ),
        (
            [("build", "success", False), ("deploy", "manual", False)],
            ("status_manual", "Blocked", "waiting for manual action", "manual"),
        ),
        (
            [("build", "success", False), ("deploy", "scheduled", False)],
            ("status_scheduled", "Delayed", "waiting for delayed job", "scheduled"),
        ),
    ],
)
def test_get_pipeline_shows_gitlabs_extended_detailed_status(
    api_client, project, jobs, detailed_status
):
    pipeline = services.create_pipeline(project, ref="main", sha="a" * 40)
    for name, status, allow_failure in jobs:
        services.create_job(pipeline, name=name, status=status, allow_failure=allow_failure)
    body = api_client.get(url(project, f"/pipelines/{pipeline.pk}")).json()
    icon, text, label, group = detailed_status
    shown = body["detailed_status"]
    assert (shown["icon"], shown["text"], shown["label"], shown["group"]) == detailed_status
    assert shown["tooltip"] == label
    # D11: SuccessWarning keeps Success's favicon, as GitLab's extended statuses do.
    favicon = "status_success" if icon == "status_warning" else icon
    assert shown["favicon"] == f"/assets/ci_favicons/favicon_{favicon}.png"
    pipeline.refresh_from_db()
    # What the Pipeline Hook payload carries.
    assert build_pipeline_payload(pipeline)["object_attributes"]["detailed_status"] == label
