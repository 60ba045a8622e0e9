"""The kill switch in the staff admin: read here, toggled on its own page with a reason."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin
from unfold.decorators import action

from .models import KillSwitch


@admin.register(KillSwitch)
class KillSwitchAdmin(SimpleHistoryAdmin, ModelAdmin):
    """Read here; changed only through risk.services.kill_switch_set (with a reason), from
    the kill switch page (the button below, or the sidebar)."""

    list_display = ("__str__", "active", "reason", "changed_by", "changed_at")
    list_select_related = ("changed_by",)
    readonly_fields = ("active", "reason", "changed_by", "changed_at")
    actions_list = ["toggle"]
    actions_detail = ["toggle_detail"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @action(description="Turn on or off (asks for a reason)", url_path="toggle", icon="power")
    def toggle(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("staff:kill-switch"))

    @action(description="Turn on or off", url_path="toggle", icon="power")
    def toggle_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("staff:kill-switch"))
