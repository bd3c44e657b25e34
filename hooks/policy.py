"""The pure rules of retries and hook health: what an answer leaves a delivery and its hook in.

Nothing here reads or writes the database: ``HealthRules`` carries the settings the health
rules follow, and the functions fold one hook's results into its ``HookHealth``; the retry
rules read only the retry settings. ``hooks.records`` applies them to the rows.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db.models import Q

from hooks.models import Delivery
from hooks.transport import TransportResult

logger = logging.getLogger(__name__)

# GitLab's WebHooks::AutoDisabling.
TEMPORARY_DISABLE_FAILURES = 4
PERMANENT_DISABLE_FAILURES = 40
INITIAL_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=24)


# Classes of answers, as GitLab's delivery log filters them (WebHookLogsFinder); a 3xx is in
# none of them, and success is a 2xx only (GitLab also counts a 3xx).
RESPONSE_CLASSES = {
    "successful": range(200, 300),
    "client_failure": range(400, 500),
    "server_failure": range(500, 600),
}
NO_RESPONSE = "no_response"


def succeeded(result: TransportResult) -> bool:
    """Success is a 2xx answer, nothing else."""
    return result.status in RESPONSE_CLASSES["successful"]


def response_class(name: str, field: str = "response_status") -> Q:
    """The rows whose ``field`` holds an answer of class ``name`` (a ``RESPONSE_CLASSES`` key,
    or ``NO_RESPONSE``: no answer came back)."""
    if name == NO_RESPONSE:
        return Q(**{f"{field}__isnull": True})
    statuses = RESPONSE_CLASSES[name]
    return Q(**{f"{field}__gte": statuses.start, f"{field}__lt": statuses.stop})


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


def retry_after_seconds(result: TransportResult, now: datetime) -> float | None:
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


def outcome(
    attempt_number: int, result: TransportResult, *, manual: bool, now: datetime
) -> tuple[str, datetime | None]:
    """What an attempt leaves its delivery in: succeeded, pending again at a retry time, or
    failed (the last attempt, or a person's redelivery, which is tried once). Returns the
    status and the next attempt time (None when finished)."""
    if succeeded(result):
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
#   it, see ``claims.assign_probes``). A failed probe rests the hook again (doubled when its
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
