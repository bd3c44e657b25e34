"""Celery tasks: thin wrappers that pass ids to ``hooks.delivery``.

Messages carry ids only; every decision is made from the rows when the task runs, so a task
delivered twice (acks_late after a worker crash) finds its deliveries claimed or finished and
does nothing.
"""

from celery import shared_task

from hooks import delivery


@shared_task(acks_late=True, ignore_result=True)
def deliver_batch(delivery_ids: list[int]) -> None:
    delivery.deliver_batch(delivery_ids, fill_from_backlog=True)


@shared_task(ignore_result=True)
def requeue_due_deliveries() -> int:
    return delivery.requeue_due_deliveries()


@shared_task(ignore_result=True)
def prune_delivery_logs() -> int:
    return delivery.prune_delivery_logs()
