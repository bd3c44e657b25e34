"""The Job Hook payload (``object_kind: "build"``): pinned by a golden file, and checked
against GitLab's documented example (``golden/gitlab_docs_job_event.json``, verbatim from
GitLab's ``doc/user/project/integrations/webhook_events.md``, "Job events").

Regenerate the golden file after a deliberate change with ``UPDATE_GOLDEN=1 pytest …`` and
review the diff.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hooks.payloads import build_job_payload
from pipelines.models import Job, Pipeline
from tests.factories import JobFactory, PipelineFactory, ProjectFactory, UserFactory
from tests.hooks.test_payloads import _compare_with_docs

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = GOLDEN_DIR / "job_event.json"
GITLAB_DOCS_EXAMPLE = GOLDEN_DIR / "gitlab_docs_job_event.json"

SHA = "2293ada6b400935a1378653304eaf6221e0fdb8f"
T0 = datetime(2021, 2, 23, 2, 41, 37, tzinfo=UTC)

# Gitlab::DataBuilder::Build's keys, in the order its code emits them (``*_iso`` where
# GitLab's documentation puts them).
GITLAB_KEY_ORDER = [
    "object_kind",
    "ref",
    "tag",
    "before_sha",
    "sha",
    "retries_count",
    "build_id",
    "build_name",
    "build_stage",
    "build_status",
    "build_created_at",
    "build_started_at",
    "build_finished_at",
    "build_created_at_iso",
    "build_started_at_iso",
    "build_finished_at_iso",
    "build_duration",
    "build_queued_duration",
    "build_allow_failure",
    "build_failure_reason",
    "pipeline_id",
    "runner",
    "project_id",
    "project_name",
    "user",
    "commit",
    "repository",
    "project",
    "environment",
]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def documented_job(db, settings):
    """The rows behind GitLab's documented example (a job that has since finished), with
    fixed ids and times."""
    settings.PIPEHOOK_EXTERNAL_URL = "http://192.168.64.1:3005"
    user = UserFactory(id=3, username="user", first_name="User", last_name="")
    project = ProjectFactory(
        id=380,
        name="Gitlab Test",
        path="gitlab-test",
        namespace="gitlab-org",
        description="Atque in sunt eos similique dolores voluptatem.",
        default_branch="master",
        visibility="public",
    )
    pipeline = PipelineFactory(
        id=2366,
        iid=1,
        project=project,
        name="Build pipeline",
        ref="gitlab-script-trigger",
        sha=SHA,
        before_sha=SHA,
        status=Pipeline.Status.RUNNING,
        user=user,
        commit_message="test\n",
        commit_author_name="User",
        commit_author_email="user@gitlab.com",
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
        started_at=at(30),
    )
    for retried_id in (1975, 1976):  # two earlier attempts: retries_count 2
        JobFactory(id=retried_id, pipeline=pipeline, name="test", status="failed", retried=True)
    JobFactory(id=1974, pipeline=pipeline, name="lint", status="failed", retried=True)
    return JobFactory(
        id=1977,
        pipeline=pipeline,
        stage="test",
        name="test",
        status=Job.Status.SUCCESS,
        user=user,
        created_at=T0,
        queued_at=at(2),
        started_at=at(30),
        finished_at=at(79.503592),
        duration=49.503592,
        queued_duration=28.0,
        runner={
            "id": 380987,
            "description": "shared-runners-manager-6.gitlab.com",
            "runner_type": "project_type",
            "active": True,
            "is_shared": False,
            "tags": ["linux", "docker"],
        },
        environment={"name": "staging", "action": "start", "deployment_tier": "staging"},
    )


def test_job_payload_matches_golden_file(documented_job):
    payload = build_job_payload(documented_job, documented_job.pipeline)
    rendered = json.dumps(payload, indent=2) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text()


def test_job_payload_keys_and_types_match_gitlab_documentation(documented_job):
    ours = build_job_payload(documented_job, documented_job.pipeline)
    docs = json.loads(GITLAB_DOCS_EXAMPLE.read_text())
    problems = []
    _compare_with_docs(ours, docs, (), problems)
    assert problems == []
    # The documented example is of a created job: what a created job leaves null, ours too.
    assert list(ours) == [*GITLAB_KEY_ORDER, "source_pipeline"]


def test_job_payload_values_follow_gitlab_formats(documented_job):
    payload = build_job_payload(documented_job, documented_job.pipeline)
    assert payload["object_kind"] == "build"
    assert payload["retries_count"] == 2
    assert payload["build_created_at"] == "2021-02-23 02:41:37 UTC"
    assert payload["build_created_at_iso"] == "2021-02-23T02:41:37Z"
    assert payload["build_finished_at"] == "2021-02-23 02:42:56 UTC"
    assert payload["build_duration"] == 49.503592 and isinstance(payload["build_duration"], float)
    # GitLab's enum reads a missing reason as unknown_failure, whatever the status.
    assert payload["build_failure_reason"] == "unknown_failure"
    assert payload["pipeline_id"] == 2366 and payload["commit"]["id"] == 2366
    assert payload["project_name"] == "gitlab-org / Gitlab Test"
    assert payload["commit"]["author_url"] == "mailto:user@gitlab.com"
    assert payload["commit"]["status"] == "running" and payload["commit"]["duration"] is None
    assert payload["repository"]["url"] == "git@192.168.64.1:gitlab-org/gitlab-test.git"
    assert payload["repository"]["visibility_level"] == 20
    assert payload["user"] == {
        "id": 3,
        "name": "User",
        "username": "user",
        "avatar_url": None,
        "email": "[REDACTED]",
    }
    assert list(payload["commit"]) == [
        "id",
        "name",
        "sha",
        "message",
        "author_name",
        "author_email",
        "author_url",
        "status",
        "duration",
        "started_at",
        "finished_at",
        "started_at_iso",
        "finished_at_iso",
    ]


def test_a_new_job_has_no_runner_times_or_source_pipeline(db):
    pipeline = PipelineFactory(project=ProjectFactory(), status="created", before_sha="")
    job = JobFactory(pipeline=pipeline, status="created")
    payload = build_job_payload(job, pipeline)
    assert list(payload) == GITLAB_KEY_ORDER  # no source_pipeline: absent, not null
    assert payload["before_sha"] == "0" * 40
    assert payload["runner"] is None and payload["environment"] is None
    for key in ("build_started_at", "build_finished_at"):
        assert payload[key] is None and payload[f"{key}_iso"] is None
    assert payload["build_duration"] is None
    assert payload["build_queued_duration"] is None  # never queued
    assert payload["retries_count"] == 0
    assert payload["commit"]["finished_at_iso"] is None


def test_a_failed_job_says_why_and_a_pending_one_counts_its_queue(db):
    now = datetime.now(UTC)
    pipeline = PipelineFactory(project=ProjectFactory())
    failed = JobFactory(pipeline=pipeline, status="failed", failure_reason="script_failure")
    assert build_job_payload(failed, pipeline)["build_failure_reason"] == "script_failure"
    pending = JobFactory(pipeline=pipeline, status="pending", queued_at=now - timedelta(seconds=9))
    queued = build_job_payload(pending, pipeline)["build_queued_duration"]
    assert isinstance(queued, float) and queued >= 9
