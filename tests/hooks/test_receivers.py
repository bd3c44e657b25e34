"""The outbox: pipeline changes write Event and Delivery rows in their own transaction."""

import json

import pytest
from django.db import transaction

from hooks.models import Delivery, Event
from hooks.payloads import build_pipeline_payload, dump_payload
from hooks.receivers import ref_matches
from pipelines import services
from pipelines.models import Pipeline
from tests.factories import HookFactory
from tests.hooks.deliveries import queued_ids

SHA = "a" * 40


def run_pipeline_to_success(project) -> Pipeline:
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    job = services.create_job(pipeline, name="build", status="pending")
    services.update_job(job, status="running")
    services.update_job(job, status="success")
    pipeline.refresh_from_db()
    return pipeline


def test_each_pipeline_change_writes_one_event_and_one_delivery_per_hook(project):
    first, second = HookFactory(project=project), HookFactory(project=project)
    pipeline = run_pipeline_to_success(project)
    events = list(Event.objects.order_by("pk"))
    assert [(e.previous_status, e.status, e.change) for e in events] == [
        (None, "created", "created"),
        ("created", "pending", "status_changed"),
        ("pending", "running", "status_changed"),
        ("running", "success", "finished"),
    ]
    for hook in (first, second):
        deliveries = list(hook.deliveries.order_by("pk"))
        assert [d.event_id for d in deliveries] == [e.pk for e in events]
        assert {d.order_key for d in deliveries} == {pipeline.pk}
        assert {d.status for d in deliveries} == {Delivery.Status.PENDING}
    assert len({d.idempotency_key for d in Delivery.objects.all()}) == 8


def test_event_body_is_the_snapshot_of_its_status(project):
    HookFactory(project=project)
    pipeline = run_pipeline_to_success(project)
    bodies = [json.loads(e.body) for e in Event.objects.order_by("pk")]
    assert [b["object_attributes"]["status"] for b in bodies] == [
        "created",
        "pending",
        "running",
        "success",
    ]
    assert [len(b["builds"]) for b in bodies] == [0, 1, 1, 1]
    assert Event.objects.order_by("pk").last().body == dump_payload(
        build_pipeline_payload(pipeline)
    )


def test_deliveries_are_queued_by_id_only_when_the_change_commits(
    project, django_capture_on_commit_callbacks
):
    hook = HookFactory(project=project)
    with django_capture_on_commit_callbacks() as callbacks:
        services.create_pipeline(project, ref="main", sha=SHA)
    assert queued_ids(callbacks) == [hook.deliveries.get().pk]


def test_outbox_rows_roll_back_with_the_change(project, django_capture_on_commit_callbacks):
    HookFactory(project=project)
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.create_pipeline(project, ref="main", sha=SHA)
        assert Event.objects.count() == 1 and Delivery.objects.count() == 1
        raise RuntimeError("the request failed after the change")
    assert Pipeline.objects.count() == 0
    assert Event.objects.count() == 0 and Delivery.objects.count() == 0
    assert callbacks == []


def test_nothing_is_written_when_no_hook_wants_the_event(project):
    HookFactory(project=project, pipeline_events=False)
    HookFactory(project=project, status_filter=["failed"])
    HookFactory(project=project, ref_filter_strategy="wildcard", ref_filter="release/*")
    HookFactory(url="http://127.0.0.1:9/other-project")  # another project's hook
    run_pipeline_to_success(project)
    assert Event.objects.count() == 0 and Delivery.objects.count() == 0


def test_status_filter_keeps_only_the_statuses_asked_for(project):
    hook = HookFactory(project=project, status_filter=["success", "failed"])
    run_pipeline_to_success(project)
    assert [d.event.status for d in hook.deliveries.all()] == ["success"]


def test_disabled_hooks_still_get_deliveries_that_wait(project):
    hook = HookFactory(project=project, permanently_disabled=True, recent_failures=40)
    services.create_pipeline(project, ref="main", sha=SHA)
    assert hook.deliveries.get().status == Delivery.Status.PENDING


@pytest.mark.parametrize(
    "strategy, pattern, ref, wanted",
    [
        ("all_branches", "", "anything", True),
        ("wildcard", "release/*", "release/1.2", True),
        ("wildcard", "release/*", "main", False),
        ("wildcard", "*-stable", "16-4-stable", True),
        ("wildcard", "main", "main-old", False),
        ("wildcard", "v1.?", "v1.2", False),  # only * is special, as in GitLab
        ("regex", "^(main|release/.*)$", "release/2", True),
        ("regex", "^(main|release/.*)$", "feature/x", False),
        ("regex", "hotfix", "team/hotfix-1", True),
        ("regex", "([", "main", False),  # an invalid pattern matches nothing
    ],
)
def test_ref_filter(strategy, pattern, ref, wanted):
    hook = HookFactory.build(ref_filter_strategy=strategy, ref_filter=pattern)
    assert ref_matches(hook, ref) is wanted


def test_ref_filter_applies_to_pipeline_hooks(project):
    hook = HookFactory(project=project, ref_filter_strategy="regex", ref_filter="^release/")
    services.create_pipeline(project, ref="main", sha=SHA)
    services.create_pipeline(project, ref="release/1.0", sha=SHA)
    assert [
        json.loads(d.event.body)["object_attributes"]["ref"] for d in hook.deliveries.all()
    ] == ["release/1.0"]
