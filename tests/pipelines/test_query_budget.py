"""The query budget of every inbound path: each request reads and writes what its work needs
and no more. A change that adds a query to one of these paths fails here.

Every project has ten hooks, so each status change writes its outbox (one event, one bulk
insert of deliveries) in the counts. The token is warm (the per-process token cache) unless
a test says otherwise; a cold token costs its lookup, its grants (one query) and the
once-a-minute ``last_used_at`` write.
"""

import json
import uuid

import pytest
from rest_framework.test import APIClient

from hooks.models import Delivery
from pipelines.api.graphql.ids import definition_id, encode_id
from pipelines.models import CicdInstance, Job, PipelineDefinition
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
    with django_assert_max_num_queries(17):
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
    with django_assert_max_num_queries(10):
        response = post_status(api, project, state=state, name="build")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == state
    assert Delivery.objects.count() == 3 * HOOKS


def test_commit_status_for_a_new_job_of_a_running_pipeline(
    api, project, django_assert_max_num_queries
):
    assert post_status(api, project, state="running", name="build").status_code == 201
    # A job that changes nothing of the pipeline's status: no outbox.
    with django_assert_max_num_queries(6):
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
    # answer reads the pipeline and its jobs' coverage.
    with django_assert_max_num_queries(15):
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

    with django_assert_max_num_queries(17 + COLD_TOKEN):
        assert post("RUNNING").status_code in (200, 202), post
    # instance; begin; the run with its pipeline, locked; latest jobs; run report saved;
    # job; pipeline; hooks; event; deliveries; commit; the project for the answer.
    with django_assert_max_num_queries(12):
        response = post("SUCCESS")
    assert response.status_code in (200, 202), response.content
    assert Delivery.objects.count() == 3 * HOOKS  # created, running, success


def test_distelli_build_events(raw_token, project, reporter, django_assert_max_num_queries):
    client = APIClient()
    url = "/distelli/ci/apps/web/events"
    body = {"build_status": "Running", "build_id": "J1", "branch": "main", "commit_id": SHA}
    with django_assert_max_num_queries(18 + COLD_TOKEN):
        created = client.put(
            f"{url}/buildEvent?apiToken={raw_token}",
            data=json.dumps(body),
            content_type="application/json",
        )
    assert created.status_code in (200, 201), created.content
    event_id = created.json()["event_id"]
    with django_assert_max_num_queries(12):
        finished = client.post(
            f"{url}/{event_id}?apiToken={raw_token}",
            data=json.dumps({"build_status": "Success"}),
            content_type="application/json",
        )
    assert finished.status_code == 200, finished.content


START = """mutation($s: StartExecutionInput!) {
  startExecution(input: $s) { execution { id status } }
}"""


def test_graphql_start_execution(raw_token, project, django_assert_max_num_queries):
    definition = PipelineDefinition.objects.create(
        project=project, name="Deploy", variables=[{"name": "branch", "type": "Text"}]
    )
    client = APIClient()
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
    with django_assert_max_num_queries(18 + COLD_TOKEN):
        response = client.post(
            "/api/graphql",
            data=json.dumps({"query": START, "variables": variables}),
            content_type="application/json",
            HTTP_X_API_KEY=raw_token,
        )
    assert response.status_code == 200, response.content
    assert "errors" not in response.json(), response.json()
