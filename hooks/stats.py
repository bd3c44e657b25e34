"""The delivery log rolled up for the dashboard: attempts by hook, half hour and latency band
(``DeliveryStat``), counted where their answers are recorded, read instead of the log.

One upsert a batch (``INSERT … ON CONFLICT DO UPDATE``, on SQLite as on PostgreSQL), its rows
in key order. Latency percentiles come from the bands: "p99 within 250 ms" is exact about the
band, not the millisecond.

Locks (PostgreSQL; SQLite has one writer). Two batches with attempts for the same hook in
the same half hour and band write the same stat row: the later one waits for the earlier's
commit. That wait must never close a circle, so:

- the upsert is the last statement of a recording transaction (after the outcomes, the
  hooks' health and the next batch's claim), and its rows go in key order: a batch waiting
  here holds every lock it will take but the foreign key checks, and two batches take
  stat rows in the same order;
- the foreign key checks of the rows a batch added (attempts, stat rows, state changes)
  run at COMMIT, Django's foreign keys being DEFERRABLE INITIALLY DEFERRED, and lock each
  referenced hook FOR KEY SHARE: only FOR UPDATE, a changed id or a delete blocks that.
  The hook rows a batch does lock (``hooks.results.record_health``, only those whose health
  may change, not every hook it counts attempts for) are locked FOR NO KEY UPDATE.

With FOR UPDATE there, batch A (a success on hook 7, which it does not lock) wrote the stat
row of hook 7; batch B (a failure on hook 7) locked hook 7 and waited for A's stat row; A's
COMMIT checked its stat row's hook, waited for B's lock on hook 7, and PostgreSQL detected
a deadlock.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Sum

from hooks.models import DeliveryStat

PERIOD = timedelta(minutes=30)
# The upper bound of each latency band, in ms; a last band holds what took longer.
LATENCY_BANDS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def latency_band(duration_ms: int) -> int:
    return bisect.bisect_left(LATENCY_BANDS_MS, duration_ms)


def band_bound(band: int) -> int | None:
    """The band's upper bound in ms; None for the last (longer than every bound)."""
    return LATENCY_BANDS_MS[band] if band < len(LATENCY_BANDS_MS) else None


def period_of(at: datetime) -> datetime:
    seconds = int(PERIOD.total_seconds())
    return at.replace(minute=0, second=0, microsecond=0) + timedelta(
        seconds=(at.minute * 60 + at.second) // seconds * seconds
    )


def count_attempts(attempts: Iterable[tuple[int, datetime, bool, int]]) -> None:
    """Add (hook id, answered at, succeeded, duration ms) attempts to the rollup, in the
    caller's transaction."""
    counts: Counter = Counter()
    for hook_id, at, ok, duration_ms in attempts:
        key = (hook_id, period_of(at), latency_band(duration_ms))
        counts[(*key, ok)] += 1
    if not counts:
        return
    rows = sorted({key[:3] for key in counts})
    ops = connection.ops
    table = ops.quote_name(DeliveryStat._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"""
            INSERT INTO {table} (hook_id, period_start, latency_band, succeeded, failed)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (hook_id, period_start, latency_band) DO UPDATE
            SET succeeded = {table}.succeeded + excluded.succeeded,
                failed = {table}.failed + excluded.failed
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            [
                [
                    hook_id,
                    ops.adapt_datetimefield_value(period),
                    band,
                    counts[(hook_id, period, band, True)],
                    counts[(hook_id, period, band, False)],
                ]
                for hook_id, period, band in rows
            ],
        )


# --- Reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: datetime
    succeeded: int
    failed: int

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.total if self.total else None


def periods(since: datetime, until: datetime, hook_id: int | None = None) -> list[Period]:
    """Every half hour from ``since``'s to ``until``'s, with its counts (zeros included)."""
    stats = _stats(since, hook_id)
    sums = {
        row["period_start"]: row
        for row in stats.values("period_start").annotate(ok=Sum("succeeded"), ko=Sum("failed"))
    }
    result, start = [], period_of(since)
    while start <= until:
        row = sums.get(start, {})
        result.append(Period(start, row.get("ok") or 0, row.get("ko") or 0))
        start += PERIOD
    return result


def latency_percentiles(
    since: datetime, hook_id: int | None = None, quantiles: tuple[float, ...] = (0.5, 0.99)
) -> dict[float, int | None]:
    """Each quantile's latency band bound (ms): the quantile is within it. Missing when
    nothing was sent; None when it falls in the last band (longer than every bound)."""
    bands = dict(
        _stats(since, hook_id)
        .values("latency_band")
        .annotate(n=Sum("succeeded") + Sum("failed"))
        .values_list("latency_band", "n")
    )
    total = sum(bands.values())
    found: dict[float, int | None] = {}
    if not total:
        return found
    for quantile in quantiles:
        seen = 0
        for band in sorted(bands):
            seen += bands[band]
            if seen >= quantile * total:
                found[quantile] = band_bound(band)
                break
    return found


def failing_most(since: datetime, limit: int = 10) -> list[tuple[int, int, int]]:
    """(hook id, failed, succeeded) of the hooks with the most failed attempts since."""
    return [
        (row["hook_id"], row["ko"], row["ok"])
        for row in _stats(since)
        .values("hook_id")
        .annotate(ko=Sum("failed"), ok=Sum("succeeded"))
        .filter(ko__gt=0)
        .order_by("-ko", "hook_id")[:limit]
    ]


def _stats(since: datetime, hook_id: int | None = None):
    stats = DeliveryStat.objects.filter(period_start__gte=period_of(since)).order_by()
    return stats.filter(hook_id=hook_id) if hook_id is not None else stats


def prune(before: datetime) -> int:
    deleted, _ = DeliveryStat.objects.filter(period_start__lt=before).delete()
    return deleted
