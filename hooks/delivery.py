"""Sending deliveries: claim one, send it, log the attempt, decide what comes next.

A delivery moves ``pending -> sending -> succeeded | pending (retry) | failed``:

1. **Claim** with one conditional UPDATE: only a pending, due delivery whose hook is not
   disabled and that has no earlier unfinished delivery for the same (hook, pipeline) becomes
   ``sending``, with a lease. Whoever changes the row sends; everyone else does nothing, so a
   redelivered task message (acks_late, a crashed worker) never sends twice at once.
2. In the claim's transaction the attempt's log row is written with the request headers
   (secrets redacted). Then, outside any transaction, the one HTTP seam sends the stored body.
3. The result goes on the log row, and the delivery is finished (2xx, or the last attempt
   failed) or given its next attempt time in ``next_attempt_at`` (the retry schedule with
   jitter; 429/503 honour Retry-After). The sweeper sends due retries; a finished delivery
   immediately queues the next one of its pipeline, so order costs no sweep delay.
4. Hook health follows GitLab: each failure counts; from the 4th in a row the hook rests for
   1 minute doubling to 24 h; the 40th, or a 410 Gone, disables it until someone re-enables
   it; a success resets the count. Deliveries of a resting hook wait; none is dropped.

Attempts a person asks for (a resend, a test, a bulk redelivery) never push a hook towards
being disabled; when one succeeds it re-enables the hook.

Entry points for views: ``resend_delivery``, ``redeliver_failed_since``, ``send_test_event``,
``reenable_hook``. For tasks: ``deliver``, ``requeue_due_deliveries``, ``prune_delivery_logs``.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from importlib import metadata

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from hooks import signing, transport
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.payloads import build_pipeline_payload, dump_payload
from pipelines.errors import Conflict, ServiceError
from pipelines.models import Pipeline

logger = logging.getLogger(__name__)


def _pipehook_version() -> str:
    try:
        return metadata.version("pipehook")
    except metadata.PackageNotFoundError:
        return "0.1.0"


# Receivers written for GitLab look for "GitLab/"; the second product says who really sent it.
GITLAB_COMPATIBLE_VERSION = "18.10.0"
USER_AGENT = f"GitLab/{GITLAB_COMPATIBLE_VERSION} Pipehook/{_pipehook_version()}"
EVENT_HEADER = "Pipeline Hook"
REDACTED = "[REDACTED]"

# GitLab's log limits for what a receiver answered.
RESPONSE_HEADERS_KEPT = 50
RESPONSE_HEADER_VALUE_LIMIT = 1024

# GitLab's WebHooks::AutoDisabling.
TEMPORARY_DISABLE_FAILURES = 4
PERMANENT_DISABLE_FAILURES = 40
INITIAL_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=24)

SWEEP_BATCH_SIZE = 1000
PRUNE_BATCH_SIZE = 1000
UNFINISHED = (Delivery.Status.PENDING, Delivery.Status.SENDING)
FINISHED = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED)

# Headers every request sets itself (and hop-by-hop ones a custom header would break): a
# custom header with one of these names is left out.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "connection",
        "transfer-encoding",
        "idempotency-key",
        "x-gitlab-event",
        "x-gitlab-token",
        "x-gitlab-instance",
        "x-gitlab-webhook-uuid",
        "x-gitlab-event-uuid",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
SECRET_HEADERS = frozenset({"x-gitlab-token", "webhook-signature", "authorization"})


class NoPipelineError(ServiceError):
    """A test event needs a pipeline to describe."""

    status_code = 422


class DeliveryInProgress(Conflict):
    """A worker is sending this delivery right now."""


# --- Queueing ------------------------------------------------------------------------------


def publish_delivery(delivery_id: int) -> None:
    """Send the task message. If the broker is unreachable the row stays pending and the
    sweeper queues it again later, so the error is logged, not raised."""
    from hooks.tasks import deliver_hook  # tasks imports this module

    try:
        deliver_hook.delay(delivery_id)
    except Exception:
        logger.warning(
            "Could not queue delivery %s; the sweeper will queue it again",
            delivery_id,
            exc_info=True,
        )


def enqueue_on_commit(delivery_ids) -> None:
    """Queue these deliveries (ids only) once the current transaction commits."""
    for delivery_id in delivery_ids:
        transaction.on_commit(partial(publish_delivery, delivery_id))


def _hook_is_executable(now: datetime) -> Exists:
    return Exists(
        Hook.objects.filter(pk=OuterRef("hook_id"), permanently_disabled=False).filter(
            Q(disabled_until__isnull=True) | Q(disabled_until__lte=now)
        )
    )


def _has_earlier_unfinished() -> Exists:
    return Exists(
        Delivery.objects.filter(
            hook_id=OuterRef("hook_id"),
            order_key=OuterRef("order_key"),
            pk__lt=OuterRef("pk"),
            status__in=UNFINISHED,
        )
    )


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HOOKS_CLAIM_LEASE_SECONDS)


# --- Requests ------------------------------------------------------------------------------


def build_headers(hook: Hook, *, body: bytes, idempotency_key: str, event_uuid: str) -> dict:
    """GitLab's delivery headers (plus Standard Webhooks' when the hook has a signing
    secret) over the hook's custom headers, which can never replace them."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Gitlab-Event": EVENT_HEADER,
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Instance": settings.PIPEHOOK_EXTERNAL_URL,
        "X-Gitlab-Event-UUID": event_uuid,
        "Idempotency-Key": idempotency_key,
    }
    if hook.token:
        # GitLab strips line breaks, which would otherwise start a new header.
        headers["X-Gitlab-Token"] = hook.token.replace("\r", "").replace("\n", "")
    if hook.signing_token:
        headers.update(signing.signature_headers(hook.signing_token, idempotency_key, body))
    custom = {
        name: value
        for name, value in _custom_headers(hook).items()
        if isinstance(name, str)
        and isinstance(value, str)
        and name.lower() not in RESERVED_HEADERS
        and not any(c in name + value for c in "\r\n\0")
    }
    return {**custom, **headers}


def _custom_headers(hook: Hook) -> dict:
    # Saved through the form or API it is always {name: value}; a hand-edited row may not be.
    return hook.custom_headers if isinstance(hook.custom_headers, dict) else {}


def redact_headers(headers: dict[str, str], hook: Hook) -> dict[str, str]:
    """The request headers as the log keeps them: secrets and custom values masked."""
    custom = {name.lower() for name in _custom_headers(hook)}
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS or name.lower() in custom else value
        for name, value in headers.items()
    }


def _start_attempt(
    hook: Hook,
    *,
    delivery: Delivery | None,
    body: str,
    idempotency_key: str,
    event_uuid: str,
    attempt_number: int,
    trigger: str,
    user: AbstractBaseUser | None = None,
) -> tuple[DeliveryAttempt, dict[str, str]]:
    """Write the log row before sending (so a crash mid-request still leaves a trace)."""
    headers = build_headers(
        hook, body=body.encode(), idempotency_key=idempotency_key, event_uuid=event_uuid
    )
    attempt = DeliveryAttempt.objects.create(
        hook=hook,
        delivery=delivery,
        attempt_number=attempt_number,
        trigger=trigger,
        triggered_by=user if user is not None and user.is_authenticated else None,
        url=transport.redact_url(hook.url),
        request_headers=redact_headers(headers, hook),
        request_body=body if delivery is None else "",
    )
    return attempt, headers


def _send(hook: Hook, body: str, headers: dict[str, str]) -> transport.TransportResult:
    return transport.send(hook.url, body.encode(), headers, verify_ssl=hook.enable_ssl_verification)


def _clean_text(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL characters.
    return value.replace("\x00", "\ufffd")


def _record_response(attempt: DeliveryAttempt, result: transport.TransportResult) -> None:
    kept_headers = {
        _clean_text(name): _clean_text(value[:RESPONSE_HEADER_VALUE_LIMIT])
        for name, value in list(result.headers.items())[:RESPONSE_HEADERS_KEPT]
    }
    fields = {
        "response_status": result.status,
        "response_headers": kept_headers,
        "response_body": _clean_text(result.body.decode("utf-8", "replace")),
        "response_body_truncated": result.truncated,
        "duration_ms": result.duration_ms,
        "error": _clean_text(result.error),
        "succeeded": result.status is not None and 200 <= result.status < 300,
    }
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(**fields)
    for name, value in fields.items():
        setattr(attempt, name, value)


def _failure_text(result: transport.TransportResult) -> str:
    if result.status is not None and 200 <= result.status < 300:
        return ""
    return result.error or f"HTTP {result.status}"


# --- Retry policy --------------------------------------------------------------------------


def next_retry_delay(attempt_number: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait after failed attempt ``attempt_number`` (1-based), or None when that
    was the last one. HOOKS_RETRY_SCHEDULE lists the delay before each attempt; each delay
    gets ±HOOKS_RETRY_JITTER. A receiver's Retry-After is honoured when it asks for longer,
    up to HOOKS_RETRY_AFTER_MAX_SECONDS."""
    schedule = settings.HOOKS_RETRY_SCHEDULE
    if attempt_number >= len(schedule):
        return None
    jitter = settings.HOOKS_RETRY_JITTER
    delay = float(schedule[attempt_number]) * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.HOOKS_RETRY_AFTER_MAX_SECONDS))
    return delay


def retry_after_seconds(result: transport.TransportResult, now: datetime) -> float | None:
    """Retry-After of a 429 or 503, in seconds (delta-seconds or an HTTP date)."""
    if result.status not in (429, 503):
        return None
    value = next((v for k, v in result.headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def disable_backoff(failures: int) -> timedelta:
    """How long a hook rests after its ``failures``-th failure in a row (4th: 1 minute)."""
    exponent = failures - TEMPORARY_DISABLE_FAILURES
    if exponent >= 11:  # 2**11 minutes is already past a day
        return MAX_BACKOFF
    return min(INITIAL_BACKOFF * 2**exponent, MAX_BACKOFF)


# --- Hook health ---------------------------------------------------------------------------


def _record_success(hook_id: int, *, reenable: bool) -> None:
    hooks = Hook.objects.filter(pk=hook_id)
    if reenable:
        changed = hooks.filter(
            Q(recent_failures__gt=0)
            | Q(disabled_until__isnull=False)
            | Q(permanently_disabled=True)
        ).update(recent_failures=0, disabled_until=None, permanently_disabled=False)
        if changed:
            logger.info("Hook %s re-enabled by a successful request", hook_id)
            _wake_hook(hook_id)
    else:
        hooks.filter(Q(recent_failures__gt=0) | Q(disabled_until__isnull=False)).update(
            recent_failures=0, disabled_until=None
        )


def _record_failure(hook_id: int, *, gone: bool, now: datetime) -> None:
    hook = Hook.objects.select_for_update().get(pk=hook_id)
    failures = min(hook.recent_failures + 1, PERMANENT_DISABLE_FAILURES)
    fields: dict = {"recent_failures": failures}
    if gone or failures >= PERMANENT_DISABLE_FAILURES:
        fields["permanently_disabled"] = True
        logger.warning(
            "Hook %s disabled until re-enabled (%s)",
            hook_id,
            "the receiver answered 410 Gone" if gone else f"{failures} failures in a row",
        )
    elif failures >= TEMPORARY_DISABLE_FAILURES:
        fields["disabled_until"] = now + disable_backoff(failures)
        logger.warning(
            "Hook %s rests until %s after %s failures in a row",
            hook_id,
            fields["disabled_until"],
            failures,
        )
    Hook.objects.filter(pk=hook_id).update(**fields)


def _wake_hook(hook_id: int) -> None:
    """Queue the due deliveries at the head of each of the hook's pipelines now."""
    now = timezone.now()
    heads = (
        Delivery.objects.filter(hook_id=hook_id, status=Delivery.Status.PENDING)
        .filter(next_attempt_at__lte=now)
        .filter(~_has_earlier_unfinished())
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH_SIZE]
    )
    enqueue_on_commit(list(heads))


def _enqueue_next_in_order(delivery: Delivery) -> None:
    """The delivery finished: queue the next one of its (hook, pipeline) right away."""
    next_id = (
        Delivery.objects.filter(
            hook_id=delivery.hook_id,
            order_key=delivery.order_key,
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=timezone.now(),
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if next_id is not None:
        enqueue_on_commit([next_id])


# --- Deliver -------------------------------------------------------------------------------


def claim_delivery(delivery_id: int, now: datetime) -> bool:
    """The conditional UPDATE: True when this caller now holds the delivery.

    Every condition is on the delivery row itself or in EXISTS subqueries, so the database
    re-checks ``status = 'pending'`` on the row it locks: of two claims, one wins. Written in
    SQL because it runs once per delivery, and building the two subqueries through the ORM
    costs several times what running them does.
    """
    ops = connection.ops
    delivery_table = ops.quote_name(Delivery._meta.db_table)
    hook_table = ops.quote_name(Hook._meta.db_table)
    at = ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {delivery_table}
            SET status = %s, claimed_until = %s, attempt_count = attempt_count + 1
            WHERE id = %s AND status = %s AND next_attempt_at <= %s
              AND EXISTS (
                SELECT 1 FROM {hook_table} hook
                WHERE hook.id = {delivery_table}.hook_id
                  AND NOT hook.permanently_disabled
                  AND (hook.disabled_until IS NULL OR hook.disabled_until <= %s))
              AND NOT EXISTS (
                SELECT 1 FROM {delivery_table} earlier
                WHERE earlier.hook_id = {delivery_table}.hook_id
                  AND earlier.order_key = {delivery_table}.order_key
                  AND earlier.id < {delivery_table}.id
                  AND earlier.status IN (%s, %s))
            """,  # noqa: S608 (table names come from the models, values are parameters)
            [
                Delivery.Status.SENDING.value,
                ops.adapt_datetimefield_value(_lease(now)),
                delivery_id,
                Delivery.Status.PENDING.value,
                at,
                at,
                Delivery.Status.PENDING.value,
                Delivery.Status.SENDING.value,
            ],
        )
        return cursor.rowcount == 1


def deliver(delivery_id: int) -> DeliveryAttempt | None:
    """Send one delivery if it can be claimed; returns its attempt, or None when there was
    nothing to do (not due, hook disabled, an earlier one pending, or claimed elsewhere)."""
    now = timezone.now()
    with transaction.atomic():
        if not claim_delivery(delivery_id, now):
            return None
        delivery = Delivery.objects.select_related("event", "hook").get(pk=delivery_id)
        attempt, headers = _start_attempt(
            delivery.hook,
            delivery=delivery,
            body=delivery.event.body,
            idempotency_key=str(delivery.idempotency_key),
            event_uuid=str(delivery.event.uuid),
            attempt_number=delivery.attempt_count,
            trigger=(
                DeliveryAttempt.Trigger.MANUAL
                if delivery.manual_redelivery
                else DeliveryAttempt.Trigger.SCHEDULED
            ),
        )
    # No transaction is open while the request is on the network.
    result = _send(delivery.hook, delivery.event.body, headers)
    _finish_attempt(delivery, attempt, result)
    return attempt


def _finish_attempt(
    delivery: Delivery, attempt: DeliveryAttempt, result: transport.TransportResult
) -> None:
    now = timezone.now()
    with transaction.atomic():
        _record_response(attempt, result)
        if attempt.succeeded:
            outcome: dict = {"status": Delivery.Status.SUCCEEDED, "finished_at": now}
        else:
            delay = (
                None
                if delivery.manual_redelivery  # a person's redelivery is tried once
                else next_retry_delay(attempt.attempt_number, retry_after_seconds(result, now))
            )
            if delay is None:
                outcome = {"status": Delivery.Status.FAILED, "finished_at": now}
            else:
                outcome = {
                    "status": Delivery.Status.PENDING,
                    "next_attempt_at": now + timedelta(seconds=delay),
                }
        still_ours = Delivery.objects.filter(
            pk=delivery.pk,
            status=Delivery.Status.SENDING,
            attempt_count=attempt.attempt_number,
        ).update(
            claimed_until=None,
            queued_until=None,
            manual_redelivery=False,
            last_response_status=result.status,
            last_error=_clean_text(_failure_text(result)),
            **outcome,
        )
        if not still_ours:
            # The lease ran out and the sweeper took the delivery back: it will be sent again;
            # this attempt stays in the log and changes nothing else.
            logger.warning(
                "Delivery %s attempt %s finished after its claim expired; result logged only",
                delivery.pk,
                attempt.attempt_number,
            )
            return
        if attempt.succeeded:
            _record_success(delivery.hook_id, reenable=False)
        elif not delivery.manual_redelivery:
            _record_failure(delivery.hook_id, gone=result.status == 410, now=now)
        if outcome["status"] in FINISHED:
            _enqueue_next_in_order(delivery)


# --- Entry points for people (admin and API) -------------------------------------------------


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
        attempt, headers = _start_attempt(
            delivery.hook,
            delivery=delivery,
            body=delivery.event.body,
            idempotency_key=str(delivery.idempotency_key),
            event_uuid=str(delivery.event.uuid),
            attempt_number=delivery.attempt_count + 1,
            trigger=DeliveryAttempt.Trigger.MANUAL,
            user=user,
        )
    result = _send(delivery.hook, delivery.event.body, headers)
    with transaction.atomic():
        _record_response(attempt, result)
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
            _record_success(delivery.hook_id, reenable=True)
            if finished:
                _enqueue_next_in_order(delivery)
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
            queued_until=_lease(now),
        )
        enqueue_on_commit(ids)
    logger.info("Hook %s: %s failed deliveries queued again", hook.pk, count)
    return count


def send_test_event(hook: Hook, user: AbstractBaseUser | None = None) -> DeliveryAttempt:
    """GitLab's "Test": send the newest pipeline's payload now, synchronously, whatever the
    hook's health; a 2xx re-enables the hook. Logged with trigger "test" and no delivery.
    Raises ``NoPipelineError`` when the project has no pipeline yet."""
    pipeline = (
        Pipeline.objects.filter(project_id=hook.project_id)
        .select_related("project", "user")
        .order_by("-id")
        .first()
    )
    if pipeline is None:
        raise NoPipelineError("Ensure the project has CI pipelines.")
    body = dump_payload(build_pipeline_payload(pipeline))
    attempt, headers = _start_attempt(
        hook,
        delivery=None,
        body=body,
        idempotency_key=str(uuid.uuid4()),
        event_uuid=str(uuid.uuid4()),
        attempt_number=1,
        trigger=DeliveryAttempt.Trigger.TEST,
        user=user,
    )
    result = _send(hook, body, headers)
    with transaction.atomic():
        _record_response(attempt, result)
        if attempt.succeeded:
            _record_success(hook.pk, reenable=True)
    return attempt


def reenable_hook(hook: Hook) -> Hook:
    """Clear the failure count and any disable, and send what has been waiting."""
    with transaction.atomic():
        Hook.objects.filter(pk=hook.pk).update(
            recent_failures=0, disabled_until=None, permanently_disabled=False
        )
        _wake_hook(hook.pk)
    hook.refresh_from_db()
    return hook


# --- Beat tasks ------------------------------------------------------------------------------


def requeue_due_deliveries(now: datetime | None = None) -> int:
    """The sweeper: take back claims whose lease ran out (a worker died mid-request), then
    queue due deliveries that have no task message out (a retry came due, a message was
    lost). Returns how many it queued."""
    now = now or timezone.now()
    _take_back_expired_claims(now)
    with transaction.atomic():
        due = list(
            Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now))
            .filter(_hook_is_executable(now))
            .filter(~_has_earlier_unfinished())
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH_SIZE]
        )
        if due:
            Delivery.objects.filter(pk__in=due, status=Delivery.Status.PENDING).update(
                queued_until=_lease(now)
            )
            enqueue_on_commit(due)
    return len(due)


def _take_back_expired_claims(now: datetime) -> None:
    expired = list(
        Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_until__lt=now).values_list(
            "pk", "attempt_count"
        )[:SWEEP_BATCH_SIZE]
    )
    for delivery_id, attempt_number in expired:
        with transaction.atomic():
            taken = Delivery.objects.filter(
                pk=delivery_id,
                status=Delivery.Status.SENDING,
                attempt_count=attempt_number,
                claimed_until__lt=now,
            ).update(
                status=Delivery.Status.PENDING,
                claimed_until=None,
                queued_until=None,
                next_attempt_at=now,
                last_error="the worker stopped before the attempt finished",
            )
            if taken:
                DeliveryAttempt.objects.filter(
                    delivery_id=delivery_id,
                    attempt_number=attempt_number,
                    response_status__isnull=True,
                    error="",
                ).update(error="No result: the worker stopped before this attempt finished.")
                logger.warning(
                    "Delivery %s: claim expired during attempt %s; sending it again",
                    delivery_id,
                    attempt_number,
                )


def prune_delivery_logs(now: datetime | None = None) -> int:
    """Delete attempts older than HOOKS_LOG_RETENTION_DAYS, finished deliveries older than
    that, and events left without deliveries. Pending deliveries are never pruned.
    Returns how many attempts were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HOOKS_LOG_RETENTION_DAYS)
    attempts_deleted, _ = DeliveryAttempt.objects.filter(created_at__lt=cutoff).delete()
    while True:
        old = list(
            Delivery.objects.filter(status__in=FINISHED, finished_at__lt=cutoff).values_list(
                "pk", flat=True
            )[:PRUNE_BATCH_SIZE]
        )
        if not old:
            break
        Delivery.objects.filter(pk__in=old).delete()
    while True:
        orphans = list(
            Event.objects.filter(created_at__lt=cutoff)
            .filter(~Exists(Delivery.objects.filter(event_id=OuterRef("pk"))))
            .values_list("pk", flat=True)[:PRUNE_BATCH_SIZE]
        )
        if not orphans:
            break
        Event.objects.filter(pk__in=orphans).delete()
    if attempts_deleted:
        logger.info("Pruned %s delivery attempts older than %s", attempts_deleted, cutoff)
    return attempts_deleted
