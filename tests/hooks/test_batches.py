"""Deliveries sent as batches: one claim, requests side by side, one transaction of results.

Every delivery in a batch is decided by the same rules as a batch of one; these tests put
several together and check that each comes out as it would alone, that a batch never breaks
the order of a pipeline's deliveries to a hook, and that messages carry ids in chunks.
"""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hooks import transport
from hooks.claims import CLAIMED_ROWS, _claimed_rows, claim_deliveries, load_claimed
from hooks.delivery import deliver_batch
from hooks.models import Delivery, DeliveryAttempt, Hook
from hooks.queue import enqueue_on_commit, enqueue_retries_on_commit, publish, publish_retry
from hooks.services import redeliver_failed_since
from hooks.sweeper import requeue_due_deliveries
from pipelines import services
from tests.factories import HookFactory, ProjectFactory
from tests.hooks.receiver import Receiver, Reply

SHA = "e" * 40


@pytest.fixture(autouse=True)
def predictable_retries(settings):
    settings.HOOKS_RETRY_SCHEDULE = [0, 5, 300, 1800]
    settings.HOOKS_RETRY_JITTER = 0
    settings.HOOKS_SEND_CONCURRENCY = 4


@pytest.fixture
def receivers():
    """Start receivers on demand, each answering every request with one reply."""
    started: list[Receiver] = []

    def start(reply: Reply) -> Receiver:
        server = Receiver().start()
        server.default = reply
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def messages(callbacks) -> list[list[int]]:
    """The task messages the on-commit callbacks would send (``publish(ids)``)."""
    return [
        list(callback.args[0])
        for callback in callbacks
        if getattr(callback, "func", None) is publish
    ]


def new_delivery(hook: Hook) -> Delivery:
    services.create_pipeline(hook.project, ref="main", sha=SHA)
    return hook.deliveries.order_by("-pk").first()


# --- Claims ----------------------------------------------------------------------------------


def test_claiming_a_batch_twice_takes_each_delivery_once(project, receiver):
    hooks = [HookFactory(project=project, url=receiver.url) for _ in range(3)]
    services.create_pipeline(project, ref="main", sha=SHA)
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))

    assert claim_deliveries(ids, timezone.now()) == ids
    assert claim_deliveries(ids, timezone.now()) == []
    # A redelivered message for the same batch finds it claimed and sends nothing.
    assert deliver_batch(ids) == []
    assert receiver.requests == []
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", "attempt_count")) == {
        (Delivery.Status.SENDING, 1)
    }


def test_a_batch_to_hooks_that_are_not_probing_is_claimed_in_one_statement(project, receiver):
    """The probe step's read is only for what the claim left: none of a new event's."""
    hooks = [HookFactory(project=project, url=receiver.url) for _ in range(3)]
    services.create_pipeline(project, ref="main", sha=SHA)
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))

    with CaptureQueriesContext(connection) as statements:
        assert claim_deliveries(ids, timezone.now()) == ids

    assert [q["sql"].split()[0] for q in statements.captured_queries] == ["UPDATE"]


def test_a_delivery_waiting_behind_an_earlier_one_costs_no_probe_read(project, receiver):
    """The backlog brings a stream's next delivery along; unclaimable behind the first, it
    is on a hook that is not probing (the reads said so), so the claim asks no more."""
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    first, second = hook.deliveries.order_by("pk").values_list("pk", flat=True)
    Delivery.objects.filter(pk=second).update(queued_until=timezone.now() + timedelta(hours=1))

    with CaptureQueriesContext(connection) as statements:
        # The second is sent too: the task follows the stream once the first is recorded.
        assert len(deliver_batch([first], fill_from_backlog=True)) == 2

    assert not [q for q in statements.captured_queries if "failure_counted, id" in q["sql"]]
    assert [r.header("Idempotency-Key") for r in receiver.requests] == [
        str(key) for key in hook.deliveries.order_by("pk").values_list("idempotency_key", flat=True)
    ]


def test_claimed_deliveries_load_as_the_orm_reads_them(project, receiver):
    """The load's SQL is built once per number of ids; each run reads what the ORM would,
    converted alike (UUIDs, times, JSON, booleans), whichever ids and however many."""
    hooks = [
        HookFactory(
            project=project,
            url=receiver.url,
            custom_headers=[{"key": "X-Team", "value": "web"}],
            enable_ssl_verification=number % 2 == 0,
        )
        for number in range(3)
    ]
    services.create_pipeline(project, ref="main", sha=SHA)
    services.create_pipeline(project, ref="main", sha="f" * 40)
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))
    assert len(ids) == 6

    for chosen in ([ids[0]], [ids[1]], ids[:3], ids[3:], [ids[5], ids[2], ids[2]]):
        expected = list(_claimed_rows(sorted(set(chosen))))
        loaded = load_claimed(chosen)
        assert [
            (
                c.delivery_id,
                c.order_key,
                c.attempt_number,
                c.manual_redelivery,
                c.idempotency_key,
                c.event_uuid,
                c.object_kind,
                c.sequence,
                c.event_created_at,
                c.body,
                c.hook.pk,
                c.hook.url,
                c.hook.masked_url,
                c.hook.token,
                c.hook.signing_token,
                c.hook.previous_signing_tokens,
                c.hook.custom_headers,
                c.hook.enable_ssl_verification,
                c.hook.custom_webhook_template,
            )
            for c in loaded
        ] == [(*row[:4], str(row[4]), str(row[5]), *row[6:]) for row in expected]
    assert isinstance(loaded[0].event_created_at, type(timezone.now()))
    assert {type(c.hook.enable_ssl_verification) for c in load_claimed(ids)} == {bool}
    # Loaded with the SQL built for each number of ids, not by the ORM each time.
    assert CLAIMED_ROWS._compiled and None not in CLAIMED_ROWS._compiled.values()


def test_delivering_a_batch_twice_sends_each_delivery_once(project, receiver):
    hooks = [HookFactory(project=project, url=receiver.url) for _ in range(5)]
    services.create_pipeline(project, ref="main", sha=SHA)
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))

    assert len(deliver_batch(ids)) == 5
    assert deliver_batch(ids) == []

    assert len(receiver.requests) == 5
    assert sorted(r.header("Idempotency-Key") for r in receiver.requests) == sorted(
        str(key)
        for key in Delivery.objects.filter(pk__in=ids).values_list("idempotency_key", flat=True)
    )
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids, succeeded=True).count() == 5


def test_a_batch_claim_covers_every_round_of_its_requests(settings, project):
    """Four lanes for ten deliveries: the slowest lane sends three requests one after the
    other, so the lease grows by two timeouts."""
    settings.HOOKS_SEND_CONCURRENCY = 4
    settings.HOOKS_TIMEOUT_SECONDS = 10
    settings.HOOKS_CLAIM_LEASE_SECONDS = 60
    hooks = [HookFactory(project=project) for _ in range(10)]
    services.create_pipeline(project, ref="main", sha=SHA)
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))
    now = timezone.now()

    claim_deliveries(ids, now)

    leases = set(Delivery.objects.filter(pk__in=ids).values_list("claimed_until", flat=True))
    assert leases == {now + timedelta(seconds=60 + 2 * 10)}


# --- Outcomes --------------------------------------------------------------------------------


def test_a_batch_with_mixed_outcomes_records_each_as_alone(
    settings, project, receivers, closed_port
):
    settings.HOOKS_TIMEOUT_SECONDS = 0.5
    ok = HookFactory(project=project, url=receivers(Reply(200, body=b"thanks")).url)
    broken = HookFactory(project=project, url=receivers(Reply(500, body=b"boom")).url)
    gone = HookFactory(project=project, url=receivers(Reply(410)).url)
    busy = HookFactory(
        project=project, url=receivers(Reply(429, headers={"Retry-After": "120"})).url
    )
    slow = HookFactory(project=project, url=receivers(Reply(200, delay=3)).url)
    refused = HookFactory(
        project=project, url=f"http://127.0.0.1:{closed_port}/hook", recent_failures=3
    )
    services.create_pipeline(project, ref="main", sha=SHA)
    deliveries = {d.hook_id: d for d in Delivery.objects.all()}
    before = timezone.now()

    attempt_ids = deliver_batch(sorted(d.pk for d in deliveries.values()))

    assert len(attempt_ids) == 6
    after = timezone.now()

    def state(hook):
        delivery = Delivery.objects.get(pk=deliveries[hook.pk].pk)
        attempt = DeliveryAttempt.objects.get(delivery=delivery)
        hook.refresh_from_db()
        return delivery, attempt, hook

    delivery, attempt, hook = state(ok)
    assert (delivery.status, delivery.last_response_status, delivery.last_error) == (
        "succeeded",
        200,
        "",
    )
    assert (attempt.response_status, attempt.response_body, attempt.succeeded) == (
        200,
        "thanks",
        True,
    )
    assert delivery.finished_at is not None and delivery.claimed_until is None

    delivery, attempt, hook = state(broken)
    assert (delivery.status, delivery.last_error, delivery.attempt_count) == (
        "pending",
        "HTTP 500",
        1,
    )
    assert before + timedelta(seconds=5) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= after + timedelta(seconds=5)
    assert (attempt.response_body, attempt.succeeded, hook.recent_failures) == ("boom", False, 1)

    delivery, attempt, hook = state(gone)  # a failure like any other
    assert delivery.status == "pending"
    assert (hook.recent_failures, hook.permanently_disabled) == (1, False)

    delivery, attempt, hook = state(busy)
    assert delivery.next_attempt_at >= before + timedelta(seconds=120)
    assert attempt.response_headers["Retry-After"] == "120"

    delivery, attempt, hook = state(slow)
    assert attempt.response_status is None and "timed out" in attempt.error
    assert delivery.status == "pending" and "timed out" in delivery.last_error

    delivery, attempt, hook = state(refused)
    assert attempt.error == "connection refused by 127.0.0.1"
    # Its 4th failure in a row: the hook rests for a minute.
    assert hook.recent_failures == 4
    assert before + timedelta(minutes=1) <= hook.disabled_until <= after + timedelta(minutes=1)


def test_a_batch_applies_one_hooks_results_in_order(settings, project, receiver):
    """Five failures of one hook in one batch: four count (resting from the 4th); the 5th
    came back while the hook rested and counts nothing, as in GitLab. A success among them
    resets the count at its place."""
    settings.HOOKS_SEND_CONCURRENCY = 1  # the receiver's script answers in id order
    hook = HookFactory(project=project, url=receiver.url)
    ids = [new_delivery(hook).pk for _ in range(5)]
    receiver.script(*[Reply(500)] * 5)
    before = timezone.now()

    deliver_batch(ids)

    hook.refresh_from_db()
    assert hook.recent_failures == 4
    assert before + timedelta(minutes=1) <= hook.disabled_until
    assert hook.disabled_until <= timezone.now() + timedelta(minutes=1)
    counted = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "failure_counted"))
    assert [counted[pk] for pk in ids] == [True, True, True, True, False]

    other = HookFactory(project=project, url=receiver.url)
    ids = [new_delivery(other).pk for _ in range(3)]
    receiver.script(Reply(500), Reply(200), Reply(500))
    deliver_batch(ids)
    other.refresh_from_db()
    assert (other.recent_failures, other.disabled_until) == (1, None)


def test_a_failed_manual_redelivery_in_a_batch_does_not_count(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0]
    hook = HookFactory(project=project, url=receiver.url)
    failed = new_delivery(hook)
    receiver.script(Reply(500))
    deliver_batch([failed.pk])
    assert Delivery.objects.get(pk=failed.pk).status == "failed"
    redeliver_failed_since(hook, timezone.now() - timedelta(days=1))
    fresh = new_delivery(hook)
    receiver.script(Reply(500), Reply(500))

    deliver_batch([failed.pk, fresh.pk])

    attempts = {a.delivery_id: a for a in DeliveryAttempt.objects.filter(attempt_number=2)}
    assert attempts[failed.pk].trigger == "manual"
    assert Delivery.objects.get(pk=failed.pk).status == "failed"  # tried once, not retried
    assert Delivery.objects.get(pk=fresh.pk).status == "failed"
    hook.refresh_from_db()
    assert hook.recent_failures == 2  # the first failure, then the fresh one; not the manual


def test_a_result_after_the_batch_lost_its_claim_is_only_logged(monkeypatch, project, receiver):
    hooks = [HookFactory(project=project, url=receiver.url) for _ in range(2)]
    services.create_pipeline(project, ref="main", sha=SHA)
    kept, lost = Delivery.objects.filter(hook__in=hooks).order_by("pk")
    original_send_many = transport.send_many

    def send_while_the_sweeper_takes_one_back(requests):
        results = original_send_many(requests)
        Delivery.objects.filter(pk=lost.pk).update(claimed_until=timezone.now())
        requeue_due_deliveries(now=timezone.now() + timedelta(seconds=1))
        return results

    monkeypatch.setattr(transport, "send_many", send_while_the_sweeper_takes_one_back)
    deliver_batch([kept.pk, lost.pk])

    assert Delivery.objects.get(pk=kept.pk).status == "succeeded"
    assert Delivery.objects.get(pk=lost.pk).status == "pending"  # to be sent again
    assert DeliveryAttempt.objects.get(delivery=lost).response_status == 200


# --- Order -----------------------------------------------------------------------------------


def test_two_deliveries_of_one_pipeline_in_a_batch_go_out_one_after_the_other(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    first, second = hook.deliveries.order_by("pk")
    other = new_delivery(hook)  # another pipeline: no need to wait
    receiver.script(Reply(200, delay=0.3))  # the first request to arrive answers slowly

    # The claim takes the earlier one of the pipeline and leaves the later one pending...
    assert claim_deliveries([second.pk, first.pk, other.pk], timezone.now()) == [
        first.pk,
        other.pk,
    ]
    Delivery.objects.filter(pk__in=[first.pk, other.pk]).update(
        status=Delivery.Status.PENDING, claimed_until=None, attempt_count=0
    )

    # ...and the batch sends the later one only once the earlier one was answered.
    deliver_batch([second.pk, first.pk, other.pk])

    by_status = {
        (json.loads(r.body)["object_attributes"]["status"], r.header("Idempotency-Key")): r
        for r in receiver.requests
    }
    earlier = by_status[("created", str(first.idempotency_key))]
    later = by_status[("running", str(second.idempotency_key))]
    assert later.received_at > earlier.answered_at
    assert (
        Delivery.objects.filter(pk__in=[first.pk, second.pk, other.pk])
        .filter(status="succeeded")
        .count()
        == 3
    )


def test_a_pipelines_later_delivery_waits_while_the_earlier_retries(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    first, second = hook.deliveries.order_by("pk")
    receiver.script(Reply(503))

    deliver_batch([first.pk, second.pk])

    assert len(receiver.requests) == 1
    assert Delivery.objects.get(pk=second.pk).status == "pending"
    assert Delivery.objects.get(pk=second.pk).attempt_count == 0


# --- Messages ---------------------------------------------------------------------------------


def test_a_fan_out_is_queued_as_chunks_of_ids(
    settings, project, django_capture_on_commit_callbacks
):
    settings.HOOKS_BATCH_SIZE = 2
    hooks = [HookFactory(project=project) for _ in range(5)]
    with django_capture_on_commit_callbacks() as callbacks:
        services.create_pipeline(project, ref="main", sha=SHA)
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))
    assert messages(callbacks) == [ids[0:2], ids[2:4], ids[4:5]]


def test_the_sweeper_queues_due_deliveries_in_chunks(
    settings, project, django_capture_on_commit_callbacks
):
    settings.HOOKS_BATCH_SIZE = 3
    hooks = [HookFactory(project=project) for _ in range(4)]
    services.create_pipeline(project, ref="main", sha=SHA)
    Delivery.objects.update(queued_until=None)  # their messages were lost
    with django_capture_on_commit_callbacks() as callbacks:
        assert requeue_due_deliveries() == 4
    ids = sorted(Delivery.objects.filter(hook__in=hooks).values_list("pk", flat=True))
    assert messages(callbacks) == [ids[0:3], ids[3:4]]


def test_batch_size_is_capped_so_statements_stay_within_database_limits(
    settings, django_capture_on_commit_callbacks, db
):
    settings.HOOKS_BATCH_SIZE = 10**6
    with django_capture_on_commit_callbacks() as callbacks:
        enqueue_on_commit(range(2500))
    assert [len(ids) for ids in messages(callbacks)] == [1000, 1000, 500]


def retry_messages(callbacks) -> list[tuple[list[int], object]]:
    """The timed task messages the on-commit callbacks would send (``publish_retry``)."""
    return [
        (list(callback.args[0]), callback.args[1])
        for callback in callbacks
        if getattr(callback, "func", None) is publish_retry
    ]


def test_a_retry_due_soon_gets_a_message_timed_for_it(
    settings, project, receivers, django_capture_on_commit_callbacks
):
    """Without it the retry waited for the first sweep after it came due."""
    settings.HOOKS_RETRY_SCHEDULE = [0, 5, 300]
    settings.HOOKS_RETRY_JITTER = 0
    refusing = [HookFactory(project=project, url=receivers(Reply(503)).url) for _ in range(2)]
    fine = HookFactory(project=project, url=receivers(Reply(200)).url)
    services.create_pipeline(project, ref="main", sha=SHA)
    ids = sorted(Delivery.objects.values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deliver_batch(ids)

    retried = Delivery.objects.filter(hook__in=refusing).order_by("pk")
    [(message_ids, due_at)] = retry_messages(callbacks)  # both due together: one message
    assert message_ids == [d.pk for d in retried]
    assert due_at == max(d.next_attempt_at for d in retried)
    assert fine.deliveries.get().pk not in message_ids


def test_a_retry_due_later_is_left_to_the_sweeper(
    settings, project, receivers, django_capture_on_commit_callbacks
):
    settings.HOOKS_RETRY_SCHEDULE = [0, 300]
    hook = HookFactory(project=project, url=receivers(Reply(503)).url)
    delivery = new_delivery(hook)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deliver_batch([delivery.pk])

    assert Delivery.objects.get(pk=delivery.pk).status == "pending"
    assert retry_messages(callbacks) == []


def test_retries_due_apart_get_messages_of_their_own(db, django_capture_on_commit_callbacks):
    now = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        enqueue_retries_on_commit(
            [(3, now + timedelta(seconds=5)), (1, now + timedelta(seconds=4.9)), (2, now)]
        )
    assert retry_messages(callbacks) == [([2], now), ([1, 3], now + timedelta(seconds=5))]


# --- Filling from the backlog -------------------------------------------------------------------


def test_a_task_fills_its_batch_with_deliveries_whose_messages_are_queued(
    settings, project, receiver
):
    settings.HOOKS_BATCH_SIZE = 3
    hook = HookFactory(project=project, url=receiver.url)
    own, older, newer, newest = (new_delivery(hook) for _ in range(4))

    attempt_ids = deliver_batch_task([own.pk])

    # Its own delivery, then the newest queued ones up to the batch size.
    assert len(attempt_ids) == 3
    sent = {d.pk for d in Delivery.objects.filter(status="succeeded")}
    assert sent == {own.pk, newer.pk, newest.pk}
    assert Delivery.objects.get(pk=older.pk).status == "pending"


def test_filling_takes_only_what_a_claim_may_take(settings, project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    own = new_delivery(hook)
    # A retry that came due has no message out (the sweeper's to queue): left alone.
    retry = new_delivery(hook)
    Delivery.objects.filter(pk=retry.pk).update(queued_until=None)
    # A resting hook's delivery and a pipeline's later delivery wait, as for any claim.
    resting = HookFactory(
        project=ProjectFactory(),
        url=receiver.url,
        disabled_until=timezone.now() + timedelta(hours=1),
    )
    waiting_for_hook = new_delivery(resting)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    head, behind = hook.deliveries.filter(order_key=pipeline.pk).order_by("pk")
    Delivery.objects.filter(pk=head.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))

    deliver_batch_task([own.pk])

    assert Delivery.objects.get(pk=own.pk).status == "succeeded"
    for left in (retry, waiting_for_hook, head, behind):
        assert Delivery.objects.get(pk=left.pk).status == "pending"
    assert len(receiver.requests) == 1


def test_a_message_whose_deliveries_were_taken_stops_at_a_read(project, receiver):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    hook = HookFactory(project=project, url=receiver.url)
    first, second = new_delivery(hook), new_delivery(hook)
    deliver_batch_task([first.pk])  # takes the second too
    assert Delivery.objects.get(pk=second.pk).status == "succeeded"

    with CaptureQueriesContext(connection) as queries:
        assert deliver_batch_task([second.pk]) == []

    # No write, so on SQLite no wait for the write lock either.
    assert [q["sql"].split()[0].upper() for q in queries.captured_queries] == ["SELECT"]
    assert len(receiver.requests) == 2


def deliver_batch_task(ids: list[int]) -> list[int]:
    """What the Celery task runs for a message carrying ``ids``."""
    return deliver_batch(ids, fill_from_backlog=True)


# --- One delivery's error stays its own ------------------------------------------------------


def batch_with_a_sibling(project, receivers, bad: Hook) -> tuple[Delivery, Delivery, Receiver]:
    """A pipeline delivered in one batch to a healthy receiver and to ``bad``."""
    receiver = receivers(Reply(200, body=b"thanks"))
    good = HookFactory(project=project, url=receiver.url)
    services.create_pipeline(project, ref="main", sha=SHA)
    [delivered] = good.deliveries.all()
    [failing] = bad.deliveries.all()
    deliver_batch(sorted([delivered.pk, failing.pk]))
    delivered.refresh_from_db()
    failing.refresh_from_db()
    return delivered, failing, receiver


def assert_failed_alone_and_retried(delivered, failing, receiver, error: str) -> None:
    """The sibling went out and was recorded; the failing one has a logged failed attempt
    saying why, and waits for its retry (HOOKS_RETRY_SCHEDULE's 5 s)."""
    assert len(receiver.requests) == 1
    assert (delivered.status, delivered.last_response_status) == ("succeeded", 200)
    assert delivered.attempts.get().succeeded
    assert (failing.status, failing.attempt_count, failing.claimed_until) == ("pending", 1, None)
    assert error in failing.last_error
    attempt = failing.attempts.get()
    assert (attempt.response_status, attempt.succeeded) == (None, False)
    assert error in attempt.error
    wait = (failing.next_attempt_at - timezone.now()).total_seconds()
    assert 3 < wait <= 5


def test_an_ipv6_literal_without_a_port_fails_alone_in_its_batch(project, receivers):
    """It used to raise in the sender (``nonnumeric port``): the batch stopped, its
    deliveries stayed ``sending`` and were sent again after every lease."""
    bad = HookFactory(project=project, url="http://[fd00::abcd]/hook")

    delivered, failing, receiver = batch_with_a_sibling(project, receivers, bad)

    assert_failed_alone_and_retried(
        delivered, failing, receiver, "fd00::abcd is an IPv6 unique-local address"
    )


def test_a_request_that_raises_is_its_own_failed_attempt(monkeypatch, project, receivers):
    """Whatever the sender raises for one request (a bug nobody has found yet) stays there."""
    bad = HookFactory(project=project, url="http://127.0.0.1:9/raises")
    real_send = transport.send

    def send(url, *args, **kwargs):
        if url == bad.url.reveal():
            raise RuntimeError("the sender broke")
        return real_send(url, *args, **kwargs)

    monkeypatch.setattr(transport, "send", send)

    delivered, failing, receiver = batch_with_a_sibling(project, receivers, bad)

    assert_failed_alone_and_retried(
        delivered,
        failing,
        receiver,
        "the request could not be sent: RuntimeError: the sender broke",
    )


def test_a_signing_secret_that_cannot_sign_fails_alone(project, receivers):
    # No form or API saves it; a row edited by hand can hold it.
    bad = HookFactory(project=project, url="http://127.0.0.1:9/hook", signing_token="whsec_%%")

    delivered, failing, receiver = batch_with_a_sibling(project, receivers, bad)

    assert_failed_alone_and_retried(
        delivered,
        failing,
        receiver,
        "the request could not be built: ValueError: a signing secret is 'whsec_' followed",
    )


def test_an_answer_the_log_cannot_read_fails_alone(monkeypatch, project, receivers):
    """A result the log cannot keep (here a header value that is not text) is recorded as
    a failure saying so; the batch's other results are recorded as they came."""
    bad = HookFactory(project=project, url="http://127.0.0.1:9/odd")
    real_send = transport.send

    def send(url, *args, **kwargs):
        if url == bad.url.reveal():
            return transport.TransportResult(status=200, headers={"X-Odd": None})
        return real_send(url, *args, **kwargs)

    monkeypatch.setattr(transport, "send", send)

    delivered, failing, receiver = batch_with_a_sibling(project, receivers, bad)

    assert_failed_alone_and_retried(
        delivered, failing, receiver, "the answer could not be recorded: TypeError"
    )


def test_a_retry_after_of_odd_digits_is_ignored_not_fatal(project, receivers):
    """``"²".isdigit()`` is true and ``float("²")`` raises: a receiver's 429 with it used to
    stop the recording of its whole batch."""
    odd = receivers(Reply(429, headers={"Retry-After": "\u00b2"}))
    bad = HookFactory(project=project, url=odd.url)

    delivered, failing, receiver = batch_with_a_sibling(project, receivers, bad)

    assert len(receiver.requests) == 1 and delivered.status == "succeeded"
    assert (failing.status, failing.last_response_status, failing.last_error) == (
        "pending",
        429,
        "HTTP 429",
    )
    assert failing.attempts.get().response_headers["Retry-After"] == "\u00b2"
    wait = (failing.next_attempt_at - timezone.now()).total_seconds()
    assert 3 < wait <= 5  # the schedule's delay: the header said nothing usable


# --- An event written while its stream's last delivery is recorded -----------------------------


def test_an_event_written_while_its_stream_is_recorded_is_queued_after_the_commit(
    project, receiver, monkeypatch
):
    """Another transaction may commit a stream's next event between a batch's look for the
    stream's next delivery and the batch's commit (PostgreSQL); that event's own message
    may have found the stream busy. The batch looks again once committed and queues it."""
    from hooks import delivery, results

    hook = HookFactory(project=project, url=receiver.url)
    first = new_delivery(hook)
    written = []
    look = results.next_of_each

    def another_commits_just_after_the_look(streams):
        found = look(streams)
        pipeline = services.lock_pipeline(first.event.pipeline_id)
        services.change_pipeline_status(pipeline, "running", timezone.now())
        written.append(hook.deliveries.order_by("-pk").first().pk)
        return found

    monkeypatch.setattr(results, "next_of_each", another_commits_just_after_the_look)
    queued: list[list[int]] = []
    monkeypatch.setattr(delivery, "enqueue_on_commit", lambda ids: queued.append(list(ids)))

    deliver_batch([first.pk])

    assert Delivery.objects.get(pk=first.pk).status == "succeeded"
    [late] = written
    assert late != first.pk
    assert [late] in queued
