"""Harness SEI custom CI/CD dialect: the seed pages' requests, sent as their curls show."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from hooks.models import Delivery
from pipelines import services
from pipelines.api.dialect import repair_json_slips
from pipelines.models import CicdInstance, CicdRun, Job, Pipeline, Status
from pipelines.signals import pipeline_changed
from tests.factories import HookFactory, ProjectFactory

BASE = "/sei/api/v1"

# The first page's example payload, verbatim.
SEED_000_PAYLOAD = """{
"pipeline": "Node.js CI",
"user_id": "SCMTrigger",
"repo_url": "https://api.github.com/users/rajpropelo",
"start_time": 1679467494000,
"result": "success",
"duration": 77000,
"build_number": 4487150517,
"instance_guid": "89d2491c-764a-4f77-93d9-18e8e372b795",
"instance_name": "Jenkins Instance",
"instance_url": "https://jenkins.dev.levelops.io/",
"job_run": {
"stages": [
{
"displayName": "Build_Stage",
"displayDescription": "Build_Stage",
"result": "succeeded",
"state": "completed",
"durationInMillis": 5000,
"steps": [
{
"displayName": "BUILD_STEP",
"displayDescription": "BUILD_STEP",
"result": "succeeded",
"state": "completed",
"durationInMillis": 5000
}
]
}
]
},
"job_full_name": "Node.js CI--readme updated",
"qualified_name": "Node.js CI--readme updated",
"branch_name": "master",
"module_name": null,
"scm_commit_ids": [
"64be72b2c1f7d2a33082f98a40a848880fcdcd5e"
],
"job_run_params": [
{
"type": "StringParameterValue",
"name": "version",
"value": 1
},
{
"type": "StringParameterValue",
"name": "revision",
"value": 1
}
],
"ci": true,
"cd": false,
"artifacts": [
{
"input": false,
"output": true,
"type": "container",
"location": "http://generated/image/location",
"name": "image1",
"qualifier": "1"
}
],
"trigger_chain": [
{
"id": "SCMTrigger",
"type": "SCMTriggerCause"
}
]
}"""

# The first page's curl body (older field names), verbatim.
SEED_000_CURL = """{
"job_name": "pipelines-testing",
"jenkins_instance_guid": "c9a73c1b-7590-34sa-a82f-c53a469686b7",
"jenkins_instance_name": "azure-integration",
"job_full_name": "<PROJECT>/<REPO_NAME>",
"job_normalized_full_name": "<PROJECT>/<REPO_NAME>",
"result": "FAILED",
"user_id": "UNKNOWN",
"repo_url": "https://dev.azure.com/<USERNAME>/<PROJECT>/<REPO_NAME>",
"start_time": 1684912520000,
"duration": 5,
"build_number": 7871,
"jenkins_instance_url": "https://dev.azure.com",
"branch_name": "main"
}"""

SEED_000_CURL_HEADERS = {
    "sec-ch-ua": '"Chromium";v="112", "Google Chrome";v="112", "Not:A-Brand";v="99"',
    "Accept": "application/json, text/plain, */*",
    "Referer": "https://app.harness.io/",
    "sec-ch-ua-mobile": "?0",
    "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
    "sec-ch-ua-platform": '"macOS"',
    "Cookie": "<COOKIE>",
}

# The first page's instance curl body, verbatim (trailing comma included).
SEED_000_INSTANCE = """{
"integration_id": "<INTEGRATION_ID>",
"name": "Custom CICD Integration",
}"""

# The second page's example payload, verbatim (its missing commas included).
SEED_001_PAYLOAD = """{
    "instance_guid": "666ba79b-3f3d-4236-ac04-4686ce526705",
    "job_full_name": "Pipeline-2",
    "execution_id": "UNIQUE_EXECUTION_ID",
    "pipeline": "Pipeline-2",
    "project_name": "Project-A",
    "user_id": "NISHITH",
    "repo_url": "https://api.github.com/users/nishith.patel",
    "start_time": 1711603545000,
    "result": "success",
    "duration": 780000,
    "instance_name": "Jenkins-1",
    "instance_url": "http://localhost:8800",
    "job_run": null,
    "qualified_name": "Pipeline-2",
    "branch_name": "master",
    "module_name": null,
    "scm_commit_ids": [
        "64be72b2c1f7d2a33082f98a40a848880fcdcd5e"
    ],
    "job_run_params": [
        {
            "type": "StringParameterValue",
            "name": "version",
            "value": 1
        },
        {
            "type": "StringParameterValue",
            "name": "revision",
            "value": 1
        }
    ],
    "ci": true,
    "cd": false,
    "artifacts": [
        {
            "input": false,
            "output": true,
            "type": "container",
            "location": "http://generated/image/location",
            "name": "image1",
            "qualifier": "1"
        }
    ],
    "trigger_chain": [
        {
            "id": "SCMTrigger",
            "type": "SCMTriggerCause"
        }
    ],
    "cfr_status": true
    "themes":[
        "themex",
        "themey",
        "themex/themey"
    ],
    "web_url": "http://somelink-updated.com"

}"""

# The second page's curl body with its placeholders filled in; duration as its placeholder
# says (<DURATION_IN_SECONDS>).
SEED_001_CURL = """{
  "job_name": "build-app",
  "instance_guid": "<INSTANCE_GUID>",
  "instance_name": "Jenkins-1",
  "job_full_name": "team/build-app",
  "job_normalized_full_name": "team/build-app",
  "result": "SUCCESS",
  "user_id": "jdoe",
  "repo_url": "https://github.com/acme/app",
  "start_time": 1711603545000,
  "duration": 42,
  "build_number": 12,
  "instance_url": "https://jenkins.example.com",
  "branch_name": "main",
  "project_name": "Project-A"
}"""

# The second page's instance curl body, verbatim (trailing comma included).
SEED_001_INSTANCE = """{
    "integration_id": "<INTEGRATION_ID>",
    "name": "Custom CI/CD Integration",
    "type": "jenkins",
}"""


@pytest.fixture
def changes():
    seen = []

    def listen(sender, pipeline, previous_status, change, **kwargs):
        seen.append((previous_status, pipeline.status, str(change)))

    pipeline_changed.connect(listen)
    yield seen
    pipeline_changed.disconnect(listen)


@pytest.fixture
def key(make_token, user):
    return make_token(user=user)


@pytest.fixture
def instance(project, user):
    return CicdInstance.objects.create(project=project, name="Jenkins-1", created_by=user)


def post(client, path, body, key, scheme="ApiKey", **headers):
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        f"{BASE}/{path}",
        data=text,
        content_type="application/json",
        headers={"Authorization": f"{scheme} {key}", **headers},
    )


def run_body(instance, **fields):
    body = {
        "pipeline": "deploy",
        "job_full_name": "acme/deploy",
        "qualified_name": "acme/deploy",
        "instance_name": "Jenkins-1",
        "instance_guid": str(instance.guid),
        "start_time": 1700000000000,
        "duration": 60000,
        "result": "success",
        "build_number": 1,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def row_counts():
    return (
        Pipeline.objects.count(),
        Job.objects.count(),
        CicdRun.objects.count(),
        CicdInstance.objects.count(),
    )


def at_ms(ms):
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- cicd/instances ------------------------------------------------------------------------


def test_instances_seed_000_curl_mints_guid_for_project(client, project, key):
    body = SEED_000_INSTANCE.replace("<INTEGRATION_ID>", str(project.pk))
    response = post(client, "cicd/instances", body, key, scheme="Bearer")
    assert response.status_code == 200, response.json()
    guid = uuid.UUID(response.json()["id"])
    instance = CicdInstance.objects.get(guid=guid)
    assert (instance.project, instance.name, instance.type) == (
        project,
        "Custom CICD Integration",
        "custom",
    )


def test_instances_seed_001_curl_keeps_type(client, project, key):
    body = SEED_001_INSTANCE.replace("<INTEGRATION_ID>", str(project.pk))
    response = post(client, "cicd/instances", body, key)
    assert response.status_code == 200, response.json()
    assert CicdInstance.objects.get(guid=response.json()["id"]).type == "jenkins"


def test_instances_keep_a_guid_the_client_already_has(client, project, key):
    guid = "666ba79b-3f3d-4236-ac04-4686ce526705"
    body = {"integration_id": project.pk, "name": "Jenkins-1", "id": guid}
    assert post(client, "cicd/instances", body, key).json() == {"id": guid}
    again = post(client, "cicd/instances", body, key)
    assert again.status_code == 409
    assert again.json() == {"message": f"an instance with id {guid} already exists"}
    assert CicdInstance.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x"}, "integration_id: is missing"),
        ({"integration_id": "PROJECT"}, "name: is missing"),
        ({"integration_id": "abc", "name": "x"}, "integration_id: must be a project id"),
        ({"integration_id": True, "name": "x"}, "integration_id: must be a project id"),
        ({"integration_id": "PROJECT", "name": 5}, "name: must be a string"),
        ({"integration_id": 99999, "name": "x"}, "integration_id 99999 is not a project id"),
    ],
)
def test_instances_refuse_bad_input_and_change_nothing(client, project, key, body, message):
    if body.get("integration_id") == "PROJECT":
        body = dict(body, integration_id=project.pk)
    response = post(client, "cicd/instances", body, key)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert CicdInstance.objects.count() == 0


def test_instances_refuse_token_of_other_project(client, project, make_token, user):
    limited = make_token(user=user, projects=[ProjectFactory()])
    response = post(client, "cicd/instances", {"integration_id": project.pk, "name": "x"}, limited)
    # The answer an id that names no project gets: the token cannot tell the two apart.
    missing = post(client, "cicd/instances", {"integration_id": 999999, "name": "x"}, limited)
    assert response.status_code == missing.status_code == 400
    assert response.json()["message"] == missing.json()["message"].replace(
        "999999", str(project.pk)
    )
    assert CicdInstance.objects.count() == 0


# --- custom-cicd: the seed requests -----------------------------------------------------------


def test_seed_000_payload_reports_successful_run_with_stage_jobs(
    client, instance, key, user, changes
):
    body = SEED_000_PAYLOAD.replace("89d2491c-764a-4f77-93d9-18e8e372b795", str(instance.guid))
    response = post(client, "custom-cicd", body, key, scheme="Bearer")

    assert response.status_code == 202, response.json()
    pipeline = Pipeline.objects.get()
    assert response.json() == {
        "id": CicdRun.objects.get().pk,
        "pipeline_id": pipeline.pk,
        "iid": 1,
        "project_id": instance.project_id,
        "status": "success",
        "web_url": pipeline.web_url,
        "created": True,
    }
    assert pipeline.project == instance.project
    assert (pipeline.name, pipeline.ref, pipeline.sha) == (
        "Node.js CI",
        "master",
        "64be72b2c1f7d2a33082f98a40a848880fcdcd5e",
    )
    assert (pipeline.status, pipeline.source, pipeline.user) == ("success", "external", user)
    assert pipeline.started_at == at_ms(1679467494000)
    assert pipeline.finished_at == at_ms(1679467494000 + 77000)
    assert pipeline.duration == 77
    assert pipeline.variables == [
        {"key": "version", "value": "1", "variable_type": "env_var"},
        {"key": "revision", "value": "1", "variable_type": "env_var"},
    ]
    job = pipeline.jobs.get()
    assert (job.stage, job.name, job.status, job.duration) == (
        "Build_Stage",
        "BUILD_STEP",
        "success",
        5.0,
    )
    assert job.started_at == at_ms(1679467494000)
    assert changes == [(None, "created", "created"), ("created", "success", "finished")]
    record = CicdRun.objects.get()
    assert record.identity == "build:Node.js CI--readme updated#4487150517"
    assert record.report["trigger_chain"] == [{"id": "SCMTrigger", "type": "SCMTriggerCause"}]


def test_seed_000_curl_older_field_names_report_failed_run(client, instance, key, changes):
    body = SEED_000_CURL.replace("c9a73c1b-7590-34sa-a82f-c53a469686b7", str(instance.guid))
    response = post(client, "custom-cicd", body, key, scheme="Bearer", **SEED_000_CURL_HEADERS)

    assert response.status_code == 202, response.json()
    pipeline = Pipeline.objects.get()
    assert (pipeline.name, pipeline.ref, pipeline.sha, pipeline.status) == (
        "pipelines-testing",
        "main",
        "0" * 40,
        "failed",
    )
    # duration is milliseconds on both pages' field tables: 5 ms.
    assert pipeline.finished_at == at_ms(1684912520005)
    assert pipeline.duration == 0
    # No stages: the run itself is the job that carries its result.
    job = pipeline.jobs.get()
    assert (job.stage, job.name, job.status, job.failure_reason) == (
        "external",
        "<PROJECT>/<REPO_NAME>",
        "failed",
        "unknown_failure",
    )
    assert CicdRun.objects.get().report["jenkins_instance_name"] == "azure-integration"
    assert changes[-1] == ("created", "failed", "finished")


def test_seed_001_payload_with_missing_commas_is_accepted(client, instance, key, changes):
    body = SEED_001_PAYLOAD.replace("666ba79b-3f3d-4236-ac04-4686ce526705", str(instance.guid))
    response = post(client, "custom-cicd", body, key)

    assert response.status_code == 202, response.json()
    pipeline = Pipeline.objects.get()
    assert (pipeline.name, pipeline.ref, pipeline.status, pipeline.duration) == (
        "Pipeline-2",
        "master",
        "success",
        780,
    )
    assert pipeline.jobs.get().target_url == "http://somelink-updated.com"
    record = CicdRun.objects.get()
    assert record.identity == "execution:UNIQUE_EXECUTION_ID"
    assert record.report["themes"] == ["themex", "themey", "themex/themey"]
    assert record.report["cfr_status"] is True
    assert record.report["project_name"] == "Project-A"


def test_seed_001_curl_with_placeholders_filled(client, instance, key):
    body = SEED_001_CURL.replace("<INSTANCE_GUID>", str(instance.guid))
    response = post(client, "custom-cicd", body, key)

    assert response.status_code == 202, response.json()
    pipeline = Pipeline.objects.get()
    assert (pipeline.name, pipeline.status, pipeline.ref) == ("build-app", "success", "main")
    assert pipeline.finished_at == at_ms(1711603545042)  # 42 read as milliseconds


def test_seed_000_data_line_as_rendered_is_refused_clearly(client, instance, key):
    # The first page shows the body wrapped in quotes ("Data: "{...}""): not JSON at all.
    rendered = '"{"pipeline":"Node.js CI","result":"success"}"'
    response = post(client, "custom-cicd", rendered, key)
    assert response.status_code == 400
    assert response.json()["message"].startswith("the body is not valid JSON")
    assert row_counts() == (0, 0, 0, 1)


# --- custom-cicd: identity and updates -----------------------------------------------------


def test_repost_same_execution_updates_run_and_signals_only_changes(client, instance, key, changes):
    running = run_body(instance, execution_id="exec-1", result="RUNNING")
    first = post(client, "custom-cicd", running, key)
    assert first.json()["created"] is True
    assert first.json()["status"] == "running"

    again = post(client, "custom-cicd", running, key)
    assert again.status_code == 202
    assert again.json()["created"] is False
    assert len(changes) == 2  # created, running; the repeat changed nothing

    done = post(client, "custom-cicd", dict(running, result="SUCCESS"), key)
    assert done.json()["status"] == "success"
    assert done.json()["pipeline_id"] == first.json()["pipeline_id"]
    assert Pipeline.objects.count() == CicdRun.objects.count() == 1
    assert changes == [
        (None, "created", "created"),
        ("created", "running", "status_changed"),
        ("running", "success", "finished"),
    ]
    post(client, "custom-cicd", dict(running, result="SUCCESS"), key)
    assert len(changes) == 3


def test_build_number_identifies_run_without_execution_id(client, instance, key):
    post(client, "custom-cicd", run_body(instance, build_number=7, result="running"), key)
    post(client, "custom-cicd", run_body(instance, build_number=7, result="failure"), key)
    post(client, "custom-cicd", run_body(instance, build_number=8, result="success"), key)
    assert list(Pipeline.objects.order_by("id").values_list("status", flat=True)) == [
        "failed",
        "success",
    ]


def test_start_time_identifies_run_without_build_number(client, instance, key):
    body = run_body(instance, build_number=..., result="running")
    post(client, "custom-cicd", body, key)
    post(client, "custom-cicd", dict(body, result="success"), key)
    post(client, "custom-cicd", dict(body, start_time=1700000999000), key)
    assert Pipeline.objects.count() == 2
    assert CicdRun.objects.order_by("id").first().identity == "start:acme/deploy@1700000000000"


def test_same_execution_id_on_other_instance_is_another_run(client, project, instance, key):
    other = CicdInstance.objects.create(project=project, name="Jenkins-2")
    post(client, "custom-cicd", run_body(instance, execution_id="e"), key)
    post(client, "custom-cicd", run_body(other, execution_id="e"), key)
    assert Pipeline.objects.count() == 2


def test_changed_result_after_finish_starts_new_job_attempt(client, instance, key, changes):
    post(client, "custom-cicd", run_body(instance, result="failure"), key)
    response = post(client, "custom-cicd", run_body(instance, result="success"), key)
    assert response.json()["status"] == "success"
    jobs = list(Pipeline.objects.get().jobs.order_by("id").values_list("status", "retried"))
    assert jobs == [("failed", True), ("success", False)]
    assert changes[-1] == ("failed", "success", "finished")


def test_reported_times_win_over_the_moment_of_report(client, instance, key):
    post(client, "custom-cicd", run_body(instance, result="running"), key)
    post(client, "custom-cicd", run_body(instance, result="success", duration=90500), key)
    pipeline = Pipeline.objects.get()
    assert pipeline.started_at == at_ms(1700000000000)
    assert pipeline.finished_at == at_ms(1700000090500)
    assert pipeline.duration == 90
    assert pipeline.created_at == at_ms(1700000000000)


# --- custom-cicd: results, stages and steps ---------------------------------------------------


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ("success", "success"),
        ("SUCCESS", "success"),
        ("Succeeded", "success"),
        ("partiallySucceeded", "success"),
        ("failure", "failed"),
        ("FAILURE", "failed"),
        ("FAILED", "failed"),
        ("failed", "failed"),
        ("UNSTABLE", "failed"),
        ("timed_out", "failed"),
        ("ABORTED", "canceled"),
        ("cancelled", "canceled"),
        ("NOT_BUILT", "skipped"),
        ("RUNNING", "running"),
        ("in_progress", "running"),
        ("queued", "pending"),
    ],
)
def test_result_spellings_map_to_gitlab_status(client, instance, key, result, status):
    response = post(client, "custom-cicd", run_body(instance, result=result), key)
    assert response.status_code == 202, response.json()
    assert Pipeline.objects.get().status == status


def test_timed_out_run_gets_gitlab_timeout_reason(client, instance, key):
    post(client, "custom-cicd", run_body(instance, result="TIMED_OUT"), key)
    assert Job.objects.get().failure_reason == "job_execution_timeout"


def test_unknown_result_is_refused_with_the_accepted_ones(client, instance, key):
    response = post(client, "custom-cicd", run_body(instance, result="GREAT"), key)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("result 'GREAT' is not a result this API knows")
    assert "SUCCESS, FAILURE (or FAILED), ABORTED" in message
    assert row_counts() == (0, 0, 0, 1)


def test_failed_stage_in_successful_run_was_allowed_to_fail(client, instance, key):
    job_run = {
        "stages": [
            {"displayName": "build", "result": "SUCCESS", "durationInMillis": 1000},
            {"displayName": "lint", "result": "FAILURE", "durationInMillis": 2000},
        ]
    }
    post(client, "custom-cicd", run_body(instance, job_run=job_run), key)
    pipeline = Pipeline.objects.get()
    assert pipeline.status == "success"
    jobs = pipeline.jobs.order_by("stage_idx").values_list("name", "status", "allow_failure")
    assert list(jobs) == [("build", "success", False), ("lint", "failed", True)]
    lint = pipeline.jobs.get(name="lint")
    assert lint.started_at == at_ms(1700000001000)
    assert lint.duration == 2.0


def test_failed_run_whose_stages_passed_gets_a_job_for_the_run(client, instance, key):
    job_run = {"stages": [{"displayName": "build", "result": "SUCCESS"}]}
    post(client, "custom-cicd", run_body(instance, result="FAILURE", job_run=job_run), key)
    pipeline = Pipeline.objects.get()
    assert pipeline.status == "failed"
    assert set(pipeline.jobs.values_list("stage", "name", "status")) == {
        ("build", "build", "success"),
        ("external", "acme/deploy", "failed"),
    }


def test_steps_become_jobs_with_numbered_repeats_and_states(client, instance, key):
    job_run = {
        "stages": [
            {
                "displayName": "test",
                "durationInMillis": 10000,
                "steps": [
                    {"displayName": "sh", "result": "SUCCESS", "durationInMillis": 1000},
                    {"displayName": "sh", "result": None, "state": "RUNNING"},
                    {"displayName": "archive", "state": "QUEUED"},
                ],
            },
            {"displayName": "deploy", "state": "SKIPPED"},
        ]
    }
    body = run_body(instance, result="RUNNING", job_run=job_run)
    assert post(client, "custom-cicd", body, key).status_code == 202
    pipeline = Pipeline.objects.get()
    assert pipeline.status == "running"
    assert list(pipeline.jobs.order_by("id").values_list("stage", "name", "status")) == [
        ("test", "sh", "success"),
        ("test", "sh (2)", "running"),
        ("test", "archive", "pending"),
        ("deploy", "deploy", "skipped"),
    ]
    # The run finishes: unfinished steps take the run's result; finished ones keep theirs.
    body["result"] = "ABORTED"
    post(client, "custom-cicd", body, key)
    statuses = dict(pipeline.jobs.filter(retried=False).values_list("name", "status"))
    assert statuses == {
        "sh": "success",
        "sh (2)": "canceled",
        "archive": "canceled",
        "deploy": "skipped",
    }
    pipeline.refresh_from_db()
    assert pipeline.status == "canceled"


def test_unknown_step_result_is_refused_with_its_path(client, instance, key):
    job_run = {"stages": [{"displayName": "a", "steps": [{"displayName": "b", "result": "meh"}]}]}
    response = post(client, "custom-cicd", run_body(instance, job_run=job_run), key)
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "job_run.stages[0].steps[0].result 'meh' is not a result this API knows"
    )
    assert row_counts() == (0, 0, 0, 1)


# --- custom-cicd: envelopes and lenient parsing -----------------------------------------------


def test_request_type_and_payload_envelope_with_string_payload(client, instance, key):
    run = run_body(instance, start_time="1700000000000", duration="1000")
    envelope = {"request_type": "JenkinsPluginJobRunComplete", "payload": json.dumps(run)}
    response = post(client, "custom-cicd", envelope, key, scheme="Apikey")
    assert response.status_code == 202, response.json()
    assert Pipeline.objects.get().finished_at == at_ms(1700000001000)


def test_repair_changes_only_invalid_spots():
    assert repair_json_slips('{"a": 1,\n}') == '{"a": 1\n}'
    assert repair_json_slips('{"a": true\n"b": [1, 2,]}') == '{"a": true\n,"b": [1, 2]}'
    assert repair_json_slips('{"a": "x,}", "b": "y\\"\n z"}') == '{"a": "x,}", "b": "y\\" z"}'


# --- custom-cicd: refusals change nothing -----------------------------------------------------


REQUIRED = [
    "pipeline",
    "job_full_name",
    "qualified_name",
    "instance_name",
    "instance_guid",
    "start_time",
    "duration",
    "result",
]


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_required_field_is_refused(client, instance, key, field):
    response = post(client, "custom-cicd", run_body(instance, **{field: ...}), key)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}: is missing")
    assert row_counts() == (0, 0, 0, 1)


def test_missing_field_names_its_older_alias(client, instance, key):
    response = post(client, "custom-cicd", run_body(instance, pipeline=...), key)
    assert response.json() == {
        "message": "pipeline: is missing (older clients send it as job_name)"
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start_time": "yesterday"}, "start_time: A valid integer is required."),
        ({"start_time": True}, "start_time: A valid integer is required."),
        ({"duration": -1}, "duration: Ensure this value is greater than or equal to 0."),
        ({"pipeline": 42}, "pipeline: must be a string"),
        ({"instance_guid": "c9a73c1b-7590-34sa"}, "instance_guid: Must be a valid UUID."),
        ({"build_number": "1.2.3"}, "build_number: A valid integer is required."),
        ({"scm_commit_ids": "abc"}, "scm_commit_ids: Expected a list of items"),
        ({"scm_commit_ids": [1]}, "scm_commit_ids[0]: must be a string"),
        ({"job_run": "stages"}, "job_run: Invalid data. Expected a dictionary"),
        ({"job_run": {"stages": [{"result": "x"}]}}, "job_run.stages[0].displayName"),
        ({"job_run_params": [{"name": "a", "value": {}}]}, "job_run_params[0].value: must be"),
        ({"ci": "maybe"}, "ci: Must be a valid boolean."),
        ({"module_name": []}, "module_name: must be a string or an integer"),
        ({"start_time": 10**20}, "start_time: 100000000000000000000 is not a time"),
    ],
)
def test_wrong_types_are_refused(client, instance, key, fields, message):
    response = post(client, "custom-cicd", run_body(instance, **fields), key)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert row_counts() == (0, 0, 0, 1)


def test_unknown_instance_guid_is_refused(client, instance, key):
    guid = str(uuid.uuid4())
    response = post(client, "custom-cicd", run_body(instance, instance_guid=guid), key)
    assert response.status_code == 400
    assert response.json() == {
        "message": f"instance_guid {guid} is not a registered CI/CD instance:"
        " mint one with POST /sei/api/v1/cicd/instances"
    }
    assert row_counts() == (0, 0, 0, 1)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "an access token is needed: send Authorization: ApiKey <token>"),
        ({"Authorization": "ApiKey phk_not-a-real-key"}, "the access token is not valid"),
        ({"Authorization": "Bearer "}, "an access token is needed"),
    ],
)
def test_missing_or_bad_key_is_refused(client, instance, headers, message):
    response = client.post(
        f"{BASE}/custom-cicd",
        data=json.dumps(run_body(instance)),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 401
    assert response.json()["message"].startswith(message)
    assert row_counts() == (0, 0, 0, 1)


def test_read_only_key_is_refused(client, instance, make_token, user):
    read_only = make_token(user=user, scopes=["read_api"])
    response = post(client, "custom-cicd", run_body(instance), read_only)
    assert response.status_code == 403
    assert "insufficient_scope" in response.json()["message"]
    assert row_counts() == (0, 0, 0, 1)


def test_not_json_and_not_an_object_are_refused(client, instance, key):
    assert post(client, "custom-cicd", "{not json", key).status_code == 400
    response = post(client, "custom-cicd", "[1, 2]", key)
    assert response.json() == {"message": "the body must be a JSON object"}
    form = client.post(
        f"{BASE}/custom-cicd", data={"a": "b"}, headers={"Authorization": f"ApiKey {key}"}
    )
    assert form.status_code == 415
    assert row_counts() == (0, 0, 0, 1)


def test_get_is_not_allowed(client, key):
    response = client.get(f"{BASE}/custom-cicd", headers={"Authorization": f"ApiKey {key}"})
    assert response.status_code == 405
    assert response.json() == {"message": "GET is not allowed here; use POST"}


def test_deleted_pipeline_is_reported_anew(client, instance, key):
    post(client, "custom-cicd", run_body(instance), key)
    services.delete_pipeline(Pipeline.objects.get())
    response = post(client, "custom-cicd", run_body(instance), key)
    assert response.json()["created"] is True
    assert Pipeline.objects.get().status == Status.SUCCESS


def test_reported_run_is_visible_through_the_gitlab_api(client, instance, key):
    body = SEED_001_PAYLOAD.replace("666ba79b-3f3d-4236-ac04-4686ce526705", str(instance.guid))
    pipeline_id = post(client, "custom-cicd", body, key).json()["pipeline_id"]
    response = client.get(
        f"/api/v4/projects/{instance.project_id}/pipelines/{pipeline_id}",
        headers={"PRIVATE-TOKEN": key},
    )
    assert response.status_code == 200
    shown = response.json()
    assert (shown["status"], shown["ref"], shown["source"], shown["duration"]) == (
        "success",
        "master",
        "external",
        780,
    )


def test_reported_run_becomes_pipeline_hook_deliveries(client, instance, key):
    hook = HookFactory(project=instance.project)
    post(client, "custom-cicd", run_body(instance, execution_id="e1", result="running"), key)
    post(client, "custom-cicd", run_body(instance, execution_id="e1", result="running"), key)
    post(client, "custom-cicd", run_body(instance, execution_id="e1", result="SUCCESS"), key)
    bodies = [json.loads(d.event.body) for d in Delivery.objects.filter(hook=hook).order_by("id")]
    assert [(b["object_kind"], b["object_attributes"]["status"]) for b in bodies] == [
        ("pipeline", "created"),
        ("pipeline", "running"),
        ("pipeline", "success"),
    ]
    assert bodies[-1]["object_attributes"]["duration"] == 60


def test_a1_a_run_fills_the_hook_payloads_commit_with_its_sha(client, instance, key):
    """A1: SEI reports a commit by sha only; the payload's commit is there all the same."""
    from hooks.payloads import build_pipeline_payload

    sha = "9f" * 20
    response = post(client, "custom-cicd", run_body(instance, scm_commit_ids=[sha]), key)
    assert response.status_code == 202, response.json()
    commit = build_pipeline_payload(Pipeline.objects.get())["commit"]
    assert (commit["id"], commit["title"], commit["author"]) == (
        sha,
        "No commit message",
        {"name": "", "email": ""},
    )
