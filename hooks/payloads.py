"""GitLab's Pipeline Hook and Job Hook payloads, built from the rows as they are now.

``build_pipeline_payload`` mirrors ``Gitlab::DataBuilder::Pipeline``: the same keys in the
same order, the same JSON types and the same time formats as GitLab's asynchronous deliveries
("2016-08-12 15:23:28 UTC" for pipeline and job times, ISO 8601 with an offset for the commit,
whole seconds for the pipeline's durations, float seconds for a job's).
``build_job_payload`` mirrors ``Gitlab::DataBuilder::Build`` (``object_kind: "build"``) the
same way, with the ``*_iso`` twins of its times that GitLab's documentation shows. Both read
and never write, so the receivers can call them inside the changing transaction and store the
result as that status's snapshot.

Where Pipehook knows less than GitLab, the payload says so the way GitLab does when it lacks
the data: ``null`` avatars (an instance without Gravatar), ``null`` ``ci_config_path`` (the
default file), a commit with an empty message and author when nothing but its sha is known
(receivers read ``commit.author.name`` without checking for null), and ``"[REDACTED]"``
for user e-mails (GitLab's value for a user without a public e-mail; Pipehook has no public
e-mail setting, so none is ever published).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.utils import timezone

from pipelines.detailed_status import detailed_status_of
from pipelines.models import UNKNOWN_SHA, Job, Pipeline, Project
from pipelines.status import job_durations

REDACTED_EMAIL = "[REDACTED]"
MANUAL_WHENS = frozenset({Job.When.MANUAL, Job.When.DELAYED})  # GitLab's Ci::Build#action?
MERGE_REQUEST_KEYS = (
    "id",
    "iid",
    "title",
    "source_branch",
    "source_project_id",
    "target_branch",
    "target_project_id",
    "state",
    "merge_status",
    "detailed_merge_status",
    "url",
)


def gitlab_hook_time(value: datetime | None) -> str | None:
    """GitLab's hook time format: UTC, seconds, and a literal " UTC"."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_hook_time(value: datetime | None) -> str | None:
    """The Job Hook's ``*_iso`` times: ISO 8601, UTC, whole seconds, a ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def commit_timestamp(value: datetime | None) -> str | None:
    """Ruby's ``Time#xmlschema``: ISO 8601 with the offset written out."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds")


def build_pipeline_payload(pipeline: Pipeline) -> dict[str, Any]:
    """The Pipeline Hook body for ``pipeline`` as it is now (GitLab's key order)."""
    project = pipeline.project
    now = timezone.now()
    jobs = pipeline.loaded_latest_jobs()  # what the command changing it keeps, if any
    if jobs is None:
        jobs = list(pipeline.latest_jobs().select_related("user"))
    payload: dict[str, Any] = {
        "object_kind": "pipeline",
        "object_attributes": _pipeline_attrs(pipeline, jobs),
        "merge_request": _merge_request_attrs(pipeline.merge_request),
        "user": user_hook_attrs(pipeline.user),
        "project": project_hook_attrs(project),
        "commit": _commit_attrs(pipeline),
        # Durations of unfinished jobs as of now, GitLab's when it builds the payload.
        "builds": [_build_attrs(job, now) for job in jobs],
    }
    if pipeline.source_pipeline:
        payload["source_pipeline"] = _source_pipeline_attrs(pipeline.source_pipeline)
    return payload


def build_job_payload(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    """The Job Hook body for ``job`` of ``pipeline`` as they are now (GitLab's key order).

    ``commit`` is the pipeline (its ``id`` is the pipeline's, as in GitLab), with the status
    it has when the job changed: a job's event is rendered before the pipeline it moves is
    recomposed, as GitLab builds it before the pipeline is processed again.
    """
    project = pipeline.project
    duration, queued_duration = job_durations(job, timezone.now())
    payload: dict[str, Any] = {
        "object_kind": "build",
        "ref": pipeline.ref,
        "tag": pipeline.tag,
        "before_sha": pipeline.before_sha or UNKNOWN_SHA,
        "sha": pipeline.sha,
        # GitLab's Ci::Build#retries_count: earlier attempts of this job in its pipeline.
        "retries_count": pipeline.jobs.filter(name=job.name, retried=True).count(),
        "build_id": job.pk,
        "build_name": job.name,
        "build_stage": job.stage,
        "build_status": str(job.status),
        "build_created_at": gitlab_hook_time(job.created_at),
        "build_started_at": gitlab_hook_time(job.started_at),
        "build_finished_at": gitlab_hook_time(job.finished_at),
        "build_created_at_iso": iso_hook_time(job.created_at),
        "build_started_at_iso": iso_hook_time(job.started_at),
        "build_finished_at_iso": iso_hook_time(job.finished_at),
        "build_duration": _float_seconds(duration),
        "build_queued_duration": _float_seconds(queued_duration),
        "build_allow_failure": job.allow_failure,
        # GitLab's enum reads a missing reason as unknown_failure, whatever the status.
        "build_failure_reason": job.failure_reason or "unknown_failure",
        "pipeline_id": pipeline.pk,
        "runner": _runner_attrs(job.runner),
        "project_id": project.pk,
        "project_name": " / ".join([*project.namespace.split("/"), project.name]),
        "user": user_hook_attrs(job.user),
        "commit": _job_commit_attrs(pipeline),
        "repository": _repository_attrs(project),
        "project": project_hook_attrs(project),
        "environment": _environment_attrs(job.environment),
    }
    if pipeline.source_pipeline:
        payload["source_pipeline"] = _source_pipeline_attrs(pipeline.source_pipeline)
    return payload


def _job_commit_attrs(pipeline: Pipeline) -> dict[str, Any]:
    """The Job Hook's ``commit``: the pipeline, with its commit's message and author. With no
    GitLab user behind the author, GitLab's ``author_url`` is a ``mailto:`` link."""
    return {
        "id": pipeline.pk,
        "name": pipeline.name,
        "sha": pipeline.sha,
        "message": pipeline.commit_message,
        "author_name": pipeline.commit_author_name,
        "author_email": pipeline.commit_author_email,
        "author_url": f"mailto:{pipeline.commit_author_email}",
        "status": str(pipeline.status),
        "duration": _whole_seconds(pipeline.duration),
        "started_at": gitlab_hook_time(pipeline.started_at),
        "finished_at": gitlab_hook_time(pipeline.finished_at),
        "started_at_iso": iso_hook_time(pipeline.started_at),
        "finished_at_iso": iso_hook_time(pipeline.finished_at),
    }


def _repository_attrs(project: Project) -> dict[str, Any]:
    """The Job Hook's ``repository``; GitLab's ``url`` is the SSH one (``url_to_repo``)."""
    attrs = project_hook_attrs(project)
    return {
        "name": project.name,
        "url": attrs["git_ssh_url"],
        "description": project.description,
        "homepage": attrs["web_url"],
        "git_http_url": attrs["git_http_url"],
        "git_ssh_url": attrs["git_ssh_url"],
        "visibility_level": project.visibility_level,
    }


def dump_payload(payload: dict[str, Any]) -> str:
    """Serialize the way Rails' ``to_json`` does: compact, UTF-8, HTML-significant characters
    and line separators escaped (GitLab's bodies show ``\\u0026`` for ``&``)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    # These characters only occur inside JSON strings, where the escapes mean the same text.
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def _pipeline_attrs(pipeline: Pipeline, jobs: list[Job]) -> dict[str, Any]:
    # str(): a status set in this process is a TextChoices member; the payload holds text.
    stages: dict[str, None] = {}
    for job in jobs:  # latest jobs in stage order, as Pipeline.stage_names() lists them
        stages.setdefault(job.stage, None)
    return {
        "id": pipeline.pk,
        "iid": pipeline.iid,
        "name": pipeline.name,
        "ref": pipeline.ref,
        "tag": pipeline.tag,
        "sha": pipeline.sha,
        "before_sha": pipeline.before_sha,
        "source": str(pipeline.source),
        "status": str(pipeline.status),
        "detailed_status": detailed_status_of(pipeline).label,
        "stages": list(stages),
        "created_at": gitlab_hook_time(pipeline.created_at),
        "finished_at": gitlab_hook_time(pipeline.finished_at),
        "duration": _whole_seconds(pipeline.duration),
        "queued_duration": _whole_seconds(pipeline.queued_duration),
        "protected_ref": pipeline.protected_ref,
        "variables": [
            {"key": variable["key"], "value": variable.get("value", "")}
            for variable in pipeline.variables or []
        ],
        "url": pipeline.web_url,
    }


def user_hook_attrs(user) -> dict[str, Any] | None:
    """GitLab's ``User#hook_attrs``; null when no user started the pipeline or job."""
    if user is None:
        return None
    return {
        "id": user.pk,
        "name": user.get_full_name() or user.get_username(),
        "username": user.get_username(),
        "avatar_url": None,
        "email": REDACTED_EMAIL,
    }


def project_hook_attrs(project: Project) -> dict[str, Any]:
    """GitLab's ``Project#hook_attrs(backward: false)``."""
    web_url = project.resolved_web_url
    host = urlsplit(web_url).hostname or "localhost"
    return {
        "id": project.pk,
        "name": project.name,
        "description": project.description,
        "web_url": web_url,
        "avatar_url": None,
        "git_ssh_url": f"git@{host}:{project.path_with_namespace}.git",
        "git_http_url": f"{web_url}.git",
        "namespace": project.namespace,
        "visibility_level": project.visibility_level,
        "path_with_namespace": project.path_with_namespace,
        "default_branch": project.default_branch,
        "ci_config_path": None,
    }


def _commit_attrs(pipeline: Pipeline) -> dict[str, Any]:
    """GitLab's ``Commit#hook_attrs``, always there: what the reporting CI told about the
    commit, and for what it did not, GitLab's values for a commit without them (an empty
    message titled "No commit message", empty author, no timestamp)."""
    return {
        "id": pipeline.sha,
        "message": pipeline.commit_message,
        "title": pipeline.resolved_commit_title,
        "timestamp": commit_timestamp(pipeline.commit_timestamp),
        "url": f"{pipeline.project.resolved_web_url}/-/commit/{pipeline.sha}",
        "author": {
            "name": pipeline.commit_author_name,
            "email": pipeline.commit_author_email,
        },
    }


def _merge_request_attrs(merge_request: dict | None) -> dict[str, Any] | None:
    if not merge_request:
        return None
    return {key: merge_request.get(key) for key in MERGE_REQUEST_KEYS}


def _source_pipeline_attrs(source: dict) -> dict[str, Any]:
    project = source.get("project") or {}
    return {
        "project": {
            "id": project.get("id"),
            "web_url": project.get("web_url"),
            "path_with_namespace": project.get("path_with_namespace"),
        },
        "job_id": source.get("job_id"),
        "pipeline_id": source.get("pipeline_id"),
    }


def _build_attrs(job: Job, now: datetime) -> dict[str, Any]:
    duration, queued_duration = job_durations(job, now)
    return {
        "id": job.pk,
        "stage": job.stage,
        "name": job.name,
        "status": str(job.status),
        "created_at": gitlab_hook_time(job.created_at),
        "started_at": gitlab_hook_time(job.started_at),
        "finished_at": gitlab_hook_time(job.finished_at),
        "duration": _float_seconds(duration),
        "queued_duration": _float_seconds(queued_duration),
        "failure_reason": job.failure_reason if job.status == Job.Status.FAILED else None,
        "when": str(job.when),
        "manual": job.manual or job.when in MANUAL_WHENS,
        "allow_failure": job.allow_failure,
        "user": user_hook_attrs(job.user),
        "runner": _runner_attrs(job.runner),
        "artifacts_file": {"filename": job.artifacts_filename, "size": job.artifacts_size},
        "environment": _environment_attrs(job.environment),
    }


def _runner_attrs(runner: dict | None) -> dict[str, Any] | None:
    if not runner:
        return None
    runner_type = runner.get("runner_type", "instance_type")
    return {
        "id": runner.get("id"),
        "description": runner.get("description"),
        "runner_type": runner_type,
        "active": runner.get("active", True),
        "is_shared": runner.get("is_shared", runner_type == "instance_type"),
        "tags": list(runner.get("tags") or []),
    }


def _environment_attrs(environment: dict | None) -> dict[str, Any] | None:
    if not environment:
        return None
    return {
        "name": environment.get("name"),
        "action": environment.get("action", "start"),
        "deployment_tier": environment.get("deployment_tier"),
    }


def _whole_seconds(value: float | int | None) -> int | None:
    return None if value is None else int(value)


def _float_seconds(value: float | int | None) -> float | None:
    return None if value is None else float(value)
