"""Commit statuses: GitLab's ``POST /projects/:id/statuses/:sha``, the way most external CI
reports a job. Finds (or starts) the commit's pipeline under its lock, moves the named job or
starts its next attempt, and recomposes the pipeline, in one transaction, through the
commands of ``pipelines.services``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from pipelines.errors import InvalidInput, NotFound
from pipelines.models import Job, Pipeline, Project, Status
from pipelines.prepared import PreparedQuery
from pipelines.services import (
    COMMIT_STATUS_STATES,
    EXTERNAL_STAGE,
    EXTERNAL_STAGE_IDX,
    create_pipeline_in_command,
    known_commit_fields,
    recompose,
    save_job,
    signed_in,
    stage_index,
)
from pipelines.status import apply_job_status, check_job_move


@dataclass(frozen=True)
class ReportedCommitStatus:
    """A commit status as external CI posts it (GitLab's ``POST /projects/:id/statuses/:sha``).

    ``name`` is the job's (``"default"`` when not given); ``ref`` picks the commit's pipeline
    on that ref, ``pipeline_id`` one pipeline; ``stage`` places a new job (by default in
    GitLab's stage for external statuses, after every other). Fields left None stay as they
    are on a job reported before.
    """

    sha: str
    state: str
    name: str | None = None
    ref: str | None = None
    stage: str | None = None
    target_url: str | None = None
    description: str | None = None
    coverage: float | None = None
    pipeline_id: int | None = None


def report_commit_status(
    project: Project, reported: ReportedCommitStatus, *, user: AbstractBaseUser | None = None
) -> Job:
    """GitLab's ``POST /projects/:id/statuses/:sha`` (Ci::CreateCommitStatusService).

    Finds the pipeline for the sha and ref (or ``pipeline_id``), creating an ``external``
    one when there is none; finds the pending or running job of that name, or starts a new
    attempt (an older finished attempt becomes "retried"); then moves it to ``state``.
    """
    state = reported.state
    if state not in COMMIT_STATUS_STATES:
        raise InvalidInput(
            f"state does not have a valid value: {state!r} is not one of "
            f"{', '.join(COMMIT_STATUS_STATES)}"
        )
    name = reported.name or "default"
    at = timezone.now()
    fields = {
        k: v
        for k, v in {
            "target_url": reported.target_url,
            "description": reported.description,
            "coverage": reported.coverage,
        }.items()
        if v is not None
    }
    with transaction.atomic():
        pipeline = _locked_pipeline_for_status(project, reported, user, at)
        try:
            job = _move_commit_status_job(pipeline, reported, name, fields, user, at)
            recompose(pipeline, at)
        finally:
            pipeline.forget_loaded()
    return job


def _locked_pipeline_for_status(
    project: Project, reported: ReportedCommitStatus, user: AbstractBaseUser | None, at: datetime
) -> Pipeline:
    """The pipeline a commit status is for, read once under its row lock, with its latest
    jobs kept; created (already locked, being new) when the commit has none."""
    if reported.pipeline_id is not None:
        pipeline = _first(PIPELINE_BY_ID(project.pk, reported.pipeline_id))
        if pipeline is None:
            raise NotFound("404 Pipeline Not Found")
        if pipeline.sha != reported.sha:
            raise InvalidInput(f"pipeline {reported.pipeline_id} is not for commit {reported.sha}")
    else:
        if reported.ref:
            pipeline = _first(LATEST_OF_COMMIT_ON_REF(project.pk, reported.sha, reported.ref))
        else:
            pipeline = _first(LATEST_OF_COMMIT(project.pk, reported.sha))
        if pipeline is None:
            return create_pipeline_in_command(
                project,
                ref=reported.ref or project.default_branch,
                sha=reported.sha,
                source=Pipeline.Source.EXTERNAL,
                user=user,
                variables=None,
                at=at,
                # Pipelines of this commit on other refs: none if the report names no ref.
                **(known_commit_fields(project, reported.sha) if reported.ref else {}),
            )
    pipeline.project = project
    pipeline.load_latest_jobs()
    return pipeline


def _locked_pipelines(project_id: int) -> QuerySet[Pipeline]:
    """A project's pipelines, newest first, each read under its row lock, with its user."""
    return (
        Pipeline.objects.filter(project_id=project_id)
        .select_for_update(of=("self",))
        .select_related("user")
        .order_by("-id")
    )


# The reads of every commit status, their SQL built once (pipelines.prepared).
PIPELINE_BY_ID = PreparedQuery(
    lambda project_id, pk: _locked_pipelines(project_id).filter(pk=pk)[:1]
)
LATEST_OF_COMMIT = PreparedQuery(
    lambda project_id, sha: _locked_pipelines(project_id).filter(sha=sha)[:1]
)
LATEST_OF_COMMIT_ON_REF = PreparedQuery(
    lambda project_id, sha, ref: _locked_pipelines(project_id).filter(sha=sha, ref=ref)[:1]
)


def _first(rows: list[Pipeline]) -> Pipeline | None:
    return rows[0] if rows else None


def _move_commit_status_job(
    pipeline: Pipeline,
    reported: ReportedCommitStatus,
    name: str,
    fields: dict,
    user: AbstractBaseUser | None,
    at: datetime,
) -> Job:
    """Move the pending or running job ``name`` to the reported state, or start a new
    attempt of it (older ones become retried)."""
    latest = pipeline.loaded_latest_jobs()
    same_name = [j for j in latest if j.name == name]
    open_jobs = [j for j in same_name if j.status in (Status.PENDING, Status.RUNNING)]
    job = max(open_jobs, key=lambda j: j.pk) if open_jobs else None
    if job is None:
        if same_name:
            pipeline.jobs.filter(name=name, retried=False).update(retried=True, updated_at=at)
            for old in same_name:
                old.retried = True
                pipeline.keep_job(old)
        stage = reported.stage
        job = Job(
            pipeline=pipeline,
            name=name,
            stage=stage or EXTERNAL_STAGE,
            stage_idx=EXTERNAL_STAGE_IDX if not stage else stage_index(pipeline, stage),
            user=signed_in(user),
            created_at=at,
            updated_at=at,
        )
    previous = job.status if job.pk else None
    for key, value in fields.items():
        setattr(job, key, value)
    target = Status(reported.state)
    check_job_move(job, target)
    apply_job_status(job, target, at)
    if target == Status.FAILED:
        job.failure_reason = "api_failure"
    save_job(job, pipeline, previous)
    pipeline.keep_job(job)
    return job
