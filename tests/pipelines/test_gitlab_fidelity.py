"""Rows of the GitLab fidelity table (D1, D2, ...), each with what GitLab's source does.

Each test names its row; the references are GitLab's files (``lib/api/ci/pipelines.rb``,
``lib/api/commit_statuses.rb``, ``app/finders/ci/pipelines_finder.rb``, ...).
"""

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from pipelines import services
from pipelines.models import Job, Pipeline
from tests.factories import UserFactory

SHA = "5b6a36e1e5fb3a2bfe1f8e2ec0a3dc9b8f7a6c11"


@pytest.fixture
def api_user(db):
    return UserFactory(username="ada")


def url(project, rest=""):
    return f"/api/v4/projects/{project.pk}{rest}"


def at(minutes: int) -> datetime:
    return datetime(2024, 5, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()]


# --- D1: every documented filter, and no filter silently dropped ---------------------------


@pytest.fixture
def three_days(project):
    """One pipeline a day, created at noon on May 1st, 2nd and 3rd."""
    return [
        services.create_pipeline(project, ref="main", sha=f"{day}" * 40, at=at(day * 24 * 60))
        for day in range(3)
    ]


def test_d1_pipelines_created_before_and_after_filter_the_list(api_client, project, three_days):
    first, second, third = three_days
    cutoff = "2024-05-02T00:00:00Z"
    assert ids(api_client.get(url(project, "/pipelines"), {"created_before": cutoff})) == [first.pk]
    assert ids(api_client.get(url(project, "/pipelines"), {"created_after": cutoff})) == [
        third.pk,
        second.pk,
    ]
    between = {"created_after": "2024-05-01T13:00:00Z", "created_before": "2024-05-03T11:00:00Z"}
    assert ids(api_client.get(url(project, "/pipelines"), between)) == [second.pk]


def test_d1_an_unknown_list_filter_is_a_400_naming_it_not_the_whole_list(
    api_client, project, three_days
):
    response = api_client.get(url(project, "/pipelines"), {"created_befor": "2024-05-02T00:00:00Z"})
    assert response.status_code == 400
    assert response.json() == {"error": "created_befor is not a parameter of this endpoint"}
    # Paging and a token in the query string are read on every endpoint.
    assert ids(api_client.get(url(project, "/pipelines"), {"page": 1, "per_page": 2})) == [
        three_days[2].pk,
        three_days[1].pk,
    ]


@pytest.mark.parametrize(
    "path, params",
    [
        ("/pipelines", {"order": "asc"}),
        ("/pipelines/latest", {"branch": "main"}),
        (f"/repository/commits/{SHA}/statuses", {"pipeline": 1}),
        ("/pipelines/{pipeline}/jobs", {"status": "failed"}),
    ],
)
def test_d1_unknown_parameters_of_pipelines_and_statuses_reads_are_400(
    api_client, project, three_days, path, params
):
    response = api_client.get(url(project, path.format(pipeline=three_days[0].pk)), params)
    assert response.status_code == 400
    assert "is not a parameter of this endpoint" in response.json()["error"]


def test_d1_a_write_with_an_unknown_parameter_is_refused_and_writes_nothing(api_client, project):
    # GitLab 17.10's `inputs` configure the pipeline; started without them it would differ.
    response = api_client.post(
        url(project, "/pipeline"), {"ref": "main", "sha": SHA, "inputs": {"env": "prod"}}, "json"
    )
    assert response.status_code == 400
    assert response.json() == {"error": "inputs is not a parameter of this endpoint"}
    response = api_client.post(
        url(project, f"/statuses/{SHA}"), {"state": "running", "colour": "red"}
    )
    assert response.status_code == 400
    assert not Pipeline.objects.exists()


def test_d9_scope_finished_leaves_skipped_pipelines_out(api_client, project, three_days):
    services.transition_pipeline(three_days[0], "success")
    services.transition_pipeline(three_days[1], "skipped")
    services.transition_pipeline(three_days[2], "canceled")
    finished = ids(api_client.get(url(project, "/pipelines"), {"scope": "finished"}))
    assert finished == [three_days[2].pk, three_days[0].pk]


def test_d14_statuses_and_sources_of_gitlab_filter_to_an_empty_list(
    api_client, project, three_days
):
    for params in ({"status": "waiting_for_callback"}, {"source": "webide"}):
        assert ids(api_client.get(url(project, "/pipelines"), params)) == []


# --- D6: the commit status list's pipeline_id, order_by and sort -----------------------------


@pytest.fixture
def statuses_on_two_pipelines(api_client, project):
    """The commit reported on two refs (two pipelines); on each, jobs "lint" and "unit"."""
    for ref in ("main", "dev"):
        for name in ("lint", "unit"):
            response = api_client.post(
                url(project, f"/statuses/{SHA}"), {"state": "running", "name": name, "ref": ref}
            )
            assert response.status_code == 201
    return list(Pipeline.objects.order_by("id"))


def test_d6_statuses_filter_by_pipeline_id(api_client, project, statuses_on_two_pipelines):
    main, dev = statuses_on_two_pipelines
    path = url(project, f"/repository/commits/{SHA}/statuses")
    listed = api_client.get(path, {"pipeline_id": dev.pk})
    assert ids(listed) == list(dev.jobs.order_by("id").values_list("id", flat=True))


def test_d6_statuses_order_and_sort(api_client, project, statuses_on_two_pipelines):
    path = url(project, f"/repository/commits/{SHA}/statuses")
    every = list(Job.objects.order_by("id").values_list("id", flat=True))
    assert ids(api_client.get(path)) == every  # GitLab's default: id, ascending
    assert ids(api_client.get(path, {"sort": "desc"})) == every[::-1]
    by_pipeline = ids(api_client.get(path, {"order_by": "pipeline_id", "sort": "desc"}))
    assert by_pipeline == every[2:][::-1] + every[:2][::-1]
    response = api_client.get(path, {"order_by": "name"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("order_by does not have a valid value")


# --- D2: a pipeline's coverage is a string -------------------------------------------------


def test_d2_pipeline_coverage_is_gitlabs_two_decimal_string(api_client, project):
    for name, coverage in (("unit", "81.5"), ("lint", "90")):
        data = {"state": "success", "name": name, "coverage": coverage}
        assert api_client.post(url(project, f"/statuses/{SHA}"), data).status_code == 201
    pipeline = Pipeline.objects.get()
    got = api_client.get(url(project, f"/pipelines/{pipeline.pk}")).json()
    assert got["coverage"] == "85.75"
    jobs = api_client.get(url(project, f"/pipelines/{pipeline.pk}/jobs")).json()
    assert sorted(job["coverage"] for job in jobs) == [81.5, 90.0]  # a job's stays a number


# --- D3, D4, D5: retry and cancel as GitLab's API answers them -------------------------------


def test_d3_retry_and_cancel_with_nothing_to_do_answer_the_unchanged_pipeline(api_client, project):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build", status="success")
    retried = api_client.post(url(project, f"/pipelines/{pipeline.pk}/retry"))
    assert (retried.status_code, retried.json()["status"]) == (201, "success")
    canceled = api_client.post(url(project, f"/pipelines/{pipeline.pk}/cancel"))
    assert (canceled.status_code, canceled.json()["status"]) == (200, "success")
    assert list(pipeline.jobs.values_list("status", "retried")) == [("success", False)]


def test_d4_an_external_pipeline_is_not_canceled(api_client, project):
    api_client.post(url(project, f"/statuses/{SHA}"), {"state": "running", "name": "build"})
    pipeline = Pipeline.objects.get()
    assert pipeline.source == "external"
    response = api_client.post(url(project, f"/pipelines/{pipeline.pk}/cancel"))
    assert (response.status_code, response.json()["status"]) == (200, "running")
    assert Job.objects.get().status == "running"


def test_d5_the_commit_statuses_of_an_external_pipeline_are_not_retried(api_client, project):
    api_client.post(url(project, f"/statuses/{SHA}"), {"state": "failed", "name": "build"})
    pipeline = Pipeline.objects.get()
    response = api_client.post(url(project, f"/pipelines/{pipeline.pk}/retry"))
    assert (response.status_code, response.json()["status"]) == (201, "failed")
    assert list(Job.objects.values_list("status", "retried")) == [("failed", False)]
    # The reporting CI retries by reporting the next attempt.
    api_client.post(url(project, f"/statuses/{SHA}"), {"state": "pending", "name": "build"})
    assert list(Job.objects.order_by("id").values_list("status", "retried")) == [
        ("failed", True),
        ("pending", False),
    ]


# --- A1: the hook payload's commit, whatever reported the pipeline ---------------------------


def test_a1_a_commit_status_pipeline_has_a_commit_in_its_payload(api_client, project):
    from hooks.payloads import build_pipeline_payload

    api_client.post(url(project, f"/statuses/{SHA}"), {"state": "running", "name": "build"})
    commit = build_pipeline_payload(Pipeline.objects.get())["commit"]
    assert commit == {
        "id": SHA,
        "message": "",
        "title": "No commit message",
        "timestamp": None,
        "url": f"{project.resolved_web_url}/-/commit/{SHA}",
        "author": {"name": "", "email": ""},
    }


def test_a1_a_commit_status_pipeline_keeps_what_was_reported_of_its_commit(api_client, project):
    """A later pipeline for a commit another report described carries that description."""
    from hooks.payloads import build_pipeline_payload

    described = services.create_pipeline(
        project,
        ref="main",
        sha=SHA,
        commit_message="Fix the build\n\nDetails",
        commit_author_name="Ada",
        commit_author_email="ada@example.com",
        commit_timestamp=at(0),
    )
    api_client.post(url(project, f"/statuses/{SHA}"), {"state": "running", "ref": "dev"})
    reported = Pipeline.objects.exclude(pk=described.pk).get()
    commit = build_pipeline_payload(reported)["commit"]
    assert (commit["title"], commit["timestamp"]) == ("Fix the build", "2024-05-01T12:00:00+00:00")
    assert commit["author"] == {"name": "Ada", "email": "ada@example.com"}


# --- Endpoints GitLab clients call ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v4/user", "/api/v4/version", "/api/v4/metadata"])
def test_instance_endpoints_need_a_token_as_gitlabs(db, path):
    response = APIClient().get(path)
    assert (response.status_code, response.json()) == (401, {"message": "401 Unauthorized"})


def test_get_user_shows_the_tokens_own_user(api_client, api_user):
    user = api_client.get("/api/v4/user").json()
    assert (user["id"], user["username"], user["email"]) == (api_user.pk, "ada", api_user.email)
    assert (user["state"], user["is_admin"], user["identities"]) == ("active", False, [])


# --- A3/D8, A4, A5, A11: times and flags as GitLab's models compute them ---------------------


def test_a3_d8_a_running_jobs_duration_grows_in_the_api_and_the_payload(api_client, project):
    from hooks.payloads import build_pipeline_payload

    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    started = datetime.now(UTC) - timedelta(seconds=30)
    services.create_job(pipeline, name="queued", status="pending", at=started)
    job = services.create_job(pipeline, name="build", status="running", at=started)
    (listed,) = [
        j
        for j in api_client.get(url(project, f"/pipelines/{pipeline.pk}/jobs")).json()
        if j["id"] == job.pk
    ]
    assert 30 <= listed["duration"] < 60
    builds = {b["name"]: b for b in build_pipeline_payload(pipeline)["builds"]}
    assert 30 <= builds["build"]["duration"] < 60
    assert builds["queued"]["duration"] is None
    assert 30 <= builds["queued"]["queued_duration"] < 60  # still waiting


def test_a4_skipped_jobs_and_pipelines_have_no_finish(project):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="deploy", status="skipped")
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.finished_at, pipeline.duration) == ("skipped", None, None)
    assert pipeline.jobs.get().finished_at is None


def test_a5_a_pipeline_that_started_at_once_has_no_queued_duration(project):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA, at=at(0))
    services.create_job(pipeline, name="build", status="running", at=at(0))
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.queued_duration) == ("running", None)


def test_a11_a_manual_job_says_when_manual(project):
    from hooks.payloads import build_pipeline_payload

    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="deploy", status="manual")
    (build,) = build_pipeline_payload(pipeline)["builds"]
    assert (build["when"], build["manual"]) == ("manual", True)


# --- D10, D11 ----------------------------------------------------------------------------------


def test_d11_detailed_status_is_current_gitlabs(api_client, project):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="lock", status="waiting_for_resource")
    shown = api_client.get(url(project, f"/pipelines/{pipeline.pk}")).json()["detailed_status"]
    assert (shown["text"], shown["label"], shown["group"]) == (
        "Waiting",
        "waiting for resource",
        "waiting-for-resource",
    )
    assert shown["favicon"] == "/assets/ci_favicons/favicon_pending.png"
