"""Deliveries as the outbox makes them, and the task messages it would send for them."""

from hooks import queue, tasks
from hooks.models import Delivery, Hook
from hooks.queue import publish
from pipelines import services

SHA = "c" * 40


def new_delivery(hook: Hook, *, sha: str = SHA) -> Delivery:
    """A pipeline created through the services: its creation event's delivery to ``hook``."""
    services.create_pipeline(hook.project, ref="main", sha=sha)
    return hook.deliveries.order_by("-pk").first()


def queued_ids(callbacks) -> list[int]:
    """Delivery ids the on-commit callbacks would queue (``publish(ids)``); other callbacks
    (the notices of a hook's state change) are not deliveries."""
    return [
        pk
        for callback in callbacks
        if getattr(callback, "func", None) is publish
        for pk in callback.args[0]
    ]


def run_queued_resends(callbacks) -> None:
    """What a worker does with the resend messages the on-commit callbacks would queue."""
    for callback in callbacks:
        if getattr(callback, "func", None) is queue.publish_resends:
            tasks.resend_deliveries(*callback.args)
