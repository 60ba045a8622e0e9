from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from .models import KillSwitch


@admin.register(KillSwitch)
class KillSwitchAdmin(SimpleHistoryAdmin):
    """Read here; changed only through risk.services.kill_switch_set (with a reason)."""

    list_display = ("__str__", "active", "reason", "changed_by", "changed_at")
    readonly_fields = ("active", "reason", "changed_by", "changed_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
