from django.db import migrations

SCHEDULES = {
    # Daily; it does nothing while SELFIE_RETENTION_DAYS is 0, so the schedule is always there.
    "purge-expired-selfies": {"func": "twins.tasks.purge_expired_selfies_task", "schedule_type": "D"},
    # Enrollments left `enrolling` by a dead worker whose task the broker won't hand on.
    "reap-stale-enrollments": {"func": "twins.tasks.reap_stale_enrollments_task", "schedule_type": "I",
                               "minutes": 1},
}


def create_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, fields in SCHEDULES.items():
        Schedule.objects.update_or_create(name=name, defaults={**fields, "repeats": -1, "cluster": "default"})


def remove_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=SCHEDULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("twins", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
