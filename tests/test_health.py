"""/healthz and /readyz against a real broker: up, refusing, and silent."""

import socket
import time

import pytest

from config import health


@pytest.fixture(autouse=True)
def fresh_answers(settings, redis_url):
    settings.CELERY_BROKER_URL = redis_url
    settings.PIPEHOOK_HEALTH_TIMEOUT_SECONDS = 1.0
    health.cache.clear()
    yield
    health.cache.clear()


@pytest.fixture
def refusing_broker(settings):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def silent_broker(settings):
    """A port that takes connections and never says a word (a hung Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        yield


@pytest.mark.django_db
def test_both_answer(client):
    for path in ("/healthz", "/readyz"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.json() == {
            "status": "ok",
            "checks": {"database": {"ok": True}, "broker": {"ok": True}},
        }


@pytest.mark.django_db
def test_a_refusing_broker_fails_healthz_with_the_reason_but_not_readyz(
    client, refusing_broker, caplog
):
    started = time.monotonic()
    answer = client.get("/healthz")
    assert time.monotonic() - started < 1.0  # refused at once: not retried
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"]["ok"] is False
    assert "Connection refused" in body["checks"]["broker"]["reason"]
    assert not [r for r in caplog.records if r.name == "django.request"]  # not once a probe
    # Reports are still taken without the broker: the balancer keeps this process.
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["broker"]["ok"] is False


@pytest.mark.django_db
def test_a_silent_broker_is_given_up_on_within_the_timeout(client, silent_broker):
    started = time.monotonic()
    answer = client.get("/healthz")
    elapsed = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json()["checks"]["broker"]["ok"] is False
    assert elapsed < 2.0, elapsed


@pytest.mark.django_db
def test_a_check_that_hangs_is_reported_not_waited_for(client, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "database", lambda: time.sleep(5))
    started = time.monotonic()
    answer = client.get("/readyz")
    assert time.monotonic() - started < 1.5
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"] == {"ok": False, "reason": "no answer within 1 s"}


@pytest.mark.django_db
def test_probes_within_the_cache_time_share_one_check(client, monkeypatch, settings):
    settings.PIPEHOOK_HEALTH_CACHE_SECONDS = 60
    calls = []
    monkeypatch.setitem(health.CHECKS, "broker", lambda: calls.append(1))
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert len(calls) == 1
    settings.PIPEHOOK_HEALTH_CACHE_SECONDS = 0
    client.get("/healthz")
    assert len(calls) == 2


def test_a_failing_check_never_shows_a_password(monkeypatch, settings):
    def fails():
        raise ConnectionError("could not log in to redis://ops:hunter2@10.0.0.1:6379/0")

    monkeypatch.setitem(health.CHECKS, "broker", fails)
    monkeypatch.setitem(health.CHECKS, "database", lambda: None)
    reason = health.run_checks()["broker"].reason
    assert "hunter2" not in reason and "ConnectionError" in reason
