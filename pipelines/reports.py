"""Runs a CI reports whole, and the records the SEI and Distelli dialects keep of them.

``report_pipeline_run`` brings a pipeline in line with a CI's report of a run (``ReportedJob``s,
its times and its verdict). Like every command, each function here owns its transaction and
sends ``pipeline_changed`` through ``pipelines.services`` for each real status change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from pipelines.errors import InvalidInput, TransitionRefused
from pipelines.models import COMPLETED_STATUSES, Job, Pipeline, Status
from pipelines.services import (
    EXTERNAL_STAGE,
    EXTERNAL_STAGE_IDX,
    change_pipeline_status,
    lock_pipeline,
    stage_index,
)
from pipelines.status import (
    UNSTARTED_STATUSES,
    apply_job_status,
    apply_reported_times,
    check_job_move,
    compose_status,
    pipeline_target,
    seconds_between,
    validate_status,
)

# GitLab's failure reason for a job whose cause nobody reported.
UNKNOWN_FAILURE = "unknown_failure"


@dataclass(frozen=True)
class ReportedJob:
    """A job, or a whole run, as an external CI reports it: its status and when it ran.

    Times are the CI's own; None means it did not say, and the moment of the report is used.
    """

    name: str
    stage: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Only used when the status is failed; GitLab's vocabulary (job_execution_timeout...).
    failure_reason: str | None = None
    target_url: str = ""


def report_pipeline_run(
    pipeline: Pipeline, *, run: ReportedJob, jobs: Sequence[ReportedJob] = ()
) -> bool:
    """Bring a pipeline in line with a CI's report of a run; returns whether its status changed.

    For CI systems that report a run as a whole, and may report it again as it goes on:

    - each reported job is matched by stage and name to its latest attempt: a new one is
      created, a changed one moves by GitLab's job state machine, and one that cannot move
      there (it finished, or went back to an earlier state) gets a new attempt while the old
      one stays as retried, as GitLab's retry does;
    - the pipeline's status stays composed from its jobs. Where they do not explain the run's
      own status, the CI's verdict wins: in a successful run, failed jobs were allowed to
      fail; any other gap is carried by a job for the run itself (``run.name`` in
      ``run.stage``), the way GitLab shows an external CI's status;
    - the run's reported start and finish become the pipeline's times;
    - a report that changes no status sends no signal.
    """
    run_status = validate_status(run.status)
    for reported in (run, *jobs):
        validate_status(reported.status)
        if not reported.name or not reported.stage:
            raise InvalidInput("every reported job needs a name and a stage")
    at = timezone.now()
    with transaction.atomic():
        pipeline = lock_pipeline(pipeline)
        for reported in jobs:
            _sync_reported_job(pipeline, reported, at)
        latest = list(pipeline.latest_jobs())
        run_job_exists = any(j.stage == run.stage and j.name == run.name for j in latest)
        if not run_job_exists and run_status == Status.SUCCESS:
            for job in latest:
                if job.status in (Status.FAILED, Status.CANCELED) and not job.allow_failure:
                    job.allow_failure = True
                    job.updated_at = at
                    job.save(update_fields=["allow_failure", "updated_at"])
        # Once the run has its own job, that job follows every later verdict.
        if run_job_exists or compose_status(pipeline.latest_jobs()) != run_status:
            _sync_reported_job(pipeline, replace(run, status=run_status), at)
        target = pipeline_target(pipeline.status, compose_status(pipeline.latest_jobs()))
        times = (run.started_at, run.finished_at)
        if change_pipeline_status(pipeline, target, at, reported_times=times):
            return True
        if apply_reported_times(pipeline, *times):
            pipeline.save()  # a corrected time is no status change: no signal
        return False


def _sync_reported_job(pipeline: Pipeline, reported: ReportedJob, at: datetime) -> Job:
    target = Status(reported.status)
    job = (
        pipeline.jobs.filter(stage=reported.stage, name=reported.name, retried=False)
        .order_by("-id")
        .first()
    )
    if job is not None and job.status != target:
        try:
            check_job_move(job, target)
        except TransitionRefused:
            Job.objects.filter(pk=job.pk).update(retried=True, updated_at=at)
            job = None
    if job is None:
        job = Job(
            pipeline=pipeline,
            name=reported.name,
            stage=reported.stage,
            stage_idx=(
                EXTERNAL_STAGE_IDX
                if reported.stage == EXTERNAL_STAGE
                else stage_index(pipeline, reported.stage)
            ),
            created_at=at,
            updated_at=at,
        )
    if reported.target_url:
        job.target_url = reported.target_url
    ran = target not in UNSTARTED_STATUSES and target not in (
        Status.SKIPPED,
        Status.MANUAL,
        Status.SCHEDULED,
    )
    if ran and reported.started_at:
        job.started_at = reported.started_at
    if target in COMPLETED_STATUSES and reported.finished_at:
        job.finished_at = reported.finished_at
    if job.status != target:
        apply_job_status(job, target, at)
    if target in COMPLETED_STATUSES and job.started_at and job.finished_at:
        job.duration = seconds_between(job.started_at, job.finished_at)
    if target == Status.FAILED:
        job.failure_reason = reported.failure_reason or job.failure_reason or UNKNOWN_FAILURE
    job.save()
    return job
