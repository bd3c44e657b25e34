"""Hook health against a real receiver on 127.0.0.1: what GitLab's auto-disable rules
(``hooks.policy``, tested alone in ``test_policy.py``) make of a receiver that is down while
deliveries pile up, then comes back.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from hooks.claims import claim_deliveries, claimable_deliveries
from hooks.delivery import deliver_batch
from hooks.models import Delivery, Hook
from hooks.sweeper import requeue_due_deliveries
from pipelines import services
from tests.factories import HookFactory
from tests.hooks.deliveries import queued_ids
from tests.hooks.receiver import Reply

# --- A receiver that goes away and comes back --------------------------------------------------


@pytest.fixture(autouse=True)
def predictable_retries(settings):
    settings.HOOKS_RETRY_SCHEDULE = [0, 5, 300, 1800, 7200]
    settings.HOOKS_RETRY_JITTER = 0
    settings.HOOKS_SEND_CONCURRENCY = 10
    settings.HOOKS_BATCH_SIZE = 50


def backlog(hook: Hook, pipelines: int) -> list[int]:
    """One pending creation delivery per pipeline, as a burst of CI reports leaves them."""
    for number in range(pipelines):
        services.create_pipeline(hook.project, ref="main", sha=f"{number:040x}")
    return list(hook.deliveries.order_by("pk").values_list("pk", flat=True))


def pass_time(hook: Hook, seconds: float) -> None:
    """Move the hook's clock on: every stored time of it and its deliveries comes nearer."""
    shift = timedelta(seconds=seconds)
    hook = Hook.objects.get(pk=hook.pk)
    Hook.objects.filter(pk=hook.pk).update(
        disabled_until=hook.disabled_until and hook.disabled_until - shift,
        probe_until=hook.probe_until and hook.probe_until - shift,
    )
    for delivery in hook.deliveries.filter(status=Delivery.Status.PENDING):
        Delivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=delivery.next_attempt_at - shift
        )


def sit_out_the_rest(hook: Hook) -> None:
    hook.refresh_from_db()
    assert hook.disabled_until is not None and hook.disabled_until > timezone.now()
    pass_time(hook, (hook.disabled_until - timezone.now()).total_seconds() + 1)


def key_of(delivery_id: int) -> str:
    return str(Delivery.objects.get(pk=delivery_id).idempotency_key)


def test_a_resting_hooks_backlog_sends_one_probe_not_forty(
    project, receiver, django_capture_on_commit_callbacks
):
    hook = HookFactory(project=project, url=receiver.url)
    ids = backlog(hook, 40)
    receiver.default = Reply(500)

    deliver_batch(ids)  # the receiver is down: every delivery fails once

    hook.refresh_from_db()
    assert len(receiver.requests) == 40
    assert (hook.recent_failures, hook.permanently_disabled) == (4, False)
    assert Delivery.objects.filter(pk__in=ids, failure_counted=True).count() == 4

    # Each time a rest ends, one delivery goes out alone, the earliest whose event never
    # counted; while it fails the other 39 wait. Its failure counts: the rest doubles.
    for sent, probe, count, rest in [
        (41, ids[4], 5, 120),
        (42, ids[5], 6, 240),
        (43, ids[6], 7, 480),
    ]:
        sit_out_the_rest(hook)
        before = timezone.now()
        deliver_batch(ids)
        hook.refresh_from_db()
        assert len(receiver.requests) == sent
        assert receiver.requests[-1].header("Idempotency-Key") == key_of(probe)
        assert hook.recent_failures == count
        assert before + timedelta(seconds=rest) <= hook.disabled_until
        assert hook.disabled_until <= timezone.now() + timedelta(seconds=rest)
        assert (hook.probe_delivery_id, hook.probe_until) == (None, None)

    # Back: the probe succeeds, and everything that waited is queued at once, retries due
    # in half an hour included.
    receiver.default = Reply(200)
    sit_out_the_rest(hook)
    later = timezone.now() + timedelta(minutes=30)
    Delivery.objects.filter(pk__in=ids[:7]).update(next_attempt_at=later)
    with django_capture_on_commit_callbacks() as callbacks:
        deliver_batch(ids)
    hook.refresh_from_db()
    assert len(receiver.requests) == 44
    assert receiver.requests[-1].header("Idempotency-Key") == key_of(ids[7])
    assert (hook.recent_failures, hook.disabled_until) == (0, None)
    assert sorted(queued_ids(callbacks)) == [pk for pk in ids if pk != ids[7]]

    deliver_batch(sorted(queued_ids(callbacks)))
    assert set(hook.deliveries.values_list("status", flat=True)) == {"succeeded"}
    assert len(receiver.requests) == 83
    hook.refresh_from_db()
    assert (hook.recent_failures, hook.disabled_until, hook.permanently_disabled) == (
        0,
        None,
        False,
    )


def test_two_claims_of_a_probing_hook_take_one_probe(project, receiver):
    hook = HookFactory(
        project=project, url=receiver.url, recent_failures=6, disabled_until=timezone.now()
    )
    ids = backlog(hook, 5)
    now = timezone.now()

    first = claim_deliveries(ids[2:], now)
    second = claim_deliveries(ids, now)

    assert (first, second) == ([ids[2]], [])
    hook.refresh_from_db()
    assert hook.probe_delivery_id == ids[2] and hook.probe_until > now
    # The held-back deliveries lost their message mark; the sweeper leaves them alone while
    # the probe is out.
    held_back = Delivery.objects.filter(pk__in=ids).exclude(pk=ids[2])
    assert set(held_back.values_list("queued_until", flat=True)) == {None}
    assert requeue_due_deliveries() == 0


def test_a_probe_whose_worker_died_is_taken_back_and_sent_again(settings, project, receiver):
    settings.HOOKS_CLAIM_LEASE_SECONDS = 60
    rested = timezone.now() - timedelta(days=1)
    hook = HookFactory(project=project, url=receiver.url, recent_failures=4, disabled_until=rested)
    ids = backlog(hook, 3)
    Delivery.objects.filter(pk__in=ids).update(next_attempt_at=rested)
    claimed_at = timezone.now() - timedelta(seconds=120)
    assert claim_deliveries(ids, claimed_at) == [ids[0]]  # then the worker died
    assert claimable_deliveries(ids, claimed_at) == []

    # The probe's lease ran out: any of the others could be the probe now.
    assert claimable_deliveries(ids, timezone.now()) == ids[1:]
    requeue_due_deliveries()  # the sweeper takes the claim back
    deliver_batch(ids)

    assert len(receiver.requests) == 1
    hook.refresh_from_db()
    assert (hook.recent_failures, hook.probe_delivery_id) == (0, None)
    assert Delivery.objects.get(pk=ids[0]).status == "succeeded"


def test_a_hook_whose_probe_is_out_claims_nothing_else(project, receiver):
    hook = HookFactory(
        project=project, url=receiver.url, recent_failures=4, disabled_until=timezone.now()
    )
    ids = backlog(hook, 3)
    Hook.objects.filter(pk=hook.pk).update(
        probe_delivery_id=ids[0], probe_until=timezone.now() + timedelta(minutes=1)
    )
    assert claimable_deliveries(ids[1:], timezone.now()) == []
    assert deliver_batch(ids[1:]) == []
    assert receiver.requests == []


def test_auto_disable_off_sends_every_delivery_of_a_failing_hook(settings, project, receiver):
    settings.HOOKS_AUTO_DISABLE = False
    hook = HookFactory(project=project, url=receiver.url, recent_failures=4)
    ids = backlog(hook, 20)
    receiver.default = Reply(500)

    deliver_batch(ids)
    pass_time(hook, 10)
    deliver_batch(ids)

    assert len(receiver.requests) == 40
    hook.refresh_from_db()
    assert (hook.recent_failures, hook.disabled_until, hook.probe_delivery_id) == (4, None, None)
