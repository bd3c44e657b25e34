"""Runs a CI reports whole, and the records the SEI and Distelli dialects keep of them.

``report_pipeline_run`` brings a pipeline in line with a CI's report of a run (``ReportedJob``s,
its times and its verdict). The dialects' rows are written here too: SEI's CI/CD instances and
runs, Distelli's events and the builds shown as pipelines. Like every command, each function
owns its transaction, turns a constraint violation into a ``Conflict``, and sends
``job_changed`` and ``pipeline_changed`` (through ``pipelines.services``) for each new job and
each real status change, a job's before its pipeline's.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from pipelines.errors import Conflict, InvalidInput, NotFound, TransitionRefused
from pipelines.models import (
    COMPLETED_STATUSES,
    UNKNOWN_SHA,
    CicdInstance,
    CicdRun,
    DistelliEvent,
    Job,
    Pipeline,
    Project,
    Status,
    commit_title,
)
from pipelines.services import (
    EXTERNAL_STAGE,
    EXTERNAL_STAGE_IDX,
    change_pipeline_status,
    create_pipeline_in_command,
    lock_pipeline,
    save_job,
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
    _check_reported(run, jobs)
    with transaction.atomic():
        pipeline = lock_pipeline(pipeline)
        pipeline.load_latest_jobs()
        try:
            return _report_run(pipeline, run, jobs)
        finally:
            pipeline.forget_loaded()


def _check_reported(run: ReportedJob, jobs: Sequence[ReportedJob]) -> None:
    for reported in (run, *jobs):
        validate_status(reported.status)
        if not reported.name or not reported.stage:
            raise InvalidInput("every reported job needs a name and a stage")


def _report_run(pipeline: Pipeline, run: ReportedJob, jobs: Sequence[ReportedJob] = ()) -> bool:
    """``report_pipeline_run`` on a pipeline this command holds locked, its latest jobs kept
    in memory (``Pipeline.load_latest_jobs``) and changed there as they are saved."""
    run_status = validate_status(run.status)
    at = timezone.now()
    for reported in jobs:
        _sync_reported_job(pipeline, reported, at)
    latest = list(pipeline.loaded_latest_jobs())
    run_job_exists = any(j.stage == run.stage and j.name == run.name for j in latest)
    if not run_job_exists and run_status == Status.SUCCESS:
        for job in latest:
            if job.status in (Status.FAILED, Status.CANCELED) and not job.allow_failure:
                job.allow_failure = True
                job.updated_at = at
                job.save(update_fields=["allow_failure", "updated_at"])
    # Once the run has its own job, that job follows every later verdict.
    if run_job_exists or compose_status(pipeline.loaded_latest_jobs()) != run_status:
        _sync_reported_job(pipeline, replace(run, status=run_status), at)
    target = pipeline_target(pipeline.status, compose_status(pipeline.loaded_latest_jobs()))
    times = (run.started_at, run.finished_at)
    if change_pipeline_status(pipeline, target, at, reported_times=times):
        return True
    if apply_reported_times(pipeline, *times):
        pipeline.save()  # a corrected time is no status change: no signal
    return False


def _sync_reported_job(pipeline: Pipeline, reported: ReportedJob, at: datetime) -> Job:
    target = Status(reported.status)
    same = [
        j
        for j in pipeline.loaded_latest_jobs()
        if j.stage == reported.stage and j.name == reported.name
    ]
    job = max(same, key=lambda j: j.pk) if same else None
    if job is not None and job.status != target:
        try:
            check_job_move(job, target)
        except TransitionRefused:
            Job.objects.filter(pk=job.pk).update(retried=True, updated_at=at)
            job.retried = True
            pipeline.keep_job(job)
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
    previous = job.status if job.pk else None
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
    save_job(job, pipeline, previous)
    pipeline.keep_job(job)
    return job


# --- Harness SEI: CI/CD instances and their runs ----------------------------------------------


def register_cicd_instance(
    project: Project, *, name: str, type: str, user, guid: uuid.UUID | None = None
) -> CicdInstance:
    """A CI/CD instance whose runs belong to ``project``; a GUID already taken is a Conflict."""
    guid = guid or uuid.uuid4()
    try:
        with transaction.atomic():
            return CicdInstance.objects.create(
                guid=guid, project=project, name=name, type=type, created_by=user
            )
    except IntegrityError:  # the GUID is the only unique column
        raise Conflict(f"an instance with id {guid} already exists") from None


def record_cicd_run(
    instance: CicdInstance,
    identity: str,
    *,
    report: dict,
    run: ReportedJob,
    jobs: Sequence[ReportedJob],
    user,
    new_pipeline: Mapping[str, Any],
    new_record: Mapping[str, Any],
) -> tuple[CicdRun, bool]:
    """Record a run of ``instance`` and report it on its pipeline; returns (record, created).

    A run is known by its ``identity``: the first report creates its pipeline (``new_pipeline``:
    its ref, sha, name, variables) and its record (``new_record``: the CicdRun columns), a
    later one updates both. ``report`` is the body as the client sent it, kept for the fields
    the pipeline has no column for.
    """
    try:
        return _record_cicd_run(
            instance, identity, report, run, jobs, user, new_pipeline, new_record
        )
    except IntegrityError:
        pass  # another request created the same run first: this report updates it
    try:
        return _record_cicd_run(
            instance, identity, report, run, jobs, user, new_pipeline, new_record
        )
    except IntegrityError:
        raise Conflict(f"run {identity} is being recorded by another request") from None


def _record_cicd_run(instance, identity, report, run, jobs, user, new_pipeline, new_record):
    with transaction.atomic():
        record = (
            CicdRun.objects.select_for_update()
            .select_related("pipeline")
            .filter(instance=instance, identity=identity)
            .first()
        )
        created = record is None
        _check_reported(run, jobs)
        if created:
            pipeline = create_pipeline_in_command(
                instance.project,
                source=Pipeline.Source.EXTERNAL,
                user=user,
                at=run.started_at,
                variables=new_pipeline.get("variables"),
                **{k: v for k, v in new_pipeline.items() if k != "variables"},
            )
            record = CicdRun.objects.create(
                instance=instance, identity=identity, pipeline=pipeline, report=report, **new_record
            )
        else:
            # The select above locked the run's pipeline row with it.
            pipeline = record.pipeline
            pipeline.project = instance.project
            pipeline.load_latest_jobs()
            record.report = report
            record.updated_at = timezone.now()
            record.save(update_fields=["report", "updated_at"])
        try:
            _report_run(pipeline, run, jobs)
        finally:
            pipeline.forget_loaded()
    return record, created


# --- Puppet Pipelines (Distelli): events, and builds shown as pipelines -------------------

BuildStatus = DistelliEvent.BuildStatus
EventType = DistelliEvent.Type

BUILD_JOB = "build"  # the job (and stage) a build event is shown as

# Distelli build status -> GitLab status, and the failure reason GitLab would give.
STATUS_FOR_BUILD = {
    BuildStatus.WAITING: Status.CREATED,
    BuildStatus.QUEUED: Status.PENDING,
    BuildStatus.RUNNING: Status.RUNNING,
    BuildStatus.SUCCESS: Status.SUCCESS,
    BuildStatus.FAILED: Status.FAILED,
    BuildStatus.TIMED_OUT: Status.FAILED,
    BuildStatus.CANCELLED: Status.CANCELED,
}
FAILURE_REASON_FOR_BUILD = {
    BuildStatus.FAILED: "script_failure",
    BuildStatus.TIMED_OUT: "job_execution_timeout",
}
# Build statuses compared without case; "Canceled" is the American spelling of Cancelled.
_BUILD_STATUS_SPELLINGS = {s.value.lower(): s for s in BuildStatus} | {
    "canceled": BuildStatus.CANCELLED
}


def parse_build_status(value: str | None, default: BuildStatus | None) -> BuildStatus | None:
    if value is None or value == "":
        return default
    status = _BUILD_STATUS_SPELLINGS.get(value.strip().lower())
    if status is None:
        raise InvalidInput(f"build_status {value!r} is not one of {', '.join(BuildStatus.values)}")
    return status


def record_repo_event(project: Project, event_type: str, **fields) -> DistelliEvent:
    """A push or pull request event, which builds may name as their parent."""
    with transaction.atomic():
        return DistelliEvent.objects.create(project=project, event_type=event_type, **fields)


def record_build_event(
    project: Project,
    *,
    user,
    build_status: str | None = None,
    parent_event_id: int | None = None,
    **fields,
) -> DistelliEvent:
    """A build event, shown as a pipeline whose one ``build`` job carries its status.

    ``fields`` are the event's columns as reported; the parent push or pull request fills in
    what the build does not say of its commit.
    """
    status = parse_build_status(build_status, BuildStatus.WAITING)
    with transaction.atomic():
        parent = None
        if parent_event_id is not None:
            parent = project.distelli_events.filter(
                pk=parent_event_id, event_type__in=(EventType.PUSH, EventType.PULL_REQUEST)
            ).first()
            if parent is None:
                raise InvalidInput(
                    f"parent_event_id {parent_event_id} is not a push or pull request event of"
                    f" app {project.path!r}"
                )
        now = timezone.now()
        if status in DistelliEvent.TERMINAL_BUILD_STATUSES and not fields.get("build_end"):
            fields["build_end"] = now  # the documentation asks for it; when it is missing, now
        _check_build_times(fields.get("build_start"), fields.get("build_end"))
        pipeline = create_pipeline_in_command(
            project,
            **_build_pipeline_fields(fields, parent, project),
            user=user,
            variables=None,
            at=now,
        )
        event = DistelliEvent.objects.create(
            project=project,
            event_type=EventType.BUILD,
            parent=parent,
            pipeline=pipeline,
            build_status=status,
            created_at=now,
            updated_at=now,
            **fields,
        )
        try:
            _report_build(event, pipeline)
        finally:
            pipeline.forget_loaded()
    return event


def update_build_event(
    project: Project,
    event_id: int,
    *,
    build_status: str | None = None,
    build_end: datetime | None = None,
    release_version: str | None = None,
) -> DistelliEvent:
    """Move a build on, until it reaches a terminal status: then it is immutable (Conflict)."""
    with transaction.atomic():
        event = (
            DistelliEvent.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(project=project, pk=event_id)
            .first()
        )
        if event is None:
            raise NotFound(f"event {event_id} not found in app {project.path!r}")
        if event.event_type != EventType.BUILD:
            raise InvalidInput(
                f"event {event_id} is a {event.event_type} event: only build events are updated"
            )
        if event.is_terminal:
            raise Conflict(
                f"event {event_id} is {event.build_status}, a terminal status: it is an"
                " immutable historical object and cannot be updated"
            )
        status = parse_build_status(build_status, BuildStatus(event.build_status))
        build_end = build_end or event.build_end
        if status in DistelliEvent.TERMINAL_BUILD_STATUSES and not build_end:
            build_end = timezone.now()
        _check_build_times(event.build_start, build_end)
        event.build_status = status
        event.build_end = build_end
        if release_version is not None:
            event.release_version = release_version
        event.updated_at = timezone.now()
        event.save()
        if event.pipeline_id is not None:
            pipeline = lock_pipeline(event.pipeline_id)
            pipeline.load_latest_jobs()
            try:
                _report_build(event, pipeline)
            finally:
                pipeline.forget_loaded()
    return event


def _build_pipeline_fields(fields: dict, parent: DistelliEvent | None, project: Project) -> dict:
    """What a build event says about its commit, completed by its parent push or PR."""

    def given(field: str) -> str | None:
        return fields.get(field) or (getattr(parent, field) if parent else None)

    message = given("commit_msg") or ""
    if parent is None:
        source = Pipeline.Source.EXTERNAL
    elif parent.event_type == EventType.PUSH:
        source = Pipeline.Source.PUSH
    else:
        source = Pipeline.Source.EXTERNAL_PULL_REQUEST_EVENT
    return {
        "ref": given("branch") or project.default_branch,
        "sha": given("commit_id") or UNKNOWN_SHA,
        "source": source,
        "name": f"Build {fields['build_id']}"[:255] if fields.get("build_id") else None,
        "commit_message": message,
        "commit_title": commit_title(message)[:255] if message else "",
        "commit_author_name": given("author_name") or given("author_username") or "",
    }


def _check_build_times(start: datetime | None, end: datetime | None) -> None:
    if start and end and end < start:
        raise InvalidInput("build_end is before build_start")


def _report_build(event: DistelliEvent, pipeline: Pipeline) -> None:
    """Report the build on its pipeline, which the command holds locked (``_report_run``).
    An event whose pipeline was deleted stays as history, reported nowhere."""
    status = BuildStatus(event.build_status)
    _report_run(
        pipeline,
        run=ReportedJob(
            name=BUILD_JOB,
            stage=BUILD_JOB,
            status=STATUS_FOR_BUILD[status],
            started_at=event.build_start,
            finished_at=event.build_end,
            failure_reason=FAILURE_REASON_FOR_BUILD.get(status),
            target_url=event.build_url or "",
        ),
    )
