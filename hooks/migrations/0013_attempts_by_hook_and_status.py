"""An index of each hook's attempts by response status, for the events API's status filter
at millions of rows (hooks.log_pages, docs/benchmarks.md).

Built in one statement: on PostgreSQL, writes to the attempts table wait while it is built
(10–13 s for ten million rows; docs/benchmarks.md).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("hooks", "0012_delivery_stats"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="deliveryattempt",
            index=models.Index(
                fields=["hook", "response_status", "id"], name="hooks_attempt_hook_status_idx"
            ),
        ),
    ]
