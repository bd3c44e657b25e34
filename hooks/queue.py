"""The broker seam: task messages for deliveries, sent by the task's name once the rows commit.

Messages carry delivery ids only, in chunks of up to HOOKS_BATCH_SIZE (never more than
MAX_BATCH_SIZE). The rows are the truth, so publishing is best-effort: a pending delivery
remembers until when a message is believed queued (``Delivery.queued_until``); a message
that never left costs a sweep, a message lost with the broker costs a lease, never the event.

The task is named, not imported (as NetBox's ``enqueue('extras.webhooks.send_webhook')``):
the worker's code imports this module, never the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial, update_wrapper

from celery import signature
from django.conf import settings
from django.db import transaction

from hooks.models import Delivery

logger = logging.getLogger(__name__)

DELIVER_BATCH_TASK = "hooks.tasks.deliver_batch"
RESEND_TASK = "hooks.tasks.resend_deliveries"
# The most ids one task message carries, whatever HOOKS_BATCH_SIZE says: keeps every
# statement of a batch well within SQLite's limit on parameters.
MAX_BATCH_SIZE = 1000


class PublishFailed(Exception):
    """The broker did not take a task message; its deliveries wait for the next sweep."""


def publish(delivery_ids: list[int]) -> None:
    """Send one task message for these ids. When the broker does not take it, the rows are
    marked as having no message out, so the sweeper's next run queues them (not a lease
    later), and ``PublishFailed`` says so; ``enqueue_on_commit`` logs it and goes on."""
    try:
        signature(DELIVER_BATCH_TASK, args=(delivery_ids,)).delay()
    except Exception as error:
        forget(delivery_ids)
        raise PublishFailed(
            f"Could not queue deliveries {delivery_ids} ({error}); the sweeper will queue"
            " them again"
        ) from error


def forget(delivery_ids: list[int]) -> None:
    """No message is out for these deliveries: let the sweeper's next run queue them, instead
    of waiting for the lease that assumed one was."""
    try:
        Delivery.objects.filter(pk__in=delivery_ids, status=Delivery.Status.PENDING).update(
            queued_until=None
        )
    except Exception as error:  # the database may be down too: the lease still runs out
        logger.warning("Could not mark deliveries %s as unqueued: %s", delivery_ids, error)


def forget_queued_messages() -> int:
    """A worker has (re)connected to the broker and cannot know which task messages survived
    (a restarted Redis that saved nothing has lost them all): every pending delivery is made
    due for the sweeper's next run, instead of waiting for the lease that assumed its message
    was queued. A message that did survive then finds its delivery taken and stops at a read.
    Returns how many deliveries it changed."""
    return Delivery.objects.filter(
        status=Delivery.Status.PENDING, queued_until__isnull=False
    ).update(queued_until=None)


def enqueue_on_commit(delivery_ids: Iterable[int]) -> None:
    """Queue these deliveries once the current transaction commits: ids only, in messages
    of up to HOOKS_BATCH_SIZE ids, each sent (claimed, logged) as one batch.

    ``robust``: a message the broker refuses is logged and the others are still sent; the
    commit that wrote the rows has happened and stands. (Django names a failing callback by
    its ``__qualname__``, which a bare ``partial`` lacks, hence ``update_wrapper``.)
    """
    ids = list(delivery_ids)
    size = min(max(1, settings.HOOKS_BATCH_SIZE), MAX_BATCH_SIZE)
    for start in range(0, len(ids), size):
        send = update_wrapper(partial(publish, ids[start : start + size]), publish)
        transaction.on_commit(send, robust=True)


def publish_retry(delivery_ids: list[int], due_at: datetime) -> None:
    """One task message for these retries, held by the broker's consumer until ``due_at``.
    Best-effort on top of the sweeper: the rows keep no ``queued_until`` for it, so a
    message refused or lost costs a sweep, as before."""
    try:
        signature(DELIVER_BATCH_TASK, args=(delivery_ids,)).apply_async(eta=due_at)
    except Exception as error:
        logger.warning(
            "Could not queue retries %s (%s); the sweeper will queue them", delivery_ids, error
        )


def enqueue_retries_on_commit(retries: Iterable[tuple[int, datetime]]) -> None:
    """Queue these (delivery id, due at) retries, to be sent when due, once the current
    transaction commits: one message for retries due within RETRY_MESSAGE_WINDOW of each
    other (at the latest one's time), of up to HOOKS_BATCH_SIZE ids.

    Without it a retry went out at the first sweep after it came due: up to a sweep interval
    late, and the (hook, pipeline) stream behind it with it. A receiver that refused a burst
    of connections for a moment held its pipelines' later events for the first retry's delay
    plus as much again (the path benchmark's 4 s run taking 9 to 13)."""
    size = min(max(1, settings.HOOKS_BATCH_SIZE), MAX_BATCH_SIZE)
    group: list[int] = []
    group_due: datetime | None = None
    started: datetime | None = None
    for delivery_id, due_at in sorted(retries, key=lambda retry: (retry[1], retry[0])):
        if started is not None and (due_at - started > RETRY_MESSAGE_WINDOW or len(group) == size):
            _publish_retry_on_commit(group, group_due)
            group, started = [], None
        started = started or due_at
        group.append(delivery_id)
        group_due = due_at
    if group:
        _publish_retry_on_commit(group, group_due)


# Retries due this close together share a message (the earliest waits this long at most).
RETRY_MESSAGE_WINDOW = timedelta(milliseconds=250)


def _publish_retry_on_commit(delivery_ids: list[int], due_at: datetime) -> None:
    send = update_wrapper(partial(publish_retry, list(delivery_ids), due_at), publish_retry)
    transaction.on_commit(send, robust=True)


def publish_resends(delivery_ids: list[int], user_id: int | None) -> None:
    """One task message: resend these deliveries, as asked by ``user_id``."""
    try:
        signature(RESEND_TASK, args=(delivery_ids, user_id)).delay()
    except Exception as error:  # nothing was written for them: the person asks again
        logger.warning("Could not queue resends of deliveries %s: %s", delivery_ids, error)


def queue_resends_on_commit(delivery_ids: list[int], user_id: int | None) -> None:
    """Queue a person's resends once the current transaction commits (the admin's
    "Resend selected"): a worker sends them, one after the other, as ``resend_delivery``."""
    if delivery_ids:
        send = update_wrapper(partial(publish_resends, delivery_ids, user_id), publish_resends)
        transaction.on_commit(send, robust=True)
