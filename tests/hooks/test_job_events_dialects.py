"""Job and pipeline events of runs that CI systems report through each dialect, as a GitLab
receiver gets them: sent over HTTP to a real receiver on 127.0.0.1, each parsed by gidgetlab
(``Event.from_http``, its router keyed on ``X-Gitlab-Event``) and decoded as go-gitlab's
``JobEvent`` or ``PipelineEvent``; in causal order; numbered 1, 2, 3… with no gap."""

import asyncio
import json

import pytest
from gidgetlab.routing import Router
from gidgetlab.sansio import Event as GitLabEvent

from hooks.delivery import deliver
from hooks.models import Delivery
from pipelines.models import CicdInstance
from tests.clients import api_client_with
from tests.factories import HookFactory, ProjectFactory, UserFactory
from tests.pipelines.test_go_gitlab_types import JOB_EVENT, PIPELINE_EVENT, decode

SHA = "5b6a36e1e5fb3a2bfe1f8e2ec0a3dc9b8f7a6c11"
TOKEN = "receiver-secret"


def send_everything(hook) -> None:
    """What a worker does: every pending delivery, in the outbox's order."""
    while pending := hook.deliveries.filter(status=Delivery.Status.PENDING).order_by("pk"):
        assert deliver(pending.first().pk) is not None


def received_stream(receiver, count: int) -> list[tuple[str, str, str | None]]:
    """Parse each request as a gidgetlab app does, check its types as go-gitlab does, and
    return (kind, status, job name or None) in the order received."""
    requests = receiver.wait_for(count)
    router = Router()
    seen: list[tuple[str, str, str | None]] = []

    @router.register("Job Hook")
    async def on_job(event, *args, **kwargs):
        decode(event.data, JOB_EVENT)
        seen.append(("build", event.data["build_status"], event.data["build_name"]))

    @router.register("Pipeline Hook")
    async def on_pipeline(event, *args, **kwargs):
        decode(event.data, PIPELINE_EVENT)
        seen.append(("pipeline", event.data["object_attributes"]["status"], None))

    for request in requests:
        headers = {name.lower(): value for name, value in request.headers.items()}
        asyncio.run(router.dispatch(GitLabEvent.from_http(headers, request.body, secret=TOKEN)))
    sequences = [int(request.header("X-Pipehook-Sequence")) for request in requests]
    assert sequences == list(range(1, count + 1))
    assert len(seen) == count
    return seen


def assert_causal(seen) -> None:
    """Every job's finish comes before the pipeline's finish it led to."""
    finished = next(
        i for i, (kind, status, _) in enumerate(seen) if kind == "pipeline" and status == "success"
    )
    last_job_success = max(
        i for i, (kind, status, _) in enumerate(seen) if kind == "build" and status == "success"
    )
    assert last_job_success < finished


@pytest.fixture
def reporter(db):
    return UserFactory(username="jdoe")


@pytest.fixture
def hook(db, receiver):
    project = ProjectFactory(path="example-node", namespace="jdoe", default_branch="main")
    return HookFactory(
        project=project, url=receiver.url, token=TOKEN, pipeline_events=True, job_events=True
    )


def test_commit_statuses_of_three_jobs_in_two_stages(hook, receiver, make_token, reporter):
    client = api_client_with(make_token(user=reporter))
    base = f"/api/v4/projects/{hook.project_id}/statuses/{SHA}"
    for name, stage, state in (
        ("compile", "build", "pending"),
        ("unit", "test", "pending"),
        ("lint", "test", "pending"),
        ("compile", "build", "running"),
        ("compile", "build", "success"),
        ("unit", "test", "running"),
        ("lint", "test", "running"),
        ("lint", "test", "success"),
        ("unit", "test", "success"),
    ):
        response = client.post(base, {"name": name, "stage": stage, "state": state})
        assert response.status_code == 201, response.content
    send_everything(hook)
    seen = received_stream(receiver, hook.deliveries.count())
    assert seen == [
        ("pipeline", "created", None),
        ("build", "pending", "compile"),
        ("pipeline", "pending", None),
        ("build", "pending", "unit"),
        ("build", "pending", "lint"),
        ("build", "running", "compile"),
        ("pipeline", "running", None),
        ("build", "success", "compile"),
        ("build", "running", "unit"),
        ("build", "running", "lint"),
        ("build", "success", "lint"),
        ("build", "success", "unit"),
        ("pipeline", "success", None),
    ]
    assert_causal(seen)


def test_an_sei_run_of_three_jobs_in_two_stages(hook, receiver, make_token, reporter, client):
    instance = CicdInstance.objects.create(project=hook.project, name="Jenkins-1")
    body = {
        "pipeline": "deploy",
        "job_full_name": "acme/deploy",
        "qualified_name": "acme/deploy",
        "instance_name": "Jenkins-1",
        "instance_guid": str(instance.guid),
        "start_time": 1700000000000,
        "duration": 60000,
        "result": "RUNNING",
        "build_number": 1,
        "job_run": {
            "stages": [
                {"displayName": "build", "result": "SUCCESS", "durationInMillis": 1000},
                {
                    "displayName": "test",
                    "steps": [
                        {"displayName": "unit", "state": "RUNNING", "result": None},
                        {"displayName": "lint", "state": "QUEUED", "result": None},
                    ],
                },
            ]
        },
    }
    headers = {"Authorization": f"ApiKey {make_token(user=reporter)}"}
    for result in ("RUNNING", "SUCCESS"):
        body["result"] = result
        response = client.post(
            "/sei/api/v1/custom-cicd",
            data=json.dumps(body),
            content_type="application/json",
            headers=headers,
        )
        assert response.status_code == 202, response.content
    send_everything(hook)
    seen = received_stream(receiver, hook.deliveries.count())
    assert seen == [
        ("pipeline", "created", None),
        ("build", "success", "build"),
        ("build", "running", "unit"),
        ("build", "pending", "lint"),
        ("pipeline", "running", None),
        ("build", "success", "unit"),
        ("build", "success", "lint"),
        ("pipeline", "success", None),
    ]
    assert_causal(seen)


def test_a_distelli_build(hook, receiver, make_token, reporter, client):
    key = make_token(user=reporter)
    events = "/distelli/jdoe/apps/example-node/events"
    response = client.put(
        f"{events}/buildEvent?apiToken={key}",
        data=json.dumps({"build_status": "Waiting", "commit_id": SHA, "branch": "main"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    event_id = response.json()["event_id"]
    for status in ("Queued", "Running", "Success"):
        response = client.post(
            f"{events}/{event_id}?apiToken={key}",
            data=json.dumps({"build_status": status}),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
    send_everything(hook)
    seen = received_stream(receiver, hook.deliveries.count())
    assert seen == [
        ("pipeline", "created", None),
        ("build", "created", "build"),
        ("build", "pending", "build"),
        ("pipeline", "pending", None),
        ("build", "running", "build"),
        ("pipeline", "running", None),
        ("build", "success", "build"),
        ("pipeline", "success", None),
    ]
    assert_causal(seen)
