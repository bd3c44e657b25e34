"""The beat jobs: queue what is due and has no message out, take back claims whose worker
died, and prune the delivery log."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from hooks.claims import (
    SWEEP_BATCH_SIZE,
    lease,
)
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.queue import enqueue_on_commit

logger = logging.getLogger(__name__)

PRUNE_BATCH_SIZE = 1000


def requeue_due_deliveries(now: datetime | None = None) -> int:
    """The sweeper: take back claims whose lease ran out (a worker died mid-request), then
    queue due deliveries that have no task message out (a retry came due, a message was
    lost). Returns how many it queued."""
    now = now or timezone.now()
    _take_back_expired_claims(now)
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


def prune_delivery_logs(now: datetime | None = None) -> int:
    """Delete attempts older than HOOKS_LOG_RETENTION_DAYS, finished deliveries older than
    that, and events left without deliveries. Pending deliveries are never pruned.
    Returns how many attempts were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HOOKS_LOG_RETENTION_DAYS)
    attempts_deleted, _ = DeliveryAttempt.objects.filter(created_at__lt=cutoff).delete()
    while True:
        old = list(
            Delivery.objects.filter(
                status__in=Delivery.FINISHED, finished_at__lt=cutoff
            ).values_list("pk", flat=True)[:PRUNE_BATCH_SIZE]
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
