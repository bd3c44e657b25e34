"""The query budget of every inbound path: each request reads and writes what its work needs
and no more, and nothing once its command has committed. A change that adds a query to one
of these paths fails here.

Every project has ten hooks, so each status change writes its outbox (one event, one bulk
insert of deliveries, and once per command the last ``X-Pipehook-Sequence`` of the hooks'
streams of that pipeline) in the counts. The token is warm (the per-process token cache) unless
a test says otherwise; a cold token costs its lookup, its grants (one query) and the
once-a-minute ``last_used_at`` write.
"""

import contextlib
import json
import uuid

import pytest
from rest_framework.test import APIClient

from hooks.models import Delivery
from pipelines import commit_statuses, executions, reports, services
from pipelines.api.graphql.ids import definition_id, encode_id
from pipelines.commit_statuses import ReportedCommitStatus, report_commit_status
from pipelines.models import CicdInstance, Job, Pipeline, PipelineDefinition
from tests.factories import HookFactory, ProjectFactory, UserFactory

SHA = "18f3e63d05582537db6d183d9d557be09e1f90c8"
HOOKS = 10
# A token seen for the first time: the token with its user, its grants, and last_used_at.
COLD_TOKEN = 3


@pytest.fixture
def reporter(db):
    return UserFactory(username="ci")


@pytest.fixture
def project(db):
    project = ProjectFactory(path="web", namespace="ci", default_branch="main")
    for number in range(HOOKS):
        HookFactory(project=project, url=f"https://receiver.example.com/{number}")
    return project


@pytest.fixture
def raw_token(make_token, reporter):
    return make_token(user=reporter)


@pytest.fixture
def api(raw_token, project):
    client = APIClient()
    client.credentials(HTTP_PRIVATE_TOKEN=raw_token)
    # Warm the token cache, as a client's first request does.
    assert client.get(f"/api/v4/projects/{project.pk}").status_code == 200
    return client


def post_status(api, project, **data):
    return api.post(f"/api/v4/projects/{project.pk}/statuses/{SHA}", data, format="json")


def test_commit_status_on_a_new_commit_creates_and_moves_its_pipeline(
    api, project, django_assert_max_num_queries
):
    # project; begin; pipeline lookup; the commit on other refs (its title, author...);
    # lock project; highest iid; insert pipeline; hooks; event + deliveries (created); insert
    # job; update pipeline; event + deliveries (pending); commit. (In a test the transaction
    # and create_pipeline's are savepoints: four statements where a server sends BEGIN,
    # COMMIT and nothing for the inner one.)
    with django_assert_max_num_queries(18):
        response = post_status(api, project, state="pending", name="build", ref="main")
    assert response.status_code == 201, response.json()
    assert Delivery.objects.count() == 2 * HOOKS


@pytest.mark.parametrize("state", ["running", "success", "failed"])
def test_commit_status_update_reads_the_pipeline_once(
    api, project, state, django_assert_max_num_queries
):
    assert post_status(api, project, state="pending", name="build").status_code == 201
    # project; begin; pipeline under its lock; its latest jobs; update job; update
    # pipeline; hooks; event; deliveries; commit.
    with django_assert_max_num_queries(11):
        response = post_status(api, project, state=state, name="build")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == state
    assert Delivery.objects.count() == 3 * HOOKS


def test_commit_statuses_with_job_events_cost_three_statements_more(
    api, project, django_assert_max_num_queries
):
    """With job events on, each status also sends the job's Job Hook: its payload's retry
    count, its event and its deliveries (the benchmark's "with job events" run)."""
    project.hooks.update(job_events=True)
    # As the first test, plus the Job Hook of the job created in pending.
    with django_assert_max_num_queries(18 + 3):
        response = post_status(api, project, state="pending", name="build", ref="main")
    assert response.status_code == 201, response.json()
    for state in ("running", "success"):
        # As the update test, plus the Job Hook of the job entering the state.
        with django_assert_max_num_queries(11 + 3):
            response = post_status(api, project, state=state, name="build", ref="main")
        assert response.status_code == 201, response.json()
    kinds = Delivery.objects.values_list("event__object_kind", flat=True)
    assert sorted(kinds) == sorted(["pipeline"] * 4 * HOOKS + ["build"] * 3 * HOOKS)


def test_commit_status_for_a_new_job_of_a_running_pipeline(
    api, project, django_assert_max_num_queries
):
    assert post_status(api, project, state="running", name="build").status_code == 201
    # A job that changes nothing of the pipeline's status: no outbox.
    with django_assert_max_num_queries(7):
        response = post_status(api, project, state="running", name="test")
    assert response.status_code == 201, response.json()
    assert Job.objects.count() == 2


def test_a_cold_token_costs_its_lookup_and_one_query_for_its_rights(
    raw_token, project, django_assert_max_num_queries
):
    client = APIClient()
    client.credentials(HTTP_PRIVATE_TOKEN=raw_token)
    with django_assert_max_num_queries(1 + COLD_TOKEN):
        assert client.get(f"/api/v4/projects/{project.pk}").status_code == 200
    with django_assert_max_num_queries(1):
        assert client.get(f"/api/v4/projects/{project.pk}").status_code == 200


def test_gitlab_pipeline_create_and_read(api, project, django_assert_max_num_queries):
    url = f"/api/v4/projects/{project.pk}/pipeline"
    assert post_status(api, project, state="success", name="build").status_code == 201
    # The ref's newest pipeline and the commit's, then the whole creation as above; the
    # answer is the pipeline as created (nothing read after the commit).
    with django_assert_max_num_queries(14):
        response = api.post(url, {"ref": "main"}, format="json")
    assert response.status_code == 201, response.json()
    with django_assert_max_num_queries(3):
        detail = api.get(f"/api/v4/projects/{project.pk}/pipelines/{response.json()['id']}")
    assert detail.status_code == 200


def sei_run(instance: CicdInstance, result: str) -> str:
    return json.dumps(
        {
            "pipeline": "deploy",
            "job_full_name": "team/deploy",
            "qualified_name": "team/deploy",
            "instance_name": instance.name,
            "instance_guid": str(instance.guid),
            "execution_id": "run-42",
            "start_time": 1711603545000,
            "duration": 780000,
            "result": result,
            "branch_name": "main",
            "scm_commit_ids": [SHA],
        }
    )


def test_sei_custom_cicd_run(raw_token, project, reporter, django_assert_max_num_queries):
    instance = CicdInstance.objects.create(
        project=project, name="Jenkins-1", guid=uuid.uuid4(), created_by=reporter
    )
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"ApiKey {raw_token}"}

    def post(result):
        return client.post(
            "/sei/api/v1/custom-cicd",
            data=sei_run(instance, result),
            content_type="application/json",
            **headers,
        )

    with django_assert_max_num_queries(18 + COLD_TOKEN):
        assert post("RUNNING").status_code in (200, 202), post
    # instance; begin; the run with its pipeline, locked; latest jobs; run report saved;
    # job; pipeline; hooks; event; the streams' last sequences; deliveries; commit; the
    # project for the answer.
    with django_assert_max_num_queries(13):
        response = post("SUCCESS")
    assert response.status_code in (200, 202), response.content
    assert Delivery.objects.count() == 3 * HOOKS  # created, running, success


def test_distelli_build_events(raw_token, project, reporter, django_assert_max_num_queries):
    client = APIClient()
    url = "/distelli/ci/apps/web/events"
    body = {"build_status": "Running", "build_id": "J1", "branch": "main", "commit_id": SHA}
    with django_assert_max_num_queries(19 + COLD_TOKEN):
        created = client.put(
            f"{url}/buildEvent?apiToken={raw_token}",
            data=json.dumps(body),
            content_type="application/json",
        )
    assert created.status_code in (200, 201), created.content
    event_id = created.json()["event_id"]
    with django_assert_max_num_queries(13):
        finished = client.post(
            f"{url}/{event_id}?apiToken={raw_token}",
            data=json.dumps({"build_status": "Success"}),
            content_type="application/json",
        )
    assert finished.status_code == 200, finished.content


START = """mutation($s: StartExecutionInput!) {
  startExecution(input: $s) { execution { id status } }
}"""


def start_execution(raw_token, project):
    """A request starting a new pipeline definition of ``project``, as release tooling does."""
    definition = PipelineDefinition.objects.create(
        project=project, name="Deploy", variables=[{"name": "branch", "type": "Text"}]
    )
    variables = {
        "s": {
            "applicationId": encode_id("Application", project.pk),
            "entityId": definition_id(definition),
            "executionType": "PIPELINE",
            "variableInputs": [
                {"name": "branch", "variableValue": {"type": "NAME", "value": "main"}}
            ],
        }
    }
    return lambda: APIClient().post(
        "/api/graphql",
        data=json.dumps({"query": START, "variables": variables}),
        content_type="application/json",
        HTTP_X_API_KEY=raw_token,
    )


def test_graphql_start_execution(raw_token, project, django_assert_max_num_queries):
    start = start_execution(raw_token, project)
    with django_assert_max_num_queries(18 + COLD_TOKEN):
        response = start()
    assert response.status_code == 200, response.content
    assert "errors" not in response.json(), response.json()


# --- Nothing after the commit ------------------------------------------------------------------
# Every inbound write answers from what its command returned: once the command's transaction
# has committed, nothing touches the database again.
#
# A query after the commit is a request that can fail after its work is done: the database
# restarts between the two, the client is told 503 and posts again, and the retry meets the
# state its first attempt already made (``Cannot transition status via :enqueue from
# :pending``). Each test wraps the command a view calls: from its return to the end of the
# request, the count of queries must stay zero.


@pytest.fixture
def after(monkeypatch, django_assert_num_queries):
    """``after(module, "command")``: from the moment that command returns, until the block
    ends, the database must not be queried."""

    @contextlib.contextmanager
    def watching(module, name: str):
        command = getattr(module, name)
        answered = contextlib.ExitStack()
        calls = []

        def command_then_no_query(*args, **kwargs):
            result = command(*args, **kwargs)
            calls.append(name)
            answered.enter_context(django_assert_num_queries(0))
            return result

        monkeypatch.setattr(module, name, command_then_no_query)
        try:
            yield
        finally:
            monkeypatch.setattr(module, name, command)
        answered.close()  # fails, with the count, when the answer read anything
        assert calls == [name], f"the view did not call {name}"

    return watching


@pytest.mark.parametrize("first", [True, False])
def test_nothing_read_after_the_commit_of_a_commit_status(api, project, reporter, after, first):
    if not first:
        # The job was reported (by another user, whose name the answer shows) before.
        other = UserFactory(username="other-ci")
        report_commit_status(
            project,
            ReportedCommitStatus(sha=SHA, state="pending", name="build"),
            user=other,
        )
    with after(commit_statuses, "report_commit_status"):
        response = post_status(api, project, state="running", name="build", ref="main")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "running"
    assert response.json()["author"]["username"] == ("ci" if first else "other-ci")


def pipeline_with_a_failed_job(project) -> Pipeline:
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="lint", status="success", coverage=90)
    services.create_job(pipeline, name="test", status="failed", coverage=80)
    return pipeline


def test_nothing_read_after_the_commit_of_a_pipeline_create(api, project, after):
    with after(services, "start_pipeline"):
        response = api.post(f"/api/v4/projects/{project.pk}/pipeline", {"ref": "main", "sha": SHA})
    assert response.status_code == 201, response.json()
    assert response.json()["user"]["username"] == "ci"


def test_nothing_read_after_the_commit_of_a_pipeline_retry(api, project, after):
    pipeline = pipeline_with_a_failed_job(project)
    with after(services, "retry_pipeline"):
        response = api.post(f"/api/v4/projects/{project.pk}/pipelines/{pipeline.pk}/retry")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "running"
    assert response.json()["coverage"] == "90.00"  # the retried job has no coverage yet


def test_nothing_read_after_the_commit_of_a_pipeline_cancel(api, project, after):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="test", status="running", coverage=70)
    with after(services, "cancel_pipeline"):
        response = api.post(f"/api/v4/projects/{project.pk}/pipelines/{pipeline.pk}/cancel")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "canceled"
    assert response.json()["coverage"] == "70.00"


def test_nothing_read_after_the_commit_sei_custom_cicd_run(raw_token, project, reporter, after):
    instance = CicdInstance.objects.create(
        project=project, name="Jenkins-1", guid=uuid.uuid4(), created_by=reporter
    )
    with after(reports, "record_cicd_run"):
        response = APIClient().post(
            "/sei/api/v1/custom-cicd",
            data=sei_run(instance, "SUCCESS"),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"ApiKey {raw_token}",
        )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "success"


def test_nothing_read_after_the_commit_distelli_build_events(raw_token, project, after):
    client = APIClient()
    url = "/distelli/ci/apps/web/events"
    body = {"build_status": "Running", "build_id": "J1", "branch": "main", "commit_id": SHA}
    with after(reports, "record_build_event"):
        created = client.put(
            f"{url}/buildEvent?apiToken={raw_token}",
            data=json.dumps(body),
            content_type="application/json",
        )
    assert created.status_code == 200, created.content
    with after(reports, "update_build_event"):
        finished = client.post(
            f"{url}/{created.json()['event_id']}?apiToken={raw_token}",
            data=json.dumps({"build_status": "Success"}),
            content_type="application/json",
        )
    assert finished.status_code == 200, finished.content
    assert finished.json()["event"]["build_status"] == "Success"


def test_nothing_read_after_the_commit_graphql_start_execution(raw_token, project, after):
    start = start_execution(raw_token, project)
    with after(executions, "start_execution"):
        response = start()
    assert response.status_code == 200, response.content
    assert "errors" not in response.json(), response.json()
