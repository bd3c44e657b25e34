"""Sending deliveries to a real receiver on 127.0.0.1, one ``deliver()`` call at a time.

Time never passes in these tests: a retry that "comes due" is a row whose next_attempt_at is
set to now. Enqueueing is observed through the on-commit callbacks (``publish_deliveries(ids)``).
"""

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from hooks import delivery, transport
from hooks.claims import claim_delivery
from hooks.delivery import deliver, deliver_batch
from hooks.headers import USER_AGENT
from hooks.models import Delivery, DeliveryAttempt, Hook
from hooks.services import (
    DeliveryInProgress,
    NoPipelineError,
    redeliver_failed_since,
    reenable_hook,
    resend_delivery,
    send_test_event,
)
from hooks.signing import generate_signing_secret, verify_signature
from hooks.sweeper import requeue_due_deliveries
from pipelines import services
from tests.factories import HookFactory, UserFactory
from tests.hooks.receiver import Reply

SHA = "b" * 40


@pytest.fixture(autouse=True)
def predictable_retries(settings):
    settings.HOOKS_RETRY_SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    settings.HOOKS_RETRY_JITTER = 0
    settings.PIPEHOOK_EXTERNAL_URL = "https://pipehook.example.com"


def queued_ids(callbacks) -> list[int]:
    return [pk for callback in callbacks for pk in callback.args[0]]


def new_delivery(hook: Hook) -> Delivery:
    """A pipeline created through the services: its creation event's delivery to ``hook``."""
    services.create_pipeline(hook.project, ref="main", sha=SHA)
    return hook.deliveries.order_by("-pk").first()


def make_due(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def fail_once(hook: Hook, receiver, delivery: Delivery | None = None) -> Delivery:
    receiver.script(Reply(500))
    delivery = delivery or new_delivery(hook)
    make_due(delivery)
    assert deliver(delivery.pk) is not None
    delivery.refresh_from_db()
    return delivery


# --- What goes over the wire -----------------------------------------------------------------


def test_deliver_sends_gitlab_headers_and_the_stored_body(project, receiver):
    secret = generate_signing_secret()
    hook = HookFactory(
        project=project,
        url=receiver.url,
        token="gl-secret",
        signing_token=secret,
        custom_headers={"X-Team": "ci", "X-Gitlab-Event": "Push Hook", "Content-Type": "x"},
    )
    delivery = new_delivery(hook)
    attempt = deliver(delivery.pk)

    [request] = receiver.requests
    assert request.body == delivery.event.body.encode()
    sent = {name: value for name, value in request.headers.items()}
    for transport_header in ("Host", "Accept-Encoding", "Content-Length"):
        sent.pop(transport_header)
    webhook_uuid = sent.pop("X-Gitlab-Webhook-UUID")
    stamp = sent.pop("webhook-timestamp")
    signature = sent.pop("webhook-signature")
    assert sent == {
        "X-Team": "ci",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Gitlab-Event": "Pipeline Hook",
        "X-Gitlab-Instance": "https://pipehook.example.com",
        "X-Gitlab-Event-UUID": str(delivery.event.uuid),
        "Idempotency-Key": str(delivery.idempotency_key),
        "X-Gitlab-Token": "gl-secret",
        "webhook-id": str(delivery.idempotency_key),
    }
    assert USER_AGENT.startswith("GitLab/") and " Pipehook/" in USER_AGENT
    assert uuid.UUID(webhook_uuid)
    assert stamp.isdigit() and signature.startswith("v1,")
    assert verify_signature(secret, request.headers, request.body)
    assert Webhook(secret).verify(request.body, request.headers)["object_kind"] == "pipeline"

    # The log row: secrets and custom values masked, the answer recorded.
    attempt.refresh_from_db()
    assert attempt.request_headers["X-Gitlab-Token"] == "[REDACTED]"
    assert attempt.request_headers["webhook-signature"] == "[REDACTED]"
    assert attempt.request_headers["X-Team"] == "[REDACTED]"
    assert attempt.request_headers["X-Gitlab-Webhook-UUID"] == webhook_uuid
    assert "gl-secret" not in json.dumps(attempt.request_headers)
    assert (attempt.response_status, attempt.response_body, attempt.succeeded) == (200, "ok", True)
    assert (attempt.attempt_number, attempt.trigger, attempt.error) == (1, "scheduled", "")
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED and delivery.finished_at is not None
    assert delivery.claimed_until is None


def test_webhook_uuid_is_new_per_request_and_idempotency_key_stays(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = fail_once(hook, receiver)
    make_due(delivery)
    deliver(delivery.pk)
    first, second = receiver.requests
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")
    assert first.header("X-Gitlab-Event-UUID") == second.header("X-Gitlab-Event-UUID")
    assert first.header("X-Gitlab-Webhook-UUID") != second.header("X-Gitlab-Webhook-UUID")
    assert first.body == second.body


def test_log_keeps_50_response_headers_of_1_kb_and_8_kb_of_body(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    many = {f"X-H{i:02}": "v" * 2000 for i in range(60)}
    receiver.script(Reply(200, headers=many, body=b"\x00" + b"y" * 20_000))
    attempt = deliver(new_delivery(hook).pk)
    attempt.refresh_from_db()
    assert len(attempt.response_headers) == 50
    assert {len(v) for k, v in attempt.response_headers.items() if k.startswith("X-H")} == {1024}
    assert len(attempt.response_body) == 8 * 1024 and attempt.response_body_truncated
    assert attempt.response_body.startswith("\ufffd")  # NUL kept out of the database


# --- Retry decisions -------------------------------------------------------------------------


def test_deliver_schedules_a_retry_after_500(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    before = timezone.now()
    delivery = fail_once(hook, receiver)
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempt_count == 1
    assert delivery.last_response_status == 500 and delivery.last_error == "HTTP 500"
    assert before + timedelta(seconds=5) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=5)
    attempt = delivery.attempts.get()
    assert (attempt.response_status, attempt.succeeded, attempt.error) == (500, False, "")
    # Not due yet: nothing happens.
    assert deliver(delivery.pk) is None
    assert len(receiver.requests) == 1


def test_deliver_gives_up_after_the_last_scheduled_attempt(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0, 0]
    hook = HookFactory(project=project, url=receiver.url)
    delivery = fail_once(hook, receiver)
    assert delivery.status == Delivery.Status.PENDING
    delivery = fail_once(hook, receiver, delivery)
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.finished_at is not None
    assert [a.attempt_number for a in delivery.attempts.order_by("pk")] == [1, 2]


def test_deliver_times_out_and_retries(settings, project, receiver):
    settings.HOOKS_TIMEOUT_SECONDS = 0.5
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(200, delay=3))
    delivery = new_delivery(hook)
    attempt = deliver(delivery.pk)
    attempt.refresh_from_db()
    assert attempt.response_status is None and "timed out" in attempt.error
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING and "timed out" in delivery.last_error


def test_deliver_records_connection_refused_and_retries(project, closed_port):
    hook = HookFactory(project=project, url=f"http://127.0.0.1:{closed_port}/hook")
    delivery = new_delivery(hook)
    attempt = deliver(delivery.pk)
    attempt.refresh_from_db()
    assert attempt.response_status is None
    assert attempt.error == "connection refused by 127.0.0.1"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    hook.refresh_from_db()
    assert hook.recent_failures == 1


def test_deliver_refuses_a_loopback_url_without_the_allow_list(settings, project, receiver):
    settings.HOOKS_ALLOWED_NETWORKS = []
    hook = HookFactory(project=project, url=receiver.url)
    attempt = deliver(new_delivery(hook).pk)
    attempt.refresh_from_db()
    assert "loopback" in attempt.error and attempt.response_status is None
    assert receiver.requests == []


def test_410_gone_counts_as_one_failure(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(410))
    delivery = new_delivery(hook)
    deliver(delivery.pk)
    hook.refresh_from_db()
    assert (hook.recent_failures, hook.permanently_disabled, hook.alert_status) == (
        1,
        False,
        "executable",
    )
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING and delivery.failure_counted


def test_410_gone_disables_the_hook_when_set_to_and_the_delivery_waits(settings, project, receiver):
    settings.HOOKS_DISABLE_ON_GONE = True
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(410))
    delivery = new_delivery(hook)
    deliver(delivery.pk)
    hook.refresh_from_db()
    assert hook.permanently_disabled and hook.alert_status == "disabled"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    make_due(delivery)
    assert deliver(delivery.pk) is None
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(project, receiver, status):
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(status, headers={"Retry-After": "120"}))
    before = timezone.now()
    delivery = new_delivery(hook)
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= before + timedelta(seconds=120)
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=120)


def test_retry_after_as_http_date_and_bounded(settings, project, receiver):
    settings.HOOKS_RETRY_AFTER_MAX_SECONDS = 600
    hook = HookFactory(project=project, url=receiver.url)
    receiver.script(Reply(503, headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}))
    delivery = new_delivery(hook)
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=600)
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=590)


def test_retry_after_shorter_than_the_schedule_keeps_the_schedule(settings, project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = fail_once(hook, receiver)  # attempt 1: next in 5 s
    receiver.script(Reply(429, headers={"Retry-After": "1"}))
    make_due(delivery)
    before = timezone.now()
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= before + timedelta(seconds=300)


# --- Hook health -----------------------------------------------------------------------------


def test_fourth_failure_in_a_row_rests_the_hook(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0] * 10
    hook = HookFactory(project=project, url=receiver.url)
    for expected in (1, 2, 3):
        fail_once(hook, receiver)
        hook.refresh_from_db()
        assert (hook.recent_failures, hook.disabled_until) == (expected, None)
    before = timezone.now()
    delivery = fail_once(hook, receiver)
    hook.refresh_from_db()
    assert hook.recent_failures == 4 and hook.alert_status == "temporarily_disabled"
    assert before + timedelta(minutes=1) <= hook.disabled_until
    assert hook.disabled_until <= timezone.now() + timedelta(minutes=1)
    # Resting: the due delivery waits, and so does any other.
    make_due(delivery)
    assert deliver(delivery.pk) is None
    fresh = new_delivery(hook)
    assert deliver(fresh.pk) is None
    assert len(receiver.requests) == 4
    # The rest is over: the next failure of a delivery that never counted doubles it.
    Hook.objects.filter(pk=hook.pk).update(disabled_until=timezone.now())
    before = timezone.now()
    fail_once(hook, receiver, fresh)
    hook.refresh_from_db()
    assert hook.recent_failures == 5
    assert hook.disabled_until >= before + timedelta(minutes=2)


def test_a_retry_of_a_counted_delivery_does_not_count_again(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0] * 10
    hook = HookFactory(project=project, url=receiver.url)
    delivery = fail_once(hook, receiver)
    assert delivery.failure_counted
    for _ in range(5):
        delivery = fail_once(hook, receiver, delivery)
    hook.refresh_from_db()
    assert delivery.attempt_count == 6
    assert (hook.recent_failures, hook.disabled_until) == (1, None)


def test_a_failed_probe_of_a_counted_delivery_rests_the_hook_as_long_again(
    settings, project, receiver
):
    settings.HOOKS_RETRY_SCHEDULE = [0] * 10
    hook = HookFactory(project=project, url=receiver.url)
    deliveries = [fail_once(hook, receiver) for _ in range(4)]
    Hook.objects.filter(pk=hook.pk).update(disabled_until=timezone.now())
    before = timezone.now()
    fail_once(hook, receiver, deliveries[0])  # counted at its first attempt
    hook.refresh_from_db()
    assert hook.recent_failures == 4
    assert before + timedelta(minutes=1) <= hook.disabled_until
    assert hook.disabled_until <= timezone.now() + timedelta(minutes=1)


def test_fortieth_failure_disables_the_hook_until_re_enabled(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0] * 10
    hook = HookFactory(project=project, url=receiver.url, recent_failures=38)
    fail_once(hook, receiver)
    hook.refresh_from_db()
    assert hook.recent_failures == 39 and not hook.permanently_disabled
    assert hook.disabled_until >= timezone.now() + timedelta(hours=23)
    Hook.objects.filter(pk=hook.pk).update(disabled_until=None)
    fail_once(hook, receiver)
    hook.refresh_from_db()
    assert hook.recent_failures == 40 and hook.permanently_disabled
    assert hook.alert_status == "disabled"


def test_auto_disable_off_counts_nothing_and_sends_to_a_disabled_hook(settings, project, receiver):
    settings.HOOKS_AUTO_DISABLE = False
    settings.HOOKS_RETRY_SCHEDULE = [0] * 10
    hook = HookFactory(
        project=project, url=receiver.url, recent_failures=40, permanently_disabled=True
    )
    assert hook.alert_status == "executable"
    for _ in range(5):
        fail_once(hook, receiver)
    hook.refresh_from_db()
    assert len(receiver.requests) == 5
    assert (hook.recent_failures, hook.disabled_until) == (40, None)
    # A success still clears the old state, so switching the setting on again starts afresh.
    deliver(new_delivery(hook).pk)
    hook.refresh_from_db()
    assert (hook.recent_failures, hook.permanently_disabled) == (0, False)


def test_success_resets_the_failure_count(project, receiver):
    hook = HookFactory(project=project, url=receiver.url, recent_failures=3)
    deliver(new_delivery(hook).pk)
    hook.refresh_from_db()
    assert (hook.recent_failures, hook.disabled_until) == (0, None)


# --- Order and claims ------------------------------------------------------------------------


def test_next_delivery_of_a_pipeline_waits_for_the_one_before(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    first, second = hook.deliveries.order_by("pk")
    receiver.script(Reply(500))
    assert deliver(second.pk) is None  # N+1 while N is pending
    deliver(first.pk)  # fails: N is pending again, with a retry
    assert deliver(second.pk) is None
    # Another pipeline does not wait for this one.
    other = new_delivery(hook)
    assert deliver(other.pk) is not None
    make_due(first)
    deliver(first.pk)  # succeeds, and N+1 goes out right after it
    assert Delivery.objects.get(pk=second.pk).status == Delivery.Status.SUCCEEDED
    statuses = [json.loads(r.body)["object_attributes"]["status"] for r in receiver.requests]
    assert statuses == ["created", "created", "created", "running"]
    assert [r.body for r in receiver.requests][1] != receiver.requests[2].body


def test_a_finished_delivery_sends_the_next_one_of_its_pipeline_at_once(
    project, receiver, django_capture_on_commit_callbacks
):
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    services.transition_pipeline(pipeline, "success")
    deliveries = list(hook.deliveries.order_by("pk"))
    with django_capture_on_commit_callbacks() as callbacks:
        attempt_ids = deliver_batch([deliveries[0].pk])
    # The same call followed the pipeline: no message through the broker.
    assert callbacks == []
    assert len(attempt_ids) == 3
    statuses = [json.loads(r.body)["object_attributes"]["status"] for r in receiver.requests]
    assert statuses == ["created", "running", "success"]


def test_a_batch_out_of_time_queues_the_next_one(
    monkeypatch, project, receiver, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(delivery, "FOLLOW_SECONDS", 0)
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    first, second = hook.deliveries.order_by("pk")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deliver(first.pk)
    assert queued_ids(callbacks) == [second.pk]
    assert len(receiver.requests) == 1


def test_a_given_up_delivery_releases_the_next_one(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0]
    hook = HookFactory(project=project, url=receiver.url)
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.transition_pipeline(pipeline, "running")
    first, second = hook.deliveries.order_by("pk")
    receiver.script(Reply(500))
    deliver(first.pk)
    first.refresh_from_db()
    assert first.status == Delivery.Status.FAILED
    second.refresh_from_db()
    assert second.status == Delivery.Status.SUCCEEDED
    assert len(receiver.requests) == 2


def test_claim_is_taken_once(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = new_delivery(hook)
    assert claim_delivery(delivery.pk, timezone.now()) is True
    assert claim_delivery(delivery.pk, timezone.now()) is False
    assert deliver(delivery.pk) is None  # a redelivered task message finds it claimed
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENDING and delivery.attempt_count == 1


def test_deliver_twice_sends_once(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = new_delivery(hook)
    assert deliver(delivery.pk) is not None
    assert deliver(delivery.pk) is None
    assert len(receiver.requests) == 1


def test_a_result_after_the_lease_was_taken_back_changes_nothing(monkeypatch, project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = new_delivery(hook)
    original_send = transport.send

    def send_while_the_sweeper_takes_it_back(*args, **kwargs):
        result = original_send(*args, **kwargs)
        Delivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now())
        requeue_due_deliveries(now=timezone.now() + timedelta(seconds=1))
        return result

    monkeypatch.setattr(transport, "send", send_while_the_sweeper_takes_it_back)
    attempt = deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING  # to be sent again, at least once
    attempt.refresh_from_db()
    assert attempt.response_status == 200  # the attempt's own result stays in the log


# --- People's actions ------------------------------------------------------------------------


def test_resend_sends_the_same_event_with_the_same_key_and_finishes_it(settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0]
    person = UserFactory()
    hook = HookFactory(project=project, url=receiver.url)
    delivery = fail_once(hook, receiver)
    assert delivery.status == Delivery.Status.FAILED
    Hook.objects.filter(pk=hook.pk).update(permanently_disabled=True, recent_failures=40)

    attempt = resend_delivery(delivery, user=person)

    assert (attempt.trigger, attempt.triggered_by, attempt.attempt_number) == ("manual", person, 2)
    assert attempt.succeeded and attempt.response_status == 200
    first, second = receiver.requests
    assert second.body == first.body
    assert second.header("Idempotency-Key") == str(delivery.idempotency_key)
    assert second.header("X-Gitlab-Webhook-UUID") != first.header("X-Gitlab-Webhook-UUID")
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED
    hook.refresh_from_db()
    assert not hook.permanently_disabled and hook.recent_failures == 0


def test_a_failed_resend_does_not_count_against_the_hook(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = new_delivery(hook)
    deliver(delivery.pk)
    receiver.script(Reply(500))
    attempt = resend_delivery(delivery)
    assert attempt.response_status == 500 and not attempt.succeeded
    hook.refresh_from_db()
    assert hook.recent_failures == 0
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED


def test_resend_refuses_a_delivery_being_sent(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    delivery = new_delivery(hook)
    claim_delivery(delivery.pk, timezone.now())
    with pytest.raises(DeliveryInProgress, match="being sent right now"):
        resend_delivery(delivery)
    assert receiver.requests == []


def test_redeliver_failed_since_tries_each_once_more(
    settings, project, receiver, django_capture_on_commit_callbacks
):
    settings.HOOKS_RETRY_SCHEDULE = [0]
    hook = HookFactory(project=project, url=receiver.url)
    old = fail_once(hook, receiver)
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    recent = [fail_once(hook, receiver) for _ in range(2)]
    assert all(d.status == Delivery.Status.FAILED for d in recent)
    assert Hook.objects.get(pk=hook.pk).recent_failures == 3

    with django_capture_on_commit_callbacks() as callbacks:
        count = redeliver_failed_since(hook, timezone.now() - timedelta(days=1))
    assert count == 2
    assert queued_ids(callbacks) == [d.pk for d in recent]

    receiver.script(Reply(500))  # the first fails again and stays failed: no new schedule
    results = [deliver(d.pk) for d in recent]
    assert [a.trigger for a in results] == ["manual", "manual"]
    assert [Delivery.objects.get(pk=d.pk).status for d in recent] == ["failed", "succeeded"]
    assert Delivery.objects.get(pk=old.pk).status == Delivery.Status.FAILED
    assert Hook.objects.get(pk=hook.pk).recent_failures == 0  # the success reset it


def test_send_test_event_uses_the_newest_pipeline_and_re_enables(project, receiver):
    hook = HookFactory(project=project, url=receiver.url, permanently_disabled=True)
    services.create_pipeline(project, ref="main", sha=SHA)
    newest = services.create_pipeline(project, ref="release", sha="c" * 40)

    attempt = send_test_event(hook)

    assert attempt.trigger == "test" and attempt.delivery is None and attempt.succeeded
    [request] = receiver.requests
    assert json.loads(request.body)["object_attributes"]["id"] == newest.pk
    assert attempt.request_body == request.body.decode()
    assert uuid.UUID(request.header("Idempotency-Key"))  # a fresh key: no delivery behind it
    hook.refresh_from_db()
    assert not hook.permanently_disabled


def test_send_test_event_without_a_pipeline_says_so(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    with pytest.raises(NoPipelineError, match="Ensure the project has CI pipelines."):
        send_test_event(hook)
    assert receiver.requests == [] and DeliveryAttempt.objects.count() == 0


def test_a_failed_test_leaves_the_hook_disabled(project, receiver):
    hook = HookFactory(project=project, url=receiver.url, permanently_disabled=True)
    new_delivery(hook)
    receiver.script(Reply(500))
    attempt = send_test_event(hook)
    assert attempt.response_status == 500
    hook.refresh_from_db()
    assert hook.permanently_disabled and hook.recent_failures == 0


def test_reenable_hook_sends_what_waited(project, receiver, django_capture_on_commit_callbacks):
    hook = HookFactory(
        project=project,
        url=receiver.url,
        recent_failures=40,
        permanently_disabled=True,
        disabled_until=timezone.now() + timedelta(hours=1),
    )
    waiting = new_delivery(hook)
    with django_capture_on_commit_callbacks() as callbacks:
        hook = reenable_hook(hook)
    assert (hook.recent_failures, hook.disabled_until, hook.permanently_disabled) == (
        0,
        None,
        False,
    )
    assert queued_ids(callbacks) == [waiting.pk]
    assert deliver(waiting.pk) is not None
