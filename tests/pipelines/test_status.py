"""GitLab's status rules on rows in memory: no test here touches the database."""

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.errors import TransitionRefused
from pipelines.models import Job, Pipeline, Status
from pipelines.status import (
    apply_job_status,
    apply_pipeline_status,
    apply_reported_times,
    check_job_move,
    compose_status,
    pipeline_target,
    seconds_between,
    union_seconds,
    whole_seconds,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(status: str, allow_failure: bool = False, **times) -> Job:
    return Job(name="job", status=status, allow_failure=allow_failure, created_at=T0, **times)


# --- Job moves -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("pending", "running"),
        ("created", "running"),  # through pending, as GitLab's "enqueue, then run"
        ("running", "success"),
        ("manual", "failed"),
        ("created", "manual"),
        ("skipped", "pending"),
    ],
)
def test_check_job_move_allows_gitlabs_moves(source, target):
    check_job_move(job(source), target)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("success", "running", "Cannot transition status via :run from :success"),
        ("running", "running", "Cannot transition status via :run from :running"),
        ("failed", "pending", "Cannot transition status via :enqueue from :failed"),
        ("running", "manual", "Cannot transition status via :block from :running"),
        ("canceled", "success", "Cannot transition status via :success from :canceled"),
    ],
)
def test_check_job_move_refuses_in_gitlabs_words(source, target, message):
    with pytest.raises(TransitionRefused, match=message):
        check_job_move(job(source), target)


def test_apply_job_status_sets_gitlabs_times():
    running = job("pending", queued_at=at(2))
    apply_job_status(running, Status.RUNNING, at(5))
    assert (running.started_at, running.queued_duration) == (at(5), 3.0)

    apply_job_status(running, Status.FAILED, at(65.5))
    assert (running.finished_at, running.duration) == (at(65.5), 60.5)

    apply_job_status(running, Status.MANUAL, at(70))
    assert running.manual is True and running.failure_reason is None


# --- Composition -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([], None),
        ([job("success"), job("failed")], Status.FAILED),
        ([job("success"), job("skipped")], Status.SUCCESS),
        # A failed or canceled job that may fail passes "with warnings".
        ([job("failed", allow_failure=True)], Status.SUCCESS),
        ([job("canceled", allow_failure=True), job("skipped")], Status.SUCCESS),
        # Only skipped and optional manual jobs make a pipeline skipped.
        ([job("skipped"), job("manual", allow_failure=True)], Status.SKIPPED),
        ([job("failed", allow_failure=True), job("running")], Status.RUNNING),
        ([job("success"), job("created")], Status.RUNNING),
        ([job("pending"), job("created")], Status.PENDING),
        ([job("success"), job("manual")], Status.MANUAL),
        ([job("canceled"), job("success")], Status.CANCELED),
    ],
)
def test_compose_status_is_gitlabs_composite(jobs, expected):
    assert compose_status(jobs) == expected


@pytest.mark.parametrize(
    ("current", "composite", "expected"),
    [
        ("running", Status.CREATED, "running"),  # nothing moves a pipeline back to created
        ("success", None, "success"),
        ("failed", Status.PENDING, Status.RUNNING),  # a finished pipeline runs again
        ("running", Status.PENDING, Status.RUNNING),
        ("skipped", Status.PENDING, Status.PENDING),
        ("running", Status.SUCCESS, Status.SUCCESS),
    ],
)
def test_pipeline_target_is_gitlabs_set_status(current, composite, expected):
    assert pipeline_target(current, composite) == expected


# --- Durations -------------------------------------------------------------------------------


def test_union_seconds_counts_overlapping_periods_once():
    assert union_seconds([(at(0), at(10)), (at(5), at(20)), (at(30), at(31.9))]) == 21
    assert union_seconds([(at(0), at(10)), (at(2), at(3))]) == 10
    assert union_seconds([]) == 0


def test_durations_are_never_negative():
    assert whole_seconds(at(10), at(0)) == 0
    assert whole_seconds(at(0), at(59.9)) == 59
    assert seconds_between(at(10), at(0)) == 0.0
    assert seconds_between(at(0), at(1.25)) == 1.25


def test_a_completed_pipeline_lasts_the_union_of_its_jobs_running_periods():
    pipeline = Pipeline(status=Status.RUNNING, created_at=at(0), started_at=at(4))
    jobs = [
        job("success", started_at=at(5), finished_at=at(15)),
        job("success", started_at=at(10), finished_at=at(25)),
        job("skipped"),  # never ran: no period
    ]
    apply_pipeline_status(pipeline, Status.SUCCESS, at(30), jobs)
    assert (pipeline.finished_at, pipeline.duration, pipeline.queued_duration) == (at(30), 20, 4)

    apply_pipeline_status(pipeline, Status.RUNNING, at(40), jobs)
    assert (pipeline.finished_at, pipeline.duration, pipeline.started_at) == (None, None, at(4))


def test_a_pipeline_without_job_periods_lasts_from_its_start():
    pipeline = Pipeline(status=Status.PENDING, created_at=at(0))
    apply_pipeline_status(pipeline, Status.RUNNING, at(3), [])
    apply_pipeline_status(pipeline, Status.FAILED, at(10), [])
    assert (pipeline.started_at, pipeline.duration, pipeline.queued_duration) == (at(3), 7, 3)


def test_reported_times_win_and_say_whether_anything_changed():
    pipeline = Pipeline(status=Status.SUCCESS, created_at=at(0), started_at=at(1))
    pipeline.finished_at, pipeline.duration = at(100), 99
    assert apply_reported_times(pipeline, at(2), at(50)) is True
    assert (pipeline.started_at, pipeline.finished_at, pipeline.duration) == (at(2), at(50), 48)
    assert apply_reported_times(pipeline, at(2), at(50)) is False

    # A pipeline that never ran takes no start from the report, and a skipped one has no
    # finish either (A4: GitLab sets finished_at on success, failed and canceled only).
    skipped = Pipeline(status=Status.SKIPPED, created_at=at(0))
    apply_reported_times(skipped, at(2), at(3))
    assert (skipped.started_at, skipped.finished_at, skipped.duration) == (None, None, None)
