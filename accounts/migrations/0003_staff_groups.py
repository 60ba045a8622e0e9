from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_staff_groups(apps, schema_editor):
    # Permissions are normally created after migrate; create them now so the groups
    # can be given theirs in this migration.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    from accounts.roles import sync_role_permissions

    sync_role_permissions(apps)


def remove_staff_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["Operations", "Compliance", "Support"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("brokers", "0001_initial"),
        ("copytrading", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_staff_groups, remove_staff_groups)]
