"""The pages that must stay fast with millions of log rows: the admin's delivery and attempt
lists, the hook page and the events API count no whole table, and every query they make on
deliveries and attempts reads an index in the order it returns (no sort of the whole set).

Timings are bench/admin_pages_bench.py's business (docs/benchmarks.md); these tests hold the
query shapes that make them, on whichever database the suite runs. The counting limit is
lowered so that a few rows stand for "more than the limit".
"""

import logging
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hooks import sweeper
from hooks.admin import common
from hooks.admin.delivery_admin import DeliveryAdmin, DeliveryAttemptAdmin
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from pipelines.api.gitlab import pagination
from tests.factories import DeliveryFactory

LOG_TABLES = ("hooks_delivery", "hooks_deliveryattempt")
ROWS = 7
LIMIT = 4  # fewer than ROWS: the lists are "longer than counted"


@pytest.fixture
def low_count_limit(monkeypatch):
    monkeypatch.setattr(common, "COUNT_LIMIT", LIMIT)
    monkeypatch.setattr(pagination, "MAX_COUNT_LIMIT", LIMIT)
    # Pages shorter than the limit, as in production (100 rows a page, 10,000 counted).
    for admin_class in (DeliveryAdmin, DeliveryAttemptAdmin):
        monkeypatch.setattr(admin_class, "list_per_page", 2)


@pytest.fixture
def log(project):
    """Two hooks; the first with ROWS deliveries of one attempt each and a test request."""
    hook = Hook.objects.create(project=project, name="busy", url="http://127.0.0.1:9/a")
    other = Hook.objects.create(project=project, name="quiet", url="http://127.0.0.1:9/b")
    for number in range(ROWS):
        delivery = DeliveryFactory(
            hook=hook,
            status=Delivery.Status.FAILED if number % 2 else Delivery.Status.SUCCEEDED,
            attempt_count=1,
        )
        DeliveryAttempt.objects.create(
            hook=hook,
            delivery=delivery,
            url=hook.url,
            response_status=500 if number % 2 else 200,
            succeeded=not number % 2,
        )
    DeliveryAttempt.objects.create(
        hook=hook, url=hook.url, trigger=DeliveryAttempt.Trigger.TEST, response_status=200
    )
    DeliveryFactory(hook=other)
    return hook


def log_queries(captured) -> list[str]:
    """The SELECTs that read the delivery log's tables."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].lstrip().upper().startswith("SELECT")
        and any(f'"{table}"' in query["sql"] for table in LOG_TABLES)
    ]


def plan(sql: str) -> str:
    """The database's plan for ``sql``, as text. PostgreSQL is told to avoid sequential scans
    and sorts at any cost, so a plan that still has one has no index to use instead (on a
    few rows it would otherwise prefer them anyway)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}")
            lines = [row[0] for row in cursor.fetchall()]
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_sort")
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            lines = [row[-1] for row in cursor.fetchall()]
    return "\n".join(lines)


def assert_reads_indexes(sql: str) -> None:
    text = plan(sql)
    if connection.vendor == "postgresql":
        assert "Seq Scan" not in text and not re.search(r"^\s*(->\s*)?Sort\b", text, re.M), (
            f"{sql}\n{text}"
        )
    else:
        # A TEMP B-TREE is a sort. A SCAN without an index walks the rowid (the primary
        # key) in order: only a LIMITed query, which stops early, may do that.
        assert "TEMP B-TREE" not in text, f"{sql}\n{text}"
        for line in text.splitlines():
            if re.match(r"SCAN hooks_\w+$", line.strip()):
                assert "LIMIT" in sql, f"{sql}\n{text}"


def assert_bounded_counts(queries: list[str]) -> None:
    counts = [sql for sql in queries if "COUNT(" in sql.upper()]
    for sql in counts:
        assert re.search(r"LIMIT\s+\d+", sql), f"a count with no bound: {sql}"


def get_page(client, url: str):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response, log_queries(captured)


@pytest.mark.parametrize(
    "page, filters",
    [
        ("admin:hooks_delivery_changelist", ""),
        ("admin:hooks_delivery_changelist", "?hook__id__exact={hook}"),
        ("admin:hooks_delivery_changelist", "?status__exact=failed"),
        ("admin:hooks_deliveryattempt_changelist", ""),
        ("admin:hooks_deliveryattempt_changelist", "?hook__id__exact={hook}"),
        # More matches than counted, and fewer (read through hooks_attempt_hook_status_idx).
        ("admin:hooks_deliveryattempt_changelist", "?hook__id__exact={hook}&response=successful"),
        (
            "admin:hooks_deliveryattempt_changelist",
            "?hook__id__exact={hook}&response=server_failure",
        ),
    ],
)
def test_admin_log_lists_count_up_to_a_limit_along_indexes(
    admin_client, log, low_count_limit, page, filters
):
    url = reverse(page) + filters.format(hook=log.pk)
    response, queries = get_page(admin_client, url)
    assert queries
    assert_bounded_counts(queries)
    for sql in queries:
        assert_reads_indexes(sql)
    body = response.content.decode()
    capped = response.context["cl"].paginator.capped
    if capped:
        assert f"more than {LIMIT:,}" in body
    # The page shows the newest rows, as many as a page holds.
    shown = response.context["cl"].result_list
    assert list(shown) == sorted(shown, key=lambda row: -row.pk)


def test_a_capped_list_still_pages(admin_client, log, low_count_limit):
    url = reverse("admin:hooks_deliveryattempt_changelist")
    response, _ = get_page(admin_client, url + "?p=2")
    newest = list(DeliveryAttempt.objects.order_by("-id").values_list("pk", flat=True))
    assert [row.pk for row in response.context["cl"].result_list] == newest[2:4]
    assert "more than 4" in response.content.decode()


def test_hook_page_counts_each_status_up_to_the_limit(admin_client, log, low_count_limit):
    url = reverse("admin:hooks_hook_change", args=[log.pk])
    response, queries = get_page(admin_client, url)
    assert_bounded_counts(queries)
    for sql in queries:
        assert_reads_indexes(sql)
    counts = {value: count for value, count, _ in response.context["delivery_counts"]}
    # 4 succeeded of 7 is not more than the limit of 4; 3 failed; none pending.
    assert counts == {"pending": "0", "sending": "0", "succeeded": "4", "failed": "3"}
    Delivery.objects.filter(hook=log).update(status=Delivery.Status.SUCCEEDED)
    response, _ = get_page(admin_client, url)
    counts = {value: count for value, count, _ in response.context["delivery_counts"]}
    assert counts["succeeded"] == "more than 4"
    assert len(response.context["recent_tests"]) == 1


def test_events_api_stops_counting_past_the_limit_as_gitlab_does(api_client, log, low_count_limit):
    url = f"/api/v4/projects/{log.project_id}/hooks/{log.pk}/events"
    with CaptureQueriesContext(connection) as captured:
        first = api_client.get(url, {"per_page": 3})
    assert first.status_code == 200
    queries = log_queries(captured)
    assert_bounded_counts(queries)
    for sql in queries:
        assert_reads_indexes(sql)
    newest = list(log.attempts.order_by("-id").values_list("pk", flat=True))
    assert [entry["id"] for entry in first.json()] == newest[:3]
    # GitLab's headers without counts: no totals, no "last" link; next and prev still.
    assert "X-Total" not in first.headers and "X-Total-Pages" not in first.headers
    assert first.headers["X-Next-Page"] == "2" and first.headers["X-Prev-Page"] == ""
    assert 'rel="last"' not in first.headers["Link"]
    assert 'rel="next"' in first.headers["Link"] and 'rel="first"' in first.headers["Link"]
    last = api_client.get(url, {"per_page": 3, "page": 3})
    assert [entry["id"] for entry in last.json()] == newest[6:]
    assert last.headers["X-Next-Page"] == "" and last.headers["X-Prev-Page"] == "2"
    beyond = api_client.get(url, {"per_page": 3, "page": 4})
    assert beyond.json() == []
    assert beyond.headers["X-Next-Page"] == "" and beyond.headers["X-Prev-Page"] == ""


@pytest.mark.parametrize(
    "status_filter",
    # With the log above and a limit of 4: 5 successful (more than counted), 3 server
    # failures (all counted), no client failure; classes, codes and both together.
    ["successful", "server_failure", "client_failure", "500", "200,server_failure"],
)
def test_events_api_reads_a_status_filter_from_the_hook_status_index(
    api_client, log, low_count_limit, status_filter
):
    url = f"/api/v4/projects/{log.project_id}/hooks/{log.pk}/events"
    for page in (1, 2):
        with CaptureQueriesContext(connection) as captured:
            response = api_client.get(url, {"per_page": 2, "page": page, "status": status_filter})
        assert response.status_code == 200
        queries = log_queries(captured)
        assert_bounded_counts(queries)
        by_status = [sql for sql in queries if '"response_status"' in sql.split("WHERE", 1)[-1]]
        assert by_status
        for sql in queries:
            assert_reads_indexes(sql)
        # Counted, listed and walked along the hook's entries by status, whatever the planner
        # would estimate for a walk of the hook's whole log (docs/benchmarks.md).
        for sql in by_status:
            assert "hooks_attempt_hook_status_idx" in plan(sql), f"{sql}\n{plan(sql)}"


def test_events_api_counts_a_short_log_in_full(api_client, log):
    url = f"/api/v4/projects/{log.project_id}/hooks/{log.pk}/events"
    response = api_client.get(url, {"per_page": 3})
    assert response.headers["X-Total"] == str(ROWS + 1)
    assert response.headers["X-Total-Pages"] == "3"
    assert 'rel="last"' in response.headers["Link"]


def test_pruning_deletes_in_bounded_batches_with_progress(project, settings, monkeypatch, caplog):
    settings.HOOKS_LOG_RETENTION_DAYS = 1
    monkeypatch.setattr(sweeper, "PRUNE_PROGRESS_EVERY", 2)
    old = timezone.now() - timezone.timedelta(days=2)
    hook = Hook.objects.create(project=project, url="http://127.0.0.1:9/a")
    for _ in range(5):
        delivery = DeliveryFactory(hook=hook, status=Delivery.Status.SUCCEEDED, finished_at=old)
        DeliveryAttempt.objects.create(hook=hook, delivery=delivery, url=hook.url, created_at=old)
    Event.objects.update(created_at=old)
    kept = DeliveryFactory(hook=hook, status=Delivery.Status.PENDING)
    DeliveryAttempt.objects.create(hook=hook, delivery=kept, url=hook.url)

    with (
        caplog.at_level(logging.INFO, logger="hooks.sweeper"),
        CaptureQueriesContext(connection) as captured,
    ):
        assert sweeper.prune_delivery_logs(batch_size=2) == 5

    deletes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("DELETE")]
    # Each DELETE names at most one batch of ids: 3 batches of attempts, 3 of deliveries
    # (and the attempts they would take with them, none left), 3 of events.
    for sql in deletes:
        assert sql.count(",") <= 1, sql
    assert len([sql for sql in deletes if '"hooks_event"' in sql]) == 3
    assert "Pruning delivery attempts: 4 deleted so far" in caplog.text
    assert list(DeliveryAttempt.objects.values_list("delivery_id", flat=True)) == [kept.pk]
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Event.objects.count() == 1
