"""The one coupling between the pipeline domain and whatever consumes its events.

``pipeline_changed`` is sent by ``pipelines.services`` inside the transaction that changed
the pipeline, once per creation and once per real status change, with:

- ``pipeline``: the Pipeline row, already saved with its new status and jobs;
- ``previous_status``: the status before the change (``None`` on creation);
- ``change``: a ``PipelineChange``.
"""

from django.db.models import TextChoices
from django.dispatch import Signal


class PipelineChange(TextChoices):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    FINISHED = "finished"


pipeline_changed = Signal()
