import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pipehook")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
    """
    from django.db import connections

    starting = kwargs["signal"] is signals.task_prerun
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        if (starting or connection.errors_occurred) and not connection.is_usable():
            connection.close()
