"""A short memory, per process, of the tokens requests came with and the rights they hold.

Every API request names a token; reading it, its owner and their grants costs a handful of
queries, the same ones each time for a client that reports a job a second. So a token found
once is kept for ``PIPEHOOK_TOKEN_CACHE_SECONDS`` (5 s; 0 keeps nothing), keyed by its
SHA-256 digest, with its rights loaded once (``pipelines.auth.grants_of``).

What a process changes itself takes effect there at once: saving or deleting a token, a
user, a group or a grant (the admin, ``createtoken``) empties the memory. Another process
(a second web process, a command run beside the server) sees the change when its entry runs
out, within ``PIPEHOOK_TOKEN_CACHE_SECONDS``. An expiry date is checked on every use.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save

if TYPE_CHECKING:
    from pipelines.models import AccessToken

# Entries past this many are dropped all at once (a process sees a few tokens, not thousands).
MAX_ENTRIES = 1000


class TokenCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, AccessToken]] = {}
        self._lock = threading.Lock()
        # Counts the changes this process made to rights: rights kept on a token instance
        # (``pipelines.auth.grants_of``) are read again once it moved on.
        self.generation = 0

    @staticmethod
    def seconds() -> float:
        return float(getattr(settings, "PIPEHOOK_TOKEN_CACHE_SECONDS", 0))

    def get(self, digest: str) -> AccessToken | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        kept_until, token = entry
        if time.monotonic() >= kept_until:
            with self._lock:
                if self._entries.get(digest) is entry:
                    del self._entries[digest]
            return None
        return token

    def put(self, digest: str, token: AccessToken) -> None:
        seconds = self.seconds()
        if seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + seconds, token)

    def clear(self, **kwargs) -> None:
        """Forget every token (a signal handler: anything that changes rights calls it)."""
        with self._lock:
            self._entries.clear()
            self.generation += 1


tokens = TokenCache()


def connect_signals() -> None:
    """Empty the memory whenever this process changes a token or anything a token's rights
    come from. Called from ``PipelinesConfig.ready``."""
    from pipelines.models import AccessToken, GroupProjectPermission

    user_model = get_user_model()
    for model in (AccessToken, user_model, Group, GroupProjectPermission):
        post_save.connect(tokens.clear, sender=model, dispatch_uid=f"token-cache-save-{model}")
        post_delete.connect(tokens.clear, sender=model, dispatch_uid=f"token-cache-del-{model}")
    for through in (
        AccessToken.projects.through,
        AccessToken.groups.through,
        user_model.groups.through,
        user_model.user_permissions.through,
        Group.permissions.through,
    ):
        m2m_changed.connect(tokens.clear, sender=through, dispatch_uid=f"token-cache-m2m-{through}")
