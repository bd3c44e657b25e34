"""The Pipeline Hook payload: pinned by a golden file, and checked against GitLab's documented
example (``golden/gitlab_docs_pipeline_event.json``, verbatim from GitLab's
``doc/user/project/integrations/webhook_events.md``).

Regenerate the golden file after a deliberate change with ``UPDATE_GOLDEN=1 pytest …`` and
review the diff.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hooks.payloads import build_pipeline_payload, dump_payload
from pipelines.models import Job, Pipeline
from tests.factories import JobFactory, PipelineFactory, ProjectFactory, UserFactory

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = GOLDEN_DIR / "pipeline_event.json"
GITLAB_DOCS_EXAMPLE = GOLDEN_DIR / "gitlab_docs_pipeline_event.json"

# Keys GitLab's code sends that its documentation example leaves out.
DOCUMENTED_DRIFT = {
    ("object_attributes",): {"detailed_status", "queued_duration", "protected_ref"},
    ("project",): {"ci_config_path"},
    ("commit",): {"title"},
}

SHA = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
T0 = datetime(2016, 8, 12, 15, 23, 28, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def documented_pipeline(db, settings):
    """The rows behind GitLab's documented example, with fixed ids and times."""
    settings.PIPEHOOK_EXTERNAL_URL = "http://example.com"
    admin = UserFactory(id=1, username="root", first_name="Administrator", last_name="")
    project = ProjectFactory(
        id=1,
        name="Gitlab Test",
        path="gitlab-test",
        namespace="gitlab-org",
        description="Atque in sunt eos similique dolores voluptatem.",
        default_branch="master",
        visibility="public",
    )
    pipeline = PipelineFactory(
        id=31,
        iid=3,
        project=project,
        name="Pipeline for branch: master",
        ref="master",
        sha=SHA,
        before_sha=SHA,
        source=Pipeline.Source.MERGE_REQUEST_EVENT,
        status=Pipeline.Status.SUCCESS,
        user=admin,
        variables=[
            {"key": "NESTOR_PROD_ENVIRONMENT", "value": "us-west-1", "variable_type": "env_var"}
        ],
        commit_message="test\n",
        commit_timestamp=datetime.fromisoformat("2016-08-12T17:23:21+02:00"),
        commit_author_name="User",
        commit_author_email="user@gitlab.com",
        merge_request={
            "id": 1,
            "iid": 1,
            "title": "Test",
            "source_branch": "test",
            "source_project_id": 1,
            "target_branch": "master",
            "target_project_id": 1,
            "state": "opened",
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "url": "http://example.com/gitlab-org/gitlab-test/-/merge_requests/1",
        },
        source_pipeline={
            "project": {
                "id": 41,
                "web_url": "https://gitlab.example.com/gitlab-org/upstream-project",
                "path_with_namespace": "gitlab-org/upstream-project",
            },
            "pipeline_id": 30,
            "job_id": 3401,
        },
        created_at=T0,
        started_at=at(88),
        finished_at=at(181),
        duration=63,
        queued_duration=88,
    )
    shared_runner = {
        "id": 380987,
        "description": "shared-runners-manager-6.gitlab.com",
        "runner_type": "instance_type",
        "active": True,
        "is_shared": True,
        "tags": ["linux", "docker"],
    }
    finished = {"created_at": T0, "duration": 17.0, "queued_duration": 196.0, "user": admin}
    JobFactory(
        id=376,
        pipeline=pipeline,
        stage="build",
        stage_idx=0,
        name="build-image",
        status=Job.Status.SUCCESS,
        started_at=at(88),
        finished_at=at(118),
        runner=shared_runner,
        **finished,
    )
    # An earlier attempt of test-build: retried jobs are not in the payload.
    JobFactory(
        id=375,
        pipeline=pipeline,
        stage="test",
        stage_idx=1,
        name="test-build",
        status=Job.Status.FAILED,
        failure_reason="runner_system_failure",
        retried=True,
        created_at=T0,
    )
    JobFactory(
        id=377,
        pipeline=pipeline,
        stage="test",
        stage_idx=1,
        name="test-image",
        status=Job.Status.SUCCESS,
        started_at=at(164),
        finished_at=at(181),
        runner={**shared_runner, "tags": ["linux", "docker", "shared-runner"]},
        **finished,
    )
    JobFactory(
        id=378,
        pipeline=pipeline,
        stage="test",
        stage_idx=1,
        name="test-build",
        status=Job.Status.FAILED,
        failure_reason="script_failure",
        started_at=at(164),
        finished_at=at(181),
        runner=shared_runner,
        artifacts_filename="artifacts.zip",
        artifacts_size=1000,
        **finished,
    )
    JobFactory(
        id=379,
        pipeline=pipeline,
        stage="deploy",
        stage_idx=2,
        name="staging",
        status=Job.Status.CREATED,
        created_at=T0,
        user=admin,
        environment={"name": "staging", "action": "start", "deployment_tier": "staging"},
    )
    JobFactory(
        id=380,
        pipeline=pipeline,
        stage="deploy",
        stage_idx=2,
        name="production",
        status=Job.Status.SKIPPED,
        when=Job.When.MANUAL,
        # GitLab keeps failure_reason on the row but sends it only for failed jobs.
        failure_reason="unknown_failure",
        created_at=T0,
        user=admin,
        environment={"name": "production", "action": "start", "deployment_tier": "production"},
    )
    return pipeline


def test_payload_matches_golden_file(documented_pipeline):
    rendered = json.dumps(build_pipeline_payload(documented_pipeline), indent=2) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text()


def _shape(value):
    """JSON type names; ints and floats stay apart (GitLab sends 63 and 17.0)."""
    return type(value).__name__


def _compare_with_docs(ours, docs, path, problems):
    if ours is None or docs is None:
        return  # nullable in GitLab's payload: either side may be null
    if isinstance(docs, dict):
        if not isinstance(ours, dict):
            problems.append(f"{'.'.join(path)}: object expected, got {_shape(ours)}")
            return
        drift = DOCUMENTED_DRIFT.get(path[-1:] if path else (), set())
        missing = set(docs) - set(ours)
        extra = set(ours) - set(docs) - drift
        if missing or extra:
            problems.append(f"{'.'.join(path) or '<top>'}: missing {missing}, extra {extra}")
        for key in set(docs) & set(ours):
            _compare_with_docs(ours[key], docs[key], (*path, key), problems)
    elif isinstance(docs, list):
        if docs and ours:
            for item in ours:
                _compare_with_docs(item, docs[0], path, problems)
    elif _shape(ours) != _shape(docs):
        problems.append(f"{'.'.join(path)}: {_shape(ours)} where GitLab sends {_shape(docs)}")


def test_payload_keys_and_types_match_gitlab_documentation(documented_pipeline):
    ours = build_pipeline_payload(documented_pipeline)
    docs = json.loads(GITLAB_DOCS_EXAMPLE.read_text())
    problems = []
    _compare_with_docs(ours, docs, (), problems)
    # Builds differ by status: compare each of ours with GitLab's build of the same name.
    docs_builds = {build["name"]: build for build in docs["builds"]}
    for build in ours["builds"]:
        _compare_with_docs(build, docs_builds[build["name"]], ("builds",), problems)
    assert problems == []
    # The documented drift is real: GitLab's code sends these keys.
    for (section,), keys in DOCUMENTED_DRIFT.items():
        assert keys <= set(ours[section])


def test_payload_values_follow_gitlab_formats(documented_pipeline):
    payload = build_pipeline_payload(documented_pipeline)
    attrs = payload["object_attributes"]
    assert attrs["created_at"] == "2016-08-12 15:23:28 UTC"
    assert attrs["duration"] == 63 and isinstance(attrs["duration"], int)
    assert attrs["detailed_status"] == "passed"
    assert attrs["stages"] == ["build", "test", "deploy"]
    assert attrs["variables"] == [{"key": "NESTOR_PROD_ENVIRONMENT", "value": "us-west-1"}]
    assert attrs["url"] == "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
    assert payload["commit"]["timestamp"] == "2016-08-12T15:23:21+00:00"
    assert [b["id"] for b in payload["builds"]] == [376, 377, 378, 379, 380]
    by_id = {b["id"]: b for b in payload["builds"]}
    assert by_id[377]["duration"] == 17.0 and isinstance(by_id[377]["duration"], float)
    assert by_id[378]["failure_reason"] == "script_failure"
    assert by_id[380]["failure_reason"] is None and by_id[380]["manual"] is True
    assert by_id[378]["artifacts_file"] == {"filename": "artifacts.zip", "size": 1000}
    assert by_id[376]["environment"] is None
    assert payload["user"]["email"] == "[REDACTED]"
    assert list(payload)[-1] == "source_pipeline"


def test_payload_leaves_out_what_a_plain_pipeline_does_not_have(db):
    pipeline = PipelineFactory(project=ProjectFactory(), status="created")
    payload = build_pipeline_payload(pipeline)
    assert list(payload) == [
        "object_kind",
        "object_attributes",
        "merge_request",
        "user",
        "project",
        "commit",
        "builds",
    ]
    assert payload["merge_request"] is None
    assert payload["user"] is None
    # A1: the commit is always there; what nobody reported is GitLab's value for it.
    assert payload["commit"] == {
        "id": pipeline.sha,
        "message": "",
        "title": "No commit message",
        "timestamp": None,
        "url": f"{pipeline.project.resolved_web_url}/-/commit/{pipeline.sha}",
        "author": {"name": "", "email": ""},
    }
    assert payload["builds"] == []
    assert payload["object_attributes"]["finished_at"] is None
    assert payload["object_attributes"]["duration"] is None


def test_commit_title_follows_gitlab(db):
    long_line = "word " * 30
    pipeline = PipelineFactory(commit_message=long_line.strip() + "\nbody")
    title = build_pipeline_payload(pipeline)["commit"]["title"]
    assert title.endswith("…") and len(title) <= 81 and not title[:-1].endswith(" ")
    pipeline = PipelineFactory(commit_message="Fix the build\r\n\r\nDetails")
    assert build_pipeline_payload(pipeline)["commit"]["title"] == "Fix the build"


def test_dump_payload_escapes_like_rails():
    body = dump_payload({"url": "a?s=80&d=identicon", "html": "<b>", "text": "é\u2028"})
    assert body == '{"url":"a?s=80\\u0026d=identicon","html":"\\u003cb\\u003e","text":"é\\u2028"}'
    assert json.loads(body) == {"url": "a?s=80&d=identicon", "html": "<b>", "text": "é\u2028"}
