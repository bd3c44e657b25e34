"""Deliveries as the outbox makes them, and the task messages it would send for them."""

from hooks.models import Delivery, Hook
from pipelines import services

SHA = "c" * 40


def new_delivery(hook: Hook, *, sha: str = SHA) -> Delivery:
    """A pipeline created through the services: its creation event's delivery to ``hook``."""
    services.create_pipeline(hook.project, ref="main", sha=sha)
    return hook.deliveries.order_by("-pk").first()


def queued_ids(callbacks) -> list[int]:
    """Delivery ids the on-commit callbacks would queue (``publish_deliveries(ids)``)."""
    return [pk for callback in callbacks for pk in callback.args[0]]
