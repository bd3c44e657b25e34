"""Indexes for the pages at millions of rows (docs/benchmarks.md).

A hook's deliveries and attempts get (hook, id) indexes; these start with hook_id, so the
foreign keys' own single-column indexes are dropped (found by their columns: their names
carry a hash). On SQLite, altering the field would copy the whole table; the state change
and a DROP INDEX do the same in an instant.
"""

import django.db.models.deletion
from django.db import migrations, models

FOREIGN_KEYS = [("hooks_delivery", "hook_id"), ("hooks_deliveryattempt", "hook_id")]


def drop_foreign_key_indexes(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table, column in FOREIGN_KEYS:
            constraints = connection.introspection.get_constraints(cursor, table)
            for name, info in constraints.items():
                if (
                    info["index"]
                    and info["columns"] == [column]
                    and not info["primary_key"]
                    and not info["unique"]
                    and not info.get("foreign_key")
                ):
                    schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_foreign_key_indexes(apps, schema_editor):
    for table, column in FOREIGN_KEYS:
        name = schema_editor.quote_name(f"{table}_{column}_fk_idx")
        schema_editor.execute(
            f"CREATE INDEX {name} ON {schema_editor.quote_name(table)} ({column})"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("hooks", "0009_gitlab_fidelity"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["hook", "id"], name="hooks_deliv_hook_id_idx"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["status", "id"], name="hooks_deliv_status_id_idx"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["hook", "status"], name="hooks_deliv_hook_status_idx"),
        ),
        migrations.AddIndex(
            model_name="deliveryattempt",
            index=models.Index(fields=["hook", "id"], name="hooks_attempt_hook_id_idx"),
        ),
        migrations.AddIndex(
            model_name="deliveryattempt",
            index=models.Index(
                condition=models.Q(("trigger", "test")),
                fields=["hook", "id"],
                name="hooks_attempt_hook_tests_idx",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="hook",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="hooks.hook",
                    ),
                ),
                migrations.AlterField(
                    model_name="deliveryattempt",
                    name="hook",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attempts",
                        to="hooks.hook",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_foreign_key_indexes, create_foreign_key_indexes),
            ],
        ),
    ]
