"""Celery tasks: thin wrappers that pass ids to ``hooks.delivery`` and run ``hooks.sweeper``.

Messages carry ids only; every decision is made from the rows when the task runs, so a task
delivered twice (acks_late after a worker crash) finds its deliveries claimed or finished and
does nothing.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from hooks import delivery, sweeper

# The database being unreachable (restarting, SQLite's write lock held too long) fails a task
# before it could claim anything. Its message is tried again soon, 1, 2, 4 … 30 s apart for
# about two minutes, so deliveries resume within seconds of the database coming back rather
# than when their queued lease runs out and the sweeper sends them (which it still does if the
# outage lasts longer). Errors about the data itself are not tried again.
DATABASE_OUTAGE_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": False,
    "max_retries": 8,
}


@shared_task(acks_late=True, ignore_result=True, **DATABASE_OUTAGE_RETRY)
def deliver_batch(delivery_ids: list[int]) -> None:
    delivery.deliver_batch(delivery_ids, fill_from_backlog=True)


@shared_task(ignore_result=True)
def requeue_due_deliveries() -> int:
    return sweeper.requeue_due_deliveries()


@shared_task(ignore_result=True)
def prune_delivery_logs() -> int:
    return sweeper.prune_delivery_logs()
