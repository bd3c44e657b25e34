"""The beat tasks: the sweeper that queues due and stuck deliveries, and the log pruner."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from hooks.claims import claim_delivery
from hooks.delivery import deliver
from hooks.models import Delivery, DeliveryAttempt, Event
from hooks.sweeper import prune_delivery_logs, requeue_due_deliveries
from hooks.tasks import deliver_batch
from pipelines import services
from tests.factories import HookFactory

SHA = "d" * 40


def queued_ids(callbacks) -> list[int]:
    return [pk for callback in callbacks for pk in callback.args[0]]


def new_delivery(hook) -> Delivery:
    services.create_pipeline(hook.project, ref="main", sha=SHA)
    return hook.deliveries.order_by("-pk").first()


def test_sweeper_queues_due_deliveries_whose_message_was_lost(
    project, django_capture_on_commit_callbacks
):
    hook = HookFactory(project=project)
    delivery = new_delivery(hook)
    # Just created: the message sent on commit is still believed queued.
    with django_capture_on_commit_callbacks() as callbacks:
        assert requeue_due_deliveries() == 0
    assert callbacks == []
    # A lease later, nothing has claimed it: the message was lost, send another, once.
    Delivery.objects.filter(pk=delivery.pk).update(queued_until=timezone.now())
    with django_capture_on_commit_callbacks() as callbacks:
        assert requeue_due_deliveries() == 1
        assert requeue_due_deliveries() == 0
    assert queued_ids(callbacks) == [delivery.pk]


def test_sweeper_queues_retries_that_came_due_and_nothing_else(
    project, django_capture_on_commit_callbacks
):
    hook = HookFactory(project=project)
    due = new_delivery(hook)
    not_yet = new_delivery(hook)
    resting_hook = HookFactory(project=project, disabled_until=timezone.now() + timedelta(hours=1))
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    head, behind = hook.deliveries.filter(order_key=pipeline.pk).order_by("pk")
    now = timezone.now()
    Delivery.objects.filter(pk=not_yet.pk).update(next_attempt_at=now + timedelta(minutes=5))
    Delivery.objects.update(queued_until=None)
    Delivery.objects.filter(pk=head.pk).update(next_attempt_at=now + timedelta(minutes=5))

    with django_capture_on_commit_callbacks() as callbacks:
        requeue_due_deliveries(now=now)
    queued = queued_ids(callbacks)
    assert due.pk in queued
    assert not_yet.pk not in queued  # not due
    assert behind.pk not in queued  # waits for the one before it
    assert not resting_hook.deliveries.filter(pk__in=queued).exists()  # hook resting
    assert Delivery.objects.get(pk=due.pk).queued_until > now


def test_sweeper_takes_back_a_claim_whose_worker_died(
    project, receiver, django_capture_on_commit_callbacks
):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = new_delivery(hook)
    # A worker claimed it and wrote the attempt's log row, then was killed.
    assert claim_delivery(delivery.pk, timezone.now())
    DeliveryAttempt.objects.create(hook=hook, delivery=delivery, attempt_number=1, url=hook.url)
    assert deliver(delivery.pk) is None  # the redelivered message finds it claimed

    # The lease runs out.
    Delivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now())
    with django_capture_on_commit_callbacks() as callbacks:
        requeue_due_deliveries()
    assert queued_ids(callbacks) == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING and delivery.claimed_until is None
    assert "worker stopped" in DeliveryAttempt.objects.get(delivery=delivery).error

    # The next attempt goes out and is numbered after the lost one.
    attempt = deliver(delivery.pk)
    assert attempt.attempt_number == 2 and len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED


def test_sweeper_leaves_a_live_claim_alone(project, django_capture_on_commit_callbacks):
    hook = HookFactory(project=project)
    delivery = new_delivery(hook)
    claim_delivery(delivery.pk, timezone.now())
    with django_capture_on_commit_callbacks() as callbacks:
        requeue_due_deliveries(now=timezone.now() + timedelta(seconds=1))
    assert callbacks == []
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENDING


def test_prune_deletes_old_logs_and_finished_deliveries_only(settings, project, receiver):
    settings.HOOKS_LOG_RETENTION_DAYS = 14
    hook = HookFactory(project=project, url=receiver.url)
    old_done, recent_done, old_pending = (new_delivery(hook) for _ in range(3))
    deliver(old_done.pk)
    deliver(recent_done.pk)
    long_ago = timezone.now() - timedelta(days=15)
    Delivery.objects.filter(pk=old_done.pk).update(finished_at=long_ago)
    DeliveryAttempt.objects.filter(delivery=old_done).update(created_at=long_ago)
    Event.objects.filter(pk__in=[old_done.event_id, old_pending.event_id]).update(
        created_at=long_ago
    )
    Delivery.objects.filter(pk=old_pending.pk).update(created_at=long_ago)

    assert prune_delivery_logs() == 1

    assert not Delivery.objects.filter(pk=old_done.pk).exists()
    assert not Event.objects.filter(pk=old_done.event_id).exists()
    assert Delivery.objects.filter(pk=recent_done.pk).exists()
    assert DeliveryAttempt.objects.filter(delivery=recent_done).count() == 1
    # Waiting deliveries, and their events, are never pruned.
    assert Delivery.objects.get(pk=old_pending.pk).status == Delivery.Status.PENDING
    assert Event.objects.filter(pk=old_pending.event_id).exists()


def test_deliver_batch_task_acks_late_and_delivers(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    deliveries = [new_delivery(hook) for _ in range(3)]
    assert deliver_batch.acks_late is True
    deliver_batch([d.pk for d in deliveries])  # called directly: the task is only a wrapper
    assert len(receiver.requests) == 3


def test_beat_schedule_runs_the_sweeper_and_the_pruner():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks == {"hooks.tasks.requeue_due_deliveries", "hooks.tasks.prune_delivery_logs"}
