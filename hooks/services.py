"""People's actions on hooks and their deliveries, for the admin and the hooks API alike.

Attempts a person asks for (a resend, a test, a bulk redelivery) never push a hook towards
being disabled; when one succeeds it re-enables the hook. Each action owns its transaction.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from hooks import limits, transport
from hooks.body_templates import TemplateError, body_to_send
from hooks.claims import enqueue_next_in_order, lease, start_attempt
from hooks.headers import request_for
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.payloads import build_job_payload, build_pipeline_payload, dump_payload
from hooks.queue import enqueue_on_commit
from hooks.results import (
    clear_health,
    locked_health,
    record_response,
    reenable_after_success,
)
from hooks.sealing import SecretUnreadable, revealed
from hooks.signing import generate_signing_secret, url_digest
from hooks.stats import count_attempts
from pipelines.errors import Conflict, DomainError
from pipelines.models import Job, Pipeline, Status

logger = logging.getLogger(__name__)


class NoPipelineError(DomainError):
    """A test event needs a pipeline (or a job) to describe."""

    status_code = 422


class DeliveryInProgress(Conflict):
    """A worker is sending this delivery right now."""


class TemplateRenderFailed(DomainError):
    """The hook's custom webhook template did not render to JSON (GitLab's words)."""

    status_code = 422


def _body_for(hook: Hook, body: str) -> str:
    try:
        return body_to_send(hook.custom_webhook_template, body)
    except TemplateError as failed:
        raise TemplateRenderFailed(failed.message) from None


class HookURLChanged(DomainError):
    """The hook's URL changed since the log entry was sent (GitLab's ``url_current?``): its
    body is not sent to the new URL, which may belong to someone else."""

    status_code = 422

    def __init__(self):
        super().__init__("The hook URL has changed, and this log entry cannot be retried")


# What a resend may be refused with; each says why in its message.
RESEND_REFUSALS = (DeliveryInProgress, HookURLChanged, TemplateRenderFailed, SecretUnreadable)


def url_current(attempt: DeliveryAttempt | None, hook: Hook) -> bool:
    """Whether ``attempt`` went to the hook's URL as it is now; true for a row that kept no
    digest (older than the rule) and when there is no attempt at all."""
    return (
        attempt is None
        or attempt.url_digest is None
        or attempt.url_digest == url_digest(revealed(hook.url))
    )


# What a hook keeps for its receiver only: cleared when the URL changes, unless given again
# in the same save (GitLab's reset_token / reset_custom_headers; the signing secret too).
SECRETS_OF_THE_RECEIVER = ("token", "signing_token", "custom_headers")


def url_changed(hook: Hook, url: str) -> bool:
    """GitLab's ``url_changed?``: any change of the stored URL string (host, path, query or
    credentials). A URL sent back masked was restored by ``check_url`` first, so it is not a
    change."""
    return bool(hook.pk) and url != revealed(hook.url)


def save_hook(hook: Hook, *, given: Collection[str] = SECRETS_OF_THE_RECEIVER) -> Hook:
    """What saving a hook does, for the API and the admin alike, in one transaction:

    - a new hook must fit the project's limit (``limits.HookLimitReached``);
    - when the URL changed since it was read, each secret of the receiver (token, signing
      secret, custom headers) not in ``given`` is cleared, so an edit cannot point the
      hook's secrets at another server (GitLab's ``reset_token``; Pipehook also clears the
      signing secret, which a new receiver could otherwise collect signatures under);
    - a collision with stored rows (the project deleted meanwhile) is a ``Conflict``.
    """
    with transaction.atomic():
        if hook.pk is None:
            limits.check_room_for_hooks(hook.project_id)
        else:
            stored_url = (
                Hook.objects.select_for_update(no_key=True)
                .filter(pk=hook.pk)
                .values_list("url", flat=True)
                .first()
            )
            # Fernet seals the same URL differently each time: a URL sealed anew is opened to
            # tell whether it changed, one of the few moments a secret is opened outside
            # sending (a person's save). The stored one, untouched, needs no opening.
            if (
                stored_url is not None
                and stored_url != hook.url
                and revealed(stored_url) != revealed(hook.url)
            ):
                for name in SECRETS_OF_THE_RECEIVER:
                    if name == "signing_token" and name not in given:
                        hook.replace_signing_token("")  # the rotation's earlier ones too
                    elif name not in given:
                        setattr(hook, name, {} if name == "custom_headers" else "")
        try:
            with transaction.atomic():
                hook.save()
        except IntegrityError:
            raise Conflict("The hook could not be saved: its project changed meanwhile.") from None
    return hook


def resend_delivery(
    delivery: Delivery,
    user: AbstractBaseUser | None = None,
    *,
    log_entry: DeliveryAttempt | None = None,
) -> DeliveryAttempt:
    """Send a delivery's event again now, synchronously: a new attempt with the same body
    and Idempotency-Key, logged with trigger "manual". A 2xx finishes a pending or failed
    delivery and re-enables the hook; a failure changes neither the delivery's schedule nor
    the hook's health. Raises ``DeliveryInProgress`` while a worker is sending it, and
    ``HookURLChanged`` when the hook's URL is no longer the one ``log_entry`` (by default
    the delivery's latest attempt) went to."""
    now = timezone.now()
    with transaction.atomic():
        # The delivery's row only: its event and hook are read, not locked (a worker
        # recording a failure holds the hook's row and may be claiming this delivery next).
        delivery = (
            Delivery.objects.select_for_update(of=("self",), no_key=True)
            .select_related("event", "hook")
            .get(pk=delivery.pk)
        )
        if log_entry is None:
            log_entry = delivery.attempts.order_by("-id").first()
        if not url_current(log_entry, delivery.hook):
            raise HookURLChanged()
        if (
            delivery.status == Delivery.Status.SENDING
            and delivery.claimed_until
            and delivery.claimed_until > now
        ):
            raise DeliveryInProgress(
                "This delivery is being sent right now; look at its attempts in a moment."
            )
        body = _body_for(delivery.hook, delivery.event.body)
        Delivery.objects.filter(pk=delivery.pk).update(attempt_count=F("attempt_count") + 1)
        attempt, headers = start_attempt(
            delivery.hook,
            delivery=delivery,
            body=body,
            idempotency_key=str(delivery.idempotency_key),
            event_uuid=str(delivery.event.uuid),
            attempt_number=delivery.attempt_count + 1,
            trigger=DeliveryAttempt.Trigger.MANUAL,
            object_kind=delivery.event.object_kind,
            user=user,
        )
    (result,) = transport.send_many([request_for(delivery.hook, body, headers)])
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
            reenable_after_success(
                delivery.hook_id, f"A resend {by(user)}succeeded (HTTP {result.status})."
            )
            if finished:
                enqueue_next_in_order([(delivery.hook_id, delivery.order_key)])
        count_attempt(attempt)
    return attempt


def resend_queued(delivery_ids: list[int], user_id: int | None) -> int:
    """The admin's queued "Resend selected": each delivery resent as ``resend_delivery``
    does, in the worker, logged with trigger "manual" and the person who asked. A delivery
    that succeeded stays succeeded whatever its resend gets; one that is refused (sending
    right now, its URL changed, its template fails) or gone is skipped with a log line.
    Returns how many were sent."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    sent = 0
    for delivery in Delivery.objects.filter(pk__in=delivery_ids).order_by("pk"):
        try:
            resend_delivery(delivery, user=user)
        except RESEND_REFUSALS as refusal:
            logger.warning("Delivery %s not resent: %s", delivery.pk, refusal.message)
            continue
        sent += 1
    return sent


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
    body = _body_for(hook, dump_payload(_test_payload(hook, object_kind)))
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
            reenable_after_success(
                hook.pk, f"A test event {by(user)}succeeded (HTTP {result.status})."
            )
        count_attempt(attempt)
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
        # GitLab's PipelinesFinder leaves child pipelines out.
        .exclude(source=Pipeline.Source.PARENT_PIPELINE)
        .select_related("project", "user")
        .order_by("-id")
        .first()
    )
    if pipeline is None:
        raise NoPipelineError("Ensure the project has CI pipelines.")
    return build_pipeline_payload(pipeline)


def count_attempt(attempt: DeliveryAttempt) -> None:
    """A person's request in the dashboard's rollup: last in its transaction, after the
    hook's row, in the order a worker's batch takes them (``hooks.stats``)."""
    count_attempts([(attempt.hook_id, timezone.now(), attempt.succeeded, attempt.duration_ms)])


def reenable_hook(hook: Hook, user: AbstractBaseUser | None = None) -> Hook:
    """Clear the failure count and any disable, and send what has been waiting."""
    with transaction.atomic():
        before = locked_health(hook.pk)
        if before is not None:
            who = f"by {user.get_username()}" if user is not None else "by hand"
            clear_health(hook.pk, before, f"Re-enabled {who}.")
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
        locked = Hook.objects.select_for_update(no_key=True).get(pk=hook.pk)
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


def by(user: AbstractBaseUser | None) -> str:
    """ "by <username> " for the state history, or nothing."""
    return f"by {user.get_username()} " if user is not None else ""
