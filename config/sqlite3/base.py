"""The embedded default's database: Django's SQLite backend, with its writers queued.

SQLite lets one connection write at a time. Left to itself, a writer that finds the lock
taken sleeps in SQLite's busy handler, 1, 2, 5, 10, … up to 100 ms between tries, and so
sleeps through the moments the lock is free: with a web process's threads and the workers
all writing, most of a request's time went to those sleeps (a third of it with four
clients), and the slowest requests waited hundreds of milliseconds behind locks that had
long been free. Here a transaction (Django's ``atomic()``, which this backend begins with
``BEGIN IMMEDIATE``) first queues behind the other transactions of its own process on a
plain lock, which hands over the moment it is released, and the one writer a process has
then tries for SQLite's lock in short steps. Writes outside a transaction (autocommit) are
left to the busy handler as before: they are single statements.

The busy timeout (``OPTIONS["timeout"]``) still bounds the whole wait: a writer that gets
neither lock within it fails with "database is locked", which the request answers with a
503 and a task retries, as before.
"""

from __future__ import annotations

import threading
import time

from django.db import OperationalError
from django.db.backends.sqlite3 import base

# Steps of the second wait, for SQLite's lock held by another process: short enough that a
# lock released is taken within half a millisecond, for up to a second; then the busy
# handler waits out the rest of the timeout (a writer holding the lock that long is stuck,
# and nothing is gained by trying closely).
WRITE_LOCK_STEP_SECONDS = 0.0005
WRITE_LOCK_STEPPING_SECONDS = 1.0

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def process_write_lock(database: str) -> threading.Lock:
    """The lock the transactions of this process on ``database`` queue on."""
    with _process_locks_guard:
        return _process_locks.setdefault(database, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_process_lock = False

    def _start_transaction_under_autocommit(self) -> None:
        if self.transaction_mode != "IMMEDIATE" or self.is_in_memory_db():
            super()._start_transaction_under_autocommit()
            return
        timeout = self._busy_timeout()
        lock = process_write_lock(str(self.settings_dict["NAME"]))
        started = time.monotonic()
        if not lock.acquire(timeout=timeout):
            raise OperationalError("database is locked")
        self._holds_process_lock = True
        try:
            self._begin_immediate(timeout - (time.monotonic() - started))
        except BaseException:
            self._release_process_lock()
            raise

    def _begin_immediate(self, timeout: float) -> None:
        """``BEGIN IMMEDIATE``, trying every WRITE_LOCK_STEP_SECONDS for up to
        WRITE_LOCK_STEPPING_SECONDS, then with the busy handler for the rest of ``timeout``."""
        sqlite = self.connection  # the sqlite3 connection: these statements are the backend's own
        with self.wrap_database_errors:
            sqlite.execute("PRAGMA busy_timeout = 0")
            try:
                deadline = time.monotonic() + min(WRITE_LOCK_STEPPING_SECONDS, timeout)
                while True:
                    try:
                        sqlite.execute("BEGIN IMMEDIATE")
                        return
                    except base.Database.OperationalError as error:
                        if "locked" not in str(error):
                            raise
                        if time.monotonic() >= deadline:
                            break
                    time.sleep(WRITE_LOCK_STEP_SECONDS)
                left = max(0.0, timeout - WRITE_LOCK_STEPPING_SECONDS)
                sqlite.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
                sqlite.execute("BEGIN IMMEDIATE")
            finally:
                sqlite.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout() * 1000)}")

    def _busy_timeout(self) -> float:
        return float(self.settings_dict["OPTIONS"].get("timeout", 5.0))

    def _set_autocommit(self, autocommit: bool) -> None:
        try:
            super()._set_autocommit(autocommit)
        finally:
            if autocommit:  # the transaction is over, committed or rolled back
                self._release_process_lock()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_process_lock()

    def _release_process_lock(self) -> None:
        if self._holds_process_lock:
            self._holds_process_lock = False
            process_write_lock(str(self.settings_dict["NAME"])).release()
