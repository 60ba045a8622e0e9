from typing import Any

from django.apps import apps as global_apps


def sync_roles_after_migrate(sender: Any, **kwargs: Any) -> None:
    """Keeps the staff groups' permissions complete after every migrate."""
    from .roles import sync_role_permissions

    sync_role_permissions(kwargs.get("apps") or global_apps)
