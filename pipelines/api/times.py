"""GitLab's time formats in its API, which the Distelli dialect shares.

API times are UTC with milliseconds and ``Z`` (``2016-08-11T11:28:34.085Z``); commit dates
keep their offset (``2015-12-24T16:51:14.000+01:00``).
"""

from datetime import UTC, datetime


def gitlab_time(value: datetime | None) -> str | None:
    """GitLab's API time format: UTC, milliseconds, ``Z``."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def commit_time(value: datetime | None) -> str | None:
    """Commit dates keep their offset in GitLab (``2015-12-24T16:51:14.000+01:00``)."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds")
