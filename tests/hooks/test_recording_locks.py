"""Two workers recording batches with attempts for the same hook at once, each in its own
transaction on its own connection: they may wait for each other, never in a circle
(``hooks.stats`` on the order of locks).

The interleaving PostgreSQL once detected a deadlock in: batch A (a success on a healthy
hook, whose row it does not lock) writes the hook's rollup row and has not committed yet;
batch B (a failure on the same hook) locks the hook's row to count the failure, then waits
for A's rollup row; A commits, and its deferred foreign key check on that rollup row locks
the hook's row FOR KEY SHARE. On SQLite the second transaction waits for the first's
write lock: the same steps, one after the other.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from hooks import stats
from hooks.delivery import _finish_batch, _start_batch
from hooks.models import Delivery, DeliveryStat, Hook
from hooks.transport import TransportResult
from tests.factories import DeliveryFactory, HookFactory

# Long enough for PostgreSQL to detect a deadlock first (deadlock_timeout, 1 s by default);
# a wait with no circle that outlasts it fails the test too, rather than hanging it.
LOCK_TIMEOUT = "5s"
STEP_TIMEOUT = 15.0


def _lock_timeout() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")


def _backend_pid() -> int | None:
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def _clear_of_a_period_boundary() -> None:
    """Both batches' attempts fall in one half hour, so they share a rollup row."""
    now = timezone.now()
    if stats.period_of(now) != stats.period_of(now + timedelta(seconds=20)):
        time.sleep((stats.period_of(now) + stats.PERIOD - now).total_seconds() + 0.1)


@pytest.mark.django_db(transaction=True)
def test_two_batches_recording_one_hook_never_deadlock():
    hook = HookFactory()
    first, second = (DeliveryFactory(hook=hook), DeliveryFactory(hook=hook))
    _clear_of_a_period_boundary()
    now = timezone.now()
    with transaction.atomic():
        batch_a = _start_batch([first.pk], now)
    with transaction.atomic():
        batch_b = _start_batch([second.pk], now)
    # The same latency band: one rollup row for both.
    success = TransportResult(status=200, duration_ms=3)
    failure = TransportResult(status=500, duration_ms=4)

    a_recorded, a_may_commit = threading.Event(), threading.Event()
    b_pid: list[int | None] = []
    b_connected = threading.Event()
    errors: dict[str, BaseException] = {}

    def record_a() -> None:
        try:
            _lock_timeout()
            with transaction.atomic():
                _finish_batch(batch_a, [success], following=False)
                a_recorded.set()
                a_may_commit.wait(STEP_TIMEOUT)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors["a"] = error
        finally:
            a_recorded.set()
            connection.close()

    def record_b() -> None:
        try:
            _lock_timeout()
            b_pid.append(_backend_pid())
            b_connected.set()
            a_recorded.wait(STEP_TIMEOUT)
            _finish_batch(batch_b, [failure], following=False)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors["b"] = error
        finally:
            b_connected.set()
            connection.close()

    threads = [threading.Thread(target=record_a), threading.Thread(target=record_b)]
    for thread in threads:
        thread.start()
    assert b_connected.wait(STEP_TIMEOUT) and a_recorded.wait(STEP_TIMEOUT)
    b_waited = False
    if connection.vendor == "postgresql":
        # B has locked the hook's row and waits for A's rollup row: now A commits.
        deadline = time.monotonic() + STEP_TIMEOUT
        while not b_waited and "b" not in errors and time.monotonic() < deadline:
            b_waited = _waits_for_a_lock(b_pid[0])
            time.sleep(0.01)
    else:
        time.sleep(0.2)  # B waits for A's write lock
    a_may_commit.set()
    for thread in threads:
        thread.join(STEP_TIMEOUT * 2)
        assert not thread.is_alive()

    assert errors == {}
    if connection.vendor == "postgresql":
        assert b_waited, "B never waited for A: the test missed the interleaving"
    stat = DeliveryStat.objects.get(hook=hook)
    assert (stat.succeeded, stat.failed) == (1, 1)
    assert Hook.objects.get(pk=hook.pk).recent_failures == 1
    assert Delivery.objects.get(pk=first.pk).status == Delivery.Status.SUCCEEDED
    assert Delivery.objects.get(pk=second.pk).status == Delivery.Status.PENDING
