"""Domain signals -> transactional outbox (Event + Delivery rows).

``pipeline_changed`` and ``job_changed`` are sent inside the transaction that changed the
pipeline or job, so the rows written here commit or roll back with the change itself: no
event without its state, no state without its event. The payload is rendered once, here, as
the snapshot of this status; every attempt and every signature later uses exactly these bytes.

Job and pipeline events of one pipeline share one order per hook: their deliveries have the
pipeline's id as ``order_key``, go out in id order (``Delivery.objects.first_in_line``), and
are written in the order the changes happened (a job's change is signalled before the
pipeline change it causes). Each delivery gets the next ``sequence`` of its (hook, pipeline)
stream when it is written; the pipeline's row lock, held by every change, keeps two writers
of one stream apart.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db.models import Max, Q
from django.dispatch import receiver
from django.utils import timezone

from hooks import metrics
from hooks.models import Delivery, Event, Hook
from hooks.payloads import build_job_payload, build_pipeline_payload, dump_payload
from hooks.queue import enqueue_on_commit
from pipelines.models import FINISHED_STATUSES, Job, Pipeline, Status
from pipelines.prepared import PreparedQuery, PreparedValues, bulk_insert, create_new
from pipelines.signals import PipelineChange, job_changed, pipeline_changed

logger = logging.getLogger(__name__)

# The statuses whose entry sends a Job Hook, as GitLab's Ci::Build fires BuildHooksWorker:
# on entry to pending, running, success, failed and canceled; never for manual, scheduled,
# skipped, preparing, waiting_for_resource, canceling, nor for a move back to created.
JOB_HOOK_STATUSES = frozenset(
    {Status.PENDING, Status.RUNNING, Status.SUCCESS, Status.FAILED, Status.CANCELED}
)
# A new job sends one too (GitLab's after_create), in the status it starts in.
NEW_JOB_HOOK_STATUSES = JOB_HOOK_STATUSES | {Status.CREATED}


def ref_matches(hook: Hook, ref: str) -> bool:
    """The hook's ref filter: all refs, a wildcard (``*`` matches anything, ``/`` too, as
    GitLab's branch filter), or a regular expression searched in the ref."""
    pattern = hook.ref_filter
    if hook.ref_filter_strategy == Hook.RefFilterStrategy.ALL or not pattern:
        return True
    if hook.ref_filter_strategy == Hook.RefFilterStrategy.WILDCARD:
        return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), ref) is not None
    try:
        return re.search(pattern, ref) is not None
    except re.error:
        # Refused when saved; an old row with a broken pattern matches nothing, loudly.
        logger.warning("Hook %s has an invalid ref_filter regex %r", hook.pk, pattern)
        return False


def hook_wants(hook: Hook, pipeline: Pipeline) -> bool:
    """Whether ``hook`` subscribes to this pipeline's current status on its ref. Disabled
    hooks still want it: their deliveries wait until they are enabled again."""
    if not hook.pipeline_events:
        return False
    if hook.status_filter and pipeline.status not in hook.status_filter:
        return False
    return ref_matches(hook, pipeline.ref)


def hook_wants_job(hook: Hook, pipeline: Pipeline) -> bool:
    """Whether ``hook`` subscribes to the job events of this pipeline: job events on and the
    ref filter passed. The status filter is on pipeline statuses: it never holds a job's
    event back (GitLab's hooks have no status filter at all)."""
    return hook.job_events and ref_matches(hook, pipeline.ref)


def sends_job_hook(job: Job, previous_status: str | None) -> bool:
    """Whether this change of ``job`` is one GitLab sends a Job Hook for."""
    if previous_status is None:
        return job.status in NEW_JOB_HOOK_STATUSES
    return job.status != previous_status and job.status in JOB_HOOK_STATUSES


def project_hooks(pipeline: Pipeline) -> list[Hook]:
    """The project's hooks that take pipeline or job events: read once per command, so a
    pipeline's creation, its jobs' changes and its status change share one read."""
    return pipeline.recall("project_hooks", lambda: CI_HOOKS_OF_PROJECT(pipeline.project_id))


# Its SQL built once (pipelines.prepared): every pipeline change and job change reads it.
CI_HOOKS_OF_PROJECT = PreparedQuery(
    lambda project_id: Hook.objects.filter(project_id=project_id).filter(
        Q(pipeline_events=True) | Q(job_events=True)
    )
)


# The last X-Pipehook-Sequence of each of these hooks' streams of one pipeline; its SQL built
# once per number of hooks (pipelines.prepared): the first outbox write of a command reads it.
LAST_SEQUENCES = PreparedValues(
    lambda hook_ids, order_key: (
        Delivery.objects.filter(hook__in=hook_ids, order_key=order_key)
        .order_by()
        .values("hook_id")
        .annotate(last=Max("sequence"))
        .values_list("hook_id", "last")
    )
)


@receiver(pipeline_changed, dispatch_uid="hooks.write_pipeline_outbox")
def write_pipeline_outbox(
    sender, pipeline: Pipeline, previous_status: str | None, change: str, **kwargs
) -> Event | None:
    """Write one Event and a Delivery per interested hook; queue them when the change
    commits. Nothing is written when no hook is interested."""
    hooks = [hook for hook in project_hooks(pipeline) if hook_wants(hook, pipeline)]
    if not hooks:
        return None
    event = create_new(
        Event(
            project_id=pipeline.project_id,
            pipeline=pipeline,
            object_kind=Event.Kind.PIPELINE,
            change=str(change),
            status=str(pipeline.status),
            previous_status=previous_status,
            body=dump_payload(build_pipeline_payload(pipeline)),
        )
    )
    write_deliveries(event, hooks, pipeline)
    return event


@receiver(job_changed, dispatch_uid="hooks.write_job_outbox")
def write_job_outbox(
    sender, job: Job, pipeline: Pipeline, previous_status: str | None, **kwargs
) -> Event | None:
    """A Job Hook for each interested hook when GitLab would send one for this change;
    written like a pipeline's, in the same (hook, pipeline) order."""
    if not sends_job_hook(job, previous_status):
        return None
    hooks = [hook for hook in project_hooks(pipeline) if hook_wants_job(hook, pipeline)]
    if not hooks:
        return None
    if previous_status is None:
        change = PipelineChange.CREATED
    elif job.status in FINISHED_STATUSES:
        change = PipelineChange.FINISHED
    else:
        change = PipelineChange.STATUS_CHANGED
    event = create_new(
        Event(
            project_id=pipeline.project_id,
            pipeline=pipeline,
            object_kind=Event.Kind.BUILD,
            job_id=job.pk,
            change=str(change),
            status=str(job.status),
            previous_status=previous_status,
            body=dump_payload(build_job_payload(job, pipeline)),
        )
    )
    write_deliveries(event, hooks, pipeline)
    return event


def write_deliveries(event: Event, hooks: list[Hook], pipeline: Pipeline) -> list[Delivery]:
    """One Delivery of ``event`` per hook, each the next of its (hook, pipeline) stream,
    queued when the transaction commits."""
    # The streams' last numbers, read once per command and counted on in memory: the
    # pipeline's row lock, held by the whole command, keeps other writers of them out.
    last_sequence = pipeline.recall("last_sequences", dict)
    unknown = [hook for hook in hooks if hook.pk not in last_sequence]
    if unknown:
        found = dict(LAST_SEQUENCES(tuple(hook.pk for hook in unknown), pipeline.pk))
        for hook in unknown:
            last_sequence[hook.pk] = found.get(hook.pk) or 0
    for hook in hooks:
        last_sequence[hook.pk] += 1
    now = timezone.now()
    # The task messages sent on commit cover the first lease; after it the sweeper resends.
    queued_until = now + timedelta(seconds=settings.HOOKS_CLAIM_LEASE_SECONDS)
    # Both INSERTs built once (pipelines.prepared): the ORM building them was a fifth of a
    # status post with ten hooks. Made with the ids, not the objects: nothing reads them back.
    deliveries = bulk_insert(
        [
            Delivery(
                event_id=event.pk,
                hook_id=hook.pk,
                order_key=pipeline.pk,
                sequence=last_sequence[hook.pk],
                next_attempt_at=now,
                queued_until=queued_until,
            )
            for hook in hooks
        ]
    )
    enqueue_on_commit([d.pk for d in deliveries])
    # Counted now, not on commit (a change that then fails is counted, and is rare): the
    # on-commit callbacks are the deliveries' messages alone.
    metrics.EVENTS.labels(kind=event.object_kind).inc()
    return deliveries
