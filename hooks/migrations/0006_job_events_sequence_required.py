# Every delivery has its sequence (0005 numbered the rows already there): required, unique
# in its (hook, order_key) stream.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('hooks', '0005_job_events'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='sequence',
            field=models.PositiveIntegerField(),
        ),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.UniqueConstraint(fields=('hook', 'order_key', 'sequence'), name='delivery_unique_sequence'),
        ),
    ]
