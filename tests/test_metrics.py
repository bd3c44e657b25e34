"""/metrics in one process: who may scrape it, and that what happens moves what it shows.

Counters live on across tests in this process, so each test reads them before and after.
The multiprocess mode `manage.py serve` runs in is tested in tests/test_operating.py.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hooks.delivery import deliver
from hooks.models import Delivery
from tests.factories import DeliveryFactory, HookFactory
from tests.hooks.deliveries import new_delivery
from tests.hooks.receiver import Reply

TOKEN = "scrape-me-0123456789"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.PIPEHOOK_METRICS_TOKEN = TOKEN
    settings.HOOKS_RETRY_JITTER = 0


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: {(name, sorted labels): value}."""
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.content.decode())
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_metrics_need_the_token(client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    answer = client.get("/metrics", **headers)
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"pipehook_" not in answer.content


@pytest.mark.django_db
def test_no_token_set_means_nobody_scrapes(client, settings):
    settings.PIPEHOOK_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer").status_code == 401


def test_a_missing_token_is_generated_once_and_kept_for_the_owner_only(tmp_path, monkeypatch):
    import importlib

    import config.settings

    monkeypatch.setenv("PIPEHOOK_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("PIPEHOOK_METRICS_TOKEN", raising=False)
    try:
        first = importlib.reload(config.settings).PIPEHOOK_METRICS_TOKEN
        again = importlib.reload(config.settings).PIPEHOOK_METRICS_TOKEN
    finally:
        monkeypatch.undo()
        importlib.reload(config.settings)
    kept = tmp_path / "metrics_token"
    assert len(first) >= 32 and first == again == kept.read_text()
    assert kept.stat().st_mode & 0o777 == 0o600


@pytest.mark.django_db
def test_deliveries_count_by_outcome_and_hook(client, settings, project, receiver):
    settings.HOOKS_RETRY_SCHEDULE = [0, 0]  # a second failure is the last
    hook = HookFactory(project=project, url=receiver.url)
    labels = {"hook": str(hook.pk)}
    before = scrape(client)

    def attempt(reply: Reply, delivery: Delivery) -> None:
        receiver.script(reply)
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert deliver(delivery.pk) is not None

    failing = new_delivery(hook)
    attempt(Reply(500), failing)
    attempt(Reply(503), failing)
    attempt(Reply(200), new_delivery(hook, sha="d" * 40))
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    total = "pipehook_deliveries_total"
    assert moved(total, outcome="failed_attempt", **labels) == 1
    assert moved(total, outcome="given_up", **labels) == 1
    assert moved(total, outcome="succeeded", **labels) == 1
    assert moved("pipehook_delivery_attempt_duration_seconds_count") == 3
    # Only the success reached its receiver, a moment after its event.
    assert moved("pipehook_event_to_receiver_seconds_count") == 1
    assert moved("pipehook_event_to_receiver_seconds_bucket", le="+Inf") == 1
    assert moved("pipehook_event_to_receiver_seconds_sum") < 30


@pytest.mark.django_db
def test_backlog_and_hooks_by_state_are_read_from_the_database(client):
    now = timezone.now()
    active = HookFactory()
    HookFactory(recent_failures=4, disabled_until=now + timedelta(minutes=5))
    HookFactory(permanently_disabled=True)
    HookFactory(disabled_until=now - timedelta(minutes=1))  # its rest is over: active
    empty = scrape(client)
    assert value(empty, "pipehook_database_up") == 1
    assert value(empty, "pipehook_deliveries_due") == 0
    assert value(empty, "pipehook_deliveries_oldest_due_age_seconds") == 0
    assert value(empty, "pipehook_hooks", state="active") == 2
    assert value(empty, "pipehook_hooks", state="resting") == 1
    assert value(empty, "pipehook_hooks", state="disabled") == 1

    DeliveryFactory(hook=active, next_attempt_at=now - timedelta(minutes=10))
    DeliveryFactory(hook=active, next_attempt_at=now - timedelta(seconds=5))
    DeliveryFactory(hook=active, next_attempt_at=now + timedelta(minutes=5))  # a later retry
    DeliveryFactory(hook=active, status=Delivery.Status.SUCCEEDED, next_attempt_at=now)
    backlog = scrape(client)
    assert value(backlog, "pipehook_deliveries_due") == 2
    assert value(backlog, "pipehook_deliveries_pending") == 3
    assert 600 <= value(backlog, "pipehook_deliveries_oldest_due_age_seconds") < 660


@pytest.mark.django_db
def test_inbound_requests_count_by_dialect_and_status(client):
    before = scrape(client)
    client.get("/api/v4/projects")  # no token
    client.get("/api/v4/projects")
    client.get("/distelli/acme/apps/web/events")
    client.get("/")  # the way to the admin
    after = scrape(client)

    def moved(**labels):
        name = "pipehook_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(dialect="gitlab", status="401") == 2
    assert moved(dialect="distelli", status="401") == 1
    assert moved(dialect="other", status="302") == 1
    # A scrape is counted once it is answered: the first one shows in the second.
    assert moved(dialect="other", status="200") == 1
