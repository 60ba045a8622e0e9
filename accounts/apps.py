from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from .signals import sync_roles_after_migrate

        # After every app's permissions exist (they are created on post_migrate too).
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="accounts.sync_roles")
