# Job Hooks: events of kind "build", and each delivery's place in its (hook, pipeline) stream
# (numbered here for the rows already there; required in 0006, a transaction of its own, as
# PostgreSQL alters no table with row changes still pending in the same transaction).

from django.db import migrations, models


def number_existing_deliveries(apps, schema_editor):
    """Deliveries written before sequences existed: 1, 2, 3… per (hook, order_key), in id
    order, as new ones are numbered."""
    Delivery = apps.get_model("hooks", "Delivery")
    last = {}
    rows = Delivery.objects.order_by("hook_id", "order_key", "id").values_list(
        "id", "hook_id", "order_key"
    )
    numbered = []
    for pk, hook_id, order_key in rows.iterator(chunk_size=2000):
        chain = (hook_id, order_key)
        last[chain] = last.get(chain, 0) + 1
        numbered.append(Delivery(pk=pk, sequence=last[chain]))
        if len(numbered) >= 2000:
            Delivery.objects.bulk_update(numbered, ["sequence"])
            numbered = []
    if numbered:
        Delivery.objects.bulk_update(numbered, ["sequence"])


class Migration(migrations.Migration):

    dependencies = [
        ('hooks', '0004_hook_probe_and_counted_failures'),
    ]

    operations = [
        migrations.AlterField(
            model_name='event',
            name='object_kind',
            field=models.CharField(choices=[('pipeline', 'Pipeline Hook'), ('build', 'Job Hook')], default='pipeline', max_length=32),
        ),
        migrations.AddField(
            model_name='event',
            name='job_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='delivery',
            name='sequence',
            field=models.PositiveIntegerField(null=True),
        ),
        migrations.RunPython(number_existing_deliveries, migrations.RunPython.noop),
    ]
