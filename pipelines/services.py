"""Every state change of the pipeline domain goes through here.

Each public function owns its transaction, follows GitLab's state machines and sends
``pipeline_changed`` inside that transaction for the creation and for each real status
change of a pipeline, so whatever listens (the hooks app) commits its rows with the change.
Refused moves raise ``pipelines.errors.ServiceError`` subclasses and change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from pipelines.errors import InvalidInput, NotFound, TransitionRefused
from pipelines.models import (
    CANCELABLE_STATUSES,
    COMPLETED_STATUSES,
    UNKNOWN_SHA,
    AccessToken,
    Execution,
    Job,
    Pipeline,
    PipelineDefinition,
    Project,
    Status,
)
from pipelines.signals import PipelineChange, pipeline_changed

logger = logging.getLogger(__name__)

UNSTARTED_STATUSES = frozenset(
    {Status.CREATED, Status.WAITING_FOR_RESOURCE, Status.PREPARING, Status.PENDING}
)

# GitLab's job (CommitStatus) state machine: for each target status, where it may come from.
_QUEUED = frozenset({Status.WAITING_FOR_RESOURCE, Status.PREPARING, Status.PENDING})
_NOT_STARTED = _QUEUED | {Status.CREATED}
_BLOCKED = frozenset({Status.MANUAL, Status.SCHEDULED})
_ENQUEUEABLE = frozenset({Status.CREATED, Status.SKIPPED}) | _BLOCKED
_JOB_SOURCES: dict[str, frozenset[str]] = {
    Status.CREATED: frozenset({Status.SKIPPED, Status.MANUAL}),
    Status.WAITING_FOR_RESOURCE: _ENQUEUEABLE,
    Status.PREPARING: _ENQUEUEABLE | {Status.WAITING_FOR_RESOURCE},
    Status.PENDING: _ENQUEUEABLE | {Status.WAITING_FOR_RESOURCE, Status.PREPARING},
    Status.RUNNING: frozenset({Status.PENDING}),
    Status.SUCCESS: _NOT_STARTED | {Status.RUNNING},
    Status.FAILED: _NOT_STARTED | _BLOCKED | {Status.RUNNING, Status.CANCELING},
    Status.CANCELING: _NOT_STARTED | {Status.RUNNING},
    Status.CANCELED: _NOT_STARTED | _BLOCKED | {Status.RUNNING, Status.CANCELING},
    Status.SKIPPED: _NOT_STARTED,
    Status.MANUAL: frozenset({Status.CREATED}),
    Status.SCHEDULED: frozenset({Status.CREATED}),
}

# GitLab's event names, for refusal messages that read like GitLab's own.
_EVENT_FOR_STATUS = {
    Status.CREATED: "process",
    Status.WAITING_FOR_RESOURCE: "request_resource",
    Status.PREPARING: "prepare",
    Status.PENDING: "enqueue",
    Status.RUNNING: "run",
    Status.SUCCESS: "success",
    Status.FAILED: "drop",
    Status.CANCELING: "start_cancel",
    Status.CANCELED: "cancel",
    Status.SKIPPED: "skip",
    Status.MANUAL: "block",
    Status.SCHEDULED: "delay",
}

# What external CI may report through the commit status API, as GitLab accepts it.
COMMIT_STATUS_STATES = ("pending", "running", "success", "failed", "canceled", "skipped")

# GitLab puts external commit statuses in a stage after every pipeline stage.
EXTERNAL_STAGE = "external"
EXTERNAL_STAGE_IDX = 1_000_000


def validate_status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise InvalidInput(f"status {value!r} is not one of: {', '.join(Status.values)}") from None


# --- Composition: a pipeline's status from its jobs -----------------------------------------


# How ``compose_status`` counts jobs that may fail: a failed or canceled one passes "with
# warnings" (the pipeline still succeeds, as "passed with warnings"); a manual one is ignored.
WARNING = "success_with_warnings"
IGNORED = "ignored"


def _composite_key(job: Job) -> str:
    if job.allow_failure and job.status in (Status.FAILED, Status.CANCELED):
        return WARNING
    if job.allow_failure and job.status == Status.MANUAL:
        return IGNORED
    return job.status


def compose_status(jobs: Iterable[Job]) -> Status | None:
    """GitLab's ``Gitlab::Ci::Status::Composite``: one status for a set of latest jobs.

    Jobs that may fail neither fail the pipeline nor keep it from succeeding; only skipped
    and ignored jobs make a pipeline skipped, so one whose only job failed but may fail
    passed (with warnings).
    """
    statuses = {_composite_key(job) for job in jobs}
    if not statuses:
        return None

    def only_of(*allowed: str) -> bool:
        return statuses <= set(allowed)

    def any_of(*wanted: str) -> bool:
        return bool(statuses & set(wanted))

    if only_of(Status.SKIPPED, IGNORED):
        return Status.SKIPPED
    if only_of(Status.SUCCESS, Status.SKIPPED, WARNING, IGNORED):
        return Status.SUCCESS
    if only_of(Status.CREATED, WARNING, IGNORED):
        return Status.CREATED
    if only_of(Status.PREPARING, WARNING, IGNORED):
        return Status.PREPARING
    if only_of(Status.CANCELED, Status.SUCCESS, Status.SKIPPED, WARNING, IGNORED):
        return Status.CANCELED
    if only_of(Status.PENDING, Status.CREATED, Status.SKIPPED, WARNING, IGNORED):
        return Status.PENDING
    if any_of(Status.RUNNING, Status.PENDING):
        return Status.RUNNING
    if any_of(Status.WAITING_FOR_RESOURCE):
        return Status.WAITING_FOR_RESOURCE
    if any_of(Status.MANUAL):
        return Status.MANUAL
    if any_of(Status.SCHEDULED):
        return Status.SCHEDULED
    if any_of(Status.PREPARING):
        return Status.PREPARING
    if any_of(Status.CREATED):
        return Status.RUNNING
    if any_of(Status.CANCELING):
        return Status.CANCELING
    return Status.FAILED


# GitLab's pipeline ``enqueue`` leads from these to running, not pending: a finished
# pipeline runs again, and a running one stays running while jobs queue.
_ENQUEUED_TO_RUNNING = frozenset(
    {Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.CANCELING, Status.RUNNING}
)


def _pipeline_target(current: str, composite: Status | None) -> str:
    """Map a composite status onto the pipeline the way GitLab's ``set_status`` does."""
    if composite is None or composite == Status.CREATED:
        return current  # GitLab has no event that moves a pipeline back to created
    if composite == Status.PENDING and current in _ENQUEUED_TO_RUNNING:
        return Status.RUNNING
    return composite


def _union_seconds(periods: list[tuple[datetime, datetime]]) -> int:
    """Seconds covered by the union of periods (GitLab's pipeline duration)."""
    total = 0.0
    end_so_far: datetime | None = None
    for start, end in sorted(periods):
        if end_so_far is None or start > end_so_far:
            total += (end - start).total_seconds()
            end_so_far = end
        elif end > end_so_far:
            total += (end - end_so_far).total_seconds()
            end_so_far = end
    return int(total)


# --- Pipelines ---------------------------------------------------------------------------


def _whole_seconds(start: datetime, end: datetime) -> int:
    """Whole seconds from ``start`` to ``end``, never negative: GitLab's pipeline durations."""
    return max(0, int((end - start).total_seconds()))


def _set_queued_duration(pipeline: Pipeline) -> None:
    if pipeline.started_at:
        pipeline.queued_duration = _whole_seconds(pipeline.created_at, pipeline.started_at)


def _signed_in(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    """The user to record as acting; None for an anonymous caller."""
    return user if user is not None and user.is_authenticated else None


def _apply_pipeline_status(pipeline: Pipeline, new_status: str, at: datetime) -> None:
    """Set status and GitLab's times on the instance; the caller saves and signals."""
    previous = pipeline.status
    pipeline.status = new_status
    pipeline.updated_at = at
    if new_status == Status.RUNNING and (previous in UNSTARTED_STATUSES or not pipeline.started_at):
        pipeline.started_at = at
    if new_status in COMPLETED_STATUSES:
        pipeline.finished_at = at
        jobs = list(pipeline.latest_jobs())
        periods = [(j.started_at, j.finished_at) for j in jobs if j.started_at and j.finished_at]
        if periods:
            pipeline.duration = _union_seconds(periods)
        elif pipeline.started_at:
            pipeline.duration = _whole_seconds(pipeline.started_at, at)
        else:
            pipeline.duration = None
    elif previous in COMPLETED_STATUSES:
        pipeline.finished_at = None
        pipeline.duration = None
    _set_queued_duration(pipeline)


def _change_pipeline_status(
    pipeline: Pipeline,
    new_status: str,
    at: datetime,
    reported_times: tuple[datetime | None, datetime | None] | None = None,
) -> bool:
    """Save a real status change and send the signal. Same-status changes do nothing.

    ``reported_times`` (start, finish) as a CI reported them win over the moment of change,
    and are set before the signal so whatever it triggers sees them.
    """
    if new_status == pipeline.status:
        return False
    previous = pipeline.status
    _apply_pipeline_status(pipeline, new_status, at)
    if reported_times:
        _apply_reported_times(pipeline, *reported_times)
    pipeline.save()
    change = (
        PipelineChange.FINISHED
        if new_status in COMPLETED_STATUSES
        else PipelineChange.STATUS_CHANGED
    )
    logger.info("Pipeline %s: %s -> %s", pipeline.pk, previous, new_status)
    pipeline_changed.send(
        sender=Pipeline, pipeline=pipeline, previous_status=previous, change=change
    )
    return True


def _lock(pipeline: Pipeline) -> Pipeline:
    """Re-read the pipeline under a row lock so concurrent job reports compose in turn."""
    return Pipeline.objects.select_for_update().select_related("project").get(pk=pipeline.pk)


def _recompose(pipeline: Pipeline, at: datetime) -> bool:
    target = _pipeline_target(pipeline.status, compose_status(pipeline.latest_jobs()))
    return _change_pipeline_status(pipeline, target, at)


def _next_iid(project: Project) -> int:
    # Lock the project row so two creations in parallel cannot take the same iid.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    return (project.pipelines.aggregate(m=Max("iid"))["m"] or 0) + 1


def create_pipeline(
    project: Project,
    *,
    ref: str,
    sha: str,
    source: str = Pipeline.Source.API,
    user: AbstractBaseUser | None = None,
    variables: list[dict] | None = None,
    at: datetime | None = None,
    **fields,
) -> Pipeline:
    """Create a pipeline in ``created`` and announce it.

    ``fields`` are further Pipeline columns (name, tag, before_sha, commit_*...).
    """
    if not ref:
        raise InvalidInput("ref is missing")
    if not sha:
        raise InvalidInput("sha is missing")
    if source not in Pipeline.Source.values:
        raise InvalidInput(f"source {source!r} is not one of: {', '.join(Pipeline.Source.values)}")
    at = at or timezone.now()
    with transaction.atomic():
        pipeline = Pipeline.objects.create(
            project=project,
            iid=_next_iid(project),
            ref=ref,
            sha=sha,
            source=source,
            user=_signed_in(user),
            variables=normalize_variables(variables or []),
            status=Status.CREATED,
            created_at=at,
            updated_at=at,
            **fields,
        )
        pipeline_changed.send(
            sender=Pipeline, pipeline=pipeline, previous_status=None, change=PipelineChange.CREATED
        )
    return pipeline


def start_pipeline(
    project: Project,
    *,
    ref: str,
    sha: str | None = None,
    user: AbstractBaseUser | None = None,
    variables: list[dict] | None = None,
    commit_required: bool = True,
    **fields,
) -> Pipeline:
    """Start a pipeline by API (source ``api``) on ``ref``, at ``sha`` or at the ref's commit.

    With no repository here, a ref's commit is the newest one a pipeline was reported for on
    it; with none, the answer is GitLab's ``Reference not found``, or the unknown commit
    (``UNKNOWN_SHA``) when ``commit_required`` is off. Whether the ref is a tag, and what
    earlier reports said of the commit (title, message, author, time), carry over.
    """
    with transaction.atomic():
        on_ref = project.pipelines.filter(ref=ref).order_by("-id").first()
        sha = sha or (on_ref.sha if on_ref else None)
        if not sha:
            if commit_required:
                raise InvalidInput.about("base", "Reference not found")
            sha = UNKNOWN_SHA
        return create_pipeline(
            project,
            ref=ref,
            sha=sha,
            source=Pipeline.Source.API,
            user=user,
            variables=variables,
            tag=on_ref.tag if on_ref else False,
            **_known_commit_fields(project, sha),
            **fields,
        )


def _known_commit_fields(project: Project, sha: str) -> dict:
    """What an earlier report told us about this commit."""
    known = project.pipelines.filter(sha=sha).order_by("-id").first()
    if known is None:
        return {}
    return {
        "commit_message": known.commit_message,
        "commit_title": known.commit_title,
        "commit_timestamp": known.commit_timestamp,
        "commit_author_name": known.commit_author_name,
        "commit_author_email": known.commit_author_email,
    }


def normalize_variables(variables: list[dict]) -> list[dict]:
    """GitLab's pipeline variables: a list of ``{key, value, variable_type}``."""
    result = []
    for item in variables:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise InvalidInput("variables must be a list of objects with a non-empty 'key'")
        value = item.get("value", "")
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidInput(f"variable {item['key']!r} must have a string value")
        variable_type = item.get("variable_type", "env_var")
        if variable_type not in ("env_var", "file"):
            raise InvalidInput(f"variable {item['key']!r}: variable_type must be env_var or file")
        result.append({"key": item["key"], "value": str(value), "variable_type": variable_type})
    return result


def transition_pipeline(pipeline: Pipeline, status: str, *, at: datetime | None = None) -> bool:
    """Move a pipeline that has no jobs to ``status``; returns whether anything changed.

    A pipeline with jobs takes its status from them, so moving it directly is refused; so is
    any move back to ``created``, which no GitLab event does.
    """
    target = validate_status(status)
    at = at or timezone.now()
    with transaction.atomic():
        pipeline = _lock(pipeline)
        if pipeline.jobs.exists():
            raise TransitionRefused(
                "this pipeline's status is composed from its jobs: update a job instead"
            )
        if target == pipeline.status:
            return False
        if target == Status.CREATED:
            raise TransitionRefused(
                f"Cannot transition pipeline from {pipeline.status} back to created"
            )
        return _change_pipeline_status(pipeline, _pipeline_target(pipeline.status, target), at)


def retry_pipeline(pipeline: Pipeline, *, user: AbstractBaseUser | None = None) -> Pipeline:
    """Retry the failed and canceled jobs; a finished pipeline goes back to running."""
    at = timezone.now()
    with transaction.atomic():
        pipeline = _lock(pipeline)
        jobs = list(pipeline.latest_jobs())
        retryable = [j for j in jobs if j.status in (Status.FAILED, Status.CANCELED)]
        if jobs and not retryable:
            raise TransitionRefused("Pipeline is not retryable: it has no failed or canceled jobs")
        if not jobs and pipeline.status not in (Status.FAILED, Status.CANCELED):
            raise TransitionRefused(f"Pipeline is not retryable: it is {pipeline.status}")
        for old in retryable:
            Job.objects.filter(pk=old.pk).update(retried=True, updated_at=at)
            _clone_job_for_retry(old, user=user, at=at)
        if jobs:
            _recompose(pipeline, at)
        else:
            _change_pipeline_status(pipeline, Status.RUNNING, at)
    pipeline.refresh_from_db()
    return pipeline


def _clone_job_for_retry(old: Job, *, user: AbstractBaseUser | None, at: datetime) -> Job:
    return Job.objects.create(
        pipeline_id=old.pipeline_id,
        stage=old.stage,
        stage_idx=old.stage_idx,
        name=old.name,
        status=Status.PENDING,
        when=old.when,
        manual=old.manual,
        allow_failure=old.allow_failure,
        user=_signed_in(user) or old.user,
        created_at=at,
        queued_at=at,
        updated_at=at,
        environment=old.environment,
        target_url=old.target_url,
        description=old.description,
    )


def cancel_pipeline(pipeline: Pipeline) -> Pipeline:
    """Cancel every job that can still be canceled; a pipeline without jobs is canceled.

    As GitLab's ``Ci::CancelPipelineService``: a pipeline is cancelable while one of its jobs
    is, and manual jobs stay manual (they are not running, and can still be played).
    """
    at = timezone.now()
    with transaction.atomic():
        pipeline = _lock(pipeline)
        jobs = list(pipeline.latest_jobs())
        cancelable = [job for job in jobs if job.status in CANCELABLE_STATUSES]
        nothing_to_cancel = not cancelable if jobs else pipeline.status not in CANCELABLE_STATUSES
        if nothing_to_cancel:
            raise TransitionRefused(f"Pipeline is not cancelable: it is {pipeline.status}")
        for job in cancelable:
            _apply_job_status(job, Status.CANCELED, at)
            job.save()
        if jobs:
            _recompose(pipeline, at)
        else:
            _change_pipeline_status(pipeline, Status.CANCELED, at)
    pipeline.refresh_from_db()
    return pipeline


def delete_pipeline(pipeline: Pipeline) -> None:
    with transaction.atomic():
        pipeline.delete()


# --- Jobs ----------------------------------------------------------------------------------


def _apply_job_status(job: Job, status: str, at: datetime) -> None:
    """Set a job's status and GitLab's times on the instance (unsaved)."""
    job.status = status
    job.updated_at = at
    if status in (Status.PENDING, Status.WAITING_FOR_RESOURCE, Status.PREPARING):
        job.queued_at = job.queued_at or at
    if status == Status.RUNNING:
        job.started_at = job.started_at or at
        job.queued_at = job.queued_at or job.created_at
        job.queued_duration = max(0.0, (job.started_at - job.queued_at).total_seconds())
    if status in COMPLETED_STATUSES:
        job.finished_at = job.finished_at or at
        if job.started_at:
            job.duration = max(0.0, (job.finished_at - job.started_at).total_seconds())
    if status != Status.FAILED:
        job.failure_reason = None
    if status == Status.MANUAL:
        job.manual = True


def _check_job_move(job: Job, target: str) -> None:
    if target == job.status:
        raise TransitionRefused(
            f"Cannot transition status via :{_EVENT_FOR_STATUS[target]} from :{job.status}"
        )
    # Running is also reached through pending (GitLab's "enqueue, then run").
    via_pending = target == Status.RUNNING and job.status in _JOB_SOURCES[Status.PENDING]
    if job.status not in _JOB_SOURCES[target] and not via_pending:
        raise TransitionRefused(
            f"Cannot transition status via :{_EVENT_FOR_STATUS[target]} from :{job.status}"
        )


_JOB_FIELDS = {
    "stage",
    "stage_idx",
    "when",
    "manual",
    "allow_failure",
    "failure_reason",
    "runner",
    "artifacts_filename",
    "artifacts_size",
    "environment",
    "target_url",
    "description",
    "coverage",
    "queued_at",
    "started_at",
    "finished_at",
    "duration",
    "queued_duration",
    "user",
}


def _check_job_fields(fields: dict) -> None:
    unknown = set(fields) - _JOB_FIELDS
    if unknown:
        raise InvalidInput(f"unknown job fields: {', '.join(sorted(unknown))}")


def create_job(
    pipeline: Pipeline,
    *,
    name: str,
    status: str = Status.CREATED,
    at: datetime | None = None,
    **fields,
) -> Job:
    """Add a job (created, then moved to ``status``) and recompose the pipeline."""
    target = validate_status(status)
    if not name:
        raise InvalidInput("name is missing")
    _check_job_fields(fields)
    at = at or timezone.now()
    with transaction.atomic():
        pipeline = _lock(pipeline)
        job = Job(pipeline=pipeline, name=name, created_at=at, updated_at=at, **fields)
        if target != Status.CREATED:
            _check_job_move(job, target)
            _apply_job_status(job, target, at)
        job.save()
        _recompose(pipeline, at)
    return job


def update_job(job: Job, *, status: str | None = None, at: datetime | None = None, **fields) -> Job:
    """Change a job's status (GitLab's job state machine) and fields; recompose its pipeline.

    Explicit times in ``fields`` (started_at, finished_at...) win over the moment of change,
    for dialects that report when things happened.
    """
    _check_job_fields(fields)
    at = at or timezone.now()
    with transaction.atomic():
        pipeline = _lock(job.pipeline)
        job = Job.objects.select_for_update().get(pk=job.pk)
        for key, value in fields.items():
            setattr(job, key, value)
        if status is not None and status != job.status:
            target = validate_status(status)
            _check_job_move(job, target)
            _apply_job_status(job, target, at)
        job.save()
        _recompose(pipeline, at)
    return job


def report_commit_status(
    project: Project,
    sha: str,
    *,
    state: str,
    name: str | None = None,
    ref: str | None = None,
    stage: str | None = None,
    target_url: str | None = None,
    description: str | None = None,
    coverage: float | None = None,
    pipeline_id: int | None = None,
    user: AbstractBaseUser | None = None,
) -> Job:
    """GitLab's ``POST /projects/:id/statuses/:sha`` (Ci::CreateCommitStatusService).

    Finds the pipeline for the sha and ref (or ``pipeline_id``), creating an ``external``
    one when there is none; finds the pending or running job of that name, or starts a new
    attempt (an older finished attempt becomes "retried"); then moves it to ``state``.
    """
    if state not in COMMIT_STATUS_STATES:
        raise InvalidInput(
            f"state does not have a valid value: {state!r} is not one of "
            f"{', '.join(COMMIT_STATUS_STATES)}"
        )
    name = name or "default"
    at = timezone.now()
    fields = {
        k: v
        for k, v in {
            "target_url": target_url,
            "description": description,
            "coverage": coverage,
        }.items()
        if v is not None
    }
    with transaction.atomic():
        if pipeline_id is not None:
            pipeline = project.pipelines.filter(pk=pipeline_id).first()
            if pipeline is None:
                raise NotFound("404 Pipeline Not Found")
            if pipeline.sha != sha:
                raise InvalidInput(f"pipeline {pipeline_id} is not for commit {sha}")
        else:
            candidates = project.pipelines.filter(sha=sha)
            if ref:
                candidates = candidates.filter(ref=ref)
            pipeline = candidates.order_by("-id").first()
            if pipeline is None:
                pipeline = create_pipeline(
                    project,
                    ref=ref or project.default_branch,
                    sha=sha,
                    source=Pipeline.Source.EXTERNAL,
                    user=user,
                    at=at,
                )
        pipeline = _lock(pipeline)
        job = (
            pipeline.jobs.filter(
                name=name, retried=False, status__in=(Status.PENDING, Status.RUNNING)
            )
            .order_by("-id")
            .first()
        )
        if job is None:
            pipeline.jobs.filter(name=name, retried=False).update(retried=True, updated_at=at)
            job = Job(
                pipeline=pipeline,
                name=name,
                stage=stage or EXTERNAL_STAGE,
                stage_idx=EXTERNAL_STAGE_IDX if not stage else _stage_idx(pipeline, stage),
                user=_signed_in(user),
                created_at=at,
                updated_at=at,
            )
        for key, value in fields.items():
            setattr(job, key, value)
        target = Status(state)
        _check_job_move(job, target)
        _apply_job_status(job, target, at)
        if target == Status.FAILED:
            job.failure_reason = "api_failure"
        job.save()
        _recompose(pipeline, at)
    return job


def _stage_idx(pipeline: Pipeline, stage: str) -> int:
    """Keep stages in the order they were first reported."""
    known = pipeline.jobs.filter(stage=stage).values_list("stage_idx", flat=True).first()
    if known is not None:
        return known
    highest = pipeline.jobs.exclude(stage_idx=EXTERNAL_STAGE_IDX).aggregate(m=Max("stage_idx"))["m"]
    return 0 if highest is None else highest + 1


# --- Runs reported whole by an external CI ----------------------------------------------------

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
        pipeline = _lock(pipeline)
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
        target = _pipeline_target(pipeline.status, compose_status(pipeline.latest_jobs()))
        times = (run.started_at, run.finished_at)
        if _change_pipeline_status(pipeline, target, at, reported_times=times):
            return True
        if _apply_reported_times(pipeline, *times):
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
            _check_job_move(job, target)
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
                else _stage_idx(pipeline, reported.stage)
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
        _apply_job_status(job, target, at)
    if target in COMPLETED_STATUSES and job.started_at and job.finished_at:
        job.duration = max(0.0, (job.finished_at - job.started_at).total_seconds())
    if target == Status.FAILED:
        job.failure_reason = reported.failure_reason or job.failure_reason or UNKNOWN_FAILURE
    job.save()
    return job


def _apply_reported_times(
    pipeline: Pipeline, started_at: datetime | None, finished_at: datetime | None
) -> bool:
    """Put a CI's own start and finish on the pipeline; returns whether anything changed."""
    before = (pipeline.started_at, pipeline.finished_at, pipeline.duration)
    ran = pipeline.status in COMPLETED_STATUSES - {Status.SKIPPED} or pipeline.status in (
        Status.RUNNING,
        Status.CANCELING,
    )
    if ran and started_at:
        pipeline.started_at = started_at
    if pipeline.status in COMPLETED_STATUSES:
        if finished_at:
            pipeline.finished_at = finished_at
        if (started_at or finished_at) and pipeline.started_at and pipeline.finished_at:
            pipeline.duration = _whole_seconds(pipeline.started_at, pipeline.finished_at)
    _set_queued_duration(pipeline)
    return before != (pipeline.started_at, pipeline.finished_at, pipeline.duration)


# --- Projects and tokens ---------------------------------------------------------------------


def create_project(*, name: str, path: str | None = None, **fields) -> Project:
    if not name or not name.strip():
        raise InvalidInput("name is missing")
    path = path or slugify(name)
    if not path:
        raise InvalidInput("path is missing")
    namespace = fields.get("namespace") or "root"
    if Project.objects.filter(namespace=namespace, path=path).exists():
        raise InvalidInput(f"path {namespace}/{path} has already been taken")
    with transaction.atomic():
        return Project.objects.create(name=name.strip(), path=path, **fields)


def create_token(
    user,
    *,
    scopes: list[str],
    name: str = "token",
    projects: Iterable[Project] = (),
    groups: Iterable = (),
    expires_at: datetime | None = None,
) -> tuple[AccessToken, str]:
    """Create an access token; returns the row and the raw token, which is shown only once."""
    scopes = list(dict.fromkeys(scopes))
    if not scopes:
        raise InvalidInput("at least one scope is needed")
    unknown = set(scopes) - set(AccessToken.Scope.values)
    if unknown:
        raise InvalidInput(
            f"unknown scopes: {', '.join(sorted(unknown))}"
            f" (use {', '.join(AccessToken.Scope.values)})"
        )
    groups = list(groups)
    check_token_groups(user, groups)
    raw = AccessToken.generate()
    with transaction.atomic():
        token = AccessToken.objects.create(
            user=user,
            name=name,
            token_hash=AccessToken.hash_token(raw),
            token_prefix=raw[:10],
            scopes=scopes,
            expires_at=expires_at,
        )
        token.projects.set(projects)
        token.groups.set(groups)
    return token, raw


def check_token_groups(user, groups: Iterable) -> None:
    """A token may be scoped only to groups its owner is in: scoping narrows, never widens."""
    if user.is_superuser:
        return
    member_of = set(user.groups.values_list("pk", flat=True))
    foreign = sorted(group.name for group in groups if group.pk not in member_of)
    if foreign:
        raise InvalidInput(
            f"user {user.get_username()} is not in the group(s) {', '.join(foreign)}: a token"
            " can only be scoped to its owner's groups"
        )


# --- Executions of pipeline definitions -----------------------------------------------------

# Pipeline variables a service input sets, so the run knows which build to deploy.
SERVICE_VARIABLES = ("SERVICE_NAME", "ARTIFACT_SOURCE_NAME", "ARTIFACT_BUILD_NUMBER")


def start_execution(
    definition: PipelineDefinition,
    *,
    variable_inputs: Iterable[tuple[str, str, str]] = (),
    service_inputs: Iterable[dict] = (),
    notes: str = "",
    user: AbstractBaseUser | None = None,
    token: AccessToken | None = None,
) -> Execution:
    """Start a run of a pipeline or workflow definition: a new pipeline with source ``api``.

    ``variable_inputs`` are ``(name, value type, value)`` checked against the definition's
    declarations; ``service_inputs`` are ``{name, artifactSourceName, buildNumber}``. The run
    is for the definition's ref (the project's default branch when blank) at that ref's commit
    (``start_pipeline``), or ``UNKNOWN_SHA`` when nothing was reported there yet.
    """
    variables = definition.bind_variables(list(variable_inputs))
    services_given = list(service_inputs)
    if len(services_given) > 1:
        raise InvalidInput("serviceInputs: one service per execution is supported")
    for service in services_given:
        taken = {v["key"] for v in variables} & set(SERVICE_VARIABLES)
        if taken:
            raise InvalidInput(
                f"variable {sorted(taken)[0]!r} is also set by serviceInputs: give it once"
            )
        values = (service["name"], service.get("artifactSourceName") or "", service["buildNumber"])
        variables += [
            {"key": key, "value": value, "variable_type": "env_var"}
            for key, value in zip(SERVICE_VARIABLES, values, strict=True)
        ]
    project = definition.project
    with transaction.atomic():
        pipeline = start_pipeline(
            project,
            ref=definition.ref or project.default_branch,
            user=user,
            variables=variables,
            commit_required=False,  # a deployment may start before anything was reported
            name=definition.name,
        )
        return Execution.objects.create(
            pipeline=pipeline,
            definition=definition,
            kind=definition.kind,
            notes=notes,
            service_inputs=services_given,
            token=token,
        )
