"""config/celery.py: what a worker does around each task."""

import time

import pytest
from celery import signals
from django.db import connection

from config.postgresql.base import QUIET_CHECK_SECONDS
from tests.database_server import backend_pid, end_on_the_server


def test_a_task_starts_on_a_new_connection_when_the_database_dropped_the_kept_one(
    transactional_db,
):
    """A database restart drops every kept connection; the next task must not fail on one."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite connections are open files: there is no server to drop them")
    kept = backend_pid()
    end_on_the_server(kept)
    # Kept since its last task for longer than its socket alone is trusted: asked to answer.
    connection.last_used_at -= QUIET_CHECK_SECONDS + 1

    signals.task_prerun.send(sender=None, task_id="t", task=None, args=(), kwargs={})

    assert backend_pid() != kept  # no "terminating connection" error: a new connection


def test_a_connection_a_task_used_just_now_is_replaced_when_the_database_dropped_it(
    transactional_db,
):
    """Right after a task the check asks no query; the dropped connection must still go."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite connections are open files: there is no server to drop them")
    kept = backend_pid()
    signals.task_postrun.send(sender=None, task_id="t", task=None, args=(), kwargs={})
    end_on_the_server(kept)
    time.sleep(0.1)  # the server's goodbye reaches the socket

    signals.task_prerun.send(sender=None, task_id="t", task=None, args=(), kwargs={})

    assert backend_pid() != kept


def test_a_task_keeps_a_connection_that_still_works(transactional_db):
    """The check replaces broken connections only: a working one is kept across tasks."""
    connection.ensure_connection()
    kept = connection.connection
    signals.task_prerun.send(sender=None, task_id="t", task=None, args=(), kwargs={})
    signals.task_postrun.send(sender=None, task_id="t", task=None, args=(), kwargs={})
    assert connection.connection is kept


def test_connecting_to_the_broker_makes_deliveries_with_a_message_out_due_again(
    transactional_db,
):
    """The broker may have lost every message: the next sweep queues them, not the lease."""
    from datetime import timedelta

    from django.utils import timezone

    from config.celery import ForgetQueuedMessages
    from tests.factories import DeliveryFactory, EventFactory, PipelineFactory

    event = EventFactory(pipeline=PipelineFactory())
    later = timezone.now() + timedelta(hours=1)
    queued = DeliveryFactory(event=event, hook__project=event.project, queued_until=later)
    sent = DeliveryFactory(
        event=event, hook__project=event.project, status="succeeded", queued_until=later
    )

    ForgetQueuedMessages.__new__(ForgetQueuedMessages).start(consumer=None)

    queued.refresh_from_db()
    sent.refresh_from_db()
    assert queued.queued_until is None
    assert sent.queued_until == later  # finished deliveries are left as they are
