"""The embedded default's SQLite backend (config/sqlite3/base.py): a transaction queues
behind its own process's others, then waits closely for another process's write lock,
always within the busy timeout, and never keeps a lock once it is over."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, transaction
from django.db.utils import ConnectionHandler

from config.sqlite3 import base as writers

_connections: dict[str, object] = {}


def atomic(connection):
    """``transaction.atomic()`` on a connection of a handler of its own."""
    alias = f"writers-{id(connection)}"
    _connections[alias] = connection
    return transaction.atomic(using=alias)


@pytest.fixture
def sqlite_file(tmp_path, django_db_blocker, monkeypatch):
    """Django connections (as the embedded default makes them, whatever database the tests
    run on) to a SQLite file of their own, and a plain connection standing for another
    process."""
    path = tmp_path / "lock.sqlite3"
    handlers = []
    get_connection = transaction.get_connection
    monkeypatch.setattr(
        transaction,
        "get_connection",
        lambda using=None: _connections.get(using) or get_connection(using),
    )

    def connect(timeout: float = 30):
        handler = ConnectionHandler(
            {
                "default": {
                    "ENGINE": "config.sqlite3",
                    "NAME": str(path),
                    "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": timeout},
                }
            }
        )
        handlers.append(handler)
        return handler["default"]

    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (n INTEGER)")
    # Not the test database, so not pytest-django's to guard.
    with django_db_blocker.unblock():
        yield connect, other
        for handler in handlers:
            handler.close_all()
    other.close()


def lock_of(connection) -> threading.Lock:
    return writers.process_write_lock(connection.settings_dict["NAME"])


def busy_timeout_ms(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        return cursor.fetchone()[0]


def release_after(
    other: sqlite3.Connection, seconds: float
) -> tuple[threading.Event, threading.Thread]:
    released = threading.Event()

    def release() -> None:
        time.sleep(seconds)
        released.set()
        other.execute("COMMIT")

    thread = threading.Thread(target=release)
    thread.start()
    return released, thread


def test_a_transaction_holds_its_process_lock_until_it_is_over(sqlite_file):
    connect, _ = sqlite_file
    connection = connect()

    with atomic(connection):
        assert lock_of(connection).locked()
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
    assert not lock_of(connection).locked()  # committed

    with pytest.raises(ZeroDivisionError), atomic(connection):
        assert lock_of(connection).locked()
        raise ZeroDivisionError
    assert not lock_of(connection).locked()  # rolled back

    atomic_block = atomic(connection)
    atomic_block.__enter__()
    assert lock_of(connection).locked()
    connection.close()  # e.g. dropped as unusable mid-transaction
    assert not lock_of(connection).locked()
    atomic_block.__exit__(None, None, None)


def test_the_transactions_of_one_process_queue_on_its_lock(sqlite_file, monkeypatch):
    connect, _ = sqlite_file
    first, order = connect(), []
    begin_immediate = writers.DatabaseWrapper._begin_immediate

    def tries_for_sqlites_lock(self, timeout):
        order.append("tries SQLite's lock")
        begin_immediate(self, timeout)

    monkeypatch.setattr(writers.DatabaseWrapper, "_begin_immediate", tries_for_sqlites_lock)
    entered = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        second = connect()
        with atomic(second):
            entered.set()
            leave.wait(5)
            order.append("first done")
        second.close()

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    threading.Timer(0.2, leave.set).start()
    with atomic(first):
        # It tried for SQLite's lock only once the other transaction was over: until then
        # it waited on the process's lock.
        order.append("second in")
    holder.join()
    assert order == [
        "tries SQLite's lock",
        "first done",
        "tries SQLite's lock",
        "second in",
    ]


def test_a_transaction_waits_closely_for_another_process_and_keeps_its_busy_timeout(sqlite_file):
    connect, other = sqlite_file
    connection = connect()
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    released, releaser = release_after(other, 0.2)
    with atomic(connection):
        came_in_after_release = released.is_set()
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (2)")
    releaser.join()
    assert came_in_after_release
    assert other.execute("SELECT n FROM t").fetchall() == [(2,)]
    assert busy_timeout_ms(connection) == 30000


def test_after_stepping_for_a_while_it_waits_on_the_busy_handler(monkeypatch, sqlite_file):
    monkeypatch.setattr(writers, "WRITE_LOCK_STEPPING_SECONDS", 0.05)
    connect, other = sqlite_file
    connection = connect()
    other.execute("BEGIN IMMEDIATE")
    released, releaser = release_after(other, 0.3)
    with atomic(connection):
        assert released.is_set()
    releaser.join()
    assert busy_timeout_ms(connection) == 30000


def test_a_lock_held_past_the_busy_timeout_fails_the_transaction_and_keeps_nothing(
    monkeypatch, sqlite_file
):
    monkeypatch.setattr(writers, "WRITE_LOCK_STEPPING_SECONDS", 0.05)
    connect, other = sqlite_file
    connection = connect(timeout=0.3)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), atomic(connection):
            pass
    finally:
        other.execute("ROLLBACK")
    assert not lock_of(connection).locked()
    assert busy_timeout_ms(connection) == 300
    with atomic(connection):  # and the next one goes through
        pass


def test_waiting_on_the_process_lock_counts_against_the_busy_timeout(sqlite_file):
    connect, _ = sqlite_file
    holder = connect()
    with atomic(holder):
        failed = []

        def wait() -> None:
            waiter = connect(timeout=0.2)
            try:
                with atomic(waiter):
                    pass
            except OperationalError as error:
                failed.append(str(error))
            waiter.close()

        thread = threading.Thread(target=wait)
        thread.start()
        thread.join(5)
    assert failed == ["database is locked"]
