from django.db import migrations


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="reap-stale-generations",
        defaults={"func": "generation.tasks.reap_stale_generations", "schedule_type": "I", "minutes": 1,
                  "repeats": -1, "cluster": "default"},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="reap-stale-generations").delete()


class Migration(migrations.Migration):
    dependencies = [("generation", "0001_initial"), ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more")]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
