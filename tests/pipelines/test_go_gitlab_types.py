"""go-gitlab (``gitlab.com/gitlab-org/api/client-go``) decodes what Pipehook answers and sends.

A small strict checker in the way of Go's ``encoding/json``: each struct below is
go-gitlab's, field by field, with its Go type (``pipelines.go``, ``jobs.go``,
``commits.go``, ``users.go``, ``version.go``, ``metadata.go``,
``event_webhook_types.go``). As in Go, a JSON null leaves any field at its zero value and
keys the struct does not declare are ignored; any other mismatch (a number for a
``string``, ``85.5`` for an ``int``, a time that is not RFC 3339 for a ``*time.Time``) is
the error ``json.Unmarshal`` would return, which fails the client's whole call.
"""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hooks.payloads import build_pipeline_payload, dump_payload
from pipelines import services
from tests.factories import UserFactory

SHA = "5b6a36e1e5fb3a2bfe1f8e2ec0a3dc9b8f7a6c11"

# time.Time's UnmarshalJSON: RFC 3339, fractional seconds allowed.
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")  # go-gitlab's ISOTime


class DecodeError(AssertionError):
    pass


def decode(value, go_type, where="$"):
    """Raise ``DecodeError`` where ``json.Unmarshal`` into ``go_type`` would fail."""
    if value is None:
        return  # Go: null leaves the zero value, for every type
    if isinstance(go_type, dict):  # a struct, or a pointer to one
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: cannot unmarshal {type(value).__name__} into a struct")
        for key, field_type in go_type.items():
            if key in value:
                decode(value[key], field_type, f"{where}.{key}")
        return
    if isinstance(go_type, list):  # a slice
        if not isinstance(value, list):
            raise DecodeError(f"{where}: cannot unmarshal {type(value).__name__} into a slice")
        for index, item in enumerate(value):
            decode(item, go_type[0], f"{where}[{index}]")
        return
    ok = {
        "string": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float64": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "*time.Time": lambda v: isinstance(v, str) and bool(RFC3339.match(v)),
        "*ISOTime": lambda v: isinstance(v, str) and bool(ISO_DATE.match(v)),
        "map[string]string": lambda v: (
            isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
        ),
    }[go_type]
    if not ok(value):
        raise DecodeError(f"{where}: cannot unmarshal {value!r} into Go value of type {go_type}")


# --- go-gitlab's structs (int64 ids are "int" here: both take only whole numbers) ----------

BASIC_USER = {
    "id": "int",
    "username": "string",
    "name": "string",
    "state": "string",
    "locked": "bool",
    "created_at": "*time.Time",
    "avatar_url": "string",
    "web_url": "string",
}
USER = {
    **BASIC_USER,
    "email": "string",
    "bio": "string",
    "bot": "bool",
    "location": "string",
    "public_email": "string",
    "linkedin": "string",
    "twitter": "string",
    "website_url": "string",
    "organization": "string",
    "job_title": "string",
    "theme_id": "int",
    "last_activity_on": "*ISOTime",
    "color_scheme_id": "int",
    "is_admin": "bool",
    "can_create_group": "bool",
    "can_create_project": "bool",
    "projects_limit": "int",
    "current_sign_in_at": "*time.Time",
    "last_sign_in_at": "*time.Time",
    "confirmed_at": "*time.Time",
    "two_factor_enabled": "bool",
    "identities": [{"provider": "string", "extern_uid": "string"}],
    "external": "bool",
    "private_profile": "bool",
    "namespace_id": "int",
}
DETAILED_STATUS = {
    "icon": "string",
    "text": "string",
    "label": "string",
    "group": "string",
    "tooltip": "string",
    "has_details": "bool",
    "details_path": "string",
    "illustration": {"image": "string"},
    "favicon": "string",
}
PIPELINE_INFO = {
    "id": "int",
    "iid": "int",
    "project_id": "int",
    "status": "string",
    "source": "string",
    "ref": "string",
    "sha": "string",
    "web_url": "string",
    "updated_at": "*time.Time",
    "created_at": "*time.Time",
    "name": "string",
}
PIPELINE = {
    **PIPELINE_INFO,
    "before_sha": "string",
    "tag": "bool",
    "yaml_errors": "string",
    "user": BASIC_USER,
    "started_at": "*time.Time",
    "finished_at": "*time.Time",
    "committed_at": "*time.Time",
    "duration": "int",
    "queued_duration": "int",
    "coverage": "string",
    "detailed_status": DETAILED_STATUS,
}
COMMIT = {
    "id": "string",
    "short_id": "string",
    "title": "string",
    "author_name": "string",
    "author_email": "string",
    "authored_date": "*time.Time",
    "committer_name": "string",
    "committer_email": "string",
    "committed_date": "*time.Time",
    "created_at": "*time.Time",
    "message": "string",
    "parent_ids": ["string"],
    "stats": {"additions": "int", "deletions": "int", "total": "int"},
    "status": "string",
    "last_pipeline": PIPELINE_INFO,
    "project_id": "int",
    "trailers": "map[string]string",
    "web_url": "string",
}
JOB = {
    "commit": COMMIT,
    "coverage": "float64",
    "allow_failure": "bool",
    "created_at": "*time.Time",
    "started_at": "*time.Time",
    "finished_at": "*time.Time",
    "erased_at": "*time.Time",
    "duration": "float64",
    "queued_duration": "float64",
    "artifacts_expire_at": "*time.Time",
    "tag_list": ["string"],
    "id": "int",
    "name": "string",
    "pipeline": {
        "id": "int",
        "project_id": "int",
        "ref": "string",
        "sha": "string",
        "status": "string",
    },
    "ref": "string",
    "artifacts": [
        {"file_type": "string", "filename": "string", "size": "int", "file_format": "string"}
    ],
    "artifacts_file": {"filename": "string", "size": "int"},
    "runner": {
        "id": "int",
        "description": "string",
        "active": "bool",
        "is_shared": "bool",
        "name": "string",
    },
    "stage": "string",
    "status": "string",
    "failure_reason": "string",
    "tag": "bool",
    "web_url": "string",
    "project": {"id": "int", "name": "string"},
    "user": USER,
}
BRIDGE = {**{k: v for k, v in JOB.items() if k not in ("pipeline",)}, "pipeline": PIPELINE_INFO}
COMMIT_STATUS = {
    "id": "int",
    "sha": "string",
    "ref": "string",
    "status": "string",
    "created_at": "*time.Time",
    "started_at": "*time.Time",
    "finished_at": "*time.Time",
    "name": "string",
    "allow_failure": "bool",
    "coverage": "float64",
    "pipeline_id": "int",
    "author": {
        "id": "int",
        "username": "string",
        "email": "string",
        "name": "string",
        "state": "string",
        "blocked": "bool",
        "created_at": "*time.Time",
    },
    "description": "string",
    "target_url": "string",
}
TEST_REPORT = {
    "total_time": "float64",
    "total_count": "int",
    "success_count": "int",
    "failed_count": "int",
    "skipped_count": "int",
    "error_count": "int",
    "test_suites": [{"name": "string", "total_time": "float64", "total_count": "int"}],
}
TEST_REPORT_SUMMARY = {
    "total": {
        "time": "float64",
        "count": "int",
        "success": "int",
        "failed": "int",
        "skipped": "int",
        "error": "int",
        "suite_error": "string",
    },
    "test_suites": [{"name": "string", "total_time": "float64", "total_count": "int"}],
}
VERSION = {"version": "string", "revision": "string"}
METADATA = {
    **VERSION,
    "kas": {
        "enabled": "bool",
        "externalUrl": "string",
        "externalK8sProxyUrl": "string",
        "version": "string",
    },
    "enterprise": "bool",
}
EVENT_USER = {
    "id": "int",
    "name": "string",
    "username": "string",
    "avatar_url": "string",
    "email": "string",
}
PIPELINE_EVENT = {
    "object_kind": "string",
    "object_attributes": {
        "id": "int",
        "iid": "int",
        "name": "string",
        "ref": "string",
        "tag": "bool",
        "sha": "string",
        "before_sha": "string",
        "source": "string",
        "status": "string",
        "detailed_status": "string",
        "stages": ["string"],
        "created_at": "string",
        "finished_at": "string",
        "duration": "int",
        "queued_duration": "int",
        "url": "string",
        "variables": [{"key": "string", "value": "string"}],
    },
    "merge_request": {
        "id": "int",
        "iid": "int",
        "title": "string",
        "source_branch": "string",
        "source_project_id": "int",
        "target_branch": "string",
        "target_project_id": "int",
        "state": "string",
        "merge_status": "string",
        "detailed_merge_status": "string",
        "url": "string",
    },
    "user": EVENT_USER,
    "project": {
        "id": "int",
        "name": "string",
        "description": "string",
        "avatar_url": "string",
        "git_ssh_url": "string",
        "git_http_url": "string",
        "namespace": "string",
        "path_with_namespace": "string",
        "default_branch": "string",
        "homepage": "string",
        "url": "string",
        "ssh_url": "string",
        "http_url": "string",
        "web_url": "string",
        "visibility": "string",
    },
    "commit": {
        "id": "string",
        "message": "string",
        "title": "string",
        "timestamp": "*time.Time",
        "url": "string",
        "author": {"name": "string", "email": "string"},
    },
    "source_pipeline": {
        "project": {"id": "int", "web_url": "string", "path_with_namespace": "string"},
        "pipeline_id": "int",
        "job_id": "int",
    },
    "builds": [
        {
            "id": "int",
            "stage": "string",
            "name": "string",
            "status": "string",
            "created_at": "string",
            "started_at": "string",
            "finished_at": "string",
            "duration": "float64",
            "queued_duration": "float64",
            "failure_reason": "string",
            "when": "string",
            "manual": "bool",
            "allow_failure": "bool",
            "user": EVENT_USER,
            "runner": {
                "id": "int",
                "description": "string",
                "active": "bool",
                "is_shared": "bool",
                "runner_type": "string",
                "tags": ["string"],
            },
            "artifacts_file": {"filename": "string", "size": "int"},
            "environment": {"name": "string", "action": "string", "deployment_tier": "string"},
        }
    ],
}


# --- The checker is strict where Go is -------------------------------------------------------


@pytest.mark.parametrize(
    "value, go_type",
    [
        ({"coverage": 85.75}, {"coverage": "string"}),  # D2: what Pipehook sent before
        ({"duration": 12.5}, {"duration": "int"}),
        ({"id": "7"}, {"id": "int"}),
        ({"tag": "false"}, {"tag": "bool"}),
        ({"created_at": "2024-05-01 12:00:00 UTC"}, {"created_at": "*time.Time"}),
        ({"builds": {}}, {"builds": ["string"]}),
        ({"user": "ada"}, {"user": BASIC_USER}),
    ],
)
def test_the_checker_refuses_what_go_refuses(value, go_type):
    with pytest.raises(DecodeError):
        decode(value, go_type)


def test_the_checker_takes_null_and_unknown_keys_as_go_does():
    decode({"coverage": None, "user": None, "extra": [1, 2]}, PIPELINE)


# --- Pipehook's answers and payloads ----------------------------------------------------------


@pytest.fixture
def api_user(db):
    return UserFactory(username="ada")


@pytest.fixture
def reported(api_client, project):
    """A pipeline of commit statuses with coverage, a retried job and a running one."""
    base = f"/api/v4/projects/{project.pk}"
    for data in (
        {"state": "success", "name": "build", "stage": "build", "coverage": "81.5"},
        {"state": "failed", "name": "unit", "stage": "test"},
        {"state": "running", "name": "unit", "stage": "test", "coverage": "90"},
    ):
        response = api_client.post(f"{base}/statuses/{SHA}", data)
        assert response.status_code == 201, response.content
    (pipeline,) = project.pipelines.all()
    return base, pipeline


def get(api_client, path):
    response = api_client.get(path)
    assert response.status_code == 200, response.content
    return response.json()


def test_go_gitlab_decodes_the_pipelines_api(api_client, reported):
    base, pipeline = reported
    decode(get(api_client, f"{base}/pipelines"), [PIPELINE_INFO])
    decode(get(api_client, f"{base}/pipelines/{pipeline.pk}"), PIPELINE)
    decode(get(api_client, f"{base}/pipelines/latest"), PIPELINE)
    started = api_client.post(f"{base}/pipeline", {"ref": "main", "sha": SHA}, format="json")
    decode(started.json(), PIPELINE)
    retried = api_client.post(f"{base}/pipelines/{pipeline.pk}/retry")
    decode(retried.json(), PIPELINE)
    canceled = api_client.post(f"{base}/pipelines/{started.json()['id']}/cancel")
    decode(canceled.json(), PIPELINE)
    decode(get(api_client, f"{base}/pipelines/{pipeline.pk}/test_report"), TEST_REPORT)
    summary = get(api_client, f"{base}/pipelines/{pipeline.pk}/test_report_summary")
    decode(summary, TEST_REPORT_SUMMARY)


def test_go_gitlab_decodes_jobs_bridges_commits_and_statuses(api_client, reported):
    base, pipeline = reported
    jobs = get(api_client, f"{base}/pipelines/{pipeline.pk}/jobs?include_retried=true")
    assert len(jobs) == 3
    decode(jobs, [JOB])
    decode(get(api_client, f"{base}/jobs"), [JOB])
    decode(get(api_client, f"{base}/jobs/{jobs[0]['id']}"), JOB)
    decode(get(api_client, f"{base}/pipelines/{pipeline.pk}/bridges"), [BRIDGE])
    decode(get(api_client, f"{base}/repository/commits/{SHA}"), COMMIT)
    decode(get(api_client, f"{base}/repository/commits/{'ab' * 20}"), COMMIT)  # nothing reported
    decode(get(api_client, f"{base}/repository/commits/{SHA}/statuses?all=true"), [COMMIT_STATUS])


def test_go_gitlab_decodes_the_user_version_and_metadata(api_client):
    decode(get(api_client, "/api/v4/user"), USER)
    decode(get(api_client, "/api/v4/version"), VERSION)
    decode(get(api_client, "/api/v4/metadata"), METADATA)


def test_go_gitlab_decodes_pipeline_hook_payloads(project, user):
    """Every stage of a pipeline's life, as receivers built on go-gitlab's PipelineEvent
    decode it (the commit object included, A1)."""
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA, user=user, at=at)
    decode(json.loads(dump_payload(build_pipeline_payload(pipeline))), PIPELINE_EVENT)
    job = services.create_job(
        pipeline,
        name="build",
        status="running",
        at=at + timedelta(seconds=5),
        runner={"id": 7, "description": "r", "tags": ["linux"]},
        user=user,
    )
    services.create_job(pipeline, name="deploy", status="manual", allow_failure=True)
    decode(json.loads(dump_payload(build_pipeline_payload(pipeline))), PIPELINE_EVENT)
    services.update_job(job, status="failed", failure_reason="script_failure")
    pipeline.refresh_from_db()
    payload = json.loads(dump_payload(build_pipeline_payload(pipeline)))
    assert payload["commit"] is not None and payload["builds"][0]["duration"] is not None
    decode(payload, PIPELINE_EVENT)


def test_go_gitlab_decodes_the_golden_payload():
    golden = Path(__file__).parent.parent / "hooks" / "golden" / "pipeline_event.json"
    decode(json.loads(golden.read_text()), PIPELINE_EVENT)
