from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from .chain import install_after_migrate

        # After every app's tables exist: history tables of apps added later get chained.
        post_migrate.connect(install_after_migrate, sender=self, dispatch_uid="audit.chain")
