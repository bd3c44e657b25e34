"""The beat jobs: queue what is due and has no message out, take back claims whose worker
died, and prune the delivery log and the signing secrets a rotation's grace has ended for."""

from __future__ import annotations

import itertools
import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from hooks import stats
from hooks.claims import (
    SWEEP_BATCH_SIZE,
    lease,
)
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.notices import publish_untold
from hooks.queue import enqueue_on_commit

logger = logging.getLogger(__name__)

PRUNE_BATCH_SIZE = 1000
# After each batch the write lock is free this long: a writer waiting on it goes first.
PRUNE_PAUSE_SECONDS = 0.005
# A line in the log every this many batches (a million rows at the default size).
PRUNE_PROGRESS_EVERY = 1000


def requeue_due_deliveries(now: datetime | None = None) -> int:
    """The sweeper: take back claims whose lease ran out (a worker died mid-request), then
    queue due deliveries that have no task message out (a retry came due, a message was
    lost). Returns how many it queued."""
    now = now or timezone.now()
    _take_back_expired_claims(now)
    publish_untold(now)
    # The hook may be sent to, and no probe of it is out (the probe goes out alone).
    sendable_hooks = Hook.objects.executable(now).without_probe_out(now)
    with transaction.atomic():
        due = list(
            Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now))
            .filter(Exists(sendable_hooks.filter(pk=OuterRef("hook_id"))))
            .first_in_line()
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH_SIZE]
        )
        if due:
            Delivery.objects.filter(pk__in=due, status=Delivery.Status.PENDING).update(
                queued_until=lease(now)
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


def prune_delivery_logs(now: datetime | None = None, *, batch_size: int = PRUNE_BATCH_SIZE) -> int:
    """Delete attempts older than HOOKS_LOG_RETENTION_DAYS, finished deliveries older than
    that, and events left without deliveries. Pending deliveries are never pruned.
    Returns how many attempts were deleted.

    In batches of ``batch_size`` rows, each its own short transaction with a pause after it,
    so that writers (a worker recording its batch, SQLite's single writer above all) wait
    for one batch at most, never for the whole prune of a large log."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HOOKS_LOG_RETENTION_DAYS)
    # Oldest first, along the created_at index.
    attempts = _delete_in_batches(
        DeliveryAttempt.objects.filter(created_at__lt=cutoff).order_by("created_at"), batch_size
    )
    _delete_in_batches(
        Delivery.objects.filter(status__in=Delivery.FINISHED, finished_at__lt=cutoff).order_by(
            "pk"
        ),
        batch_size,
    )
    _delete_in_batches(
        Event.objects.filter(created_at__lt=cutoff)
        .filter(~Exists(Delivery.objects.filter(event_id=OuterRef("pk"))))
        .order_by("pk"),
        batch_size,
    )
    stats.prune(cutoff)
    if attempts:
        logger.info("Pruned %s delivery attempts older than %s", attempts, cutoff)
    return attempts


def _delete_in_batches(queryset: QuerySet, batch_size: int) -> int:
    """Delete the rows of ``queryset``, ``batch_size`` at a time; returns how many (of its
    own model: the attempts a delivery takes with it are not counted)."""
    model = queryset.model
    label = model._meta.label
    deleted = 0
    for batch in itertools.count(1):
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        _, per_model = model.objects.filter(pk__in=ids).delete()
        deleted += per_model.get(label, 0)
        if batch % PRUNE_PROGRESS_EVERY == 0:
            logger.info("Pruning %s: %s deleted so far", model._meta.verbose_name_plural, deleted)
        time.sleep(PRUNE_PAUSE_SECONDS)
    return deleted


def drop_expired_signing_secrets(now: float | None = None) -> int:
    """Forget the earlier signing secrets whose grace after a rotation has ended (sending
    ignores them already). Returns how many hooks changed."""
    now = time.time() if now is None else now
    changed = 0
    rotated = Hook.objects.exclude(previous_signing_tokens=[]).values_list("pk", flat=True)
    for hook_id in list(rotated[:PRUNE_BATCH_SIZE]):
        with transaction.atomic():
            hook = Hook.objects.select_for_update(no_key=True).filter(pk=hook_id).first()
            if hook is None:
                continue
            valid = hook.previous_signing_secrets(now)
            if valid != hook.previous_signing_tokens:
                hook.previous_signing_tokens = valid
                hook.save(update_fields=["previous_signing_tokens"])
                changed += 1
    if changed:
        logger.info("Dropped expired signing secrets of %s hook(s)", changed)
    return changed
