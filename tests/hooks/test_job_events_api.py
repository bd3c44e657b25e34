"""Job Hooks through GitLab's hooks API: the test button for job events, the delivery log's
trigger, and resends that keep a delivery's sequence."""

import json

import gitlab
import pytest

from hooks.delivery import deliver
from hooks.models import Hook
from pipelines import services
from tests.hooks.test_api import hooks_url

SHA = "e" * 40


def make_hook(project, url, **fields) -> Hook:
    return Hook.objects.create(project=project, url=url, **fields)


def test_test_job_events_sends_the_newest_job_past_created(api_client, project, receiver):
    hook = make_hook(project, receiver.url, job_events=False)  # as GitLab: tested even off
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    older = services.create_job(pipeline, name="build", status="running")
    services.update_job(older, status="success")
    newest = services.create_job(pipeline, name="deploy", status="pending")
    services.create_job(pipeline, name="later", status="created")  # created: not a candidate

    response = api_client.post(hooks_url(project, f"/{hook.pk}/test/job_events"))

    assert response.status_code == 201, response.content
    assert response.json() == {"message": "201 Created"}
    (request,) = receiver.wait_for(1)
    assert request.header("X-Gitlab-Event") == "Job Hook"
    assert request.header("X-Pipehook-Sequence") is None  # a test is in no stream
    body = json.loads(request.body)
    assert (body["object_kind"], body["build_id"], body["build_status"]) == (
        "build",
        newest.pk,
        "pending",
    )
    (logged,) = api_client.get(hooks_url(project, f"/{hook.pk}/events")).json()
    assert logged["trigger"] == "job_hooks"
    assert logged["request_data"]["build_id"] == newest.pk


def test_test_job_events_without_a_job_past_created_is_gitlab_s_422(api_client, project):
    hook = make_hook(project, "http://127.0.0.1:9/hook")
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build")  # created only

    response = api_client.post(hooks_url(project, f"/{hook.pk}/test/job_events"))

    assert response.status_code == 422
    assert response.json() == {"message": "Ensure the project has CI jobs."}
    assert not hook.attempts.exists()


def test_python_gitlab_tests_job_events(project, receiver, api_token, live_server):
    hook = make_hook(project, receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build", status="running")
    gl = gitlab.Gitlab(live_server.url, private_token=api_token)

    gl.projects.get(project.pk, lazy=True).hooks.get(hook.pk).test("job_events")

    assert receiver.wait_for(1)[0].header("X-Gitlab-Event") == "Job Hook"


@pytest.mark.parametrize("kind", ["build", "pipeline"])
def test_resend_keeps_the_sequence_and_the_log_names_the_kind(api_client, project, receiver, kind):
    hook = make_hook(project, receiver.url, pipeline_events=True, job_events=True)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build", status="pending")
    delivery = hook.deliveries.filter(event__object_kind=kind).order_by("pk").last()
    # The first delivery's task follows its pipeline: every later one goes out with it.
    deliver(hook.deliveries.order_by("pk").first().pk)
    attempt = delivery.attempts.get()
    resent = api_client.post(hooks_url(project, f"/{hook.pk}/events/{attempt.pk}/resend"))
    assert resent.status_code == 201, resent.content

    requests = receiver.wait_for(hook.deliveries.count() + 1)
    sent, again = requests[delivery.sequence - 1], requests[-1]
    assert sent.header("X-Pipehook-Sequence") == again.header("X-Pipehook-Sequence")
    assert sent.header("X-Pipehook-Sequence") == str(delivery.sequence)
    assert sent.header("Idempotency-Key") == again.header("Idempotency-Key")
    expected = {"build": ("Job Hook", "job_hooks"), "pipeline": ("Pipeline Hook", "pipeline_hooks")}
    assert again.header("X-Gitlab-Event") == expected[kind][0]
    log = api_client.get(hooks_url(project, f"/{hook.pk}/events")).json()
    assert {entry["trigger"] for entry in log if entry["delivery_id"] == delivery.pk} == {
        expected[kind][1]
    }
