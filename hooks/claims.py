"""Every statement that claims, loads, inserts or finds the next delivery, with the ORM twins
of the claim's conditions and the worker's write transaction.

The claim is one conditional ``UPDATE … RETURNING`` for a batch: only pending, due
deliveries whose hook may be sent to and that have no earlier unfinished delivery for the
same (hook, pipeline) become ``sending``, with a lease. The database re-checks every
condition on each row it locks, so of two claims one wins; whoever changes a row sends it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Min
from django.utils import timezone

from hooks.headers import build_headers, redact_headers
from hooks.models import Delivery, DeliveryAttempt, Hook
from hooks.policy import TEMPORARY_DISABLE_FAILURES
from hooks.queue import MAX_BATCH_SIZE, enqueue_on_commit
from hooks.sealing import KEYS_SETTING, Sealed, SecretUnreadable, revealed
from hooks.signing import url_digest
from pipelines.prepared import PreparedValues

logger = logging.getLogger(__name__)

SWEEP_BATCH_SIZE = 1000


def lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HOOKS_CLAIM_LEASE_SECONDS)


def _send_rounds(count: int) -> int:
    """How many requests in a row the slowest lane of a batch of ``count`` sends."""
    return -(-count // max(1, settings.HOOKS_SEND_CONCURRENCY))


def batch_lease(now: datetime, count: int) -> datetime:
    # A batch's lanes each send several requests one after the other, every one of which may
    # take the whole timeout: the lease covers each extra round, so a slow receiver never
    # makes the sweeper take back a claim that is still being worked on.
    extra = (_send_rounds(count) - 1) * settings.HOOKS_TIMEOUT_SECONDS
    return lease(now) + timedelta(seconds=extra)


def start_attempt(
    hook: Hook,
    *,
    delivery: Delivery | None,
    body: str,
    idempotency_key: str,
    event_uuid: str,
    attempt_number: int,
    trigger: str,
    object_kind: str,
    user: AbstractBaseUser | None = None,
) -> tuple[DeliveryAttempt, dict[str, str]]:
    """Write the log row before sending (so a crash mid-request still leaves a trace). A
    delivery's request carries its sequence; a test's, which is in no stream, none."""
    headers = build_headers(
        hook,
        body=body.encode(),
        idempotency_key=idempotency_key,
        event_uuid=event_uuid,
        object_kind=object_kind,
        sequence=delivery.sequence if delivery is not None else None,
    )
    attempt = DeliveryAttempt.objects.create(
        hook=hook,
        delivery=delivery,
        attempt_number=attempt_number,
        trigger=trigger,
        triggered_by=user if user is not None and user.is_authenticated else None,
        url=hook.redacted_url,
        url_digest=digest_of_url(hook),
        request_headers=redact_headers(headers, hook),
        request_body=body if delivery is None or hook.custom_webhook_template else "",
    )
    return attempt, headers


def digest_of_url(hook: Hook) -> str | None:
    """The attempt's keyed digest of the URL it goes to (``services.url_current``), or none
    when no key opens the URL: that request then fails alone, in the transport, saying why."""
    url = hook.url
    if not isinstance(url, Sealed):
        return _digest_of(url)
    return _digest_of_stored_url(
        url.stored, tuple(getattr(settings, KEYS_SETTING)), settings.SECRET_KEY
    )


def _digest_of(url) -> str | None:
    try:
        return url_digest(revealed(url))
    except SecretUnreadable:
        return None


@functools.lru_cache(maxsize=1024)
def _digest_of_stored_url(stored: str, keys: tuple[str, ...], secret_key: str) -> str | None:
    """The digest of a sealed URL, by its stored text and the keys in force: opening the URL
    (Fernet) was a good part of each claim's work, and the digest of the same stored text
    under the same keys is the same. Only digests are kept, never a URL."""
    return _digest_of(Sealed(stored))


def enqueue_next_in_order(chains: Iterable[tuple[int, int]]) -> None:
    """Deliveries of these (hook id, order key) chains finished: queue the next due one of
    each now."""
    enqueue_on_commit(next_in_order(chains))


def next_in_order(chains: Iterable[tuple[int, int]]) -> list[int]:
    """The next due delivery of each of these (hook id, order key) chains, ascending."""
    return sorted(next_of_each(chains).values())


def next_of_each(chains: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The next due delivery of each of these (hook id, order key) chains that has one."""
    chains = set(chains)
    if not chains:
        return {}
    # Both id lists together may also match other chains (a cross product): only the
    # chains asked about are kept.
    heads = (
        Delivery.objects.filter(
            hook_id__in={hook_id for hook_id, _ in chains},
            order_key__in={order_key for _, order_key in chains},
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=timezone.now(),
        )
        .order_by()
        .values_list("hook_id", "order_key")
        .annotate(head=Min("id"))
    )
    return {
        (hook_id, order_key): head
        for hook_id, order_key, head in heads
        if (hook_id, order_key) in chains
    }


# --- Deliver -------------------------------------------------------------------------------


def executable_hook_sql(now: datetime) -> tuple[str, list]:
    """``Hook.objects.executable(now)`` as SQL over the hook table aliased ``hook``: clauses
    that each start with AND, and their parameters (none with HOOKS_AUTO_DISABLE off)."""
    if not settings.HOOKS_AUTO_DISABLE:
        return "", []
    sql = """
            AND NOT hook.permanently_disabled
            AND (hook.disabled_until IS NULL OR hook.disabled_until <= %s)"""
    return sql, [connection.ops.adapt_datetimefield_value(now)]


def first_in_line_sql() -> tuple[str, list]:
    """``Delivery.objects.first_in_line()`` as SQL over the delivery table: no earlier
    unfinished delivery of the same (hook, pipeline)."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    sql = f"""NOT EXISTS (
          SELECT 1 FROM {table} earlier
          WHERE earlier.hook_id = {table}.hook_id
            AND earlier.order_key = {table}.order_key
            AND earlier.id < {table}.id
            AND earlier.status IN (%s, %s))"""  # noqa: S608 (the table name is the model's)
    return sql, [status.value for status in Delivery.UNFINISHED]


def _hook_condition(now: datetime, *, probe: str) -> tuple[str, list]:
    """The claim's condition on a delivery's hook (aliased ``hook``), as SQL and parameters:
    executable (``executable_hook_sql``), and either never rested since its last success or
    probing with this delivery as its probe. ``probe="held"`` asks for the probe this
    caller holds (``_assign_probes``); ``probe="free"`` also takes any delivery of a
    probing hook with no probe out, which could become its probe; ``probe="any"`` asks only
    that the hook be executable. With HOOKS_AUTO_DISABLE off, every hook qualifies."""
    sql, params = executable_hook_sql(now)
    if not settings.HOOKS_AUTO_DISABLE or probe == "any":
        return sql, params
    delivery_table = connection.ops.quote_name(Delivery._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    probe_sql = f"(hook.probe_delivery_id = {delivery_table}.id AND hook.probe_until > %s)"
    params += [TEMPORARY_DISABLE_FAILURES, at]
    if probe == "free":
        probe_sql = f"({probe_sql} OR hook.probe_until IS NULL OR hook.probe_until <= %s)"
        params.append(at)
    return f"{sql}\n            AND (hook.recent_failures < %s OR {probe_sql})", params


def _claimable_where(
    delivery_ids: list[int], now: datetime, *, probe: str = "held"
) -> tuple[str, list]:
    """The claim's conditions, as SQL over the delivery table and its parameters: listed,
    pending, due, its hook may be sent to (``_hook_condition``), first in line of its
    (hook, pipeline) (``first_in_line_sql``). Every condition is on the delivery row itself
    or in EXISTS subqueries."""
    ops = connection.ops
    delivery_table = ops.quote_name(Delivery._meta.db_table)
    hook_table = ops.quote_name(Hook._meta.db_table)
    at = ops.adapt_datetimefield_value(now)
    hook_sql, hook_params = _hook_condition(now, probe=probe)
    in_line_sql, in_line_params = first_in_line_sql()
    sql = f"""
        id IN ({", ".join(["%s"] * len(delivery_ids))}) AND status = %s AND next_attempt_at <= %s
        AND EXISTS (
          SELECT 1 FROM {hook_table} hook
          WHERE hook.id = {delivery_table}.hook_id{hook_sql})
        AND {in_line_sql}
    """  # noqa: S608 (table names come from the models, values are parameters)
    params = [*delivery_ids, Delivery.Status.PENDING.value, at, *hook_params, *in_line_params]
    return sql, params


def _probing_column() -> tuple[str, list]:
    """A column over the delivery table: whether its hook counts enough failures in a row
    to be probing once its rest is over (what ``_assign_probes`` looks for)."""
    delivery_table = connection.ops.quote_name(Delivery._meta.db_table)
    hook_table = connection.ops.quote_name(Hook._meta.db_table)
    sql = f"""EXISTS (SELECT 1 FROM {hook_table} probing
                      WHERE probing.id = {delivery_table}.hook_id
                        AND probing.recent_failures >= %s)"""  # noqa: S608 (the models' names)
    return sql, [TEMPORARY_DISABLE_FAILURES]


def _read_candidates(sql: str, params: list, probing: set[int] | None) -> list[int]:
    """Run a read of delivery ids whose second column is ``_probing_column``; the ids of
    probing hooks' deliveries go into ``probing``."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if probing is not None:
        probing.update(pk for pk, on_probing_hook in rows if on_probing_hook)
    return [pk for pk, _ in rows]


def claimable_deliveries(
    delivery_ids: Iterable[int], now: datetime, *, probing: set[int] | None = None
) -> list[int]:
    """Which of these deliveries a claim would take now, found by a read: no write lock.

    Most messages that find nothing to do (their delivery waits for an earlier one, or a
    task following its pipeline sent it already) stop here, so on SQLite they never queue
    for the database's single write lock. Only a hint: the claim decides. Those whose hook
    is probing are added to ``probing``, for ``claim_deliveries``.
    """
    ids = sorted({int(pk) for pk in delivery_ids})
    if not ids:
        return []
    where, params = _claimable_where(ids, now, probe="free")
    column, column_params = _probing_column()
    table = connection.ops.quote_name(Delivery._meta.db_table)
    sql = f"SELECT id, {column} FROM {table} WHERE {where}"  # noqa: S608
    return sorted(_read_candidates(sql, [*column_params, *params], probing))


def backlog(taken: list[int], now: datetime, *, probing: set[int] | None = None) -> list[int]:
    """Due deliveries, other than ``taken``, whose task messages are still queued: enough to
    fill a batch up to HOOKS_BATCH_SIZE. Newest first, so deliveries long blocked (a resting
    hook, an earlier one retrying) never lie in the path of the scan; the older ones come
    with their own messages anyway. Only candidates: the claim decides. In SQL, as the
    claim: every task runs it, and finds nothing unless deliveries are waiting. Those whose
    hook is probing are added to ``probing``, as by ``claimable_deliveries``."""
    room = min(settings.HOOKS_BATCH_SIZE, MAX_BATCH_SIZE) - len(taken)
    if room <= 0:
        return []
    ops = connection.ops
    table = ops.quote_name(Delivery._meta.db_table)
    at = ops.adapt_datetimefield_value(now)
    excluded = f"AND NOT (id IN ({', '.join(['%s'] * len(taken))}))" if taken else ""
    column, column_params = _probing_column()
    sql = f"""
        SELECT id, {column} FROM {table}
        WHERE status = %s AND next_attempt_at <= %s AND queued_until > %s {excluded}
        ORDER BY next_attempt_at DESC
        LIMIT %s
    """  # noqa: S608 (the table name comes from the model, values are parameters)
    params = [*column_params, Delivery.Status.PENDING.value, at, at, *taken, room]
    return _read_candidates(sql, params, probing)


def claim_deliveries(
    delivery_ids: Iterable[int], now: datetime, *, probing: Collection[int] | None = None
) -> list[int]:
    """The conditional UPDATE over a batch: the ids (ascending) this caller now holds.

    The database re-checks ``status = 'pending'`` (and every other condition of
    ``_claimable_where``) on each row it locks: of two claims, one wins. The later delivery
    of a (hook, pipeline) is never claimed along with an earlier one: the earlier is pending
    or (claimed by this very statement) sending, both unfinished. Written in SQL, as are the
    other statements every batch runs, because the ORM spends several times longer building
    them than the database running them; RETURNING needs PostgreSQL or SQLite 3.35+.

    The deliveries of hooks that are not probing are claimed first, in that one statement:
    the probe step (``_assign_probes``, a read and maybe a write) only ever concerns hooks
    that are, so it runs only for what that statement left, and a batch whose every
    delivery was claimed (a new event to healthy hooks) costs one round trip, not two.
    ``probing``, when given, names the deliveries the reads before (``claimable_deliveries``,
    ``backlog``) found on a probing hook: the probe step then runs for those only, and not
    at all for a batch whose leftovers merely wait behind an earlier delivery. A hook that
    began probing since is one whose rest began and ended since, which no rest is as short
    as; its deliveries are claimed by the next message or sweep.
    """
    ids = sorted({int(pk) for pk in delivery_ids})
    if not ids:
        return []
    lease = batch_lease(now, len(ids))
    claimed = _claim(ids, now, lease)
    left = [pk for pk in ids if pk not in set(claimed)]
    if not left or not settings.HOOKS_AUTO_DISABLE:
        return claimed
    # The first statement could take no delivery of a probing hook (its condition asks for
    # the probe held); what it left that such a hook waits with goes through the probe step.
    if probing is not None:
        left = [pk for pk in left if pk in probing]
        if not left:
            return claimed
    _, probes = _assign_probes(left, now, lease)
    if not probes:
        return claimed
    probe_claimed = _claim(sorted(probes.values()), now, lease)
    unsent = {hook_id: pk for hook_id, pk in probes.items() if pk not in probe_claimed}
    if unsent:
        # Assigned but not claimed after all: another may probe at once, not after a lease.
        for hook_id, pk in unsent.items():
            Hook.objects.filter(pk=hook_id, probe_delivery_id=pk).update(
                probe_delivery_id=None, probe_until=None
            )
    return sorted(claimed + probe_claimed)


def _claim(ids: list[int], now: datetime, lease: datetime) -> list[int]:
    """The claim's UPDATE over ``ids``, with the probe this caller holds as the only way a
    probing hook's delivery qualifies: the ids (ascending) it changed."""
    ops = connection.ops
    where, params = _claimable_where(ids, now)
    table = ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table}
            SET status = %s, claimed_until = %s, attempt_count = attempt_count + 1
            WHERE {where}
            RETURNING id
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            [Delivery.Status.SENDING.value, ops.adapt_datetimefield_value(lease), *params],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _assign_probes(
    ids: list[int], now: datetime, until: datetime
) -> tuple[list[int], dict[int, int]]:
    """For each probing hook (it rested, the rest is over, no success since) among these
    deliveries' hooks, make one claimable delivery its probe until ``until``, unless
    another caller's probe is out: the earliest whose failure never counted, else the
    earliest. A new event's failure counts, so the rests double as in GitLab, where the
    first event after a rest is always a new one; every candidate heads its pipeline, so the
    choice never changes an order. Returns ``ids`` without the probing hooks' other
    deliveries, and the probes assigned, {hook id: delivery id}.

    The conditional UPDATE on the hook row is what makes one probe at a time: of two
    callers, the second finds ``probe_until`` set (PostgreSQL re-checks it on the row it
    waited for; SQLite has one writer). The deliveries held back lose their ``queued_until``
    (their message is the one being handled), so the sweeper queues them as soon as the hook
    may be sent to again, not a lease later.
    """
    where, params = _claimable_where(ids, now, probe="any")
    ops = connection.ops
    delivery_table = ops.quote_name(Delivery._meta.db_table)
    hook_table = ops.quote_name(Hook._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT id, hook_id FROM {delivery_table}
            WHERE {where}
              AND EXISTS (SELECT 1 FROM {hook_table} probing
                          WHERE probing.id = {delivery_table}.hook_id
                            AND probing.recent_failures >= %s)
            ORDER BY failure_counted, id
            """,  # noqa: S608 (table names come from the models, values are parameters)
            [*params, TEMPORARY_DISABLE_FAILURES],
        )
        waiting = cursor.fetchall()
        if not waiting:
            return ids, {}
        earliest: dict[int, int] = {}
        for pk, hook_id in waiting:
            earliest.setdefault(hook_id, pk)
        at = ops.adapt_datetimefield_value(now)
        hook_ids = sorted(earliest)
        cursor.execute(
            f"""
            UPDATE {hook_table}
            SET probe_delivery_id = CASE id {" ".join(["WHEN %s THEN %s"] * len(hook_ids))} END,
                probe_until = %s
            WHERE id IN ({", ".join(["%s"] * len(hook_ids))})
              AND recent_failures >= %s AND NOT permanently_disabled
              AND (disabled_until IS NULL OR disabled_until <= %s)
              AND (probe_until IS NULL OR probe_until <= %s)
            RETURNING id
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            [
                *(value for hook_id in hook_ids for value in (hook_id, earliest[hook_id])),
                ops.adapt_datetimefield_value(until),
                *hook_ids,
                TEMPORARY_DISABLE_FAILURES,
                at,
                at,
            ],
        )
        probes = {row[0]: earliest[row[0]] for row in cursor.fetchall()}
    held = [pk for pk, hook_id in waiting if probes.get(hook_id) != pk]
    if held:
        Delivery.objects.filter(pk__in=held, status=Delivery.Status.PENDING).update(
            queued_until=None
        )
        held_set = set(held)
        ids = [pk for pk in ids if pk not in held_set]
    for hook_id, pk in probes.items():
        logger.info("Hook %s: its rest is over; delivery %s goes out alone first", hook_id, pk)
    return ids, probes


def claim_delivery(delivery_id: int, now: datetime) -> bool:
    """Claim one delivery: True when this caller now holds it."""
    return bool(claim_deliveries([delivery_id], now))


@dataclass
class Claimed:
    """A claimed delivery with what sending and recording it needs."""

    delivery_id: int
    order_key: int
    attempt_number: int
    manual_redelivery: bool
    idempotency_key: str
    event_uuid: str
    object_kind: str
    sequence: int
    event_created_at: datetime
    body: str  # the event's; replaced by what the hook's template made of it, when it has one
    # In memory only, with the fields a request needs (url, secrets, headers, SSL flag).
    hook: Hook


def _claimed_rows(delivery_ids: list[int]):
    return (
        Delivery.objects.filter(pk__in=delivery_ids)
        .order_by("pk")
        .values_list(
            "pk",
            "order_key",
            "attempt_count",
            "manual_redelivery",
            "idempotency_key",
            "event__uuid",
            "event__object_kind",
            "sequence",
            "event__created_at",
            "event__body",
            "hook_id",
            "hook__url",
            "hook__masked_url",
            "hook__token",
            "hook__signing_token",
            "hook__previous_signing_tokens",
            "hook__custom_headers",
            "hook__enable_ssl_verification",
            "hook__custom_webhook_template",
        )
    )


# ``_claimed_rows`` with its SQL built once per number of ids: the ORM's building of this
# join took longer than running it, at every batch.
CLAIMED_ROWS = PreparedValues(lambda delivery_ids: _claimed_rows(list(delivery_ids)))


def load_claimed(delivery_ids: list[int]) -> list[Claimed]:
    """The claimed deliveries with their event's body and their hook, in one query."""
    rows = CLAIMED_ROWS(tuple(sorted({int(pk) for pk in delivery_ids})))
    return [
        Claimed(
            delivery_id=delivery_id,
            order_key=order_key,
            attempt_number=attempt_count,
            manual_redelivery=manual,
            idempotency_key=str(idempotency_key),
            event_uuid=str(event_uuid),
            object_kind=object_kind,
            sequence=sequence,
            event_created_at=event_created_at,
            body=body,
            hook=Hook(
                pk=hook_id,
                # The secrets as stored, still sealed (hooks.sealing).
                url=url,
                masked_url=masked_url,
                token=token,
                signing_token=signing_token,
                previous_signing_tokens=previous_signing_tokens,
                custom_headers=custom,
                enable_ssl_verification=verify,
                custom_webhook_template=template,
            ),
        )
        for (
            delivery_id,
            order_key,
            attempt_count,
            manual,
            idempotency_key,
            event_uuid,
            object_kind,
            sequence,
            event_created_at,
            body,
            hook_id,
            url,
            masked_url,
            token,
            signing_token,
            previous_signing_tokens,
            custom,
            verify,
            template,
        ) in rows
    ]


def insert_attempts(claimed: list[Claimed], headers: list[dict], now: datetime) -> list[int]:
    """Write the attempts' log rows (request headers redacted, no answer yet) in one
    INSERT; returns their ids in the order of ``claimed``."""
    attempts = DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                hook_id=item.hook.pk,
                delivery_id=item.delivery_id,
                attempt_number=item.attempt_number,
                trigger=DeliveryAttempt.Trigger.MANUAL
                if item.manual_redelivery
                else DeliveryAttempt.Trigger.SCHEDULED,
                url=item.hook.redacted_url,
                url_digest=digest_of_url(item.hook),
                request_headers=redact_headers(sent, item.hook),
                # A templated body is not the event's: the log keeps what was sent.
                request_body=item.body if item.hook.custom_webhook_template else "",
                created_at=now,
            )
            for item, sent in zip(claimed, headers, strict=True)
        ],
        batch_size=MAX_BATCH_SIZE,
    )
    return [attempt.pk for attempt in attempts]
