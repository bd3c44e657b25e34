"""Admin pages and the events API over a large delivery log, timed through HTTP.

    .venv/bin/python bench/admin_pages_bench.py [--rows 10000000] [--hooks 20] [--repeat 7]
                                                [--reuse] [--explain]

1. Generates ``--rows`` attempt rows (half as many deliveries, one event per ``--hooks``
   deliveries, as a fan-out writes them) in bulk SQL: ``INSERT … SELECT`` from
   generate_series on PostgreSQL, from a recursive CTE on SQLite, spread over the last 13
   days (inside the 14-day retention), 2 % of deliveries failed, the newest 1,000 pending.
   The dashboard's half-hourly rollup is filled from them the same way.
2. Starts the web server (``python -m config.webserver``, what ``manage.py serve`` runs) on
   the database, signs in as an admin with a session cookie, and times each page
   ``--repeat`` times after one warm-up request: median and slowest, milliseconds.
3. ``--explain`` prints the database's plan for each page's main queries.
4. ``--prune-days N`` then prunes the rows older than N days with a writer alongside
   (it deletes them: run it last).

DATABASE_URL picks the database (a PostgreSQL URL, or by default a SQLite file under var/);
``--reuse`` keeps rows already generated there. Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_SQLITE = ROOT / "var" / "bench-admin-pages.sqlite3"
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402 (after the environment is set)

django.setup()

import requests  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from hooks import stats  # noqa: E402
from hooks.log_pages import INDEX_ORDER  # noqa: E402
from hooks.models import Delivery, DeliveryAttempt, DeliveryStat, Hook  # noqa: E402
from pipelines.models import Project  # noqa: E402

ADMIN = ("bench-admin", "bench-admin-password")
SPAN_SECONDS = 13 * 24 * 3600
PENDING = 1000
CHUNK = 1_000_000
BODY = '{"object_kind":"pipeline","object_attributes":{"status":"success"},"padding":"%s"}' % (
    "x" * 1200
)


# --- Rows -------------------------------------------------------------------------------


def series(count: int, start: int) -> tuple[str, str]:
    """(a prefix, a FROM clause) giving ``g`` = start .. start + count - 1, per database."""
    end = start + count - 1
    if connection.vendor == "postgresql":
        return "", f"generate_series({start}, {end}) AS s(g)"
    return (
        f"WITH RECURSIVE s(g) AS (SELECT {start} UNION ALL SELECT g + 1 FROM s WHERE g < {end}) ",
        "s",
    )


def timestamp(offset_sql: str) -> str:
    """SQL for ``now - 13 days + offset_sql seconds``, stored as Django stores datetimes."""
    start = timezone.now() - timezone.timedelta(seconds=SPAN_SECONDS)
    if connection.vendor == "postgresql":
        return f"(TIMESTAMPTZ '{start.isoformat()}' + ({offset_sql}) * INTERVAL '1 second')"
    return (
        f"strftime('%Y-%m-%d %H:%M:%f', '{start:%Y-%m-%d %H:%M:%S}', "
        f"'+' || ({offset_sql}) || ' seconds')"
    )


def uuid_sql(prefix: int, value: str) -> str:
    if connection.vendor == "postgresql":
        return f"(lpad(to_hex({prefix}), 8, '0') || lpad(to_hex({value}), 24, '0'))::uuid"
    return f"printf('%08x%024x', {prefix}, {value})"


def generate(rows: int, hook_count: int) -> None:
    deliveries = rows // 2
    events = max(1, deliveries // hook_count)
    deliveries = events * hook_count
    rows = deliveries * 2
    user_model = get_user_model()
    if not user_model.objects.filter(username=ADMIN[0]).exists():
        user_model.objects.create_superuser(ADMIN[0], "bench@example.com", ADMIN[1])
    project = Project.objects.create(name="Bench", path="bench", namespace="acme")
    hooks = [
        Hook.objects.create(project=project, name=f"bench {n}", url=f"http://127.0.0.1:9/{n}")
        for n in range(hook_count)
    ]
    first_hook = hooks[0].pk
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-400000")
    step = SPAN_SECONDS / deliveries
    started = time.monotonic()

    def insert(table: str, count: int, columns: str, select: str) -> None:
        for start in range(1, count + 1, CHUNK):
            prefix, source = series(min(CHUNK, count - start + 1), start)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"{prefix}INSERT INTO {table} ({columns}) SELECT {select} FROM {source}"
                )
            done = min(count, start + CHUNK - 1)
            print(
                f"  {table}: {done:,} / {count:,} ({time.monotonic() - started:.0f} s)",
                flush=True,
            )

    body = BODY.replace("'", "''")
    insert(
        "hooks_event",
        events,
        "id, project_id, object_kind, change, status, previous_status, body, uuid, created_at",
        f"g, {project.pk}, 'pipeline', 'finished', 'success', 'running', '{body}', "
        f"{uuid_sql(1, 'g')}, {timestamp(f'(g - 1) * {hook_count} * {step}')}",
    )
    failed = "g % 50 = 0"
    pending = f"g > {deliveries - PENDING}"
    insert(
        "hooks_delivery",
        deliveries,
        "id, event_id, hook_id, order_key, sequence, status, idempotency_key, attempt_count, "
        "next_attempt_at, manual_redelivery, failure_counted, last_response_status, last_error, "
        "created_at, finished_at",
        f"g, (g - 1) / {hook_count} + 1, {first_hook} + (g - 1) % {hook_count}, "
        # One event per pipeline (order_key): each delivery is the first of its stream.
        f"(g - 1) / {hook_count} + 1, 1, "
        f"CASE WHEN {pending} THEN 'pending' WHEN {failed} THEN 'failed' ELSE 'succeeded' END, "
        f"{uuid_sql(2, 'g')}, 2, {timestamp(f'g * {step}')}, false, false, "
        f"CASE WHEN {failed} THEN 500 ELSE 200 END, "
        f"CASE WHEN {failed} THEN 'HTTP 500' ELSE '' END, {timestamp(f'g * {step}')}, "
        f"CASE WHEN {pending} THEN NULL ELSE {timestamp(f'g * {step}')} END",
    )
    # Two attempts a delivery: the first fails one time in ten, the second as its delivery.
    delivery = "((g - 1) / 2 + 1)"
    ok = f"((g % 2 = 1 AND {delivery} % 10 <> 0) OR (g % 2 = 0 AND {delivery} % 50 <> 0))"
    insert(
        "hooks_deliveryattempt",
        rows,
        "id, hook_id, delivery_id, attempt_number, trigger, url, request_headers, request_body, "
        "response_status, response_headers, response_body, response_body_truncated, duration_ms, "
        "error, succeeded, created_at",
        f"g, {first_hook} + ({delivery} - 1) % {hook_count}, {delivery}, 2 - g % 2, 'scheduled', "
        "'http://127.0.0.1:9/hook', '{}', '', "
        f"CASE WHEN {ok} THEN 200 ELSE 500 END, '{{}}', 'ok', false, 5 + g % 200, '', "
        f"{ok}, {timestamp(f'{delivery} * {step} + g % 2')}",
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in ("hooks_event", "hooks_delivery", "hooks_deliveryattempt"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            cursor.execute("ANALYZE")
    print(f"generated {rows:,} attempts in {time.monotonic() - started:.0f} s", flush=True)


def fill_rollup() -> None:
    """The dashboard's rollup (``hooks.stats``), from the generated attempts: what the
    workers would have counted while recording them."""
    started = time.monotonic()
    bands = " ".join(
        f"WHEN duration_ms <= {bound} THEN {band}"
        for band, bound in enumerate(stats.LATENCY_BANDS_MS)
    )
    band = f"CASE {bands} ELSE {len(stats.LATENCY_BANDS_MS)} END"
    if connection.vendor == "postgresql":
        period = "to_timestamp(floor(extract(epoch FROM created_at) / 1800) * 1800)"
    else:
        period = (
            "strftime('%Y-%m-%d %H:', created_at) || CASE WHEN CAST(strftime('%M', created_at)"
            " AS INTEGER) < 30 THEN '00' ELSE '30' END || ':00'"
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO hooks_deliverystat (hook_id, period_start, latency_band, succeeded, "
            f"failed) SELECT hook_id, {period}, {band}, "
            "SUM(CASE WHEN succeeded THEN 1 ELSE 0 END), SUM(CASE WHEN succeeded THEN 0 ELSE 1 END)"
            f" FROM hooks_deliveryattempt GROUP BY hook_id, {period}, {band}"
        )
    rows = DeliveryStat.objects.count()
    print(f"rollup: {rows:,} rows from the log in {time.monotonic() - started:.0f} s", flush=True)


# --- Pages ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "config.webserver", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=20)
            return server
        except requests.RequestException:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the web server did not start")


def signed_in(base: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/admin/login/")
    response = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "username": ADMIN[0],
            "password": ADMIN[1],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": f"{base}/admin/login/"},
    )
    if "sessionid" not in session.cookies:
        raise SystemExit(f"could not sign in: {response.status_code}")
    return session


def pages() -> list[tuple[str, str]]:
    hook = Hook.objects.order_by("pk").first()
    project = hook.project_id
    events = f"/api/v4/projects/{project}/hooks/{hook.pk}/events"
    # The 10th hook's every first attempt got a 500 (``ok`` in ``generate``): a class it had
    # often, where hook 1 never had one.
    failing = Hook.objects.order_by("pk")[9:10].first() or hook
    failing_events = f"/api/v4/projects/{project}/hooks/{failing.pk}/events"
    return [
        ("admin index (dashboard)", "/admin/"),
        ("deliveries", "/admin/hooks/delivery/"),
        ("deliveries, page 50", "/admin/hooks/delivery/?p=50"),
        ("deliveries of a hook", f"/admin/hooks/delivery/?hook__id__exact={hook.pk}"),
        ("deliveries failed", "/admin/hooks/delivery/?status__exact=failed"),
        ("attempts", "/admin/hooks/deliveryattempt/"),
        ("attempts, page 50", "/admin/hooks/deliveryattempt/?p=50"),
        ("attempts of a hook", f"/admin/hooks/deliveryattempt/?hook__id__exact={hook.pk}"),
        ("hook page", f"/admin/hooks/hook/{hook.pk}/change/"),
        ("events API", f"/api/v4/projects/{project}/hooks/{hook.pk}/events"),
        ("events API, page 20", f"/api/v4/projects/{project}/hooks/{hook.pk}/events?page=20"),
        ("events API, server failures (none)", f"{events}?status=server_failure"),
        ("events API, client failures (none)", f"{events}?status=client_failure"),
        ("events API, 503 (none)", f"{events}?status=503"),
        ("events API, successful", f"{events}?status=successful"),
        ("events API, successful, page 20", f"{events}?status=successful&page=20"),
        ("events API, server failures (many)", f"{failing_events}?status=server_failure"),
        ("events API, 500 and 4xx (many)", f"{failing_events}?status=500,client_failure"),
        (
            "attempts of a hook, successful",
            f"/admin/hooks/deliveryattempt/?hook__id__exact={hook.pk}&response=successful",
        ),
        (
            "attempts of a hook, server failures",
            f"/admin/hooks/deliveryattempt/?hook__id__exact={hook.pk}&response=server_failure",
        ),
        ("attempts, server failures", "/admin/hooks/deliveryattempt/?response=server_failure"),
    ]


def time_pages(base: str, session: requests.Session, repeat: int) -> list[tuple]:
    results = []
    for name, path in pages():
        session.get(base + path)  # warm-up
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = session.get(base + path)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{path}: HTTP {response.status_code}")
        results.append((name, path, statistics.median(times), max(times)))
        print(f"  {name}: median {statistics.median(times):.0f} ms", flush=True)
    return results


def explain() -> None:
    hook = Hook.objects.order_by("pk").first()
    queries = {
        "attempts page": DeliveryAttempt.objects.select_related("hook").order_by("-id")[:100],
        "attempts of a hook (page, events API)": hook.attempts.order_by("-id")[:100],
        "attempts of a hook counted up to 10,001": hook.attempts.order_by("-id")[:10_001],
        "deliveries failed": Delivery.objects.filter(status="failed").order_by("-id")[:100],
        "a hook's failed deliveries counted": hook.deliveries.filter(status="failed").order_by()[
            :10_001
        ],
        "a hook's test requests": hook.attempts.filter(trigger="test").order_by("-id")[:5],
    }
    # The status filter's reads (hooks.log_pages): a class counted, the statuses of a class
    # found, one status and no response each newest first.
    by_status = hook.attempts.order_by(*INDEX_ORDER).values_list("id", flat=True)
    queries |= {
        "a hook's server failures counted": by_status.filter(
            response_status__gte=500, response_status__lt=600
        )[:10_001],
        "the next status of a class": hook.attempts.filter(
            response_status__gt=199, response_status__lt=300
        )
        .order_by("response_status")
        .values_list("response_status", flat=True)[:1],
        "one status, newest first": by_status.filter(
            response_status__gte=200, response_status__lt=201
        )[:21],
        "no response, newest first": by_status.filter(response_status__isnull=True)[:21],
    }
    for name, queryset in queries.items():
        print(f"\n-- {name}\n{queryset.explain()}")


def prune_with_a_writer(retention_days: int) -> None:
    """Prune what is older than ``retention_days`` (``hooks.sweeper.prune_delivery_logs``)
    while another thread writes a log row every 20 ms, as a worker would, on its own
    connection; prints the pruning rate and how long the writer's writes took."""
    import threading

    from django.conf import settings
    from django.db import connections

    from hooks.sweeper import prune_delivery_logs

    hook = Hook.objects.order_by("pk").first()
    waits: list[float] = []
    done = threading.Event()

    def write() -> None:
        while not done.is_set():
            started = time.perf_counter()
            with transaction.atomic():
                DeliveryAttempt.objects.create(hook=hook, url="http://127.0.0.1:9/w")
            waits.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
        connections.close_all()

    settings.HOOKS_LOG_RETENTION_DAYS = retention_days
    before = DeliveryAttempt.objects.count()
    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    try:
        deleted = prune_delivery_logs()
    finally:
        done.set()
        writer.join()
    seconds = time.monotonic() - started
    waits.sort()
    print(
        f"\nprune: {deleted:,} of {before:,} attempts (and their deliveries and events) in "
        f"{seconds:.0f} s, {deleted / seconds:,.0f} attempts/s; a writer alongside: "
        f"{len(waits)} writes, median {statistics.median(waits):.1f} ms, "
        f"p99 {waits[int(len(waits) * 0.99)]:.0f} ms, slowest {waits[-1]:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="attempt rows")
    parser.add_argument("--hooks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep rows generated before")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--prune-days", type=int, help="last, prune what is older, with a writer alongside"
    )
    args = parser.parse_args()

    database = connection.settings_dict
    print(f"database: {connection.vendor} {database['NAME']}", flush=True)
    if not args.reuse:
        if connection.vendor == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database['NAME']}{suffix}").unlink(missing_ok=True)
        else:
            call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    if not args.reuse:
        generate(args.rows, args.hooks)
    if not DeliveryStat.objects.exists():
        fill_rollup()
    total = DeliveryAttempt.objects.order_by().values("id").last()
    print(f"attempt rows: about {total['id'] if total else 0:,}", flush=True)
    connection.close()

    port = free_port()
    server = start_server(port)
    try:
        base = f"http://127.0.0.1:{port}"
        results = time_pages(base, signed_in(base), args.repeat)
    finally:
        server.terminate()
        server.wait(10)
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    print(f"\nload average after: {' '.join(load)}")
    print("\n| page | path | median ms | slowest ms |\n|---|---|---:|---:|")
    for name, path, median, slowest in results:
        print(f"| {name} | `{path}` | {median:.0f} | {slowest:.0f} |")
    if args.explain:
        explain()
    if args.prune_days is not None:
        prune_with_a_writer(args.prune_days)


if __name__ == "__main__":
    main()
