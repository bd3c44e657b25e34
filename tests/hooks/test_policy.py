"""The pure rules of retries and hook health, with no database: GitLab's auto-disable
adapted to retries and backlogs, the retry schedule, Retry-After and the backoff."""

from datetime import UTC, datetime, timedelta

from hooks.policy import (
    HealthRules,
    HookHealth,
    HookResult,
    disable_backoff,
    fold_hook_results,
    next_retry_delay,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
RULES = HealthRules()
HEALTHY = HookHealth(0, None, False)


def failures(*delivery_ids: int, counted_before: bool = False) -> list[HookResult]:
    return [HookResult(pk, succeeded=False, counted_before=counted_before) for pk in delivery_ids]


# --- Hook health -------------------------------------------------------------------------------


def test_forty_failures_in_one_batch_count_four_and_rest_a_minute():
    health, counted = fold_hook_results(HEALTHY, failures(*range(1, 41)), now=NOW, rules=RULES)
    assert health == HookHealth(4, NOW + timedelta(minutes=1), False)
    assert counted == [1, 2, 3, 4]


def test_a_failure_while_resting_or_disabled_counts_nothing():
    resting = HookHealth(7, NOW + timedelta(seconds=1), False)
    assert fold_hook_results(resting, failures(1), now=NOW, rules=RULES) == (resting, [])
    disabled = HookHealth(40, None, True)
    assert fold_hook_results(disabled, failures(1), now=NOW, rules=RULES) == (disabled, [])


def test_a_delivery_counts_at_most_once():
    health = HookHealth(2, None, False)
    again = failures(1, counted_before=True)
    assert fold_hook_results(health, again, now=NOW, rules=RULES) == (health, [])


def test_a_failed_probe_doubles_the_rest_when_it_counts():
    rested = HookHealth(4, NOW - timedelta(seconds=1), False)
    health, counted = fold_hook_results(rested, failures(9), now=NOW, rules=RULES)
    assert (health, counted) == (HookHealth(5, NOW + timedelta(minutes=2), False), [9])


def test_a_failed_probe_of_a_counted_delivery_rests_as_long_again():
    rested = HookHealth(6, NOW - timedelta(seconds=1), False)
    health, counted = fold_hook_results(
        rested, failures(3, counted_before=True), now=NOW, rules=RULES
    )
    assert (health, counted) == (HookHealth(6, NOW + timedelta(minutes=4), False), [])


def test_a_success_clears_the_count_and_the_rest_but_not_a_disable():
    resting = HookHealth(12, NOW + timedelta(hours=3), False)
    success = [HookResult(1, succeeded=True)]
    assert fold_hook_results(resting, success, now=NOW, rules=RULES) == (HEALTHY, [])
    disabled = HookHealth(40, None, True)
    assert fold_hook_results(disabled, success, now=NOW, rules=RULES)[0] == HookHealth(
        0, None, True
    )


def test_the_fortieth_counted_failure_disables_until_re_enabled():
    health, counted = fold_hook_results(
        HookHealth(39, NOW, False), failures(5), now=NOW, rules=RULES
    )
    assert (health, counted) == (HookHealth(40, NOW, True), [5])


def test_reaching_forty_takes_a_month_of_failing():
    """One counted failure per rest (each rest ends with a probe that fails): the 40th
    comes more than 26 days after the first."""
    health, now = HEALTHY, NOW
    delivery_id = 0
    while not health.permanently_disabled:
        if health.disabled_until is not None:
            now = health.disabled_until + timedelta(seconds=1)
        delivery_id += 1
        health, _ = fold_hook_results(health, failures(delivery_id), now=now, rules=RULES)
    assert delivery_id == 40
    assert now - NOW > timedelta(days=26)


def test_410_is_a_failure_like_any_unless_set_to_disable():
    gone = [HookResult(1, succeeded=False, gone=True)]
    assert fold_hook_results(HEALTHY, gone, now=NOW, rules=RULES) == (
        HookHealth(1, None, False),
        [1],
    )
    strict = HealthRules(disable_on_gone=True)
    resting = HookHealth(5, NOW + timedelta(minutes=1), False)
    assert fold_hook_results(resting, gone, now=NOW, rules=strict)[0].permanently_disabled


def test_auto_disable_off_counts_nothing_and_a_success_clears_all():
    off = HealthRules(auto_disable=False)
    assert fold_hook_results(HEALTHY, failures(*range(50)), now=NOW, rules=off) == (HEALTHY, [])
    gone = [HookResult(1, succeeded=False, gone=True)]
    assert fold_hook_results(HEALTHY, gone, now=NOW, rules=HealthRules(False, True)) == (
        HEALTHY,
        [],
    )
    disabled = HookHealth(40, None, True)
    success = [HookResult(1, succeeded=True)]
    assert fold_hook_results(disabled, success, now=NOW, rules=off)[0] == HEALTHY


def test_the_base_backoff_is_a_setting():
    short = HealthRules(initial_backoff=timedelta(seconds=2))
    health, _ = fold_hook_results(HookHealth(4, NOW, False), failures(1), now=NOW, rules=short)
    assert health.disabled_until == NOW + timedelta(seconds=4)


# --- Retries and backoff -------------------------------------------------------------------------


def test_retry_delays_follow_the_schedule_with_jitter(settings):
    settings.HOOKS_RETRY_SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    settings.HOOKS_RETRY_JITTER = 0.2
    delays = [next_retry_delay(1) for _ in range(200)]
    assert all(4.0 <= d <= 6.0 for d in delays) and len(set(delays)) > 1
    settings.HOOKS_RETRY_JITTER = 0
    assert [next_retry_delay(n) for n in range(1, 9)] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        None,
    ]


def test_backoff_doubles_from_one_minute_to_a_day():
    assert [disable_backoff(n) for n in (4, 5, 6, 14, 15, 39)] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=1024),
        timedelta(hours=24),
        timedelta(hours=24),
    ]
