"""A pipeline's ``Gitlab::Ci::Status``, as current GitLab writes it (``lib/gitlab/ci/status/``).

The API's ``detailed_status`` shows all of it; the hook payload's ``detailed_status`` is its
label. Texts are capitalized since GitLab 16 ("Passed", "Running"); manual and scheduled
pipelines wear ``Pipeline::Blocked`` and ``Pipeline::Delayed``; a success in which jobs that
may fail failed or were canceled wears ``SuccessWarning``.
"""

from __future__ import annotations

from typing import NamedTuple

from pipelines.models import Pipeline, Status


class DetailedStatus(NamedTuple):
    icon: str
    text: str
    label: str
    group: str
    favicon: str


DETAILED_STATUSES = {
    Status.CREATED: DetailedStatus(
        "status_created", "Created", "created", "created", "favicon_status_created"
    ),
    Status.WAITING_FOR_RESOURCE: DetailedStatus(
        "status_pending",
        "Waiting",
        "waiting for resource",
        "waiting-for-resource",
        "favicon_pending",
    ),
    Status.PREPARING: DetailedStatus(
        "status_preparing", "Preparing", "preparing", "preparing", "favicon_status_preparing"
    ),
    Status.PENDING: DetailedStatus(
        "status_pending", "Pending", "pending", "pending", "favicon_status_pending"
    ),
    Status.RUNNING: DetailedStatus(
        "status_running", "Running", "running", "running", "favicon_status_running"
    ),
    Status.SUCCESS: DetailedStatus(
        "status_success", "Passed", "passed", "success", "favicon_status_success"
    ),
    Status.FAILED: DetailedStatus(
        "status_failed", "Failed", "failed", "failed", "favicon_status_failed"
    ),
    Status.CANCELING: DetailedStatus(
        "status_canceled", "Canceling", "canceling", "canceling", "favicon_status_canceled"
    ),
    Status.CANCELED: DetailedStatus(
        "status_canceled", "Canceled", "canceled", "canceled", "favicon_status_canceled"
    ),
    Status.SKIPPED: DetailedStatus(
        "status_skipped", "Skipped", "skipped", "skipped", "favicon_status_skipped"
    ),
    Status.MANUAL: DetailedStatus(
        "status_manual", "Blocked", "waiting for manual action", "manual", "favicon_status_manual"
    ),
    Status.SCHEDULED: DetailedStatus(
        "status_scheduled",
        "Delayed",
        "waiting for delayed job",
        "scheduled",
        "favicon_status_scheduled",
    ),
}
SUCCESS_WITH_WARNINGS = DetailedStatus(
    "status_warning",
    "Warning",
    "passed with warnings",
    "success-with-warnings",
    "favicon_status_success",
)


def detailed_status_of(pipeline: Pipeline) -> DetailedStatus:
    if pipeline.status == Status.SUCCESS and pipeline.has_warnings():
        return SUCCESS_WITH_WARNINGS
    return DETAILED_STATUSES[pipeline.status]
