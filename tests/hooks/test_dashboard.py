"""The delivery dashboard: the rollup counted where answers are recorded, and the front page
and hook page drawn from it (never from the log), against a real receiver on 127.0.0.1."""

import re
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hooks import stats
from hooks.delivery import deliver_batch
from hooks.models import DeliveryStat
from hooks.services import resend_delivery, send_test_event
from pipelines import services
from tests.factories import HookFactory, ProjectFactory
from tests.hooks.receiver import Reply


def deliver(hook, receiver, replies: list[int]) -> list[int]:
    """One pipeline per reply, its creation delivery answered with that status."""
    ids = []
    for number, status in enumerate(replies):
        services.create_pipeline(hook.project, ref="main", sha=f"{number:040x}")
        delivery = hook.deliveries.order_by("-pk").first()
        receiver.default = Reply(status)
        deliver_batch([delivery.pk])
        ids.append(delivery.pk)
    return ids


def test_periods_and_bands():
    at = datetime(2026, 5, 1, 14, 47, 12, tzinfo=UTC)
    assert stats.period_of(at) == datetime(2026, 5, 1, 14, 30, tzinfo=UTC)
    assert stats.period_of(at.replace(minute=29)) == datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    assert [stats.latency_band(ms) for ms in (0, 10, 11, 250, 10000, 10001)] == [0, 0, 1, 4, 9, 10]
    assert stats.band_bound(10) is None


def test_every_recorded_attempt_is_counted_in_the_rollup(project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    ids = deliver(hook, receiver, [200, 200, 500, 200])
    rows = DeliveryStat.objects.filter(hook=hook)
    assert sum(rows.values_list("succeeded", flat=True)) == 3
    assert sum(rows.values_list("failed", flat=True)) == 1
    assert {row.period_start for row in rows} == {stats.period_of(timezone.now())}
    # A person's resend and test count too (the failed delivery resent, now answered 200).
    receiver.default = Reply(200)
    resend_delivery(hook.deliveries.get(pk=ids[2]))
    send_test_event(hook)
    assert sum(rows.values_list("succeeded", flat=True)) == 5


def test_percentiles_read_the_bands(project):
    hook = HookFactory(project=project)
    now = timezone.now()
    # 98 fast (band ≤ 10 ms), 1 at ≤ 250 ms, 1 over 10 s.
    stats.count_attempts([(hook.pk, now, True, 3)] * 98)
    stats.count_attempts([(hook.pk, now, True, 200), (hook.pk, now, False, 20_000)])
    found = stats.latency_percentiles(now - timedelta(hours=1))
    assert found == {0.5: 10, 0.99: 250}
    assert stats.latency_percentiles(now - timedelta(hours=1), quantiles=(1.0,)) == {1.0: None}
    assert stats.failing_most(now - timedelta(hours=1)) == [(hook.pk, 1, 99)]


def test_front_page_dashboard_reads_the_rollup_not_the_log(admin_client, project, receiver):
    quiet = HookFactory(project=project, url=receiver.url, name="quiet")
    noisy = HookFactory(project=ProjectFactory(), url=receiver.url, name="noisy")
    deliver(quiet, receiver, [200, 200])
    deliver(noisy, receiver, [500, 500, 200])
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    sql = [query["sql"] for query in captured.captured_queries]
    assert not [q for q in sql if '"hooks_deliveryattempt"' in q]
    for query in sql:
        if '"hooks_delivery"' in query and "COUNT(" in query.upper():
            assert re.search(r"LIMIT \d+", query), query

    board = response.context["delivery_dashboard"]
    assert (board["succeeded"], board["failed"]) == (3, 2)
    assert board["p50"].startswith("≤ ") and board["p99"].startswith("≤ ")
    # The two failed deliveries wait for their retry.
    assert board["pending"] == "2"
    assert [row["hook"] for row in board["failing"]] == [noisy]
    page = response.content.decode()
    chart = re.search(r'<svg id="delivery-chart".*?</svg>', page, re.S).group(0)
    heights = [float(h) for h in re.findall(r'class="bar-succeeded"[^>]* height="([\d.]+)"', chart)]
    assert len(heights) == 49 and max(heights) > 0
    assert 'data-succeeded="3" data-failed="2"' in chart
    assert 'id="failing-hooks"' in page and "noisy" in page


def test_dashboard_is_for_those_who_may_see_deliveries(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "delivery_dashboard" not in response.context
    assert 'id="delivery-dashboard"' not in response.content.decode()


def test_hook_page_success_rate_chart(admin_client, project, receiver):
    hook = HookFactory(project=project, url=receiver.url)
    deliver(hook, receiver, [200, 500, 200, 200])
    page = admin_client.get(reverse("admin:hooks_hook_change", args=[hook.pk])).content.decode()
    chart = re.search(r'<svg id="hook-success-chart".*?</svg>', page, re.S).group(0)
    rates = re.findall(r'data-rate="([\d.]*)"', chart)
    assert rates[-1] == "0.7500" and set(rates[:-1]) <= {""}
    assert "4 attempts" in page
