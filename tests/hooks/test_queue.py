"""The broker seam: a message the broker refuses never fails the change that wrote its rows."""

import logging

import pytest

from config.celery import app as celery_app
from hooks.models import Delivery
from pipelines import services
from tests.factories import HookFactory, ProjectFactory


@pytest.fixture
def refusing_broker(settings, closed_port):
    """A broker URL nothing listens on, in a connection pool of its own."""
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.pool.force_close_all()
    celery_app._pool = None
    yield
    celery_app.pool.force_close_all()
    celery_app._pool = None


def test_a_refused_message_leaves_its_deliveries_to_the_next_sweep(
    transactional_db, refusing_broker, settings, caplog
):
    settings.HOOKS_BATCH_SIZE = 1
    project = ProjectFactory()
    hooks = [HookFactory(project=project) for _ in range(2)]

    with caplog.at_level(logging.ERROR):
        services.create_pipeline(project, ref="main", sha="c" * 40)  # commits, then publishes

    deliveries = Delivery.objects.filter(hook__in=hooks)
    assert deliveries.count() == 2  # the change and its outbox rows stand
    # Each of the two messages was tried and refused; neither waits for its lease.
    assert list(deliveries.values_list("queued_until", flat=True)) == [None, None]
    refusals = [
        r.getMessage() for r in caplog.records if "Could not queue deliveries" in r.getMessage()
    ]
    assert len(refusals) == 2
