"""Sending deliveries: claim them, send them, log each attempt, decide what comes next.

A delivery moves ``pending -> sending -> succeeded | pending (retry) | failed``. Deliveries
travel in batches (an event's fan-out, a sweep: task messages of up to HOOKS_BATCH_SIZE ids);
a single delivery is a batch of one, decided by the very same code.

1. **Claim** with one conditional UPDATE for the batch: only pending, due deliveries whose
   hook is not disabled and that have no earlier unfinished delivery for the same (hook,
   pipeline) become ``sending``, with a lease. Whoever changes a row sends it; everyone else
   does nothing, so a redelivered task message (acks_late, a crashed worker) never sends
   twice at once. Two deliveries of one (hook, pipeline) in the same batch: only the earlier
   is claimed; the later is queued when the earlier finishes.
2. In the claim's transaction the attempts' log rows are written with the request headers
   (secrets redacted). Then, outside any transaction, the one HTTP seam sends the stored
   bodies, HOOKS_SEND_CONCURRENCY at a time, over kept-alive connections.
3. One transaction records every result: the log rows, and each delivery finished (2xx, or
   the last attempt failed) or given its next attempt time in ``next_attempt_at`` (the retry
   schedule with jitter; 429/503 honour Retry-After). The sweeper sends due retries; a
   finished delivery immediately queues the next one of its pipeline, so order costs no
   sweep delay.
4. Hook health follows GitLab's auto-disable: a failure counts once per delivery and only
   while the hook may be sent to; from the 4th in a row the hook rests for 1 minute
   doubling to 24 h; the 40th disables it until someone re-enables it; a success resets
   the count. When a rest is over one delivery goes out alone (the probe) and the others
   wait for its answer: a failure rests the hook again, a success sends the backlog. A
   batch applies its results to each hook in order, with one read and one write per hook.
   Deliveries of a resting hook wait; none is dropped. (See "Hook health" below.)

Attempts a person asks for (a resend, a test, a bulk redelivery) never push a hook towards
being disabled; when one succeeds it re-enables the hook.

Entry points for views: ``resend_delivery``, ``redeliver_failed_since``, ``send_test_event``,
``reenable_hook``. For tasks: ``deliver_batch``, ``requeue_due_deliveries``,
``prune_delivery_logs``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from importlib import metadata
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from hooks import signing, transport
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.payloads import build_pipeline_payload, dump_payload
from hooks.sealing import Sealed, from_stored, revealed
from pipelines.errors import Conflict, DomainError
from pipelines.models import Pipeline

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _pipehook_version() -> str:
    try:
        return metadata.version("pipehook")
    except metadata.PackageNotFoundError:
        return "0.1.0"


# Receivers written for GitLab look for "GitLab/"; the second product says who really sent it.
GITLAB_COMPATIBLE_VERSION = "18.10.0"
USER_AGENT = f"GitLab/{GITLAB_COMPATIBLE_VERSION} Pipehook/{_pipehook_version()}"
EVENT_HEADER = "Pipeline Hook"
REDACTED = "[REDACTED]"

# GitLab's log limits for what a receiver answered.
RESPONSE_HEADERS_KEPT = 50
RESPONSE_HEADER_VALUE_LIMIT = 1024

# GitLab's WebHooks::AutoDisabling.
TEMPORARY_DISABLE_FAILURES = 4
PERMANENT_DISABLE_FAILURES = 40
INITIAL_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=24)

SWEEP_BATCH_SIZE = 1000
# The most ids one task message carries, whatever HOOKS_BATCH_SIZE says: keeps every
# statement of a batch well within SQLite's limit on parameters.
MAX_BATCH_SIZE = 1000
# How long one task goes on sending the next deliveries of the pipelines it finished one of.
FOLLOW_SECONDS = 5.0
PRUNE_BATCH_SIZE = 1000
UNFINISHED = (Delivery.Status.PENDING, Delivery.Status.SENDING)
FINISHED = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED)

# Headers every request sets itself (and hop-by-hop ones a custom header would break): a
# custom header with one of these names is left out.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "connection",
        "transfer-encoding",
        "idempotency-key",
        "x-gitlab-event",
        "x-gitlab-token",
        "x-gitlab-instance",
        "x-gitlab-webhook-uuid",
        "x-gitlab-event-uuid",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
SECRET_HEADERS = frozenset({"x-gitlab-token", "webhook-signature", "authorization"})


class NoPipelineError(DomainError):
    """A test event needs a pipeline to describe."""

    status_code = 422


class DeliveryInProgress(Conflict):
    """A worker is sending this delivery right now."""


# --- Queueing ------------------------------------------------------------------------------


def publish_deliveries(delivery_ids: list[int]) -> None:
    """Send one task message for these ids. If the broker is unreachable the rows stay
    pending and the sweeper queues them again later, so the error is logged, not raised."""
    from hooks.tasks import deliver_batch  # tasks imports this module

    try:
        deliver_batch.delay(delivery_ids)
    except Exception as error:
        logger.warning(
            "Could not queue deliveries %s (%s); the sweeper will queue them again",
            delivery_ids,
            error,
        )
        _forget_queued(delivery_ids)


def forget_queued_messages() -> int:
    """A worker has (re)connected to the broker and cannot know which task messages survived
    (a restarted Redis that saved nothing has lost them all): every pending delivery is made
    due for the sweeper's next run, instead of waiting for the lease that assumed its message
    was queued. A message that did survive then finds its delivery taken and stops at a read.
    Returns how many deliveries it changed."""
    return Delivery.objects.filter(
        status=Delivery.Status.PENDING, queued_until__isnull=False
    ).update(queued_until=None)


def _forget_queued(delivery_ids: list[int]) -> None:
    """No message is out for these deliveries: let the sweeper's next run queue them, instead
    of waiting for the lease that assumed one was."""
    try:
        Delivery.objects.filter(pk__in=delivery_ids, status=Delivery.Status.PENDING).update(
            queued_until=None
        )
    except Exception as error:  # the database may be down too: the lease still runs out
        logger.warning("Could not mark deliveries %s as unqueued: %s", delivery_ids, error)


def enqueue_on_commit(delivery_ids: Iterable[int]) -> None:
    """Queue these deliveries once the current transaction commits: ids only, in messages
    of up to HOOKS_BATCH_SIZE ids, each sent (claimed, logged) as one batch."""
    ids = list(delivery_ids)
    size = min(max(1, settings.HOOKS_BATCH_SIZE), MAX_BATCH_SIZE)
    for start in range(0, len(ids), size):
        transaction.on_commit(partial(publish_deliveries, ids[start : start + size]))


def _hook_is_executable(now: datetime) -> Exists:
    """The sweeper's twin of the claim's hook condition (``_hook_condition``): the hook is
    neither disabled nor resting, and no probe of it is out."""
    hooks = Hook.objects.filter(pk=OuterRef("hook_id"))
    if settings.HOOKS_AUTO_DISABLE:
        hooks = hooks.filter(permanently_disabled=False).filter(
            Q(disabled_until__isnull=True) | Q(disabled_until__lte=now),
            Q(probe_until__isnull=True) | Q(probe_until__lte=now),
        )
    return Exists(hooks)


def _has_earlier_unfinished() -> Exists:
    return Exists(
        Delivery.objects.filter(
            hook_id=OuterRef("hook_id"),
            order_key=OuterRef("order_key"),
            pk__lt=OuterRef("pk"),
            status__in=UNFINISHED,
        )
    )


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HOOKS_CLAIM_LEASE_SECONDS)


def _send_rounds(count: int) -> int:
    """How many requests in a row the slowest lane of a batch of ``count`` sends."""
    return -(-count // max(1, settings.HOOKS_SEND_CONCURRENCY))


def _batch_lease(now: datetime, count: int) -> datetime:
    # A batch's lanes each send several requests one after the other, every one of which may
    # take the whole timeout: the lease covers each extra round, so a slow receiver never
    # makes the sweeper take back a claim that is still being worked on.
    extra = (_send_rounds(count) - 1) * settings.HOOKS_TIMEOUT_SECONDS
    return _lease(now) + timedelta(seconds=extra)


# --- Requests ------------------------------------------------------------------------------


def build_headers(hook: Hook, *, body: bytes, idempotency_key: str, event_uuid: str) -> dict:
    """GitLab's delivery headers (plus Standard Webhooks' when the hook has a signing
    secret) over the hook's custom headers, which can never replace them."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Gitlab-Event": EVENT_HEADER,
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Instance": settings.PIPEHOOK_EXTERNAL_URL,
        "X-Gitlab-Event-UUID": event_uuid,
        "Idempotency-Key": idempotency_key,
    }
    if hook.token:
        # GitLab strips line breaks, which would otherwise start a new header.
        headers["X-Gitlab-Token"] = hook.token.reveal().replace("\r", "").replace("\n", "")
    if hook.signing_token:
        headers.update(
            signing.signature_headers(hook.signing_token.reveal(), idempotency_key, body)
        )
    custom = {
        name: value
        for name, value in revealed(_custom_headers(hook)).items()
        if isinstance(name, str)
        and isinstance(value, str)
        and name.lower() not in RESERVED_HEADERS
        and not any(c in name + value for c in "\r\n\0")
    }
    return {**custom, **headers}


def _custom_headers(hook: Hook) -> dict:
    # Saved through the form or API it is always {name: value}; a hand-edited row may not be.
    return hook.custom_headers if isinstance(hook.custom_headers, dict) else {}


def redact_headers(headers: dict[str, str], hook: Hook) -> dict[str, str]:
    """The request headers as the log keeps them: secrets and custom values masked."""
    custom = {name.lower() for name in _custom_headers(hook)}
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS or name.lower() in custom else value
        for name, value in headers.items()
    }


def _start_attempt(
    hook: Hook,
    *,
    delivery: Delivery | None,
    body: str,
    idempotency_key: str,
    event_uuid: str,
    attempt_number: int,
    trigger: str,
    user: AbstractBaseUser | None = None,
) -> tuple[DeliveryAttempt, dict[str, str]]:
    """Write the log row before sending (so a crash mid-request still leaves a trace)."""
    headers = build_headers(
        hook, body=body.encode(), idempotency_key=idempotency_key, event_uuid=event_uuid
    )
    attempt = DeliveryAttempt.objects.create(
        hook=hook,
        delivery=delivery,
        attempt_number=attempt_number,
        trigger=trigger,
        triggered_by=user if user is not None and user.is_authenticated else None,
        url=hook.redacted_url,
        request_headers=redact_headers(headers, hook),
        request_body=body if delivery is None else "",
    )
    return attempt, headers


def _send(hook: Hook, body: str, headers: dict[str, str]) -> transport.TransportResult:
    """One request, isolated: whatever goes wrong in sending it is its own failed result
    (logged with the reason, retried as any failure), never its batch's crash."""
    try:
        return transport.send(
            hook.url.reveal(), body.encode(), headers, verify_ssl=hook.enable_ssl_verification
        )
    except ImproperlyConfigured:
        raise  # a bad HOOKS_ALLOWED_NETWORKS fails every request alike: the operator's to fix
    except Exception as exc:
        logger.exception("Hook %s: the request could not be sent", hook.pk)
        return _failed(f"the request could not be sent: {_describe(exc)}")


def _failed(error: str) -> transport.TransportResult:
    return transport.TransportResult(status=None, error=error)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# Threads that carry a batch's extra lanes, shared by every task of the process. Idle
# threads are reused; the cap is only a backstop, so a batch never waits for another's lanes.
_LANE_THREADS_MAX = 256
_lane_executor: tuple[int, ThreadPoolExecutor] | None = None
_lane_executor_lock = threading.Lock()


def _lanes() -> ThreadPoolExecutor:
    global _lane_executor
    with _lane_executor_lock:
        # Made in the process that uses it: a forked worker child must not inherit it.
        if _lane_executor is None or _lane_executor[0] != os.getpid():
            _lane_executor = (
                os.getpid(),
                ThreadPoolExecutor(_LANE_THREADS_MAX, thread_name_prefix="hook-send"),
            )
        return _lane_executor[1]


def _send_all(
    requests: list[tuple[Hook, str, dict[str, str]]],
) -> list[transport.TransportResult]:
    """Send the requests over up to HOOKS_SEND_CONCURRENCY lanes at once, each lane one
    request after the other; results in the order of ``requests``. The caller's thread
    runs the first lane. Lanes only do HTTP: no database connection is used in them."""
    lanes = min(len(requests), max(1, settings.HOOKS_SEND_CONCURRENCY))
    results: list[transport.TransportResult | None] = [None] * len(requests)

    def run_lane(lane: int) -> None:
        for index in range(lane, len(requests), lanes):
            results[index] = _send(*requests[index])

    others = [_lanes().submit(run_lane, lane) for lane in range(1, lanes)]
    run_lane(0)
    for future in others:
        future.result()
    return results  # type: ignore[return-value]  (every slot is filled)


def _clean_text(value: str) -> str:
    # PostgreSQL text and jsonb can hold neither NUL characters nor lone surrogates.
    value = value.replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value


def _succeeded(result: transport.TransportResult) -> bool:
    return result.status is not None and 200 <= result.status < 300


def _response_values(result: transport.TransportResult) -> dict:
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
        "succeeded": _succeeded(result),
    }


def _record_response(attempt: DeliveryAttempt, result: transport.TransportResult) -> None:
    values = _response_values(result)
    for name, value in values.items():
        setattr(attempt, name, value)
    attempt.save(update_fields=list(values))


def _failure_text(result: transport.TransportResult) -> str:
    if result.status is not None and 200 <= result.status < 300:
        return ""
    return result.error or f"HTTP {result.status}"


# --- Retry policy --------------------------------------------------------------------------


def next_retry_delay(attempt_number: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait after failed attempt ``attempt_number`` (1-based), or None when that
    was the last one. HOOKS_RETRY_SCHEDULE lists the delay before each attempt; each delay
    gets ±HOOKS_RETRY_JITTER. A receiver's Retry-After is honoured when it asks for longer,
    up to HOOKS_RETRY_AFTER_MAX_SECONDS."""
    schedule = settings.HOOKS_RETRY_SCHEDULE
    if attempt_number >= len(schedule):
        return None
    jitter = settings.HOOKS_RETRY_JITTER
    delay = float(schedule[attempt_number]) * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.HOOKS_RETRY_AFTER_MAX_SECONDS))
    return delay


def retry_after_seconds(result: transport.TransportResult, now: datetime) -> float | None:
    """Retry-After of a 429 or 503, in seconds (delta-seconds or an HTTP date)."""
    if result.status not in (429, 503):
        return None
    value = next((v for k, v in result.headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() takes and float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def disable_backoff(failures: int, initial: timedelta = INITIAL_BACKOFF) -> timedelta:
    """How long a hook rests after its ``failures``-th failure in a row: ``initial`` at the
    4th, doubling with each further one, at most a day."""
    exponent = min(max(failures - TEMPORARY_DISABLE_FAILURES, 0), PERMANENT_DISABLE_FAILURES)
    return min(initial * 2**exponent, MAX_BACKOFF)


def _outcome(
    attempt_number: int, result: transport.TransportResult, *, manual: bool, now: datetime
) -> tuple[str, datetime | None]:
    """What an attempt leaves its delivery in: succeeded, pending again at a retry time, or
    failed (the last attempt, or a person's redelivery, which is tried once). Returns the
    status and the next attempt time (None when finished)."""
    if _succeeded(result):
        return Delivery.Status.SUCCEEDED, None
    delay = None if manual else next_retry_delay(attempt_number, retry_after_seconds(result, now))
    if delay is None:
        return Delivery.Status.FAILED, None
    return Delivery.Status.PENDING, now + timedelta(seconds=delay)


# --- Hook health ---------------------------------------------------------------------------
#
# Pure rules (no database, no settings read): ``HealthRules`` carries the settings, and the
# functions below fold one hook's results into its ``HookHealth``. The rule, GitLab's
# ``WebHooks::AutoDisabling`` adapted to retries and backlogs:
#
# - A failure counts only while the hook is executable (neither resting nor disabled), and
#   at most once per delivery: retries of one event are one failure, as GitLab, which sends
#   each event once, counts it. Failures 1-3 only count; from the 4th the hook rests for
#   the base backoff (1 minute), doubling with each counted failure up to a day; the 40th
#   disables it until re-enabled. Reaching 40 takes at least a month of failing, as GitLab.
# - When a rest is over the hook is *probing*: one delivery goes out alone (the claim picks
#   it, see ``_assign_probes``). A failed probe rests the hook again (doubled when its
#   failure counts, as long as before when its delivery had counted already); a success
#   clears the count and releases the backlog at once.
# - Any success clears the count and ends a rest (not a disable until re-enabled).
# - A 410 Gone is a failure like any other, unless HOOKS_DISABLE_ON_GONE: then it disables
#   the hook at once. With HOOKS_AUTO_DISABLE off no failure counts and nothing rests.


@dataclass(frozen=True)
class HealthRules:
    """The settings the health rules follow."""

    auto_disable: bool = True
    disable_on_gone: bool = False
    initial_backoff: timedelta = INITIAL_BACKOFF

    @classmethod
    def from_settings(cls) -> HealthRules:
        return cls(
            auto_disable=settings.HOOKS_AUTO_DISABLE,
            disable_on_gone=settings.HOOKS_DISABLE_ON_GONE,
            initial_backoff=timedelta(seconds=settings.HOOKS_BACKOFF_BASE_SECONDS),
        )


@dataclass(frozen=True)
class HookHealth:
    recent_failures: int
    disabled_until: datetime | None
    permanently_disabled: bool

    def resting(self, now: datetime) -> bool:
        return self.disabled_until is not None and self.disabled_until > now

    def executable(self, now: datetime) -> bool:
        """Deliveries may go out (GitLab's ``executable?``): neither disabled nor resting."""
        return not self.permanently_disabled and not self.resting(now)

    def probing(self, now: datetime) -> bool:
        """It rested and no success came since: one delivery at a time goes out."""
        return self.executable(now) and self.recent_failures >= TEMPORARY_DISABLE_FAILURES

    @property
    def held_back(self) -> bool:
        """Its deliveries are (or were, until a rest ran out) kept waiting."""
        return (
            self.permanently_disabled
            or self.disabled_until is not None
            or self.recent_failures >= TEMPORARY_DISABLE_FAILURES
        )


@dataclass(frozen=True)
class HookResult:
    """One scheduled attempt's result, as the health rules see it."""

    delivery_id: int
    succeeded: bool
    gone: bool = False  # the receiver answered 410 Gone
    # A failure of this delivery counted already (an earlier attempt of the same event).
    counted_before: bool = False


def health_after_success(health: HookHealth, rules: HealthRules | None = None) -> HookHealth:
    """A scheduled success resets the count and ends any rest; not a disable until
    re-enabled, unless auto-disable is off (then nothing may stay disabled when it is
    switched on again)."""
    if rules is not None and not rules.auto_disable:
        return HookHealth(0, None, False)
    return replace(health, recent_failures=0, disabled_until=None)


def health_after_failure(
    health: HookHealth,
    *,
    countable: bool,
    gone: bool,
    now: datetime,
    rules: HealthRules,
    hook_id: int | None = None,
) -> tuple[HookHealth, bool]:
    """Apply one failure; returns the new health and whether the failure counted.
    ``countable`` is False when the failing delivery counted before."""
    if not rules.auto_disable:
        return health, False
    counts = countable and health.executable(now)
    failures = min(health.recent_failures + int(counts), PERMANENT_DISABLE_FAILURES)
    if gone and rules.disable_on_gone:
        if health.permanently_disabled:
            return health, False
        logger.warning(
            "Hook %s disabled until re-enabled (the receiver answered 410 Gone)", hook_id
        )
        return replace(health, recent_failures=failures, permanently_disabled=True), counts
    if not health.executable(now):
        # GitLab's backoff! returns unless the hook is executable: a failure that comes back
        # while the hook rests (sent before the rest began) adds nothing.
        return health, False
    if not counts:
        if not health.probing(now):
            return health, False
        # A probe whose event had counted already: the receiver is still down, so the hook
        # rests again, as long as last time.
        disabled_until = now + disable_backoff(failures, rules.initial_backoff)
        logger.warning(
            "Hook %s rests until %s again: its probe failed (%s failures in a row)",
            hook_id,
            disabled_until,
            failures,
        )
        return replace(health, disabled_until=disabled_until), False
    if failures >= PERMANENT_DISABLE_FAILURES:
        logger.warning(
            "Hook %s disabled until re-enabled (%s failures in a row)", hook_id, failures
        )
        return replace(health, recent_failures=failures, permanently_disabled=True), True
    if failures >= TEMPORARY_DISABLE_FAILURES:
        disabled_until = now + disable_backoff(failures, rules.initial_backoff)
        logger.warning(
            "Hook %s rests until %s after %s failures in a row", hook_id, disabled_until, failures
        )
        return replace(health, recent_failures=failures, disabled_until=disabled_until), True
    return replace(health, recent_failures=failures), True


def fold_hook_results(
    health: HookHealth,
    results: Iterable[HookResult],
    *,
    now: datetime,
    rules: HealthRules,
    hook_id: int | None = None,
) -> tuple[HookHealth, list[int]]:
    """One hook's results, in order, through the rules: the health they leave and the
    deliveries whose failure counted."""
    counted: list[int] = []
    for result in results:
        if result.succeeded:
            health = health_after_success(health, rules)
            continue
        health, did_count = health_after_failure(
            health,
            countable=not result.counted_before,
            gone=result.gone,
            now=now,
            rules=rules,
            hook_id=hook_id,
        )
        if did_count:
            counted.append(result.delivery_id)
    return health, counted


def _record_health(results: list[tuple[int, HookResult]], now: datetime) -> None:
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
    table = connection.ops.quote_name(Hook._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    failing_clause = f"id IN ({', '.join(['%s'] * len(failing))}) OR " if failing else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT id, recent_failures, disabled_until, permanently_disabled, probe_delivery_id
            FROM {table}
            WHERE id IN ({", ".join(["%s"] * len(hook_ids))})
              AND ({failing_clause}recent_failures > 0 OR disabled_until IS NOT NULL
                   OR probe_until IS NOT NULL)
            ORDER BY id{lock}
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            [*hook_ids, *failing],
        )
        rows = cursor.fetchall()
    counted: list[int] = []
    for hook_id, failures, disabled_until, permanently_disabled, probe_id in rows:
        health = HookHealth(failures, _db_datetime(disabled_until), bool(permanently_disabled))
        own = [result for pk, result in results if pk == hook_id]
        after, hook_counted = fold_hook_results(health, own, now=now, rules=rules, hook_id=hook_id)
        counted.extend(hook_counted)
        probe_answered = probe_id is not None and any(r.delivery_id == probe_id for r in own)
        if after != health or probe_answered:
            Hook.objects.filter(pk=hook_id).update(
                **asdict(after), probe_delivery_id=None, probe_until=None
            )
        if health.held_back and not after.held_back:
            logger.info("Hook %s answered again; sending what waited", hook_id)
            _wake_hook(hook_id)
    if counted:
        Delivery.objects.filter(pk__in=counted).update(failure_counted=True)


def _db_datetime(value: datetime | str | None) -> datetime | None:
    """A datetime column read with a raw cursor: PostgreSQL gives it aware, SQLite naive
    in UTC."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _reenable_after_success(hook_id: int) -> None:
    """A person's resend or test got a 2xx: the hook is healthy again, whatever it was."""
    held_back = (
        Q(recent_failures__gte=TEMPORARY_DISABLE_FAILURES)
        | Q(disabled_until__isnull=False)
        | Q(permanently_disabled=True)
    )
    cleared = Hook.objects.filter(pk=hook_id).filter(held_back).update(**_CLEAR_HEALTH)
    if cleared:
        logger.info("Hook %s re-enabled by a successful request", hook_id)
        _wake_hook(hook_id)
    else:
        Hook.objects.filter(pk=hook_id, recent_failures__gt=0).update(recent_failures=0)


# A hook as good as new: no count, no rest, no disable, no probe out.
_CLEAR_HEALTH = {
    "recent_failures": 0,
    "disabled_until": None,
    "permanently_disabled": False,
    "probe_delivery_id": None,
    "probe_until": None,
}


def _wake_hook(hook_id: int) -> None:
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
        .filter(~_has_earlier_unfinished())
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH_SIZE]
    )
    enqueue_on_commit(list(heads))


def _enqueue_next_in_order(chains: Iterable[tuple[int, int]]) -> None:
    """Deliveries of these (hook id, order key) chains finished: queue the next due one of
    each now."""
    enqueue_on_commit(_next_in_order(chains))


def _next_in_order(chains: Iterable[tuple[int, int]]) -> list[int]:
    """The next due delivery of each of these (hook id, order key) chains, ascending."""
    chains = set(chains)
    if not chains:
        return []
    hook_ids = sorted({hook_id for hook_id, _ in chains})
    order_keys = sorted({order_key for _, order_key in chains})
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        # Both id lists together may also match other chains (a cross product): only the
        # chains that finished are kept.
        cursor.execute(
            f"""
            SELECT hook_id, order_key, MIN(id) FROM {table}
            WHERE hook_id IN ({", ".join(["%s"] * len(hook_ids))})
              AND order_key IN ({", ".join(["%s"] * len(order_keys))})
              AND status = %s AND next_attempt_at <= %s
            GROUP BY hook_id, order_key
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            [
                *hook_ids,
                *order_keys,
                Delivery.Status.PENDING.value,
                connection.ops.adapt_datetimefield_value(timezone.now()),
            ],
        )
        heads = [
            head for hook_id, order_key, head in cursor.fetchall() if (hook_id, order_key) in chains
        ]
    return sorted(heads)


# --- Deliver -------------------------------------------------------------------------------


def _hook_condition(now: datetime, *, probe: str) -> tuple[str, list]:
    """The claim's condition on a delivery's hook (aliased ``hook``), as SQL and parameters:
    neither disabled nor resting, and either never rested since its last success or
    probing with this delivery as its probe. ``probe="held"`` asks for the probe this
    caller holds (``_assign_probes``); ``probe="free"`` also takes any delivery of a
    probing hook with no probe out, which could become its probe; ``probe="any"`` asks only
    that the hook be neither disabled nor resting. With HOOKS_AUTO_DISABLE off, every hook
    qualifies."""
    if not settings.HOOKS_AUTO_DISABLE:
        return "", []
    delivery_table = connection.ops.quote_name(Delivery._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    sql = """
            AND NOT hook.permanently_disabled
            AND (hook.disabled_until IS NULL OR hook.disabled_until <= %s)"""
    params = [at]
    if probe == "any":
        return sql, params
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
    pending, due, its hook may be sent to (``_hook_condition``), no earlier unfinished
    delivery of its (hook, pipeline). Every condition is on the delivery row itself or in
    EXISTS subqueries."""
    ops = connection.ops
    delivery_table = ops.quote_name(Delivery._meta.db_table)
    hook_table = ops.quote_name(Hook._meta.db_table)
    at = ops.adapt_datetimefield_value(now)
    hook_sql, hook_params = _hook_condition(now, probe=probe)
    sql = f"""
        id IN ({", ".join(["%s"] * len(delivery_ids))}) AND status = %s AND next_attempt_at <= %s
        AND EXISTS (
          SELECT 1 FROM {hook_table} hook
          WHERE hook.id = {delivery_table}.hook_id{hook_sql})
        AND NOT EXISTS (
          SELECT 1 FROM {delivery_table} earlier
          WHERE earlier.hook_id = {delivery_table}.hook_id
            AND earlier.order_key = {delivery_table}.order_key
            AND earlier.id < {delivery_table}.id
            AND earlier.status IN (%s, %s))
    """  # noqa: S608 (table names come from the models, values are parameters)
    params = [
        *delivery_ids,
        Delivery.Status.PENDING.value,
        at,
        *hook_params,
        Delivery.Status.PENDING.value,
        Delivery.Status.SENDING.value,
    ]
    return sql, params


def claimable_deliveries(delivery_ids: Iterable[int], now: datetime) -> list[int]:
    """Which of these deliveries a claim would take now, found by a read: no write lock.

    Most messages that find nothing to do (their delivery waits for an earlier one, or a
    task following its pipeline sent it already) stop here, so on SQLite they never queue
    for the database's single write lock. Only a hint: the claim decides.
    """
    ids = sorted({int(pk) for pk in delivery_ids})
    if not ids:
        return []
    where, params = _claimable_where(ids, now, probe="free")
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE {where}", params)  # noqa: S608
        return sorted(row[0] for row in cursor.fetchall())


def _backlog(taken: list[int], now: datetime) -> list[int]:
    """Due deliveries, other than ``taken``, whose task messages are still queued: enough to
    fill a batch up to HOOKS_BATCH_SIZE. Newest first, so deliveries long blocked (a resting
    hook, an earlier one retrying) never lie in the path of the scan; the older ones come
    with their own messages anyway. Only candidates: the claim decides."""
    room = min(settings.HOOKS_BATCH_SIZE, MAX_BATCH_SIZE) - len(taken)
    if room <= 0:
        return []
    table = connection.ops.quote_name(Delivery._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT id FROM {table}
            WHERE status = %s AND next_attempt_at <= %s AND queued_until > %s
              AND id NOT IN ({", ".join(["%s"] * len(taken))})
            ORDER BY next_attempt_at DESC
            LIMIT %s
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            [Delivery.Status.PENDING.value, at, at, *taken, room],
        )
        return [row[0] for row in cursor.fetchall()]


def claim_deliveries(delivery_ids: Iterable[int], now: datetime) -> list[int]:
    """The conditional UPDATE over a batch: the ids (ascending) this caller now holds.

    The database re-checks ``status = 'pending'`` (and every other condition of
    ``_claimable_where``) on each row it locks: of two claims, one wins. The later delivery
    of a (hook, pipeline) is never claimed along with an earlier one: the earlier is pending
    or (claimed by this very statement) sending, both unfinished. Written in SQL, as are the
    other statements every batch runs, because the ORM spends several times longer building
    them than the database running them; RETURNING needs PostgreSQL or SQLite 3.35+.
    """
    ids = sorted({int(pk) for pk in delivery_ids})
    if not ids:
        return []
    ops = connection.ops
    lease = _batch_lease(now, len(ids))
    probes: dict[int, int] = {}
    if settings.HOOKS_AUTO_DISABLE:
        ids, probes = _assign_probes(ids, now, lease)
        if not ids:
            return []
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
        claimed = sorted(row[0] for row in cursor.fetchall())
    unsent = {hook_id: pk for hook_id, pk in probes.items() if pk not in claimed}
    if unsent:
        # Assigned but not claimed after all: another may probe at once, not after a lease.
        for hook_id, pk in unsent.items():
            Hook.objects.filter(pk=hook_id, probe_delivery_id=pk).update(
                probe_delivery_id=None, probe_until=None
            )
    return claimed


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
class _Claimed:
    """A claimed delivery with what sending and recording it needs."""

    delivery_id: int
    order_key: int
    attempt_number: int
    manual_redelivery: bool
    idempotency_key: str
    event_uuid: str
    body: str
    # In memory only, with the fields a request needs (url, secrets, headers, SSL flag).
    hook: Hook


def _load_claimed(delivery_ids: list[int]) -> list[_Claimed]:
    """The claimed deliveries with their event's body and their hook, in one query."""
    quote = connection.ops.quote_name
    delivery_table = quote(Delivery._meta.db_table)
    event_table = quote(Event._meta.db_table)
    hook_table = quote(Hook._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT d.id, d.order_key, d.attempt_count, d.manual_redelivery, d.idempotency_key,
                   e.uuid, e.body, h.id, h.url, h.token, h.signing_token, h.custom_headers,
                   h.enable_ssl_verification, h.masked_url
            FROM {delivery_table} d
            JOIN {event_table} e ON e.id = d.event_id
            JOIN {hook_table} h ON h.id = d.hook_id
            WHERE d.id IN ({", ".join(["%s"] * len(delivery_ids))})
            ORDER BY d.id
            """,  # noqa: S608 (table names come from the models, values are parameters)
            delivery_ids,
        )
        rows = cursor.fetchall()
    return [
        _Claimed(
            delivery_id=delivery_id,
            order_key=order_key,
            attempt_number=attempt_count,
            manual_redelivery=bool(manual),
            idempotency_key=_uuid_text(idempotency_key),
            event_uuid=_uuid_text(event_uuid),
            body=body,
            hook=Hook(
                pk=hook_id,
                # The secrets as stored, still sealed (hooks.sealing).
                url=Sealed(url),
                masked_url=masked_url,
                token=Sealed(token),
                signing_token=Sealed(signing_token),
                # PostgreSQL's driver and SQLite both hand JSON over as text here.
                custom_headers=from_stored(
                    json.loads(custom) if isinstance(custom, str) else custom
                ),
                enable_ssl_verification=bool(verify),
            ),
        )
        for (
            delivery_id,
            order_key,
            attempt_count,
            manual,
            idempotency_key,
            event_uuid,
            body,
            hook_id,
            url,
            token,
            signing_token,
            custom,
            verify,
            masked_url,
        ) in rows
    ]


def _uuid_text(value: uuid.UUID | str) -> str:
    # PostgreSQL returns a UUID; SQLite keeps 32 hex digits.
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))


# SQLite's busy handler sleeps 1, 2, 5, 10, … 100 ms between tries for the write lock, so a
# worker waiting behind a busy web process sleeps through the moments the lock is free: one
# ordered delivery stuck there holds up every later one of its pipeline. The worker's write
# transactions try for the lock in short steps first, for up to a second; then the atomic
# block's usual busy timeout applies.
WRITE_LOCK_STEP_SECONDS = 0.0005
WRITE_LOCK_STEPPING_SECONDS = 1.0


@contextmanager
def _write_transaction() -> Iterator[None]:
    """``transaction.atomic()`` for a batch's writes; on SQLite, the lock waited for closely."""
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        wait_for_sqlite_write_lock(connection)
    with transaction.atomic():
        yield


def wait_for_sqlite_write_lock(sqlite: BaseDatabaseWrapper) -> None:
    """Take and release the write lock of this SQLite connection (not in a transaction),
    trying every WRITE_LOCK_STEP_SECONDS for up to WRITE_LOCK_STEPPING_SECONDS; the atomic
    block that follows takes it again (should another writer slip in between, it simply
    waits as usual). The connection's busy timeout is left as it was."""
    with sqlite.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        (busy_timeout_ms,) = cursor.fetchone()
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + WRITE_LOCK_STEPPING_SECONDS
            while True:
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                except OperationalError:  # database is locked
                    if time.monotonic() >= deadline:
                        return
                    time.sleep(WRITE_LOCK_STEP_SECONDS)
                    continue
                cursor.execute("ROLLBACK")
                return
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


def deliver_batch(delivery_ids: Iterable[int], *, fill_from_backlog: bool = False) -> list[int]:
    """Send the deliveries among ``delivery_ids`` that can be claimed, and record each
    result; returns their attempts' ids. The others (not due, hook disabled, an earlier one
    of their pipeline unfinished, claimed elsewhere) are left as they are.

    With ``fill_from_backlog`` (the task does this), a batch whose own deliveries can be
    claimed also takes other due deliveries whose messages are still queued, up to
    HOOKS_BATCH_SIZE: under a backlog batches grow, and a batch costs the same few
    statements whatever its size. Their own messages then find them taken and stop at a
    read.

    A batch is claimed, and its log rows written, in one short transaction; the requests
    go out with no transaction open, HOOKS_SEND_CONCURRENCY at a time; every result is then
    recorded in one transaction, each decided by the same rules as a batch of one.

    When deliveries finish and their (hook, pipeline) has a next one due, this task sends
    those next, for up to FOLLOW_SECONDS, rather than queueing messages that would wait
    behind everything queued meanwhile: the transaction recording one batch claims the
    next, so an ordered stream of events costs one transaction per step and no trip through
    the broker. What is left after that time is queued. Should the worker die meanwhile,
    the rows are still pending: the sweeper queues them.
    """
    started = time.monotonic()
    now = timezone.now()
    candidates = claimable_deliveries(delivery_ids, now)
    if not candidates:
        return []
    if fill_from_backlog:
        candidates += _backlog(candidates, now)
    with _write_transaction():
        batch = _start_batch(candidates, now)
    attempt_ids: list[int] = []
    while batch is not None:
        attempt_ids.extend(batch.attempt_ids)
        # No transaction is open while the requests are on the network.
        results = _send_batch(batch)
        following = time.monotonic() - started < FOLLOW_SECONDS
        batch = _while_database_unavailable(
            partial(_finish_batch, batch, results, following=following)
        )
    return attempt_ids


def _finish_batch(
    batch: _Batch, results: list[transport.TransportResult], *, following: bool
) -> _Batch | None:
    """Record a sent batch's results; claim the next deliveries of its pipelines when still
    following them (returned), or queue them."""
    with _write_transaction():
        next_ids = _record_results(batch, results)
        if next_ids and following:
            return _start_batch(next_ids, timezone.now())
        enqueue_on_commit(next_ids)
        return None


def _while_database_unavailable(record: Callable[[], T]) -> T:
    """Run ``record`` (a transaction), again while the database cannot be reached, for up to
    one claim lease.

    The requests are out by then: giving up would leave the deliveries ``sending`` until their
    lease runs out, and the sweeper would send them all again. A database restart takes
    seconds; waiting here records each result once, as soon as it is back. Past the lease the
    sweeper has taken the deliveries back anyway, and the error is raised.
    """
    deadline = time.monotonic() + settings.HOOKS_CLAIM_LEASE_SECONDS
    pause = 0.1
    while True:
        try:
            return record()
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + pause >= deadline:
                raise
            logger.warning("Could not record delivery results (%s); trying again", error)
            connection.close()  # the next try connects afresh
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


@dataclass
class _Batch:
    """Claimed deliveries, the headers to send each with, and their attempts' log rows."""

    claimed: list[_Claimed]
    headers: list[dict[str, str]]
    attempt_ids: list[int]
    # Index in ``claimed`` -> why its request could not even be built (no request goes out).
    unsendable: dict[int, str] = field(default_factory=dict)


def _send_batch(batch: _Batch) -> list[transport.TransportResult]:
    """Every claimed delivery's result, in the batch's order: the answer to its request, or
    a failure saying why no request went out."""
    sendable = [index for index in range(len(batch.claimed)) if index not in batch.unsendable]
    answers = iter(
        _send_all(
            [
                (batch.claimed[index].hook, batch.claimed[index].body, batch.headers[index])
                for index in sendable
            ]
        )
    )
    return [
        _failed(batch.unsendable[index]) if index in batch.unsendable else next(answers)
        for index in range(len(batch.claimed))
    ]


def _start_batch(delivery_ids: list[int], now: datetime) -> _Batch | None:
    """Claim what can be claimed of ``delivery_ids`` and write the attempts' log rows (in
    the caller's transaction); None when nothing could be claimed."""
    claimed_ids = claim_deliveries(delivery_ids, now)
    if not claimed_ids:
        return None
    claimed = _load_claimed(claimed_ids)
    headers: list[dict[str, str]] = []
    unsendable: dict[int, str] = {}
    for index, item in enumerate(claimed):
        try:
            headers.append(
                build_headers(
                    item.hook,
                    body=item.body.encode(),
                    idempotency_key=item.idempotency_key,
                    event_uuid=item.event_uuid,
                )
            )
        except Exception as exc:  # a row no form or API would save (a signing secret, say)
            logger.exception(
                "Delivery %s (hook %s): its request could not be built",
                item.delivery_id,
                item.hook.pk,
            )
            headers.append({})
            unsendable[index] = f"the request could not be built: {_describe(exc)}"
    return _Batch(claimed, headers, _insert_attempts(claimed, headers, now), unsendable)


def deliver(delivery_id: int) -> DeliveryAttempt | None:
    """Send one delivery if it can be claimed (a batch of one); returns its attempt, or None
    when there was nothing to do."""
    attempt_ids = deliver_batch([delivery_id])
    return DeliveryAttempt.objects.get(pk=attempt_ids[0]) if attempt_ids else None


def _insert_attempts(claimed: list[_Claimed], headers: list[dict], now: datetime) -> list[int]:
    """Write the attempts' log rows (request headers redacted, no answer yet) in one
    INSERT; returns their ids in the order of ``claimed``."""
    ops = connection.ops
    json_field = DeliveryAttempt._meta.get_field("request_headers")
    at = ops.adapt_datetimefield_value(now)
    rows = [
        [
            item.hook.pk,
            item.delivery_id,
            item.attempt_number,
            DeliveryAttempt.Trigger.MANUAL.value
            if item.manual_redelivery
            else DeliveryAttempt.Trigger.SCHEDULED.value,
            item.hook.redacted_url,
            json_field.get_db_prep_save(redact_headers(sent, item.hook), connection),
            at,
        ]
        for item, sent in zip(claimed, headers, strict=True)
    ]
    table = ops.quote_name(DeliveryAttempt._meta.db_table)
    values = "(%s, %s, %s, %s, %s, %s, %s, '', '{}', '', %s, 0, '', %s)"
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), MAX_BATCH_SIZE):
            chunk = rows[start : start + MAX_BATCH_SIZE]
            cursor.execute(
                f"""
                INSERT INTO {table} (hook_id, delivery_id, attempt_number, "trigger", url,
                    request_headers, created_at, request_body, response_headers,
                    response_body, response_body_truncated, duration_ms, error, succeeded)
                VALUES {", ".join([values] * len(chunk))}
                RETURNING id
                """,  # noqa: S608 (the table name comes from the model, values are parameters)
                [value for row in chunk for value in (*row, False, False)],
            )
            # Rows come back in VALUES order (what Django's bulk_create relies on too).
            ids.extend(row[0] for row in cursor.fetchall())
    return ids


def _record_results(batch: _Batch, results: list[transport.TransportResult]) -> list[int]:
    """Record a batch's results (in the caller's transaction): every attempt's answer; then,
    for each delivery still held by this batch, its outcome and its hook's health. Returns
    the next due delivery of each (hook, pipeline) that finished one."""
    now = timezone.now()
    results = [
        _recordable(item, result, now) for item, result in zip(batch.claimed, results, strict=True)
    ]
    finished = list(zip(batch.claimed, batch.attempt_ids, results, strict=True))
    ops = connection.ops
    attempt_table = ops.quote_name(DeliveryAttempt._meta.db_table)
    delivery_table = ops.quote_name(Delivery._meta.db_table)
    json_field = DeliveryAttempt._meta.get_field("response_headers")
    with connection.cursor() as cursor:
        answers = []
        for _, attempt_id, result in finished:
            values = _response_values(result)
            values["response_headers"] = json_field.get_db_prep_save(
                values["response_headers"], connection
            )
            answers.append([*values.values(), attempt_id])
        cursor.executemany(
            f"""
            UPDATE {attempt_table}
            SET response_status = %s, response_headers = %s, response_body = %s,
                response_body_truncated = %s, duration_ms = %s, error = %s, succeeded = %s
            WHERE id = %s
            """,  # noqa: S608 (the table name comes from the model, values are parameters)
            answers,
        )

        # Locked (PostgreSQL) or under the write lock (SQLite) until commit: nobody changes
        # these rows between this check and the update below.
        ids = [item.delivery_id for item, _, _ in finished]
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        cursor.execute(
            f"SELECT id, attempt_count, failure_counted FROM {delivery_table} "  # noqa: S608
            f"WHERE id IN ({', '.join(['%s'] * len(ids))}) AND status = %s{lock}",
            [*ids, Delivery.Status.SENDING.value],
        )
        held = {pk: (attempt_count, bool(counted)) for pk, attempt_count, counted in cursor}
        ours: list[tuple[_Claimed, transport.TransportResult, str]] = []
        outcomes = []
        for item, _, result in finished:
            if held.get(item.delivery_id, (None,))[0] != item.attempt_number:
                # The lease ran out and the sweeper took the delivery back: it will be sent
                # again; this attempt stays in the log and changes nothing else.
                logger.warning(
                    "Delivery %s attempt %s finished after its claim expired; result logged only",
                    item.delivery_id,
                    item.attempt_number,
                )
                continue
            status, next_attempt_at = _outcome(
                item.attempt_number, result, manual=item.manual_redelivery, now=now
            )
            ours.append((item, result, status))
            outcomes.append(
                [
                    status,
                    ops.adapt_datetimefield_value(next_attempt_at),
                    ops.adapt_datetimefield_value(now if status in FINISHED else None),
                    result.status,
                    _clean_text(_failure_text(result)),
                    False,  # manual_redelivery: a person's redelivery is tried once
                    item.delivery_id,
                ]
            )
        if outcomes:
            # A finished delivery keeps its last next_attempt_at (the log shows when it was
            # due); a retried one gets the new time.
            cursor.executemany(
                f"""
                UPDATE {delivery_table}
                SET status = %s, next_attempt_at = COALESCE(%s, next_attempt_at),
                    finished_at = %s, last_response_status = %s, last_error = %s,
                    manual_redelivery = %s, claimed_until = NULL, queued_until = NULL
                WHERE id = %s
                """,  # noqa: S608 (the table name comes from the model, values are parameters)
                outcomes,
            )
        # A person's redelivery that fails does not count against the hook.
        _record_health(
            [
                (
                    item.hook.pk,
                    HookResult(
                        item.delivery_id,
                        succeeded=_succeeded(result),
                        gone=result.status == 410,
                        counted_before=held[item.delivery_id][1],
                    ),
                )
                for item, result, _ in ours
                if _succeeded(result) or not item.manual_redelivery
            ],
            now,
        )
        return _next_in_order(
            (item.hook.pk, item.order_key) for item, _, status in ours if status in FINISHED
        )


def _recordable(
    item: _Claimed, result: transport.TransportResult, now: datetime
) -> transport.TransportResult:
    """``result`` when the log and the retry rules can read it; else a failed result saying
    why (logged): one answer nobody foresaw never keeps the batch's others from being
    recorded, and its delivery is retried as after any failure."""
    try:
        _response_values(result)
        _outcome(item.attempt_number, result, manual=item.manual_redelivery, now=now)
    except Exception as exc:
        logger.exception("Delivery %s: its answer could not be recorded", item.delivery_id)
        return _failed(f"the answer could not be recorded: {_describe(exc)}")
    return result


# --- Entry points for people (admin and API) -------------------------------------------------


def resend_delivery(delivery: Delivery, user: AbstractBaseUser | None = None) -> DeliveryAttempt:
    """Send a delivery's event again now, synchronously: a new attempt with the same body
    and Idempotency-Key, logged with trigger "manual". A 2xx finishes a pending or failed
    delivery and re-enables the hook; a failure changes neither the delivery's schedule nor
    the hook's health. Raises ``DeliveryInProgress`` while a worker is sending it."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update().select_related("event", "hook").get(pk=delivery.pk)
        )
        if (
            delivery.status == Delivery.Status.SENDING
            and delivery.claimed_until
            and delivery.claimed_until > now
        ):
            raise DeliveryInProgress(
                "This delivery is being sent right now; look at its attempts in a moment."
            )
        Delivery.objects.filter(pk=delivery.pk).update(attempt_count=F("attempt_count") + 1)
        attempt, headers = _start_attempt(
            delivery.hook,
            delivery=delivery,
            body=delivery.event.body,
            idempotency_key=str(delivery.idempotency_key),
            event_uuid=str(delivery.event.uuid),
            attempt_number=delivery.attempt_count + 1,
            trigger=DeliveryAttempt.Trigger.MANUAL,
            user=user,
        )
    result = _send(delivery.hook, delivery.event.body, headers)
    with transaction.atomic():
        _record_response(attempt, result)
        if attempt.succeeded:
            finished = Delivery.objects.filter(
                pk=delivery.pk, status__in=(Delivery.Status.PENDING, Delivery.Status.FAILED)
            ).update(
                status=Delivery.Status.SUCCEEDED,
                finished_at=timezone.now(),
                last_response_status=result.status,
                last_error="",
                queued_until=None,
                manual_redelivery=False,
            )
            _reenable_after_success(delivery.hook_id)
            if finished:
                _enqueue_next_in_order([(delivery.hook_id, delivery.order_key)])
    return attempt


def redeliver_failed_since(hook: Hook, since: datetime) -> int:
    """Queue every failed delivery of ``hook`` created at or after ``since`` for one more
    attempt each (trigger "manual", not retried if it fails); returns how many.

    They keep their pipeline order and wait while the hook is disabled: re-enable it first.
    """
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            hook.deliveries.filter(status=Delivery.Status.FAILED, created_at__gte=since)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        count = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.FAILED).update(
            status=Delivery.Status.PENDING,
            manual_redelivery=True,
            next_attempt_at=now,
            finished_at=None,
            queued_until=_lease(now),
        )
        enqueue_on_commit(ids)
    logger.info("Hook %s: %s failed deliveries queued again", hook.pk, count)
    return count


def send_test_event(hook: Hook, user: AbstractBaseUser | None = None) -> DeliveryAttempt:
    """GitLab's "Test": send the newest pipeline's payload now, synchronously, whatever the
    hook's health; a 2xx re-enables the hook. Logged with trigger "test" and no delivery.
    Raises ``NoPipelineError`` when the project has no pipeline yet."""
    pipeline = (
        Pipeline.objects.filter(project_id=hook.project_id)
        .select_related("project", "user")
        .order_by("-id")
        .first()
    )
    if pipeline is None:
        raise NoPipelineError("Ensure the project has CI pipelines.")
    body = dump_payload(build_pipeline_payload(pipeline))
    attempt, headers = _start_attempt(
        hook,
        delivery=None,
        body=body,
        idempotency_key=str(uuid.uuid4()),
        event_uuid=str(uuid.uuid4()),
        attempt_number=1,
        trigger=DeliveryAttempt.Trigger.TEST,
        user=user,
    )
    result = _send(hook, body, headers)
    with transaction.atomic():
        _record_response(attempt, result)
        if attempt.succeeded:
            _reenable_after_success(hook.pk)
    return attempt


def reenable_hook(hook: Hook) -> Hook:
    """Clear the failure count and any disable, and send what has been waiting."""
    with transaction.atomic():
        Hook.objects.filter(pk=hook.pk).update(**_CLEAR_HEALTH)
        _wake_hook(hook.pk)
    hook.refresh_from_db()
    return hook


# --- Beat tasks ------------------------------------------------------------------------------


def requeue_due_deliveries(now: datetime | None = None) -> int:
    """The sweeper: take back claims whose lease ran out (a worker died mid-request), then
    queue due deliveries that have no task message out (a retry came due, a message was
    lost). Returns how many it queued."""
    now = now or timezone.now()
    _take_back_expired_claims(now)
    with transaction.atomic():
        due = list(
            Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now))
            .filter(_hook_is_executable(now))
            .filter(~_has_earlier_unfinished())
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH_SIZE]
        )
        if due:
            Delivery.objects.filter(pk__in=due, status=Delivery.Status.PENDING).update(
                queued_until=_lease(now)
            )
            enqueue_on_commit(due)
    return len(due)


def _take_back_expired_claims(now: datetime) -> None:
    expired = list(
        Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_until__lt=now).values_list(
            "pk", "attempt_count"
        )[:SWEEP_BATCH_SIZE]
    )
    for delivery_id, attempt_number in expired:
        with transaction.atomic():
            taken = Delivery.objects.filter(
                pk=delivery_id,
                status=Delivery.Status.SENDING,
                attempt_count=attempt_number,
                claimed_until__lt=now,
            ).update(
                status=Delivery.Status.PENDING,
                claimed_until=None,
                queued_until=None,
                next_attempt_at=now,
                last_error="the worker stopped before the attempt finished",
            )
            if taken:
                DeliveryAttempt.objects.filter(
                    delivery_id=delivery_id,
                    attempt_number=attempt_number,
                    response_status__isnull=True,
                    error="",
                ).update(error="No result: the worker stopped before this attempt finished.")
                logger.warning(
                    "Delivery %s: claim expired during attempt %s; sending it again",
                    delivery_id,
                    attempt_number,
                )


def prune_delivery_logs(now: datetime | None = None) -> int:
    """Delete attempts older than HOOKS_LOG_RETENTION_DAYS, finished deliveries older than
    that, and events left without deliveries. Pending deliveries are never pruned.
    Returns how many attempts were deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HOOKS_LOG_RETENTION_DAYS)
    attempts_deleted, _ = DeliveryAttempt.objects.filter(created_at__lt=cutoff).delete()
    while True:
        old = list(
            Delivery.objects.filter(status__in=FINISHED, finished_at__lt=cutoff).values_list(
                "pk", flat=True
            )[:PRUNE_BATCH_SIZE]
        )
        if not old:
            break
        Delivery.objects.filter(pk__in=old).delete()
    while True:
        orphans = list(
            Event.objects.filter(created_at__lt=cutoff)
            .filter(~Exists(Delivery.objects.filter(event_id=OuterRef("pk"))))
            .values_list("pk", flat=True)[:PRUNE_BATCH_SIZE]
        )
        if not orphans:
            break
        Event.objects.filter(pk__in=orphans).delete()
    if attempts_deleted:
        logger.info("Pruned %s delivery attempts older than %s", attempts_deleted, cutoff)
    return attempts_deleted
