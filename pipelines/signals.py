"""The one coupling between the pipeline domain and whatever consumes its events.

Both signals are sent by the commands (``pipelines.services``, ``pipelines.reports``) inside
the transaction that made the change, in the order the changes happened: a job's change
before the pipeline change it causes.

``pipeline_changed``, once per creation and once per real status change of a pipeline, with:

- ``pipeline``: the Pipeline row, already saved with its new status and jobs;
- ``previous_status``: the status before the change (``None`` on creation);
- ``change``: a ``PipelineChange``.

``job_changed``, once per new job and once per real status change of a job, with:

- ``job``: the Job row, already saved with its new status;
- ``pipeline``: its pipeline as it is at that moment (locked; not yet recomposed);
- ``previous_status``: the status before the change (``None`` for a new job).
"""

from django.db.models import TextChoices
from django.dispatch import Signal


class PipelineChange(TextChoices):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    FINISHED = "finished"


pipeline_changed = Signal()
job_changed = Signal()
