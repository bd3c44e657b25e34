"""The PostgreSQL server's side of the test's connection: which backend serves it, and
ending that backend as a restart or an administrator would."""

from django.db import connection


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def end_on_the_server(pid: int) -> None:
    """``pg_terminate_backend`` from a second connection."""
    server = connection.copy()
    try:
        with server.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        server.close()
