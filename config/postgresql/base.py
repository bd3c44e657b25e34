"""PostgreSQL: Django's backend, with its health check made without a round trip when it can.

With ``CONN_HEALTH_CHECKS`` Django asks a kept connection to answer (``SELECT 1``) before the
first query of every request, so a connection a database restart broke is replaced, not
failed on. That is a round trip per request (and, in config/celery.py, per task) on the way
of every commit status and every delivery. A server that ends a connection (a restart,
``pg_terminate_backend``, an idle timeout) says so on its socket, which is then readable while
no query is out: for a connection used within ``QUIET_CHECK_SECONDS``, a socket with nothing
to read is taken as usable, and the query is asked only otherwise. A connection idle longer
(whose server may have gone without a word, as behind a cut network) still gets Django's
query.
"""

from __future__ import annotations

import select
import time

from django.db.backends.postgresql import base

QUIET_CHECK_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    # When a cursor was last made on the connection (monotonic seconds).
    last_used_at: float | None = None

    def _cursor(self, name=None):
        cursor = super()._cursor(name)
        self.last_used_at = time.monotonic()
        return cursor

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.may_have_been_ended()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def may_have_been_ended(self) -> bool:
        """Whether the server may have ended this kept connection: it has been idle for long
        (or was never used), or its socket has something to read (its goodbye)."""
        if self.last_used_at is None or time.monotonic() - self.last_used_at > QUIET_CHECK_SECONDS:
            return True
        try:
            # poll(), not select(): a web process's descriptors go past select()'s 1024.
            poller = select.poll()
            poller.register(self.connection.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        except Exception:  # noqa: BLE001 - no socket to look at (psycopg: "connection is lost")
            return True
