"""GitLab's limits on hooks, for the hooks API and the admin alike.

- At most ``HOOKS_MAX_PER_PROJECT`` hooks per project: GitLab's plan limit ``project_hooks``
  (100 by default), checked the way ``Limitable`` does when a hook is created, with its
  wording.
- Test and resend buttons: GitLab's ``Gitlab::ApplicationRateLimiter`` keys
  ``web_hook_test`` and ``web_hook_event_resend``, each 5 a minute per user and project
  (``scope: [hook.parent, current_user]``). Both send a request now, synchronously, so
  without a limit anyone with a token could make this service hammer a receiver.
  Counts live in the ``rate_limits`` cache (Redis), shared by every web process.
- Rotating a hook's signing secret (no GitLab counterpart) is counted the same way, 5 a
  minute: each rotation adds a signature to every request for the grace that follows.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from hooks.models import Hook
from pipelines.models import Project

logger = logging.getLogger(__name__)

TEST = "web_hook_test"
RESEND = "web_hook_event_resend"
ROTATE = "web_hook_signing_token_rotate"

# GitLab's words for a throttled request (API::Helpers::RateLimiter, CheckRateLimit).
RATE_LIMITED_MESSAGE = "This endpoint has been requested too many times. Try again later."


class HookLimitReached(ValueError):
    """The project has as many hooks as it may have."""

    def __init__(self, limit: int):
        # Limitable's message: "Maximum number of %{name} (%{count}) exceeded".
        self.message = f"Maximum number of project hooks ({limit}) exceeded"
        super().__init__(self.message)


def check_room_for_hooks(project_id: int | None, adding: int = 1) -> None:
    """Raise ``HookLimitReached`` if the project cannot take ``adding`` more hooks.

    Call it inside the transaction that saves them: the project row stays locked until that
    commits, so two requests adding the last hook at once are counted one after the other.
    """
    limit = settings.HOOKS_MAX_PER_PROJECT
    if not limit or adding <= 0:
        return
    count = 0
    if project_id is not None:
        with transaction.atomic():
            # A no-op on SQLite, whose IMMEDIATE transactions already write one at a time.
            Project.objects.select_for_update().filter(pk=project_id).exists()
            count = Hook.objects.filter(project_id=project_id).count()
    if count + adding > limit:
        raise HookLimitReached(limit)


def limit_per_minute(action: str) -> int:
    """How many of ``action`` one person may do per project and minute (0: no limit)."""
    return {
        TEST: settings.HOOKS_TEST_LIMIT_PER_MINUTE,
        RESEND: settings.HOOKS_RESEND_LIMIT_PER_MINUTE,
        ROTATE: settings.HOOKS_ROTATE_LIMIT_PER_MINUTE,
    }[action]


def rate_limit_wait(action: str, project_id: int, user: Any, request: Any) -> int | None:
    """Count one ``action`` (``TEST``, ``RESEND`` or ``ROTATE``) by ``user`` on this project.

    Returns the seconds to wait when the action is over its limit, None when it may go
    ahead. Without a reachable cache it goes ahead (and says so in the log): the limit
    protects receivers, and a person's test button should not fail because Redis did.
    """
    per_minute = limit_per_minute(action)
    if not per_minute:
        return None
    scope = f"{project_id}:{getattr(user, 'pk', None)}"
    try:
        usage = get_usage(
            request,
            group=f"hooks.{action}",
            key=lambda group, request: scope,
            rate=(per_minute, 60),
            increment=True,
        )
    except (RedisError, OSError) as error:
        logger.warning("%s not rate-limited: the rate limit cache failed (%s)", action, error)
        return None
    if usage is None or not usage["should_limit"]:
        return None
    logger.info("%s refused for user %s on project %s: over the limit", action, user, project_id)
    return max(1, usage["time_left"])
