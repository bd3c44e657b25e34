"""GitLab's status rules as pure functions of rows in memory: no query, no save, no signal.

- the job state machine (``CommitStatus``): which moves a job may make, and the times a move
  sets on it;
- ``compose_status`` (``Gitlab::Ci::Status::Composite``): one status for a pipeline's latest
  jobs, and ``pipeline_target``, how GitLab's ``set_status`` applies it to the pipeline;
- durations: whole seconds for pipelines, the union of their jobs' running periods, float
  seconds for jobs, and the times a CI reports itself.

The commands (``pipelines.services``, ``pipelines.reports``) read and lock the rows, apply
these, save and signal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pipelines.errors import InvalidInput, TransitionRefused
from pipelines.models import COMPLETED_STATUSES, FINISHED_STATUSES, Job, Pipeline, Status

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


def validate_status(value: str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise InvalidInput(f"status {value!r} is not one of: {', '.join(Status.values)}") from None


# --- Jobs ------------------------------------------------------------------------------------


def check_job_move(job: Job, target: str) -> None:
    """Raise ``TransitionRefused``, in GitLab's words, unless the job may move to ``target``."""
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


def apply_job_status(job: Job, status: str, at: datetime) -> None:
    """Set a job's status and GitLab's times on the instance (unsaved)."""
    job.status = status
    job.updated_at = at
    if status in (Status.PENDING, Status.WAITING_FOR_RESOURCE, Status.PREPARING):
        job.queued_at = job.queued_at or at
    if status == Status.RUNNING:
        job.started_at = job.started_at or at
        job.queued_at = job.queued_at or job.created_at
        job.queued_duration = seconds_between(job.queued_at, job.started_at)
    if status in FINISHED_STATUSES:  # GitLab's: a skipped job has no finish time
        job.finished_at = job.finished_at or at
        if job.started_at:
            job.duration = seconds_between(job.started_at, job.finished_at)
    if status != Status.FAILED:
        job.failure_reason = None
    if status == Status.MANUAL:
        job.manual = True
        job.when = Job.When.MANUAL
    if status == Status.SCHEDULED:
        job.when = Job.When.DELAYED


def job_durations(job: Job, now: datetime) -> tuple[float | None, float | None]:
    """(duration, queued_duration) as GitLab's ``CommitStatus`` computes them when asked:
    a running job's duration grows until it finishes, a pending one's time in the queue
    until it starts (``calculate_duration(start, end || now)``). A duration a CI reported,
    or one stored when the job finished, stands."""
    duration, queued = job.duration, job.queued_duration
    if duration is None and job.started_at:
        duration = seconds_between(job.started_at, job.finished_at or now)
    if queued is None and job.queued_at:
        queued = seconds_between(job.queued_at, job.started_at or now)
    return duration, queued


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


def pipeline_target(current: str, composite: Status | None) -> str:
    """Map a composite status onto the pipeline the way GitLab's ``set_status`` does."""
    if composite is None or composite == Status.CREATED:
        return current  # GitLab has no event that moves a pipeline back to created
    if composite == Status.PENDING and current in _ENQUEUED_TO_RUNNING:
        return Status.RUNNING
    return composite


def apply_pipeline_status(
    pipeline: Pipeline, new_status: str, at: datetime, latest_jobs: Iterable[Job]
) -> None:
    """Set status and GitLab's times on the instance; the caller saves and signals.

    ``latest_jobs`` is read only when the pipeline completes (its duration is their running
    periods), so a lazy queryset costs nothing otherwise.
    """
    previous = pipeline.status
    pipeline.status = new_status
    pipeline.updated_at = at
    if new_status == Status.RUNNING and (previous in UNSTARTED_STATUSES or not pipeline.started_at):
        pipeline.started_at = at
    if new_status in FINISHED_STATUSES:  # GitLab's: a skipped pipeline has no finish time
        pipeline.finished_at = at
        periods = [
            (j.started_at, j.finished_at) for j in latest_jobs if j.started_at and j.finished_at
        ]
        if periods:
            pipeline.duration = union_seconds(periods)
        elif pipeline.started_at:
            pipeline.duration = whole_seconds(pipeline.started_at, at)
        else:
            pipeline.duration = None
    elif previous in COMPLETED_STATUSES:
        pipeline.finished_at = None
        pipeline.duration = None
    set_queued_duration(pipeline)


def apply_reported_times(
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
    if pipeline.status in FINISHED_STATUSES:
        if finished_at:
            pipeline.finished_at = finished_at
        if (started_at or finished_at) and pipeline.started_at and pipeline.finished_at:
            pipeline.duration = whole_seconds(pipeline.started_at, pipeline.finished_at)
    set_queued_duration(pipeline)
    return before != (pipeline.started_at, pipeline.finished_at, pipeline.duration)


# --- Durations -------------------------------------------------------------------------------


def seconds_between(start: datetime, end: datetime) -> float:
    """Seconds from ``start`` to ``end``, never negative: GitLab's job durations."""
    return max(0.0, (end - start).total_seconds())


def whole_seconds(start: datetime, end: datetime) -> int:
    """Whole seconds from ``start`` to ``end``, never negative: GitLab's pipeline durations."""
    return max(0, int((end - start).total_seconds()))


def union_seconds(periods: list[tuple[datetime, datetime]]) -> int:
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


def set_queued_duration(pipeline: Pipeline) -> None:
    """GitLab's ``queued_duration``: from creation to start, nil when it is 0."""
    if pipeline.started_at:
        pipeline.queued_duration = whole_seconds(pipeline.created_at, pipeline.started_at) or None
