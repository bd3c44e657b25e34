"""Job Hooks in the outbox: which job changes send one, and how they share each (hook,
pipeline) stream with the pipeline's events: one order, written in causal order, numbered
1, 2, 3… with no gap."""

import json

import pytest
from django.db import transaction

from hooks.models import Delivery, Event
from pipelines import services
from pipelines.errors import TransitionRefused
from tests.factories import HookFactory

SHA = "b" * 40


def kinds_and_statuses(hook) -> list[tuple[str, str]]:
    """The hook's stream as (object_kind, status), in delivery order."""
    return [
        (d.event.object_kind, d.event.status)
        for d in hook.deliveries.select_related("event").order_by("pk")
    ]


@pytest.fixture
def both(project):
    return HookFactory(project=project, pipeline_events=True, job_events=True)


def test_a_job_sends_on_creation_pending_running_and_finish(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    job = services.create_job(pipeline, name="build")
    services.update_job(job, status="pending")
    services.update_job(job, status="running")
    services.update_job(job, status="success")
    assert kinds_and_statuses(both) == [
        ("pipeline", "created"),
        ("build", "created"),
        ("build", "pending"),
        ("pipeline", "pending"),
        ("build", "running"),
        ("pipeline", "running"),
        ("build", "success"),
        ("pipeline", "success"),
    ]
    jobs = [d for d in both.deliveries.order_by("pk") if d.event.object_kind == "build"]
    assert [(d.event.previous_status, d.event.change) for d in jobs] == [
        (None, "created"),
        ("created", "status_changed"),
        ("pending", "status_changed"),
        ("running", "finished"),
    ]
    assert {d.event.job_id for d in jobs} == {job.pk}
    # Each body is the snapshot of its moment; the pipeline is not yet recomposed in it.
    bodies = [json.loads(d.event.body) for d in jobs]
    assert [(b["build_status"], b["commit"]["status"]) for b in bodies] == [
        ("created", "created"),
        ("pending", "created"),
        ("running", "pending"),
        ("success", "running"),
    ]


def test_no_job_hook_for_manual_skipped_canceling_or_same_status(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    manual = services.create_job(pipeline, name="deploy", status="manual")
    skipped = services.create_job(pipeline, name="docs", status="skipped")
    running = services.create_job(pipeline, name="build", status="running")
    Event.objects.filter(object_kind="build").delete()  # what the creations sent
    services.update_job(running, coverage=80.0)  # a plain update: no status change
    services.update_job(running, status="canceling")
    services.update_job(skipped, status="created")  # GitLab's "process": no hook
    assert not Event.objects.filter(object_kind="build").exists()
    services.update_job(running, status="canceled")  # canceling -> canceled sends
    services.update_job(manual, status="pending")  # played: on entry to pending
    assert [(e.previous_status, e.status) for e in Event.objects.filter(object_kind="build")] == [
        ("canceling", "canceled"),
        ("manual", "pending"),
    ]


def test_a_job_created_in_a_later_status_sends_once_for_that_status(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build", status="running")
    services.create_job(pipeline, name="deploy", status="manual")
    assert [
        (e.previous_status, e.status, e.change) for e in Event.objects.filter(object_kind="build")
    ] == [(None, "running", "created")]


def test_retry_and_cancel_send_job_hooks(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    failed = services.create_job(pipeline, name="unit", status="failed")
    services.create_job(pipeline, name="lint", status="pending")
    services.retry_pipeline(pipeline)
    retried_events = list(Event.objects.filter(object_kind="build").order_by("pk"))[-1:]
    (clone,) = [json.loads(e.body) for e in retried_events]
    assert (clone["build_name"], clone["build_status"]) == ("unit", "pending")
    assert clone["build_id"] != failed.pk and clone["retries_count"] == 1
    services.cancel_pipeline(pipeline)
    assert kinds_and_statuses(both)[-3:] == [
        ("build", "canceled"),
        ("build", "canceled"),
        ("pipeline", "canceled"),
    ]


def test_sequences_count_both_kinds_per_hook_and_pipeline_without_gaps(project, both):
    pipeline_only = HookFactory(project=project, pipeline_events=True, job_events=False)
    jobs_only = HookFactory(project=project, pipeline_events=False, job_events=True)
    first = services.create_pipeline(project, ref="main", sha=SHA)
    second = services.create_pipeline(project, ref="main", sha="d" * 40)
    for pipeline in (first, second):
        job = services.create_job(pipeline, name="build", status="pending")
        services.update_job(job, status="success")
    for hook in (both, pipeline_only, jobs_only):
        for pipeline in (first, second):
            stream = list(hook.deliveries.filter(order_key=pipeline.pk).order_by("pk"))
            assert [d.sequence for d in stream] == list(range(1, len(stream) + 1))
    # A hook with only one kind on gets only that kind.
    assert {kind for kind, _ in kinds_and_statuses(pipeline_only)} == {"pipeline"}
    assert {kind for kind, _ in kinds_and_statuses(jobs_only)} == {"build"}
    assert both.deliveries.filter(order_key=first.pk).count() == 5  # 3 pipeline + 2 job


def test_the_first_in_line_rule_holds_a_pipeline_event_behind_its_job_event(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    job = services.create_job(pipeline, name="build", status="running")
    Delivery.objects.update(status=Delivery.Status.SUCCEEDED)
    services.update_job(job, status="success")
    job_delivery, pipeline_delivery = both.deliveries.filter(status="pending").order_by("pk")
    assert (job_delivery.event.object_kind, pipeline_delivery.event.object_kind) == (
        "build",
        "pipeline",
    )
    in_line = set(Delivery.objects.first_in_line().filter(status="pending"))
    assert in_line == {job_delivery}


def test_ref_filter_applies_to_job_events_and_the_status_filter_does_not(project):
    wants_failures = HookFactory(
        project=project, pipeline_events=True, job_events=True, status_filter=["failed"]
    )
    release_only = HookFactory(
        project=project,
        pipeline_events=False,
        job_events=True,
        ref_filter_strategy="wildcard",
        ref_filter="release/*",
    )
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build", status="running")
    assert kinds_and_statuses(wants_failures) == [("build", "running")]
    assert not release_only.deliveries.exists()
    release = services.create_pipeline(project, ref="release/1.0", sha=SHA)
    services.create_job(release, name="build", status="pending")
    assert kinds_and_statuses(release_only) == [("build", "pending")]


def test_job_outbox_rows_roll_back_with_the_change(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    before = (Event.objects.count(), Delivery.objects.count())
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_job(pipeline, name="build", status="pending")
        assert Event.objects.count() > before[0]
        raise RuntimeError("the change fails after the job was written")
    assert (Event.objects.count(), Delivery.objects.count()) == before


def test_a_refused_job_move_writes_nothing(project, both):
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    job = services.create_job(pipeline, name="build", status="success")
    before = Delivery.objects.count()
    with pytest.raises(TransitionRefused):
        services.update_job(job, status="running")
    assert Delivery.objects.count() == before
