"""GitLab's own Python client against a live Pipehook: a whole pipeline over two stages.

The client talks HTTP to a real server thread (pytest-django's ``live_server``), so this
covers URL encoding of project paths, JSON bodies, status codes, Link-header pagination
and error bodies the way python-gitlab reads them.
"""

import re

import gitlab
import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from gitlab import exceptions as gitlab_errors

from pipelines import auth
from pipelines.models import Job
from tests.factories import ALL_PROJECT_PERMISSIONS, UserFactory, grant_permissions

SHA = "5b6a36e1e5fb3a2bfe1f8e2ec0a3dc9b8f7a6c11"
NEXT_SHA = "0c5f2e4a1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f"


def token(scopes: list[str]) -> str:
    user = grant_permissions(UserFactory(username=f"ci-{scopes[0]}"), *ALL_PROJECT_PERMISSIONS)
    _, raw = auth.create_token(user, scopes=scopes)
    return raw


def client(url: str, raw_token: str) -> gitlab.Gitlab:
    return gitlab.Gitlab(url, private_token=raw_token)


@pytest.fixture
def gl(live_server, transactional_db):
    # Server threads close their database connection after each request, so none is left
    # holding the test database open (on PostgreSQL, CONN_MAX_AGE would keep them).
    database = connections.settings[DEFAULT_DB_ALIAS]
    kept_for = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    try:
        with client(live_server.url, token(["api"])) as gl:
            yield gl
    finally:
        database["CONN_MAX_AGE"] = kept_for


def report(commit, name: str, state: str, stage: str | None = None, ref: str = "main"):
    data = {"state": state, "name": name, "ref": ref}
    if stage:
        data["stage"] = stage
    return commit.statuses.create(data)


def test_python_gitlab_runs_a_pipeline_through_two_stages(gl):
    created = gl.projects.create({"name": "Web Shop", "path": "web", "namespace": "acme"})
    project = gl.projects.get("acme/web")  # sent as acme%2Fweb
    assert project.id == created.id and project.path_with_namespace == "acme/web"
    commit = project.commits.get(SHA)

    def pipeline_status() -> str:
        (pipeline,) = project.pipelines.list(sha=SHA)
        return project.pipelines.get(pipeline.id).status

    # Stage "build": one job, pending -> running -> success.
    status = report(commit, "compile", "pending", stage="build")
    assert (status.status, status.name, status.ref, status.sha) == (
        "pending",
        "compile",
        "main",
        SHA,
    )
    assert pipeline_status() == "pending"
    report(commit, "compile", "running")
    assert pipeline_status() == "running"
    report(commit, "compile", "success")
    assert pipeline_status() == "success"  # composed from the jobs GitLab knows so far

    # Stage "test": two jobs; a pending job runs the finished pipeline again.
    report(commit, "unit", "pending", stage="test")
    report(commit, "lint", "pending", stage="test")
    assert pipeline_status() == "running"
    report(commit, "unit", "running")
    report(commit, "lint", "running")
    report(commit, "unit", "success")
    assert pipeline_status() == "running"
    report(commit, "lint", "failed")
    assert pipeline_status() == "failed"

    (pipeline,) = project.pipelines.list(sha=SHA)
    pipeline = project.pipelines.get(pipeline.id)
    assert (pipeline.source, pipeline.ref, pipeline.sha) == ("external", "main", SHA)
    assert pipeline.detailed_status["group"] == "failed"
    assert pipeline.started_at and pipeline.finished_at and pipeline.duration is not None
    jobs = {job.name: job for job in pipeline.jobs.list()}
    assert {name: (job.stage, job.status) for name, job in jobs.items()} == {
        "compile": ("build", "success"),
        "unit": ("test", "success"),
        "lint": ("test", "failed"),
    }
    assert jobs["lint"].failure_reason == "api_failure"
    statuses = commit.statuses.list(get_all=True)
    assert sorted(s.name for s in statuses) == ["compile", "lint", "unit"]

    # Retry (D3, D5): an external pipeline's commit statuses are retried by their CI, so
    # GitLab answers 201 with the pipeline unchanged, and python-gitlab does not raise.
    pipeline.retry()
    pipeline.refresh()
    assert pipeline.status == "failed"
    report(commit, "lint", "pending")  # the CI's next attempt
    report(commit, "lint", "running")
    pipeline.refresh()
    assert pipeline.status == "running" and pipeline.finished_at is None
    assert len(pipeline.jobs.list(include_retried=True)) == 4
    assert [j.status for j in pipeline.jobs.list(scope=["running"])] == ["running"]
    report(commit, "lint", "success")
    pipeline.refresh()
    assert pipeline.status == "success"

    # Cancel: a pipeline started by API for the next commit, stopped while a job runs.
    running = project.pipelines.create({"ref": "main", "sha": NEXT_SHA})
    next_commit = project.commits.get(NEXT_SHA)
    report(next_commit, "compile", "running", stage="build")
    running.cancel()
    running = project.pipelines.get(running.id)
    assert running.status == "canceled"
    assert Job.objects.get(pipeline_id=running.id).status == "canceled"
    running.cancel()  # nothing left to cancel: the pipeline comes back, no error (D3)

    # Lists: filters, and every page followed through the Link header.
    assert [p.id for p in project.pipelines.list(status="success")] == [pipeline.id]
    assert [p.id for p in project.pipelines.list(order_by="id", sort="asc")] == [
        pipeline.id,
        running.id,
    ]
    started = project.pipelines.create({"ref": "main"})
    assert (started.sha, started.source, started.status) == (NEXT_SHA, "api", "created")
    every = project.pipelines.list(get_all=True, per_page=1)
    assert [p.id for p in every] == [started.id, running.id, pipeline.id]
    assert project.pipelines.latest().id == started.id

    # Delete.
    started.delete()
    with pytest.raises(gitlab_errors.GitlabGetError) as missing:
        project.pipelines.get(started.id)
    assert missing.value.response_code == 404


def test_python_gitlab_sees_gitlab_errors(gl, live_server):
    project = gl.projects.create({"name": "api"})
    commit = project.commits.get(SHA)

    with pytest.raises(gitlab_errors.GitlabCreateError) as bad_state:
        commit.statuses.create({"state": "exploded"})
    assert bad_state.value.response_code == 400
    assert "state does not have a valid value" in bad_state.value.error_message

    report(commit, "build", "running")
    with pytest.raises(gitlab_errors.GitlabCreateError) as refused:
        report(commit, "build", "running")
    assert refused.value.response_code == 400
    assert refused.value.error_message == "Cannot transition status via :run from :running"

    with pytest.raises(gitlab_errors.GitlabGetError) as unknown:
        gl.projects.get("nobody/nothing")
    assert unknown.value.response_code == 404
    assert unknown.value.error_message == "404 Project Not Found"

    with client(live_server.url, token(["read_api"])) as reader:
        read_only = reader.projects.get(project.id)
        with pytest.raises(gitlab_errors.GitlabCreateError) as forbidden:
            read_only.commits.get(SHA).statuses.create({"state": "success"})
    assert forbidden.value.response_code == 403

    with (
        client(live_server.url, "phk_wrong") as stranger,
        pytest.raises(gitlab_errors.GitlabAuthenticationError),
    ):
        stranger.projects.list()


def test_python_gitlab_reads_the_user_version_and_metadata(gl, live_server, settings, recwarn):
    settings.PIPEHOOK_EXTERNAL_URL = live_server.url
    gl.auth()  # GET /user; python-gitlab warns when the user's web_url is on another host
    assert not [w for w in recwarn if "base URL" in str(w.message)]
    assert gl.user.username == "ci-api"
    assert gl.user.web_url.endswith("/ci-api") and gl.user.is_admin is False
    version, revision = gl.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version) and revision.startswith("pipehook-")
    metadata = gl.http_get("/metadata")
    assert (metadata["version"], metadata["kas"]["enabled"], metadata["enterprise"]) == (
        version,
        False,
        False,
    )


def test_python_gitlab_gets_a_commit_and_posts_its_status_as_documented(gl):
    project = gl.projects.create({"name": "api"})
    commit = project.commits.get(SHA)  # a commit nothing was reported for yet
    assert (commit.id, commit.short_id, commit.last_pipeline) == (SHA, SHA[:8], None)
    commit.statuses.create({"state": "running", "name": "build", "ref": "main"})
    commit = project.commits.get(SHA[:10])
    assert (commit.id, commit.status) == (SHA, "running")
    assert commit.last_pipeline["sha"] == SHA
    assert project.commits.get("main").id == SHA  # a branch names its newest commit
    with pytest.raises(gitlab_errors.GitlabGetError) as missing:
        project.commits.get("no-such-branch")
    assert missing.value.response_code == 404
    assert missing.value.error_message == "404 Commit Not Found"


def test_python_gitlab_lists_and_gets_jobs_bridges_and_test_reports(gl):
    project = gl.projects.create({"name": "api"})
    commit = project.commits.get(SHA)
    report(commit, "build", "success", stage="build")
    report(commit, "unit", "failed", stage="test")
    report(commit, "unit", "pending", stage="test")  # a second attempt
    jobs = project.jobs.list(get_all=True)
    assert [(job.name, job.status) for job in jobs] == [
        ("unit", "pending"),
        ("unit", "failed"),  # GitLab's project jobs include retried attempts
        ("build", "success"),
    ]
    assert [job.name for job in project.jobs.list(scope=["failed", "success"])] == [
        "unit",
        "build",
    ]
    job = project.jobs.get(jobs[-1].id)
    assert (job.name, job.stage, job.pipeline["sha"]) == ("build", "build", SHA)
    with pytest.raises(gitlab_errors.GitlabGetError) as missing:
        project.jobs.get(jobs[0].id + 100)
    assert missing.value.response_code == 404

    (pipeline,) = project.pipelines.list()
    assert pipeline.bridges.list() == []
    report_data = pipeline.test_report.get()
    assert (report_data.total_count, report_data.test_suites) == (0, [])
    summary = pipeline.test_report_summary.get()
    assert summary.total["count"] == 0 and summary.test_suites == []
