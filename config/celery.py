import logging
import os

from celery import Celery, bootsteps, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

app = Celery("pipehook")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class ForgetQueuedMessages(bootsteps.StartStopStep):
    """Each time the worker connects to the broker (at start and after a lost connection),
    pending deliveries are queued again by the next sweep rather than when their queued lease
    runs out (HOOKS_CLAIM_LEASE_SECONDS): the broker may have lost their messages."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, consumer) -> None:
        from hooks.queue import forget_queued_messages

        try:
            count = forget_queued_messages()
        except Exception as error:  # the database may be down too: the leases still run out
            logger.warning("Could not make pending deliveries due again: %s", error)
            return
        if count:
            logger.info("Connected to the broker: %s pending deliveries queued again", count)


app.steps["consumer"].add(ForgetQueuedMessages)


@signals.setup_logging.connect
def use_django_logging(loglevel=None, **kwargs) -> None:
    """The worker and beat log as the web does (settings.LOGGING: LOG_LEVEL, LOG_FORMAT, the
    secrets filter, per-task lines only at DEBUG) instead of Celery's own setup; a ``-l``
    more verbose than LOG_LEVEL still shows more."""
    from logging.config import dictConfig

    from celery.utils.log import mlevel
    from django.conf import settings

    dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if loglevel is not None:
        root.setLevel(min(root.level, mlevel(loglevel)))


@signals.task_prerun.connect
@signals.task_postrun.connect
def drop_unusable_database_connections(**kwargs) -> None:
    """What Django does around every request, around every task: a connection that failed or
    no longer answers is closed, and the next query opens a new one.

    Workers keep their connections across tasks (CELERY_DB_REUSE_MAX), which Celery recycles
    only every so many tasks; after a database restart each broken one failed task after task
    until then (deliveries stalled for a minute and more). Django's own
    ``close_old_connections`` would also close every connection older than CONN_MAX_AGE, which
    is 0 here: a reconnect per task, the cost the kept connections exist to save. So the check
    is Django's health check (CONN_HEALTH_CHECKS), made at each task's start and after any
    database error, without the age limit.

    A task's start is on the way of every event to its receivers, and Django's check is a
    query: a round trip to a database server each time. On PostgreSQL the backend tells
    whether its server may have ended the connection without one (config/postgresql/base.py:
    ``may_have_been_ended``), and the query is made only then, or after an error; SQLite's
    connections are open files, which nothing ends.
    """
    from django.db import connections

    starting = kwargs["signal"] is signals.task_prerun
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        # A backend that cannot tell without a query is asked at every task's start, as
        # Django asks at every request's (SQLite's answer costs nothing).
        ended = getattr(connection, "may_have_been_ended", None)
        may_be_broken = connection.errors_occurred or (starting and (ended is None or ended()))
        if may_be_broken and not connection.is_usable():
            connection.close()
