"""Each rule the claim states in raw SQL selects the same rows as its ORM definition, over
hooks and deliveries of every kind: the sweeper, the admin and the claim cannot disagree."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from hooks.claims import executable_hook_sql, first_in_line_sql
from hooks.models import Delivery, Event, Hook
from tests.factories import HookFactory, PipelineFactory


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def hooks(project, now) -> list[Hook]:
    """One hook of each health."""
    hour = timedelta(hours=1)
    kinds = [
        {},  # healthy
        {"recent_failures": 2},  # failing, still sent to
        {"recent_failures": 4, "disabled_until": now + hour},  # resting
        {"recent_failures": 5, "disabled_until": now - hour},  # rest over: probing
        {"recent_failures": 5, "disabled_until": now - hour, "probe_until": now + hour},
        {"recent_failures": 6, "disabled_until": now},  # the rest ends this very moment
        {"recent_failures": 40, "permanently_disabled": True},
        {"permanently_disabled": True, "disabled_until": now + hour},
    ]
    return [HookFactory(project=project, **fields) for fields in kinds]


def sql_ids(table: str, where: str, params: list) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE {where}", params)  # noqa: S608
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.parametrize("auto_disable", [True, False])
def test_the_hook_may_be_sent_to_now_means_the_same_in_sql_and_the_orm(
    settings, hooks, now, auto_disable
):
    settings.HOOKS_AUTO_DISABLE = auto_disable
    table = connection.ops.quote_name(Hook._meta.db_table)
    sql, params = executable_hook_sql(now)

    selected = sql_ids(f"{table} hook", f"1 = 1 {sql}", params)

    assert selected == set(Hook.objects.executable(now).values_list("pk", flat=True))
    # ... and the badge a person sees says the same of each hook.
    executable = {hook.pk for hook in hooks if hook.alert_status == Hook.AlertStatus.EXECUTABLE}
    assert selected == executable
    assert 0 < len(selected) <= len(hooks)
    assert (len(selected) == len(hooks)) is not auto_disable


def test_first_in_line_means_the_same_in_sql_and_the_orm(project, hooks):
    """Chains of one pipeline to one hook, in every mix of statuses."""
    chains = [
        ["succeeded", "pending", "pending"],
        ["failed", "sending", "pending"],
        ["pending"],
        ["sending", "succeeded", "failed", "pending"],
        ["succeeded", "failed"],
    ]
    for hook in hooks[:2]:
        for statuses in chains:
            pipeline = PipelineFactory(project=project)
            event = Event.objects.create(
                project=project, pipeline=pipeline, change="created", status="created", body="{}"
            )
            for status in statuses:
                Delivery.objects.create(
                    event=event, hook=hook, order_key=pipeline.pk, status=status
                )
    table = connection.ops.quote_name(Delivery._meta.db_table)

    selected = sql_ids(table, *first_in_line_sql())

    assert selected == set(Delivery.objects.first_in_line().values_list("pk", flat=True))
    assert 0 < len(selected) < Delivery.objects.count()
