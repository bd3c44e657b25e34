"""People's actions on hooks and their deliveries, for the admin and the hooks API alike.

Attempts a person asks for (a resend, a test, a bulk redelivery) never push a hook towards
being disabled; when one succeeds it re-enables the hook. Each action owns its transaction.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hooks import transport
from hooks.claims import enqueue_next_in_order, lease, start_attempt
from hooks.headers import request_for
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.payloads import build_job_payload, build_pipeline_payload, dump_payload
from hooks.queue import enqueue_on_commit
from hooks.results import (
    CLEAR_HEALTH,
    record_response,
    reenable_after_success,
    wake_hook,
)
from hooks.signing import generate_signing_secret
from pipelines.errors import Conflict, DomainError
from pipelines.models import Job, Pipeline, Status

logger = logging.getLogger(__name__)


class NoPipelineError(DomainError):
    """A test event needs a pipeline (or a job) to describe."""

    status_code = 422


class DeliveryInProgress(Conflict):
    """A worker is sending this delivery right now."""


def resend_delivery(delivery: Delivery, user: AbstractBaseUser | None = None) -> DeliveryAttempt:
    """Send a delivery's event again now, synchronously: a new attempt with the same body
    and Idempotency-Key, logged with trigger "manual". A 2xx finishes a pending or failed
    delivery and re-enables the hook; a failure changes neither the delivery's schedule nor
    the hook's health. Raises ``DeliveryInProgress`` while a worker is sending it."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update().select_related("event", "hook").get(pk=delivery.pk)
        )
        if (
            delivery.status == Delivery.Status.SENDING
            and delivery.claimed_until
            and delivery.claimed_until > now
        ):
            raise DeliveryInProgress(
                "This delivery is being sent right now; look at its attempts in a moment."
            )
        Delivery.objects.filter(pk=delivery.pk).update(attempt_count=F("attempt_count") + 1)
        attempt, headers = start_attempt(
            delivery.hook,
            delivery=delivery,
            body=delivery.event.body,
            idempotency_key=str(delivery.idempotency_key),
            event_uuid=str(delivery.event.uuid),
            attempt_number=delivery.attempt_count + 1,
            trigger=DeliveryAttempt.Trigger.MANUAL,
            object_kind=delivery.event.object_kind,
            user=user,
        )
    (result,) = transport.send_many([request_for(delivery.hook, delivery.event.body, headers)])
    with transaction.atomic():
        record_response(attempt, result)
        if attempt.succeeded:
            finished = Delivery.objects.filter(
                pk=delivery.pk, status__in=(Delivery.Status.PENDING, Delivery.Status.FAILED)
            ).update(
                status=Delivery.Status.SUCCEEDED,
                finished_at=timezone.now(),
                last_response_status=result.status,
                last_error="",
                queued_until=None,
                manual_redelivery=False,
            )
            reenable_after_success(delivery.hook_id)
            if finished:
                enqueue_next_in_order([(delivery.hook_id, delivery.order_key)])
    return attempt


def redeliver_failed_since(hook: Hook, since: datetime) -> int:
    """Queue every failed delivery of ``hook`` created at or after ``since`` for one more
    attempt each (trigger "manual", not retried if it fails); returns how many.

    They keep their pipeline order and wait while the hook is disabled: re-enable it first.
    """
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            hook.deliveries.filter(status=Delivery.Status.FAILED, created_at__gte=since)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        count = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.FAILED).update(
            status=Delivery.Status.PENDING,
            manual_redelivery=True,
            next_attempt_at=now,
            finished_at=None,
            queued_until=lease(now),
        )
        enqueue_on_commit(ids)
    logger.info("Hook %s: %s failed deliveries queued again", hook.pk, count)
    return count


def send_test_event(
    hook: Hook, user: AbstractBaseUser | None = None, *, object_kind: str = Event.Kind.PIPELINE
) -> DeliveryAttempt:
    """GitLab's "Test": send the newest pipeline's payload (a Pipeline Hook) or the newest
    job's (a Job Hook) now, synchronously, whatever the hook's health; a 2xx re-enables the
    hook. Logged with trigger "test" and no delivery. Raises ``NoPipelineError`` when the
    project has no pipeline, or no job, to describe."""
    body = dump_payload(_test_payload(hook, object_kind))
    attempt, headers = start_attempt(
        hook,
        delivery=None,
        body=body,
        idempotency_key=str(uuid.uuid4()),
        event_uuid=str(uuid.uuid4()),
        attempt_number=1,
        trigger=DeliveryAttempt.Trigger.TEST,
        object_kind=object_kind,
        user=user,
    )
    (result,) = transport.send_many([request_for(hook, body, headers)])
    with transaction.atomic():
        record_response(attempt, result)
        if attempt.succeeded:
            reenable_after_success(hook.pk)
    return attempt


def _test_payload(hook: Hook, object_kind: str) -> dict:
    if object_kind == Event.Kind.BUILD:
        # GitLab's job_events_data: the project's newest job by id that is not "created"
        # (retried attempts count).
        job = (
            Job.objects.filter(pipeline__project_id=hook.project_id)
            .exclude(status=Status.CREATED)
            .select_related("pipeline__project", "user")
            .order_by("-id")
            .first()
        )
        if job is None:
            raise NoPipelineError("Ensure the project has CI jobs.")
        return build_job_payload(job, job.pipeline)
    pipeline = (
        Pipeline.objects.filter(project_id=hook.project_id)
        .select_related("project", "user")
        .order_by("-id")
        .first()
    )
    if pipeline is None:
        raise NoPipelineError("Ensure the project has CI pipelines.")
    return build_pipeline_payload(pipeline)


def reenable_hook(hook: Hook) -> Hook:
    """Clear the failure count and any disable, and send what has been waiting."""
    with transaction.atomic():
        Hook.objects.filter(pk=hook.pk).update(**CLEAR_HEALTH)
        wake_hook(hook.pk)
    hook.refresh_from_db()
    return hook


# A rotation keeps at most this many earlier secrets (the newest); each is one more signature
# on every request. Rotations are rate-limited, so only a rotation loop reaches it.
MAX_PREVIOUS_SIGNING_SECRETS = 10


@dataclass(frozen=True)
class RotatedSecret:
    """A rotation's outcome: the new secret (to show once, never stored in the clear) and
    until when the one it replaced still signs deliveries (None: there was none, or no
    grace is configured)."""

    secret: str
    previous_valid_until: datetime | None


def rotate_signing_token(hook: Hook) -> RotatedSecret:
    """Give the hook a new signing secret. The current one stays valid for
    HOOKS_SIGNING_SECRET_GRACE_SECONDS: until then every delivery carries a signature with
    each, so receivers verifying with either accept it. Earlier secrets already expired are
    dropped now. ``hook`` is updated in place."""
    new_secret = generate_signing_secret()
    grace = settings.HOOKS_SIGNING_SECRET_GRACE_SECONDS
    with transaction.atomic():
        # Two rotations at once: the second sees the first's secret as the current one.
        locked = Hook.objects.select_for_update().get(pk=hook.pk)
        now = time.time()
        previous = locked.previous_signing_secrets(now)
        valid_until = None
        if locked.signing_token and grace > 0:
            expires_at = math.ceil(now + grace)
            previous.insert(0, {"secret": locked.signing_token, "expires_at": expires_at})
            valid_until = datetime.fromtimestamp(expires_at, tz=UTC)
        locked.signing_token = new_secret
        locked.previous_signing_tokens = previous[:MAX_PREVIOUS_SIGNING_SECRETS]
        locked.save(update_fields=["signing_token", "previous_signing_tokens", "updated_at"])
    hook.signing_token = locked.signing_token
    hook.previous_signing_tokens = locked.previous_signing_tokens
    hook.updated_at = locked.updated_at
    logger.info(
        "Hook %s: signing secret rotated; %s earlier secret(s) still valid",
        hook.pk,
        len(locked.previous_signing_tokens),
    )
    return RotatedSecret(new_secret, valid_until)
