"""The commands of the pipeline domain: every change to a project, pipeline or job.

Each public function owns its transaction, follows GitLab's state machines
(``pipelines.status``) and sends ``pipeline_changed`` inside that transaction for the
creation and for each real status change of a pipeline, and ``job_changed`` for each new job
and each real status change of a job (``save_job``), so whatever listens (the hooks app)
commits its rows with the change. Refusals raise ``pipelines.errors`` and change nothing.
Runs a CI reports whole, with the dialects' own records, are ``pipelines.reports``; runs of
definitions, ``pipelines.executions``; tokens, ``pipelines.auth``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from pipelines.errors import Conflict, InvalidInput, TransitionRefused
from pipelines.models import (
    CANCELABLE_STATUSES,
    COMPLETED_STATUSES,
    UNKNOWN_SHA,
    Job,
    Pipeline,
    PipelineDefinition,
    Project,
    Status,
)
from pipelines.prepared import PreparedQuery, create_new, save_existing
from pipelines.signals import PipelineChange, job_changed, pipeline_changed
from pipelines.status import (
    apply_job_status,
    apply_pipeline_status,
    apply_reported_times,
    check_job_move,
    compose_status,
    pipeline_target,
    validate_status,
)

logger = logging.getLogger(__name__)

# What external CI may report through the commit status API, as GitLab accepts it.
COMMIT_STATUS_STATES = ("pending", "running", "success", "failed", "canceled", "skipped")

# GitLab puts external commit statuses in a stage after every pipeline stage.
EXTERNAL_STAGE = "external"
EXTERNAL_STAGE_IDX = 1_000_000


# --- Pipelines -------------------------------------------------------------------------------


def signed_in(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    """The user to record as acting; None for an anonymous caller."""
    return user if user is not None and user.is_authenticated else None


def change_pipeline_status(
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
    apply_pipeline_status(pipeline, new_status, at, _latest_jobs(pipeline))
    if reported_times:
        apply_reported_times(pipeline, *reported_times)
    save_existing(pipeline)
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


def lock_pipeline(pipeline: Pipeline | int) -> Pipeline:
    """Re-read the pipeline (or the one with this id) under a row lock so concurrent job
    reports compose in turn.

    Only the pipeline's row is locked (``of``): its project's stays free for the reports of
    the project's other pipelines.
    """
    pipeline_id = pipeline if isinstance(pipeline, int) else pipeline.pk
    return (
        Pipeline.objects.select_for_update(of=("self",))
        .select_related("project", "user")
        .get(pk=pipeline_id)
    )


def _latest_jobs(pipeline: Pipeline):
    """The latest jobs the command keeps in memory, else a query for them."""
    jobs = pipeline.loaded_latest_jobs()
    return jobs if jobs is not None else pipeline.latest_jobs()


def recompose(pipeline: Pipeline, at: datetime) -> bool:
    target = pipeline_target(pipeline.status, compose_status(_latest_jobs(pipeline)))
    return change_pipeline_status(pipeline, target, at)


# The reads of every pipeline's creation, their SQL built once (pipelines.prepared).
PROJECT_FOR_UPDATE = PreparedQuery(lambda pk: Project.objects.select_for_update().filter(pk=pk))
HIGHEST_IID = PreparedQuery(
    lambda project_id: (
        Pipeline.objects.filter(project_id=project_id).order_by("-iid").only("id", "iid")[:1]
    )
)
# What a new pipeline takes from an earlier report of its commit.
COMMIT_FIELDS = (
    "commit_message",
    "commit_title",
    "commit_timestamp",
    "commit_author_name",
    "commit_author_email",
)
NEWEST_OF_COMMIT = PreparedQuery(
    lambda project_id, sha: (
        Pipeline.objects.filter(project_id=project_id, sha=sha)
        .order_by("-id")
        .only("id", *COMMIT_FIELDS)[:1]
    )
)


def _next_iid(project: Project) -> int:
    # Lock the project row so two creations in parallel cannot take the same iid. The highest
    # iid is read by a second statement: on PostgreSQL a statement sees the rows committed
    # when it began, so one that waited for the lock would still read the highest iid from
    # before the other creation.
    PROJECT_FOR_UPDATE(project.pk)
    highest = HIGHEST_IID(project.pk)
    return (highest[0].iid if highest else 0) + 1


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
    pipeline = create_pipeline_in_command(
        project, ref=ref, sha=sha, source=source, user=user, variables=variables, at=at, **fields
    )
    pipeline.forget_loaded()
    return pipeline


def create_pipeline_in_command(
    project: Project,
    *,
    ref: str,
    sha: str,
    source: str,
    user: AbstractBaseUser | None,
    variables: list[dict] | None,
    at: datetime | None,
    **fields,
) -> Pipeline:
    """``create_pipeline`` for a command that goes on with the new row: it keeps what it
    knows of it (no jobs yet) until that command forgets it."""
    if not ref:
        raise InvalidInput("ref is missing")
    if not sha:
        raise InvalidInput("sha is missing")
    if source not in Pipeline.Source.values:
        raise InvalidInput(f"source {source!r} is not one of: {', '.join(Pipeline.Source.values)}")
    at = at or timezone.now()
    with transaction.atomic():
        pipeline = create_new(
            Pipeline(
                project=project,
                iid=_next_iid(project),
                ref=ref,
                sha=sha,
                source=source,
                user=signed_in(user),
                variables=normalize_variables(variables or []),
                status=Status.CREATED,
                created_at=at,
                updated_at=at,
                **fields,
            )
        )
        pipeline.project = project
        pipeline.remember("latest_jobs", [])
        pipeline.keep_coverage()  # none: it has no jobs yet
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
            **known_commit_fields(project, sha),
            **fields,
        )


def known_commit_fields(project: Project, sha: str) -> dict:
    """What an earlier report told us about this commit."""
    known = NEWEST_OF_COMMIT(project.pk, sha)
    return {name: getattr(known[0], name) for name in COMMIT_FIELDS} if known else {}


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
        pipeline = lock_pipeline(pipeline)
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
        return change_pipeline_status(pipeline, pipeline_target(pipeline.status, target), at)


def retry_pipeline(pipeline: Pipeline, *, user: AbstractBaseUser | None = None) -> Pipeline:
    """Retry the failed and canceled jobs; a finished pipeline goes back to running.

    As GitLab's ``Ci::RetryPipelineService``, nothing to retry is no refusal: the pipeline
    comes back unchanged (the API still answers 201). The jobs of an ``external`` pipeline
    are commit statuses, which GitLab never retries (``GenericCommitStatus#retryable?``):
    the CI that reported them reports the next attempt.
    """
    at = timezone.now()
    with transaction.atomic():
        pipeline = lock_pipeline(pipeline)
        jobs = list(pipeline.latest_jobs())
        retryable = [j for j in jobs if j.status in (Status.FAILED, Status.CANCELED)]
        if pipeline.source == Pipeline.Source.EXTERNAL:
            retryable = []
        reason = _nothing_to_retry(pipeline, jobs, retryable)
        if reason:
            logger.info("Pipeline %s: retry changed nothing: %s", pipeline.pk, reason)
            pipeline.keep_coverage()
            return pipeline
        for old in retryable:
            Job.objects.filter(pk=old.pk).update(retried=True, updated_at=at)
            _clone_job_for_retry(old, pipeline, user=user, at=at)
        if jobs:
            recompose(pipeline, at)
        else:
            change_pipeline_status(pipeline, Status.RUNNING, at)
        pipeline.keep_coverage()  # the instance is the row as saved: nothing to read again
    return pipeline


def _nothing_to_retry(pipeline: Pipeline, jobs: list[Job], retryable: list[Job]) -> str | None:
    if pipeline.source == Pipeline.Source.EXTERNAL:
        return "the jobs of an external pipeline are commit statuses, retried by their CI"
    if jobs and not retryable:
        return "it has no failed or canceled jobs"
    if not jobs and pipeline.status not in (Status.FAILED, Status.CANCELED):
        return f"it is {pipeline.status}"
    return None


def _clone_job_for_retry(
    old: Job, pipeline: Pipeline, *, user: AbstractBaseUser | None, at: datetime
) -> Job:
    job = Job(
        pipeline=pipeline,
        stage=old.stage,
        stage_idx=old.stage_idx,
        name=old.name,
        status=Status.PENDING,
        when=old.when,
        manual=old.manual,
        allow_failure=old.allow_failure,
        user=signed_in(user) or old.user,
        created_at=at,
        queued_at=at,
        updated_at=at,
        environment=old.environment,
        target_url=old.target_url,
        description=old.description,
    )
    save_job(job, pipeline, previous_status=None)
    return job


def cancel_pipeline(pipeline: Pipeline) -> Pipeline:
    """Cancel every job that can still be canceled; a pipeline without jobs is canceled.

    As GitLab's ``Ci::CancelPipelineService``: a pipeline is cancelable while one of its jobs
    is and it is not ``external`` (``Ci::Pipeline#cancelable?``: the CI that reports it
    decides), and manual jobs stay manual (they are not running, and can still be played).
    Nothing to cancel is no refusal: the pipeline comes back unchanged, as GitLab's API
    answers it.
    """
    at = timezone.now()
    with transaction.atomic():
        pipeline = lock_pipeline(pipeline)
        jobs = list(pipeline.latest_jobs())
        cancelable = [job for job in jobs if job.status in CANCELABLE_STATUSES]
        nothing_to_cancel = not cancelable if jobs else pipeline.status not in CANCELABLE_STATUSES
        if nothing_to_cancel or pipeline.source == Pipeline.Source.EXTERNAL:
            reason = "it is external" if not nothing_to_cancel else f"it is {pipeline.status}"
            logger.info("Pipeline %s: cancel changed nothing: %s", pipeline.pk, reason)
            pipeline.keep_coverage()
            return pipeline
        for job in cancelable:
            previous = job.status
            apply_job_status(job, Status.CANCELED, at)
            save_job(job, pipeline, previous)
        if jobs:
            recompose(pipeline, at)
        else:
            change_pipeline_status(pipeline, Status.CANCELED, at)
        pipeline.keep_coverage()  # the instance is the row as saved: nothing to read again
    return pipeline


def delete_pipeline(pipeline: Pipeline) -> None:
    with transaction.atomic():
        pipeline.delete()


# --- Jobs ----------------------------------------------------------------------------------


def save_job(job: Job, pipeline: Pipeline, previous_status: str | None) -> None:
    """Save a job and, when it is new (``previous_status`` None) or entered another status,
    send ``job_changed`` in the caller's transaction, before the pipeline is recomposed."""
    if job._state.adding:
        create_new(job)
    else:
        save_existing(job)
    if previous_status is None or previous_status != job.status:
        job_changed.send(sender=Job, job=job, pipeline=pipeline, previous_status=previous_status)


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
        pipeline = lock_pipeline(pipeline)
        job = Job(pipeline=pipeline, name=name, created_at=at, updated_at=at, **fields)
        if target != Status.CREATED:
            check_job_move(job, target)
            apply_job_status(job, target, at)
        save_job(job, pipeline, previous_status=None)
        recompose(pipeline, at)
    return job


def update_job(job: Job, *, status: str | None = None, at: datetime | None = None, **fields) -> Job:
    """Change a job's status (GitLab's job state machine) and fields; recompose its pipeline.

    Explicit times in ``fields`` (started_at, finished_at...) win over the moment of change,
    for dialects that report when things happened.
    """
    _check_job_fields(fields)
    at = at or timezone.now()
    with transaction.atomic():
        pipeline = lock_pipeline(job.pipeline)
        job = Job.objects.select_for_update().get(pk=job.pk)
        previous = job.status
        for key, value in fields.items():
            setattr(job, key, value)
        if status is not None and status != job.status:
            target = validate_status(status)
            check_job_move(job, target)
            apply_job_status(job, target, at)
        save_job(job, pipeline, previous)
        recompose(pipeline, at)
    return job


def stage_index(pipeline: Pipeline, stage: str) -> int:
    """Keep stages in the order they were first reported."""
    for job in pipeline.loaded_latest_jobs() or ():
        if job.stage == stage:
            return job.stage_idx
    known = pipeline.jobs.filter(stage=stage).values_list("stage_idx", flat=True).first()
    if known is not None:
        return known
    highest = pipeline.jobs.exclude(stage_idx=EXTERNAL_STAGE_IDX).aggregate(m=Max("stage_idx"))["m"]
    return 0 if highest is None else highest + 1


# --- Projects --------------------------------------------------------------------------------


def create_project(*, name: str, path: str | None = None, **fields) -> Project:
    if not name or not name.strip():
        raise InvalidInput("name is missing")
    path = path or slugify(name)
    if not path:
        raise InvalidInput("path is missing")
    namespace = fields.get("namespace") or "root"
    if Project.objects.filter(namespace=namespace, path=path).exists():
        raise InvalidInput(f"path {namespace}/{path} has already been taken")
    try:
        with transaction.atomic():
            return Project.objects.create(name=name.strip(), path=path, **fields)
    except IntegrityError:  # another request took the path between the check and the insert
        raise Conflict.about("path", "has already been taken") from None


# --- Pipeline definitions --------------------------------------------------------------------


def save_definition(definition: PipelineDefinition, **changes) -> PipelineDefinition:
    """Create or edit a definition with ``changes``: the model's rules, then a name unique
    among the project's definitions of its kind (else a ``Conflict`` about ``name``)."""
    for field, value in changes.items():
        setattr(definition, field, value)
    try:
        definition.full_clean(exclude=["project"], validate_constraints=False)
    except ValidationError as invalid:
        problems = invalid.message_dict
        message = "; ".join(
            f"{field}: {text}" for field, texts in problems.items() for text in texts
        )
        raise InvalidInput(message, fields=problems) from None
    taken = PipelineDefinition.objects.filter(
        project=definition.project, kind=definition.kind, name=definition.name
    ).exclude(pk=definition.pk)
    if taken.exists():
        raise Conflict.about("name", "has already been taken")
    try:
        with transaction.atomic():
            definition.save()
    except IntegrityError:  # created by someone else between the check and the save
        raise Conflict.about("name", "has already been taken") from None
    return definition


def delete_definition(definition: PipelineDefinition) -> None:
    """Delete a definition; the executions started from it stay, without it."""
    with transaction.atomic():
        definition.delete()
