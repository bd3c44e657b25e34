"""Recording answers: the log rows' response fields, each delivery's outcome by the retry
rules, and each hook's health by the health rules (``hooks.policy``), in the caller's
transaction; and the hook-row writes that follow (re-enabling, waking what waited).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from hooks import metrics
from hooks.claims import SWEEP_BATCH_SIZE, Claimed, next_of_each
from hooks.models import Delivery, DeliveryAttempt, Hook
from hooks.notices import record_state_change
from hooks.policy import (
    HealthRules,
    HookHealth,
    HookResult,
    change_reason,
    fold_hook_results,
    outcome,
    owners_state,
    succeeded,
)
from hooks.queue import enqueue_on_commit
from hooks.stats import count_attempts
from hooks.transport import TransportResult, exception_summary

logger = logging.getLogger(__name__)

# GitLab's log limits for what a receiver answered.
RESPONSE_HEADERS_KEPT = 50
RESPONSE_HEADER_VALUE_LIMIT = 1024

# A retry due within this long gets a message timed for it (``RecordedBatch.retries``); a
# later one is queued by the sweeper, whose beat is then a small part of the wait.
TIMED_RETRY_HORIZON = timedelta(seconds=60)

# A delivery's status after an attempt -> the attempt's outcome as /metrics counts it.
OUTCOME_METRIC = {
    Delivery.Status.SUCCEEDED: metrics.SUCCEEDED,
    Delivery.Status.PENDING: metrics.FAILED_ATTEMPT,
    Delivery.Status.FAILED: metrics.GIVEN_UP,
}


def _clean_text(value: str) -> str:
    # PostgreSQL text and jsonb can hold neither NUL characters nor lone surrogates.
    value = value.replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value


def _response_values(result: TransportResult) -> dict:
    """What the log keeps of an answer: the attempt row's response fields."""
    return {
        "response_status": result.status,
        "response_headers": {
            _clean_text(name): _clean_text(value[:RESPONSE_HEADER_VALUE_LIMIT])
            for name, value in list(result.headers.items())[:RESPONSE_HEADERS_KEPT]
        },
        "response_body": _clean_text(result.body.decode("utf-8", "replace")),
        "response_body_truncated": result.truncated,
        "duration_ms": result.duration_ms,
        "error": _clean_text(result.error),
        "succeeded": succeeded(result),
    }


def record_response(attempt: DeliveryAttempt, result: TransportResult) -> None:
    values = _response_values(result)
    for name, value in values.items():
        setattr(attempt, name, value)
    attempt.save(update_fields=list(values))


def _failure_text(result: TransportResult) -> str:
    if succeeded(result):
        return ""
    return result.error or f"HTTP {result.status}"


def record_batch_results(
    claimed: list[Claimed], attempt_ids: list[int], results: list[TransportResult]
) -> RecordedBatch:
    """Record a batch's results (in the caller's transaction): every attempt's answer; then,
    for each delivery still held by this batch, its outcome and its hook's health. Returns
    the next due delivery of each (hook, pipeline) that finished one, and the counts; the
    caller adds the attempts to the rollup (``RecordedBatch.add_to_rollup``) last in the
    transaction, after anything else it writes (hooks.stats, on the order of locks)."""
    now = timezone.now()
    results = [
        _recordable(item, result, now) for item, result in zip(claimed, results, strict=True)
    ]
    _write_answers(attempt_ids, results)
    held = _still_held(claimed)
    ours = [
        (item, result, outcome(item.attempt_number, result, manual=item.manual_redelivery, now=now))
        for item, result in zip(claimed, results, strict=True)
        if _holds(held, item)
    ]
    _write_outcomes([(item, result, *decided) for item, result, decided in ours], now)
    # A person's redelivery that fails does not count against the hook.
    record_health(
        [
            (
                item.hook.pk,
                HookResult(
                    item.delivery_id,
                    succeeded=succeeded(result),
                    gone=result.status == 410,
                    counted_before=held[item.delivery_id][1],
                ),
            )
            for item, result, _ in ours
            if succeeded(result) or not item.manual_redelivery
        ],
        now,
    )
    finished = {
        (item.hook.pk, item.order_key)
        for item, _, (status, _) in ours
        if status in Delivery.FINISHED
    }
    heads = next_of_each(finished)
    next_ids = sorted(heads.values())
    counts = [
        (item.hook.pk, OUTCOME_METRIC[status], result.duration_ms, item.event_created_at)
        for item, result, (status, _) in ours
    ]
    attempts = [
        (item.hook.pk, now, succeeded(result), result.duration_ms)
        for item, result in zip(claimed, results, strict=True)
    ]
    retries = [
        (item.delivery_id, next_attempt_at)
        for item, _, (status, next_attempt_at) in ours
        if status == Delivery.Status.PENDING and next_attempt_at - now <= TIMED_RETRY_HORIZON
    ]
    return RecordedBatch(next_ids, counts, now, finished - heads.keys(), attempts, retries)


@dataclass
class RecordedBatch:
    """What recording a batch left to do: send the next deliveries of its pipelines, and
    count its attempts for /metrics once the recording transaction has committed (a batch
    rolled back is recorded again, and must not count twice)."""

    next_ids: list[int]
    counts: list[tuple[int, str, int, datetime]]  # hook id, outcome, duration ms, event time
    recorded_at: datetime
    # The (hook id, order key) streams in which this batch finished a delivery and found no
    # next one to send.
    streams_without_next: set[tuple[int, int]] = field(default_factory=set)
    # Every attempt of the batch for the dashboard's rollup: (hook id, answered at,
    # succeeded, duration ms).
    attempts: list[tuple[int, datetime, bool, int]] = field(default_factory=list)
    # The deliveries given a retry soon, with when it is due: (delivery id, due at). Each
    # heads its stream (it was the one in flight), and everything behind it waits for it.
    retries: list[tuple[int, datetime]] = field(default_factory=list)

    def add_to_rollup(self) -> None:
        """The batch's attempts into the rollup, in the recording transaction: its last
        statement (see hooks.stats on why)."""
        count_attempts(self.attempts)

    def count(self) -> None:
        for hook_id, outcome_name, duration_ms, event_created_at in self.counts:
            metrics.count_attempt(
                hook_id, outcome_name, duration_ms, event_created_at, self.recorded_at
            )


def _write_answers(attempt_ids: list[int], results: list[TransportResult]) -> None:
    """Every attempt's answer into its log row: one statement for the batch."""
    table = connection.ops.quote_name(DeliveryAttempt._meta.db_table)
    json_field = DeliveryAttempt._meta.get_field("response_headers")
    answers = []
    for attempt_id, result in zip(attempt_ids, results, strict=True):
        values = _response_values(result)
        values["response_headers"] = json_field.get_db_prep_save(
            values["response_headers"], connection
        )
        answers.append([*values.values(), attempt_id])
    with connection.cursor() as cursor:
        cursor.executemany(
            f"""
            UPDATE {table}
            SET response_status = %s, response_headers = %s, response_body = %s,
                response_body_truncated = %s, duration_ms = %s, error = %s, succeeded = %s
            WHERE id = %s
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            answers,
        )


def _still_held(claimed: list[Claimed]) -> dict[int, tuple[int, bool]]:
    """{delivery id: (attempt count, failure counted)} of the batch's deliveries still
    ``sending``, locked (PostgreSQL) or under the write lock (SQLite) until commit: nobody
    changes these rows between this check and the writes that follow."""
    return {
        pk: (attempt_count, counted)
        for pk, attempt_count, counted in Delivery.objects.select_for_update()
        .filter(pk__in=[item.delivery_id for item in claimed], status=Delivery.Status.SENDING)
        .values_list("pk", "attempt_count", "failure_counted")
    }


def _holds(held: dict[int, tuple[int, bool]], item: Claimed) -> bool:
    if held.get(item.delivery_id, (None,))[0] == item.attempt_number:
        return True
    # The lease ran out and the sweeper took the delivery back: it will be sent again; this
    # attempt stays in the log and changes nothing else.
    logger.warning(
        "Delivery %s attempt %s finished after its claim expired; result logged only",
        item.delivery_id,
        item.attempt_number,
    )
    return False


def _write_outcomes(
    decided: list[tuple[Claimed, TransportResult, str, datetime | None]], now: datetime
) -> None:
    """Each delivery finished or given its next attempt time: one statement for the batch.
    A finished delivery keeps its last next_attempt_at (the log shows when it was due)."""
    if not decided:
        return
    ops = connection.ops
    outcomes = [
        [
            status,
            ops.adapt_datetimefield_value(next_attempt_at),
            ops.adapt_datetimefield_value(now if status in Delivery.FINISHED else None),
            result.status,
            _clean_text(_failure_text(result)),
            False,  # manual_redelivery: a person's redelivery is tried once
            item.delivery_id,
        ]
        for item, result, status, next_attempt_at in decided
    ]
    table = ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"""
            UPDATE {table}
            SET status = %s, next_attempt_at = COALESCE(%s, next_attempt_at),
                finished_at = %s, last_response_status = %s, last_error = %s,
                manual_redelivery = %s, claimed_until = NULL, queued_until = NULL
            WHERE id = %s
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            outcomes,
        )


def _recordable(item: Claimed, result: TransportResult, now: datetime) -> TransportResult:
    """``result`` when the log and the retry rules can read it; else a failed result saying
    why (logged): one answer nobody foresaw never keeps the batch's others from being
    recorded, and its delivery is retried as after any failure."""
    try:
        _response_values(result)
        outcome(item.attempt_number, result, manual=item.manual_redelivery, now=now)
    except Exception as exc:
        logger.exception("Delivery %s: its answer could not be recorded", item.delivery_id)
        return TransportResult.failed(f"the answer could not be recorded: {exception_summary(exc)}")
    return result


def record_health(results: list[tuple[int, HookResult]], now: datetime) -> None:
    """Apply scheduled attempts' results, (hook id, result) in order, to their hooks, by
    the rules above.

    Only hooks with a failure in these results, or with a count, a rest or a probe to clear,
    are read (under lock; a batch whose hooks are all healthy and succeeded reads nothing
    back), folded through the rules in order, and written once each if they changed or
    their probe answered; either ends the probe. The deliveries whose failure counted are
    marked so. A hook that was held back and is clear again gets its backlog sent now.
    """
    if not results:
        return
    rules = HealthRules.from_settings()
    hook_ids = sorted({hook_id for hook_id, _ in results})
    failing = sorted({hook_id for hook_id, result in results if not result.succeeded})
    # Locked until commit (select_for_update is a no-op on SQLite, whose write lock the
    # caller holds already), FOR NO KEY UPDATE: see ``locked_health``.
    rows = (
        Hook.objects.select_for_update(no_key=True)
        .filter(pk__in=hook_ids)
        .filter(
            Q(pk__in=failing)
            | Q(recent_failures__gt=0)
            | Q(disabled_until__isnull=False)
            | Q(probe_until__isnull=False)
        )
        .order_by("pk")
        .values_list(
            "pk", "recent_failures", "disabled_until", "permanently_disabled", "probe_delivery_id"
        )
    )
    counted: list[int] = []
    for hook_id, failures, disabled_until, permanently_disabled, probe_id in rows:
        health = HookHealth(failures, disabled_until, permanently_disabled)
        own = [result for pk, result in results if pk == hook_id]
        after, hook_counted = fold_hook_results(health, own, now=now, rules=rules, hook_id=hook_id)
        counted.extend(hook_counted)
        probe_answered = probe_id is not None and any(r.delivery_id == probe_id for r in own)
        if after != health or probe_answered:
            Hook.objects.filter(pk=hook_id).update(
                **asdict(after), probe_delivery_id=None, probe_until=None
            )
            record_state_change(
                hook_id, owners_state(health), owners_state(after), change_reason(after)
            )
        if health.held_back and not after.held_back:
            logger.info("Hook %s answered again; sending what waited", hook_id)
            wake_hook(hook_id)
    if counted:
        Delivery.objects.filter(pk__in=counted).update(failure_counted=True)


def reenable_after_success(hook_id: int, reason: str) -> None:
    """A person's resend or test got a 2xx: the hook is healthy again, whatever it was
    (in the caller's transaction; ``reason`` says so in the hook's state history)."""
    before = locked_health(hook_id)
    if before is None:
        return
    if before.held_back:
        clear_health(hook_id, before, reason)
        logger.info("Hook %s re-enabled by a successful request", hook_id)
    elif before.recent_failures:
        Hook.objects.filter(pk=hook_id).update(recent_failures=0)


def locked_health(hook_id: int) -> HookHealth | None:
    """The hook's health, its row locked until commit (SQLite: the caller holds the write
    lock already); None when the hook is gone.

    FOR NO KEY UPDATE, never FOR UPDATE: health is written, the hook's id never changes.
    The lock still makes writers of the row wait for each other, but not the foreign key
    checks (FOR KEY SHARE, which only FOR UPDATE blocks) of the rows other transactions
    add for the hook: attempts, rollup rows, new deliveries. PostgreSQL runs those checks at
    COMMIT (Django's foreign keys are DEFERRABLE INITIALLY DEFERRED), after every lock the
    transaction took: with FOR UPDATE here, a batch whose rollup row waited for another
    batch's, which waited at its COMMIT for this hook's row, deadlocked (hooks.stats)."""
    row = (
        Hook.objects.select_for_update(no_key=True)
        .filter(pk=hook_id)
        .values_list("recent_failures", "disabled_until", "permanently_disabled")
        .first()
    )
    return HookHealth(*row) if row is not None else None


def clear_health(hook_id: int, before: HookHealth, reason: str) -> None:
    """The hook as good as new, the change recorded, and what waited sent."""
    Hook.objects.filter(pk=hook_id).update(**CLEAR_HEALTH)
    record_state_change(
        hook_id, owners_state(before), owners_state(HookHealth(0, None, False)), reason
    )
    wake_hook(hook_id)


# A hook as good as new: no count, no rest, no disable, no probe out.
CLEAR_HEALTH = {
    "recent_failures": 0,
    "disabled_until": None,
    "permanently_disabled": False,
    "probe_delivery_id": None,
    "probe_until": None,
}


def wake_hook(hook_id: int) -> None:
    """The hook may be sent to again after it was held back: what waited goes out now.

    Its pending deliveries become due at once, retries included: the receiver has just
    answered, so the backoff each earned while it was away no longer applies (without this,
    a pipeline whose head delivery had reached the 30-minute retry would wait that long
    behind a receiver that is back). The head of each pipeline is queued now; the rest
    follow in order.
    """
    now = timezone.now()
    Delivery.objects.filter(
        hook_id=hook_id, status=Delivery.Status.PENDING, next_attempt_at__gt=now
    ).update(next_attempt_at=now)
    heads = (
        Delivery.objects.filter(hook_id=hook_id, status=Delivery.Status.PENDING)
        .filter(next_attempt_at__lte=now)
        .first_in_line()
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH_SIZE]
    )
    enqueue_on_commit(list(heads))
