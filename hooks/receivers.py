"""Domain signal -> transactional outbox (Event + Delivery rows).

``pipeline_changed`` is sent inside the transaction that changed the pipeline, so the rows
written here commit or roll back with the change itself: no event without its state, no
state without its event. The payload is rendered once, here, as the snapshot of this status;
every attempt and every signature later uses exactly these bytes.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.dispatch import receiver
from django.utils import timezone

from hooks.models import Delivery, Event, Hook
from hooks.payloads import build_pipeline_payload, dump_payload
from hooks.queue import enqueue_on_commit
from pipelines.models import Pipeline
from pipelines.signals import pipeline_changed

logger = logging.getLogger(__name__)


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


@receiver(pipeline_changed, dispatch_uid="hooks.write_pipeline_outbox")
def write_pipeline_outbox(
    sender, pipeline: Pipeline, previous_status: str | None, change: str, **kwargs
) -> Event | None:
    """Write one Event and a Delivery per interested hook; queue them when the change
    commits. Nothing is written when no hook is interested."""
    # Read once per command: its creation and status change of one pipeline share the list.
    project_hooks = pipeline.recall(
        "pipeline_hooks",
        lambda: list(Hook.objects.filter(project_id=pipeline.project_id, pipeline_events=True)),
    )
    hooks = [hook for hook in project_hooks if hook_wants(hook, pipeline)]
    if not hooks:
        return None
    event = Event.objects.create(
        project_id=pipeline.project_id,
        pipeline=pipeline,
        object_kind="pipeline",
        change=str(change),
        status=str(pipeline.status),
        previous_status=previous_status,
        body=dump_payload(build_pipeline_payload(pipeline)),
    )
    now = timezone.now()
    # The task messages sent on commit cover the first lease; after it the sweeper resends.
    queued_until = now + timedelta(seconds=settings.HOOKS_CLAIM_LEASE_SECONDS)
    deliveries = Delivery.objects.bulk_create(
        [
            Delivery(
                event=event,
                hook=hook,
                order_key=pipeline.pk,
                next_attempt_at=now,
                queued_until=queued_until,
            )
            for hook in hooks
        ]
    )
    enqueue_on_commit([d.pk for d in deliveries])
    return event
