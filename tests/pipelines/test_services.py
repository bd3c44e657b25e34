import pytest

from pipelines import services
from pipelines.commit_statuses import ReportedCommitStatus, report_commit_status
from pipelines.errors import TransitionRefused
from pipelines.models import Status
from pipelines.signals import pipeline_changed
from tests.factories import ProjectFactory


def report_status(project, sha: str, **fields):
    return report_commit_status(project, ReportedCommitStatus(sha, **fields))


@pytest.fixture
def changes():
    seen = []

    def listen(sender, pipeline, previous_status, change, **kwargs):
        seen.append((previous_status, pipeline.status, change))

    pipeline_changed.connect(listen)
    yield seen
    pipeline_changed.disconnect(listen)


def test_create_pipeline_sends_created_signal(project, changes):
    pipeline = services.create_pipeline(project, ref="main", sha="a" * 40)
    assert pipeline.iid == 1
    assert changes == [(None, "created", "created")]


def test_commit_statuses_compose_pipeline_through_stages(project, changes):
    sha = "b" * 40
    report_status(project, sha, state="pending", name="build", stage="build")
    report_status(project, sha, state="running", name="build")
    report_status(project, sha, state="success", name="build")
    report_status(project, sha, state="running", name="test", stage="test")
    pipeline = project.pipelines.get()
    assert pipeline.status == Status.RUNNING
    report_status(project, sha, state="success", name="test")
    pipeline.refresh_from_db()
    assert pipeline.status == Status.SUCCESS
    assert pipeline.finished_at is not None and pipeline.duration is not None
    assert pipeline.stage_names() == ["build", "test"]
    assert [c[1:] for c in changes] == [
        ("created", "created"),
        ("pending", "status_changed"),
        ("running", "status_changed"),
        # GitLab composes from the jobs it knows: build alone finished the pipeline, and
        # the test job reported later runs it again.
        ("success", "finished"),
        ("running", "status_changed"),
        ("success", "finished"),
    ]


def test_same_job_state_twice_is_refused_and_sends_nothing(project, changes):
    sha = "c" * 40
    report_status(project, sha, state="running", name="build")
    before = len(changes)
    with pytest.raises(TransitionRefused, match="Cannot transition status via :run from :running"):
        report_status(project, sha, state="running", name="build")
    assert len(changes) == before


def test_allow_failure_job_does_not_fail_pipeline(project):
    pipeline = services.create_pipeline(project, ref="main", sha="d" * 40)
    services.create_job(pipeline, name="lint", status="failed", allow_failure=True)
    services.create_job(pipeline, name="unit", status="success")
    pipeline.refresh_from_db()
    assert pipeline.status == Status.SUCCESS


def test_compose_failed_beats_success(project):
    pipeline = services.create_pipeline(project, ref="main", sha="e" * 40)
    services.create_job(pipeline, name="a", status="success")
    services.create_job(pipeline, name="b", status="failed")
    pipeline.refresh_from_db()
    assert pipeline.status == Status.FAILED


def test_retry_finished_pipeline_goes_back_to_running(project, changes):
    pipeline = services.create_pipeline(project, ref="main", sha="f" * 40)
    services.create_job(pipeline, name="a", status="success")
    failing = services.create_job(pipeline, name="b", status="failed")
    pipeline = services.retry_pipeline(pipeline)
    assert pipeline.status == Status.RUNNING
    assert pipeline.finished_at is None
    failing.refresh_from_db()
    assert failing.retried
    assert pipeline.latest_jobs().get(name="b").status == Status.PENDING
    assert changes[-1] == ("failed", "running", "status_changed")


def test_retry_without_failed_jobs_changes_nothing(project, changes):
    pipeline = services.create_pipeline(project, ref="main", sha="1" * 40)
    services.create_job(pipeline, name="a", status="running")
    seen = len(changes)
    assert services.retry_pipeline(pipeline).status == Status.RUNNING
    assert pipeline.jobs.count() == 1 and len(changes) == seen


def test_cancel_cancels_active_jobs(project):
    pipeline = services.create_pipeline(project, ref="main", sha="2" * 40)
    services.create_job(pipeline, name="a", status="success")
    services.create_job(pipeline, name="b", status="running")
    pipeline = services.cancel_pipeline(pipeline)
    assert pipeline.status == Status.CANCELED
    assert services.cancel_pipeline(pipeline).status == Status.CANCELED  # nothing to cancel


def test_transition_pipeline_refuses_created_and_ignores_same(project, changes):
    pipeline = services.create_pipeline(project, ref="main", sha="3" * 40)
    assert services.transition_pipeline(pipeline, "running") is True
    assert services.transition_pipeline(pipeline, "running") is False
    with pytest.raises(TransitionRefused):
        services.transition_pipeline(pipeline, "created")
    pipeline.refresh_from_db()
    assert pipeline.status == Status.RUNNING
    assert pipeline.started_at is not None
    assert [c[2] for c in changes] == ["created", "status_changed"]


def test_transition_refused_when_pipeline_has_jobs(project):
    pipeline = services.create_pipeline(project, ref="main", sha="4" * 40)
    services.create_job(pipeline, name="a", status="pending")
    with pytest.raises(TransitionRefused, match="composed from its jobs"):
        services.transition_pipeline(pipeline, "success")


def test_finished_job_reported_again_starts_new_attempt(project):
    sha = "5" * 40
    first = report_status(project, sha, state="failed", name="build")
    second = report_status(project, sha, state="running", name="build")
    first.refresh_from_db()
    assert first.retried and first.failure_reason == "api_failure"
    assert second.pk != first.pk
    pipeline = project.pipelines.get()
    assert pipeline.status == Status.RUNNING


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        # GitLab counts a failed or canceled job that may fail as "passed with warnings".
        ([("lint", "failed", True)], Status.SUCCESS),
        ([("lint", "canceled", True), ("docs", "skipped", False)], Status.SUCCESS),
        # Only skipped and optional manual jobs make a pipeline skipped.
        ([("docs", "skipped", False), ("deploy", "manual", True)], Status.SKIPPED),
        ([("lint", "failed", True), ("unit", "running", False)], Status.RUNNING),
    ],
)
def test_compose_jobs_allowed_to_fail_as_gitlab_does(project, jobs, expected):
    pipeline = services.create_pipeline(project, ref="main", sha="3" * 40)
    for name, status, allow_failure in jobs:
        services.create_job(pipeline, name=name, status=status, allow_failure=allow_failure)
    pipeline.refresh_from_db()
    assert pipeline.status == expected


def test_cancel_leaves_manual_jobs_to_be_played(project):
    pipeline = services.create_pipeline(project, ref="main", sha="4" * 40)
    services.create_job(pipeline, name="build", status="running")
    services.create_job(pipeline, name="deploy", status="manual")
    pipeline = services.cancel_pipeline(pipeline)
    jobs = dict(pipeline.latest_jobs().values_list("name", "status"))
    assert jobs == {"build": Status.CANCELED, "deploy": Status.MANUAL}
    assert pipeline.status == Status.MANUAL  # blocked on the manual job, as in GitLab
    assert services.cancel_pipeline(pipeline).status == Status.MANUAL  # nothing to cancel
    assert dict(pipeline.latest_jobs().values_list("name", "status"))["deploy"] == Status.MANUAL


def test_cancel_reaches_created_jobs_behind_a_manual_one(project):
    pipeline = services.create_pipeline(project, ref="main", sha="5" * 40)
    services.create_job(pipeline, name="deploy", status="manual")
    services.create_job(pipeline, name="verify", status="created")
    assert pipeline.latest_jobs().count() == 2
    pipeline.refresh_from_db()
    assert pipeline.status == Status.MANUAL
    pipeline = services.cancel_pipeline(pipeline)
    jobs = dict(pipeline.latest_jobs().values_list("name", "status"))
    assert jobs == {"deploy": Status.MANUAL, "verify": Status.CANCELED}


def test_skipped_pipeline_whose_job_queues_is_pending_not_running(project, changes):
    pipeline = services.create_pipeline(project, ref="main", sha="6" * 40)
    services.create_job(pipeline, name="docs", status="skipped")
    pipeline.refresh_from_db()
    assert pipeline.status == Status.SKIPPED
    services.create_job(pipeline, name="lint", status="pending")
    pipeline.refresh_from_db()
    assert pipeline.status == Status.PENDING
    assert changes[-1] == ("skipped", "pending", "status_changed")


def test_running_pipeline_stays_running_when_told_to_queue(project, changes):
    pipeline = services.create_pipeline(project, ref="main", sha="7" * 40)
    services.transition_pipeline(pipeline, "running")
    assert services.transition_pipeline(pipeline, "pending") is False
    pipeline.refresh_from_db()
    assert pipeline.status == Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_pipelines_created_at_once_take_distinct_iids():
    """Creations in parallel wait for the project's lock and then read the highest iid
    afresh (on PostgreSQL a statement that waited still sees only what was committed when it
    began)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    project = ProjectFactory()

    def create(number: int) -> int:
        try:
            return services.create_pipeline(project, ref="main", sha=f"{number:040x}").iid
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        iids = list(pool.map(create, range(12)))
    assert sorted(iids) == list(range(1, 13))
