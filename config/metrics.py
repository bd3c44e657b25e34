"""``/metrics``: Prometheus' text format, for a scraper holding ``PIPEHOOK_METRICS_TOKEN``.

Two sources make one scrape:
- what the processes counted (deliveries in ``hooks.metrics``, inbound requests here): with
  ``PROMETHEUS_MULTIPROC_DIR`` set (``manage.py serve`` sets it) every process writes its own
  files there and the scrape adds them up; without it, this process's own counts;
- the backlog and the hooks by state, read from the database at scrape time
  (``DatabaseCollector``), so they are right whichever process changed them;
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from hooks.models import Delivery, Hook

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "pipehook_http_requests",
    "Inbound HTTP requests, by the API dialect their path belongs to and the response status.",
    ["dialect", "status"],
)

# Path prefix -> dialect; the first that matches wins.
DIALECT_PREFIXES = (
    ("/api/v4/", "gitlab"),
    ("/api/graphql", "graphql"),
    ("/sei/", "sei"),
    ("/distelli/", "distelli"),
    ("/admin/", "admin"),
)


def dialect_of(path: str) -> str:
    for prefix, dialect in DIALECT_PREFIXES:
        if path.startswith(prefix):
            return dialect
    return "other"


class RequestMetricsMiddleware:
    """Counts every response by dialect and status."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        HTTP_REQUESTS.labels(
            dialect=dialect_of(request.path), status=str(response.status_code)
        ).inc()
        return response


class DatabaseCollector(Collector):
    """The backlog and the hooks by state, read at scrape time: two indexed queries on
    deliveries' (status, next_attempt_at) index, and a count per state of the hooks table (a
    row per registered URL, never large)."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "pipehook_database_up", "Whether the scrape could read the database (1) or not (0)."
        )
        try:
            metrics = list(self._read())
        except DatabaseError as error:
            logger.warning("/metrics could not read the database: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> Iterator[Metric]:
        now = timezone.now()
        pending = Delivery.objects.filter(status=Delivery.Status.PENDING)
        due = pending.filter(next_attempt_at__lte=now).aggregate(
            count=Count("pk"), oldest=Min("next_attempt_at")
        )
        yield GaugeMetricFamily(
            "pipehook_deliveries_pending",
            "Deliveries waiting for an attempt, now or at a later retry time.",
            value=pending.count(),
        )
        yield GaugeMetricFamily(
            "pipehook_deliveries_due",
            "Pending deliveries whose attempt time has come (the backlog).",
            value=due["count"],
        )
        oldest = (now - due["oldest"]).total_seconds() if due["oldest"] else 0.0
        yield GaugeMetricFamily(
            "pipehook_deliveries_oldest_due_age_seconds",
            "How long the most overdue pending delivery has been due (0 with no backlog).",
            value=max(0.0, oldest),
        )
        hooks = GaugeMetricFamily(
            "pipehook_hooks",
            "Hooks by state: active (sent to), resting (after failures), disabled.",
            labels=["state"],
        )
        for state, alert_status in HOOK_STATES.items():
            hooks.add_metric([state], Hook.objects.with_alert_status(alert_status, now).count())
        yield hooks


# The hooks' states as /metrics names them -> the alert statuses the API shows.
HOOK_STATES = {
    "active": Hook.AlertStatus.EXECUTABLE,
    "resting": Hook.AlertStatus.TEMPORARILY_DISABLED,
    "disabled": Hook.AlertStatus.DISABLED,
}


class _ThisProcess(Collector):
    """This process's own registry, when the processes keep no shared files."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def exposition() -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def authorized(request: HttpRequest) -> bool:
    expected = settings.PIPEHOOK_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not authorized(request):
        response = JsonResponse(
            {"message": "401 Unauthorized: send Authorization: Bearer PIPEHOOK_METRICS_TOKEN"},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # The text format every Prometheus reads (the metric names are plain ASCII).
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
